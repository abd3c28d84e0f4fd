//! `predict --model model.tcnn` and `--onnx FILE`: class probabilities of images through the
//! int8 blob in `shared` (the integer forward pass the firmware runs) or through tract, printed
//! like the tutorial's `predict.py`. The printing is shared by every backend (the float
//! checkpoint of the training crate too) so their output matches.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::images::image_pixels;

/// The `predict` backends that need no libtorch, and the images; `tinycnn predict` adds
/// `--checkpoint` to these.
#[derive(Clone, Debug, clap::Args)]
pub struct PredictArgs {
    /// int8 model blob (model.tcnn): runs the integer network of `shared`, without libtorch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// ONNX model (model.qdq.onnx or model.float.onnx): runs it in tract.
    #[arg(long)]
    pub onnx: Option<PathBuf>,
    /// Images to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

impl PredictArgs {
    /// Classifies the images with `--model` or `--onnx` and prints their probabilities; `None`
    /// when neither was given.
    pub fn run(&self) -> Option<Result<()>> {
        match (&self.model, &self.onnx) {
            (Some(model), _) => Some(predict_blob(model, &self.images)),
            (None, Some(onnx)) => Some(predict_onnx(onnx, &self.images)),
            (None, None) => None,
        }
    }
}

/// Formats one image's result: `PATH: TOP_LABEL (TOP_PROB)`, then one indented `label: prob`
/// line per class, most probable first (ties keep class order). Probabilities have 4 decimals.
pub fn format_probabilities(path: &Path, labels: &[String], probs: &[f32]) -> String {
    let mut order: Vec<usize> = (0..labels.len().min(probs.len())).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut text = match order.first() {
        Some(&top) => format!("{}: {} ({:.4})\n", path.display(), labels[top], probs[top]),
        None => format!("{}: no classes\n", path.display()),
    };
    for i in order {
        text.push_str(&format!("  {}: {:.4}\n", labels[i], probs[i]));
    }
    text
}

/// Prints [`format_probabilities`] to stdout.
pub fn print_probabilities(path: &Path, labels: &[String], probs: &[f32]) {
    print!("{}", format_probabilities(path, labels, probs));
}

/// Reads and validates a model blob, with messages that say what to pass instead.
pub fn read_blob(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the int8 model {}; pass model.tcnn from `tinycnn quantize`",
            path.display()
        )
    })?;
    if let Err(e) = tinycnn::Model::from_bytes(&bytes) {
        bail!("{} is not a usable tinycnn model: {e}", path.display());
    }
    Ok(bytes)
}

/// Softmax of float logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Runs every image through the blob at `model_path` with `tinycnn::forward` and prints its
/// probabilities (`tinycnn::probabilities`) in the float predict's format.
pub fn predict_blob(model_path: &Path, images: &[PathBuf]) -> Result<()> {
    let bytes = read_blob(model_path)?;
    let model = tinycnn::Model::from_bytes(&bytes).expect("read_blob validated the model");
    let arch = model.arch;
    let labels: Vec<String> = model.labels.iter().map(|l| l.to_string()).collect();
    for_each_image(
        images,
        || tinycnn::Session::new(model.clone()),
        |session, path| {
            session.run_pixels(&image_pixels(path, &arch)?);
            Ok(format_probabilities(path, &labels, session.probabilities()))
        },
    )
}

/// Runs every image through the ONNX model at `onnx_path` in tract and prints the softmax of its
/// logits in the float predict's format.
pub fn predict_onnx(onnx_path: &Path, images: &[PathBuf]) -> Result<()> {
    let bytes = std::fs::read(onnx_path).with_context(|| {
        format!("reading the ONNX model {}; pass model.qdq.onnx or model.float.onnx from `tinycnn quantize`", onnx_path.display())
    })?;
    let origin = onnx_path.display().to_string();
    let (arch, labels) = crate::tract::read_metadata(&bytes, &origin)?;
    let model = crate::tract::TractModel::from_bytes(&bytes, arch, 1, &origin)?;
    for_each_image(
        images,
        || (),
        |_, path| {
            let logits = model.run_u8_hwc(&image_pixels(path, &arch)?)?;
            Ok(format_probabilities(path, &labels, &softmax(&logits)))
        },
    )
}

/// Images classified per parallel round; results print in input order after each round.
const PREDICT_CHUNK: usize = 256;

/// Classifies every image on all cores (`init` makes one state per worker, such as a
/// [`tinycnn::Session`]) and prints each result in input order, reporting each failure and
/// going on; fails at the end if any image could not be classified.
fn for_each_image<S>(
    images: &[PathBuf],
    init: impl Fn() -> S + Sync + Send,
    classify: impl Fn(&mut S, &Path) -> Result<String> + Sync + Send,
) -> Result<()> {
    use rayon::prelude::*;
    let mut failures = 0;
    for chunk in images.chunks(PREDICT_CHUNK) {
        let results: Vec<Result<String>> = chunk
            .par_iter()
            .map_init(&init, |state, path| classify(state, path))
            .collect();
        for result in results {
            match result {
                Ok(text) => print!("{text}"),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    failures += 1;
                }
            }
        }
    }
    if failures > 0 {
        bail!(
            "{failures} of {} images could not be classified (see above)",
            images.len()
        );
    }
    Ok(())
}
