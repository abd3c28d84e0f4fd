//! `tinycnn parity`: checks that the host and independent runtimes agree with `shared`.
//!
//! - **int sim**: [`crate::check::int_sim`] (tch tensor ops) equals `tinycnn::forward` on every layer
//!   output of every image, bit for bit.
//! - **fake quant**: the QAT net in eval mode, with the blob's activation parameters, gives int8
//!   logits within 1 LSB of `shared` on >= 99% of values, never more than 2, with argmax
//!   agreement >= 99.5%.
//! - **tract float**: the float ONNX in tract matches tch's float logits within 1e-4 relative.
//! - **tract QDQ**: the QDQ ONNX in tract matches `shared`'s int8 logits within 2 LSB, with argmax
//!   agreement >= 99.5%. tract requantizes in float with one rounding, where `shared` rounds
//!   twice in fixed point; each layer differs by at most 1 LSB, and the differences compound
//!   over the layers (2 LSB on a few logits of some trained models, on the same images as
//!   LiteRT's optimized kernels, which round the same way).
//! - **streaming**: the row-streaming forward pass (the firmware's) equals the whole-map one on
//!   every logit of every image, bit for bit.
//! - **LiteRT**: the `.tflite` export in TFLite's interpreter ([`crate::check::litert`]): conv
//!   blocks bit-identical and every layer within 1 LSB with the reference kernels, logits within
//!   2 LSB with every resolver, argmax agreement >= 99.9% on images that are not near ties.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tch::Device;

use crate::check::int_sim::Mismatch;
use crate::check::litert::{
    LiteRtParity, LITERT_LOGITS_MAX_LSB, LITERT_MIN_ARGMAX_AGREEMENT, LITERT_REF_MAX_LSB,
};
use crate::data::Dataset;
use crate::quant::{self as qat, argmax_rows};

pub const FAKEQUANT_MIN_WITHIN_1LSB: f64 = 0.99;
pub const FAKEQUANT_MAX_LSB: u32 = 2;
pub const MIN_ARGMAX_AGREEMENT: f64 = 0.995;
pub const TRACT_FLOAT_MAX_REL_ERR: f64 = 1e-4;
pub const TRACT_QDQ_MAX_LSB: u32 = 2;
/// Images per tract run.
pub const TRACT_BATCH: usize = 64;

/// The `parity` object of report.json.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ParityReport {
    pub images: usize,
    pub int_sim_mismatched_logits: usize,
    /// The first layer output where the int sim and `shared` differ (image, layer, index).
    pub int_sim_first_mismatch: Option<Mismatch>,
    pub fakequant_within_1lsb_fraction: f64,
    pub fakequant_max_lsb: u32,
    /// Fake-quant vs `shared` argmax agreement.
    pub argmax_agreement: f64,
    pub tract_float_max_rel_err: f64,
    pub tract_qdq_max_lsb: u32,
    pub tract_qdq_argmax_agreement: f64,
    /// The first logit where fake quant differs from `shared` by the maximum (image, class).
    pub fakequant_worst: Option<(usize, usize)>,
    /// The first logit where tract QDQ differs from `shared` by the maximum (image, class).
    pub tract_qdq_worst: Option<(usize, usize)>,
    pub int8_test_accuracy: f64,
    /// Logits where the streaming forward pass differs from the whole-map one (must be 0).
    pub streaming_mismatched_logits: usize,
    /// The first image where they differ.
    pub streaming_first_mismatch_image: Option<usize>,
    /// The LiteRT comparison, when it ran.
    pub litert: Option<LiteRtParity>,
    /// Why the LiteRT comparison did not run (no LiteRT, or int4 layers).
    pub litert_not_run: Option<String>,
}

/// Largest |a - b| and the first (row, column) where it occurs.
fn max_lsb(a: &[i8], b: &[i8], classes: usize) -> (u32, Option<(usize, usize)>, f64) {
    let mut worst = (0u32, None);
    let mut within = 0usize;
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        let d = (*x as i32 - *y as i32).unsigned_abs();
        if d <= 1 {
            within += 1;
        }
        if d > worst.0 {
            worst = (d, Some((k / classes, k % classes)));
        }
    }
    (worst.0, worst.1, within as f64 / a.len().max(1) as f64)
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// Inputs of a parity run.
pub struct ParityInputs<'a> {
    pub blob: &'a [u8],
    /// The QAT net (float weights) the blob was exported from.
    pub net: &'a crate::train::model::Net,
    pub data: &'a Dataset,
    pub float_onnx: &'a [u8],
    pub qdq_onnx: &'a [u8],
    pub device: Device,
    /// The python with `ai-edge-litert` (see [`crate::check::litert::find_python`]).
    pub python: Option<&'a Path>,
    /// Images LiteRT runs (the first ones of `data`); 0 skips it.
    pub litert_images: usize,
    /// Scratch folder for the LiteRT run.
    pub work_dir: PathBuf,
}

/// Runs all four checks on every image of `inputs.data`.
pub fn run(inputs: &ParityInputs) -> anyhow::Result<ParityReport> {
    let model = tinycnn::blob::Model::from_bytes(inputs.blob)
        .map_err(|e| {
            anyhow::anyhow!("the model blob does not load: {e}; re-run `tinycnn quantize`")
        })?
        .to_owned_model();
    let arch = model.arch;
    let data = inputs.data;
    let classes = arch.classes as usize;
    if data.list.arch.height != arch.height
        || data.list.arch.width != arch.width
        || data.list.arch.channels != arch.channels
    {
        bail!("the data set was preprocessed for a different input size than the model");
    }
    let images = qat::int8_inputs(data);

    let sim = crate::check::int_sim::compare_with_shared(&model, &images)
        .context("re-encoding the blob")?;
    let shared = &sim.shared_logits;
    let shared_argmax = argmax_rows(shared, classes);
    let int8_test_accuracy = qat::accuracy(shared, classes, &data.list.targets);
    let shared_model = tinycnn::Model::from_bytes(inputs.blob).expect("the blob loaded above");
    let streaming = tinycnn_runtime::check::streaming_vs_whole_map(&shared_model, &images, shared);

    let params: Vec<tinycnn::blob::QuantParams> = model.layers.iter().map(|l| l.output).collect();
    let fake = qat::fake_quant_int8_logits(inputs.net, params, data, inputs.device);
    let (fakequant_max_lsb, fakequant_worst, fakequant_within_1lsb_fraction) =
        max_lsb(&fake, shared, classes);
    let argmax_agreement = agreement(&argmax_rows(&fake, classes), &shared_argmax);

    let float = qat::float_logits(inputs.net, data, inputs.device);
    let tract_float = tinycnn_runtime::tract::TractModel::from_bytes(
        inputs.float_onnx,
        arch,
        TRACT_BATCH,
        "float ONNX",
    )?
    .run_u8_hwc(&data.pixels)?;
    let mut tract_float_max_rel_err = 0f64;
    for (t, f) in tract_float
        .chunks_exact(classes)
        .zip(float.chunks_exact(classes))
    {
        let norm = f.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6) as f64;
        for (a, b) in t.iter().zip(f) {
            tract_float_max_rel_err =
                tract_float_max_rel_err.max((*a as f64 - *b as f64).abs() / norm);
        }
    }

    let tract_qdq = tinycnn_runtime::tract::TractModel::from_bytes(
        inputs.qdq_onnx,
        arch,
        TRACT_BATCH,
        "QDQ ONNX",
    )?
    .run_u8_hwc(&data.pixels)?;
    let logits_output = model.layers[arch.logits_layer().index].output;
    let tract_q = tinycnn_runtime::tract::requantize_logits(&tract_qdq, logits_output);
    let (tract_qdq_max_lsb, tract_qdq_worst, _) = max_lsb(&tract_q, shared, classes);
    let tract_qdq_argmax_agreement = agreement(&argmax_rows(&tract_q, classes), &shared_argmax);

    let litert_inputs = &images[..images.len().min(inputs.litert_images * arch.input_len())];
    let litert = if litert_inputs.is_empty() {
        Err("--litert-images 0".to_string())
    } else {
        crate::check::litert::run(inputs.blob, litert_inputs, inputs.python, &inputs.work_dir)
    };

    Ok(ParityReport {
        images: sim.images,
        int_sim_mismatched_logits: sim.mismatched_logits,
        int_sim_first_mismatch: sim.first_mismatch,
        fakequant_within_1lsb_fraction,
        fakequant_max_lsb,
        argmax_agreement,
        tract_float_max_rel_err,
        tract_qdq_max_lsb,
        tract_qdq_argmax_agreement,
        fakequant_worst,
        tract_qdq_worst,
        int8_test_accuracy,
        streaming_mismatched_logits: streaming.mismatched_logits,
        streaming_first_mismatch_image: streaming.first_mismatch_image,
        litert_not_run: litert.as_ref().err().cloned(),
        litert: litert.ok(),
    })
}

impl ParityReport {
    /// (check, measured, required, passed) rows.
    pub fn rows(&self) -> Vec<(String, String, String, bool)> {
        let pct = |x: f64| format!("{:.3}%", 100.0 * x);
        let mut rows: Vec<(String, String, String, bool)> = vec![
            (
                "int sim vs shared: mismatched logits".into(),
                self.int_sim_mismatched_logits.to_string(),
                "0 (every layer bit-exact)".into(),
                self.int_sim_mismatched_logits == 0 && self.int_sim_first_mismatch.is_none(),
            ),
            (
                "streaming vs whole-map: mismatched logits".into(),
                self.streaming_mismatched_logits.to_string(),
                "0 (bit-exact)".into(),
                self.streaming_mismatched_logits == 0,
            ),
            (
                "fake quant vs shared: logits within 1 LSB".into(),
                pct(self.fakequant_within_1lsb_fraction),
                format!(">= {}", pct(FAKEQUANT_MIN_WITHIN_1LSB)),
                self.fakequant_within_1lsb_fraction >= FAKEQUANT_MIN_WITHIN_1LSB,
            ),
            (
                "fake quant vs shared: max LSB".into(),
                self.fakequant_max_lsb.to_string(),
                format!("<= {FAKEQUANT_MAX_LSB}"),
                self.fakequant_max_lsb <= FAKEQUANT_MAX_LSB,
            ),
            (
                "fake quant vs shared: argmax agreement".into(),
                pct(self.argmax_agreement),
                format!(">= {}", pct(MIN_ARGMAX_AGREEMENT)),
                self.argmax_agreement >= MIN_ARGMAX_AGREEMENT,
            ),
            (
                "tract float vs tch: max relative error".into(),
                format!("{:.2e}", self.tract_float_max_rel_err),
                format!("<= {TRACT_FLOAT_MAX_REL_ERR:.0e}"),
                self.tract_float_max_rel_err <= TRACT_FLOAT_MAX_REL_ERR,
            ),
            (
                "tract QDQ vs shared: max LSB".into(),
                self.tract_qdq_max_lsb.to_string(),
                format!("<= {TRACT_QDQ_MAX_LSB}"),
                self.tract_qdq_max_lsb <= TRACT_QDQ_MAX_LSB,
            ),
            (
                "tract QDQ vs shared: argmax agreement".into(),
                pct(self.tract_qdq_argmax_agreement),
                format!(">= {}", pct(MIN_ARGMAX_AGREEMENT)),
                self.tract_qdq_argmax_agreement >= MIN_ARGMAX_AGREEMENT,
            ),
        ];
        if let Some(l) = &self.litert {
            rows.extend([
                (
                    "LiteRT reference kernels: conv blocks".into(),
                    if l.reference_conv_blocks_exact() {
                        "bit-exact"
                    } else {
                        "differ"
                    }
                    .into(),
                    "bit-exact".into(),
                    l.reference_conv_blocks_exact(),
                ),
                (
                    "LiteRT reference kernels: max LSB, any layer".into(),
                    l.reference_max_lsb()
                        .map_or("not run".into(), |m| m.to_string()),
                    format!("<= {LITERT_REF_MAX_LSB}"),
                    l.reference_max_lsb()
                        .is_some_and(|m| m <= LITERT_REF_MAX_LSB),
                ),
                (
                    "LiteRT, all resolvers: logits max LSB".into(),
                    l.logits_max_lsb().to_string(),
                    format!("<= {LITERT_LOGITS_MAX_LSB}"),
                    l.logits_max_lsb() <= LITERT_LOGITS_MAX_LSB,
                ),
                (
                    "LiteRT, all resolvers: argmax, decisive images".into(),
                    pct(l.min_decisive_argmax_agreement()),
                    format!(">= {}", pct(LITERT_MIN_ARGMAX_AGREEMENT)),
                    l.min_decisive_argmax_agreement() >= LITERT_MIN_ARGMAX_AGREEMENT,
                ),
            ]);
        }
        rows
    }

    /// Descriptions of the failed checks, with where to look.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rows()
            .into_iter()
            .filter(|r| !r.3)
            .map(|(name, got, want, _)| format!("{name}: {got}, required {want}"))
            .collect();
        if let Some(m) = &self.int_sim_first_mismatch {
            out.push(format!("int sim vs shared: {m}"));
        }
        if let Some(image) = self.streaming_first_mismatch_image {
            out.push(format!(
                "streaming vs whole-map: image {image} differs first"
            ));
        }
        if self.fakequant_max_lsb > FAKEQUANT_MAX_LSB {
            if let Some((image, class)) = self.fakequant_worst {
                out.push(format!(
                    "fake quant worst logit: image {image}, layer fc2, index {class}"
                ));
            }
        }
        if self.tract_qdq_max_lsb > TRACT_QDQ_MAX_LSB {
            if let Some((image, class)) = self.tract_qdq_worst {
                out.push(format!(
                    "tract QDQ worst logit: image {image}, layer fc2, index {class}"
                ));
            }
        }
        out
    }

    pub fn table(&self) -> String {
        let rows = self.rows();
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut s = format!(
            "parity on {} images (int8 test accuracy {:.2}%)\n",
            self.images,
            100.0 * self.int8_test_accuracy
        );
        s += &format!(
            "{:width$}  {:>10}  {:<26}  result\n",
            "check", "measured", "required"
        );
        for (name, got, want, ok) in rows {
            s += &format!(
                "{name:width$}  {got:>10}  {want:<26}  {}\n",
                if ok { "ok" } else { "FAIL" }
            );
        }
        match (&self.litert, &self.litert_not_run) {
            (Some(l), _) => s += &l.details(),
            (None, Some(why)) => s += &format!("LiteRT: not run ({why})\n"),
            (None, None) => {}
        }
        s
    }
}

/// `tinycnn parity`.
#[derive(Clone, Debug, clap::Args)]
pub struct ParityArgs {
    /// Folder written by `tinycnn quantize`: shorthand for `--model RUN/model.tcnn --checkpoint RUN/qat.ot --out RUN/parity.json`.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The int8 blob; model.float.onnx and model.qdq.onnx are read from the same folder.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The QAT checkpoint the blob was exported from (qat.ot).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Test image folder (one sub-folder per class).
    #[arg(long)]
    pub data: PathBuf,
    /// JSON file for the parity report (default: the model's folder/parity.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// report.json to merge the `parity` object into (default: report.json next to the model).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Fail when any check misses its tolerance. Without it only an int sim or streaming mismatch (a broken
    /// bit-exactness contract) fails; tolerance misses are reported in the table and JSON.
    #[arg(long)]
    pub strict: bool,
    /// Python with `ai-edge-litert` for the LiteRT line [default: $TINYCNN_PYTHON, else the
    /// project's .venv/bin/python].
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Test images LiteRT runs (its interpreter is slower than the other checks).
    #[arg(long, default_value_t = 10_000)]
    pub litert_images: usize,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading {what} {}; run `tinycnn quantize` first",
            path.display()
        )
    })
}

/// Runs `tinycnn parity`: prints the table, writes the JSON, merges `parity` into report.json and
/// fails on an int sim mismatch, or on any failed check with `--strict`.
pub fn parity_command(args: &ParityArgs) -> anyhow::Result<ParityReport> {
    let (model_path, checkpoint_path) = match (&args.run, &args.model, &args.checkpoint) {
        (_, Some(m), Some(c)) => (m.clone(), c.clone()),
        (Some(run), m, c) => (
            m.clone().unwrap_or_else(|| run.join(qat::BLOB_FILE)),
            c.clone().unwrap_or_else(|| run.join(qat::QAT_CHECKPOINT_FILE)),
        ),
        _ => bail!("say which model to check: pass --run RUN_DIR, or --model model.tcnn and --checkpoint qat.ot"),
    };
    let dir = model_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let blob = read(&model_path, "the int8 model")?;
    let float_onnx = read(&dir.join(qat::FLOAT_ONNX_FILE), "the float ONNX model")?;
    let qdq_onnx = read(&dir.join(qat::QDQ_ONNX_FILE), "the QDQ ONNX model")?;
    let device = Device::cuda_if_available();
    let mut ckpt = crate::train::checkpoint::load(&checkpoint_path, device)
        .with_context(|| format!("loading the QAT checkpoint {}", checkpoint_path.display()))?;
    // Fake quantization at the blob's per-layer weight bit widths (a bad blob fails in `run`).
    if let Ok(m) = tinycnn::blob::Model::from_bytes(&blob) {
        ckpt.net.weight_bits = m.layers.iter().map(|l| l.weight_bits()).collect();
    }
    let data = Dataset::load_for_model(&args.data, &ckpt.meta.arch, &ckpt.meta.labels)
        .with_context(|| format!("loading test images from {}", args.data.display()))?;
    data.list.warn_skipped();
    if data.is_empty() {
        bail!("{} holds no test images", args.data.display());
    }
    let report = run(&ParityInputs {
        blob: &blob,
        net: &ckpt.net,
        data: &data,
        float_onnx: &float_onnx,
        qdq_onnx: &qdq_onnx,
        device,
        python: args.python.as_deref(),
        litert_images: args.litert_images,
        work_dir: dir.join("litert"),
    })?;
    print!("{}", report.table());
    let json = serde_json::to_value(&report)?;
    let out = args.out.clone().unwrap_or_else(|| dir.join("parity.json"));
    tinycnn_runtime::fsutil::write_atomic(&out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| dir.join("report.json"));
    tinycnn_runtime::report::merge(&report_path, serde_json::json!({ "parity": json }))?;
    let failures = report.failures();
    let bit_exact = report.int_sim_mismatched_logits == 0
        && report.int_sim_first_mismatch.is_none()
        && report.streaming_mismatched_logits == 0;
    if !failures.is_empty() {
        if args.strict || !bit_exact {
            bail!("parity failed:\n  {}", failures.join("\n  "));
        }
        eprintln!(
            "warning: parity checks outside their tolerance (pass --strict to fail on them):\n  {}",
            failures.join("\n  ")
        );
    }
    Ok(report)
}
