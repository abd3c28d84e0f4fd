//! `tinycnn quantize`: PTQ and QAT from a float checkpoint, then the blob, the `.tflite`, both
//! ONNX models and the report.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tch::{nn, Device};
use tinycnn::blob::OwnedModel;

use super::report::{layer_reports, percent, QuantizeReport};
use super::{
    accuracy, calibrate, float_logits, float_params, params_of, shared_logits, train_qat, Observer,
    QatOptions,
};
use crate::data::Dataset;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::model::Net;

/// `tinycnn quantize`: PTQ and QAT from a float checkpoint, export of the blob and both ONNX
/// models, and the quantization report.
#[derive(Clone, Debug, clap::Args)]
pub struct QuantizeArgs {
    /// Run folder of `tinycnn train`: shorthand for `--checkpoint RUN/best.ot --out RUN`.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Float checkpoint to quantize (a file, or a run folder for its best.ot).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Training image folder (one sub-folder per class): calibration and QAT data.
    #[arg(long)]
    pub data: PathBuf,
    /// Test image folder for the float, PTQ and int8 accuracies.
    #[arg(long)]
    pub test: PathBuf,
    /// Output folder for model.tcnn, model.float.onnx, model.qdq.onnx, qat.ot and model.report.{md,json}.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// QAT fine-tuning epochs (0: export the PTQ model), with the float run's --augment and
    /// --label-smoothing.
    #[arg(long, default_value_t = 3)]
    pub qat_epochs: usize,
    /// Final QAT epochs with frozen observers.
    #[arg(long, default_value_t = 1)]
    pub freeze_epochs: usize,
    /// QAT learning rate (Adam). Small, because it fine-tunes an already trained net.
    #[arg(long, default_value_t = 1e-5)]
    pub qat_lr: f64,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub ptq: PtqArgs,
    /// report.json to merge int8_test_accuracy, ptq_test_accuracy, blob_bytes and peak_ram_bytes
    /// into (default: OUT/report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The post-training quantization options `tinycnn quantize` and `tinycnn import` share: the
/// seeded calibration subset and the weight bit widths. `tinycnn import` words the help of
/// `--calib-images` and `--weight-bits` for its own calibration folder.
#[derive(Clone, Debug, clap::Args)]
pub struct PtqArgs {
    /// Training images used to calibrate the activation ranges (PTQ, and QAT's starting point).
    #[arg(long, default_value_t = 2000)]
    pub calib_images: usize,
    // Seeds the calibration subset (and, in `tinycnn quantize`, QAT's shuffling).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight bit width per layer: `int8` (default), `dense4` (fc1 and fc2 int4), `all4`, or
    /// one 8 or 4 per layer in order, conv blocks then fc1, fc2 (e.g. `8,8,8,4,8`). int4
    /// weights halve the blob; the .tflite export takes int8 layers only.
    #[arg(long, default_value = "int8")]
    pub weight_bits: String,
}

impl PtqArgs {
    /// `--weight-bits` for the layers of `arch`.
    pub fn layer_weight_bits(
        &self,
        arch: &tinycnn::Arch,
    ) -> anyhow::Result<Vec<tinycnn::WeightBits>> {
        Ok(tinycnn::parse_weight_bits(arch, &self.weight_bits)
            .with_context(|| format!("--weight-bits {:?}", self.weight_bits))?
            .to_vec())
    }

    /// The calibration images among `len`: `--calib-images` of them, seeded by `--seed`.
    pub fn calibration_indices(&self, len: usize) -> Vec<usize> {
        calibration_indices(len, self.calib_images, self.seed)
    }
}

/// File names inside the output folder.
pub const BLOB_FILE: &str = "model.tcnn";
pub const PTQ_BLOB_FILE: &str = "model.ptq.tcnn";
pub const FLOAT_ONNX_FILE: &str = "model.float.onnx";
pub const QDQ_ONNX_FILE: &str = "model.qdq.onnx";
pub const QAT_CHECKPOINT_FILE: &str = "qat.ot";
pub const MODEL_REPORT_JSON: &str = "model.report.json";
pub const MODEL_REPORT_MD: &str = "model.report.md";

pub const TFLITE_FILE: &str = "model.tflite";

impl QuantizeArgs {
    /// The float checkpoint and the output folder.
    fn paths(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        match (&self.run, &self.checkpoint, &self.out) {
            (_, Some(c), Some(o)) => Ok((c.clone(), o.clone())),
            (Some(run), c, o) => Ok((
                c.clone().unwrap_or_else(|| run.join(checkpoint::BEST)),
                o.clone().unwrap_or_else(|| run.clone()),
            )),
            _ => bail!(
                "say which model to quantize: pass --run RUN_DIR, or --checkpoint CKPT and --out DIR"
            ),
        }
    }
}

/// The images `tinycnn quantize` works on: the float run's own training split for calibration
/// and QAT, its validation split for choosing the exported epoch, and the test set for the report.
struct QuantData {
    train: Dataset,
    validation: Dataset,
    test: Dataset,
}

impl QuantData {
    fn load(args: &QuantizeArgs, ckpt: &Checkpoint) -> anyhow::Result<QuantData> {
        let (arch, labels) = (&ckpt.meta.arch, &ckpt.meta.labels);
        let load = |dir: &Path, what: &str| -> anyhow::Result<Dataset> {
            let data = Dataset::load_for_model(dir, arch, labels)
                .with_context(|| format!("loading {what} images from {}", dir.display()))?;
            data.list.warn_skipped();
            if data.is_empty() {
                bail!("{} holds no {what} images", dir.display());
            }
            Ok(data)
        };
        let all = load(&args.data, "training")?;
        let test = load(&args.test, "test")?;
        // The same seeded split `tinycnn train` used, so the epoch choice never sees the test set.
        let (val_split, split_seed) = ckpt.meta.options.validation_split();
        let (fit, held_out) = crate::data::split_indices(all.len(), val_split, split_seed);
        let (train, validation) = (all.subset(&fit), all.subset(&held_out));
        if train.is_empty() || validation.is_empty() {
            bail!("too few training images to hold out a validation split for QAT; add images");
        }
        Ok(QuantData {
            train,
            validation,
            test,
        })
    }
}

/// The first `count` images of a seeded shuffle of `0..len`: the PTQ calibration set, so that
/// every class is seen.
pub fn calibration_indices(len: usize, count: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    order.truncate(count.max(1));
    order
}

/// An exported int8 model with its encoded blob.
pub struct Exported {
    pub model: OwnedModel,
    pub blob: Vec<u8>,
}

impl Exported {
    /// Exports `net` (at its `weight_bits`) with the activation ranges of `observers`.
    pub fn new(net: &Net, labels: &[String], observers: &[Observer]) -> anyhow::Result<Exported> {
        let model = crate::export::export(&float_params(net, labels), &params_of(observers))?;
        let blob = model.to_bytes().context("encoding the blob")?;
        Ok(Exported { model, blob })
    }

    /// Accuracy of the blob through `tinycnn::forward` on `data`.
    pub fn accuracy(&self, data: &Dataset) -> anyhow::Result<f64> {
        let m =
            tinycnn::blob::Model::from_bytes(&self.blob).context("decoding an exported blob")?;
        Ok(accuracy(
            &shared_logits(&m, data),
            m.arch.classes as usize,
            &data.list.targets,
        ))
    }
}

/// PTQ: calibrates `net` on the images `calib` of `data` (global min/max, so their order does
/// not matter) and exports it. Returns the observers with the export.
pub fn post_training_quantize(
    net: &Net,
    labels: &[String],
    data: &Dataset,
    calib: &[usize],
    device: Device,
) -> anyhow::Result<(Vec<Observer>, Exported)> {
    let observers = calibrate(net, data, calib, device);
    let exported = Exported::new(net, labels, &observers)?;
    Ok((observers, exported))
}

/// The QAT epoch chosen for export.
struct Selected {
    epoch: usize,
    validation_accuracy: f64,
    observers: Vec<Observer>,
    weights: nn::VarStore,
}

/// A copy of the weights in `vs`.
fn snapshot(vs: &nn::VarStore, net: &Net) -> anyhow::Result<nn::VarStore> {
    let mut copy = nn::VarStore::new(vs.device());
    let _ = Net::new(&copy.root(), &net.arch);
    copy.copy(vs)?;
    Ok(copy)
}

/// QAT from the PTQ start; returns the epoch with the best int8 validation accuracy (the PTQ
/// start counts as epoch 0, so fine-tuning never makes the exported model worse on held-out
/// data) and every epoch's summary.
fn fine_tune(
    ckpt: &Checkpoint,
    data: &QuantData,
    ptq: (Vec<Observer>, f64),
    qat: &QatOptions,
) -> anyhow::Result<(Selected, Vec<super::QatEpoch>)> {
    let (observers, ptq_validation_accuracy) = ptq;
    let mut best = Selected {
        epoch: 0,
        validation_accuracy: ptq_validation_accuracy,
        observers: observers.clone(),
        weights: snapshot(&ckpt.vs, &ckpt.net)?,
    };
    let labels = &ckpt.meta.labels;
    let (_, epochs) = train_qat(
        &ckpt.vs,
        &ckpt.net,
        &data.train,
        observers,
        qat,
        |e, obs| {
            let validation_accuracy = Exported::new(&ckpt.net, labels, obs)
                .and_then(|x| x.accuracy(&data.validation))
                .context("evaluating a QAT epoch on the validation split")?;
            eprintln!(
                "QAT epoch {}/{}: loss {:.4}, train accuracy {}, integer validation {}{}",
                e.epoch,
                qat.epochs,
                e.loss,
                percent(e.train_accuracy),
                percent(validation_accuracy),
                if e.observers_frozen {
                    " (observers frozen)"
                } else {
                    ""
                }
            );
            if validation_accuracy >= best.validation_accuracy {
                best = Selected {
                    epoch: e.epoch,
                    validation_accuracy,
                    observers: obs.to_vec(),
                    weights: snapshot(&ckpt.vs, &ckpt.net)?,
                };
            }
            Ok(())
        },
    )
    .context("QAT fine-tuning failed")?;
    Ok((best, epochs))
}

/// The `.tflite` export of `model`, or `None` with the reason where TFLite cannot hold it.
pub fn tflite_bytes(model: &OwnedModel, blob: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    if model
        .layers
        .iter()
        .any(|l| l.weight_bits != tinycnn::WeightBits::S8)
    {
        return Ok(None);
    }
    let m = tinycnn::Model::from_bytes(blob).context("decoding the exported blob")?;
    Ok(Some(
        tinycnn_tflite::to_tflite(&m).context("exporting model.tflite")?,
    ))
}

/// Runs `tinycnn quantize`.
pub fn quantize_command(args: &QuantizeArgs) -> anyhow::Result<QuantizeReport> {
    let (checkpoint_path, out) = args.paths()?;
    crate::train::install_interrupt_handler();
    let device = Device::cuda_if_available();
    let mut ckpt = checkpoint::load(&checkpoint_path, device)
        .with_context(|| format!("loading the float checkpoint {}", checkpoint_path.display()))?;
    let arch = ckpt.meta.arch;
    ckpt.net.weight_bits = args.ptq.layer_weight_bits(&arch)?;
    let labels = ckpt.meta.labels.clone();
    let data = QuantData::load(args, &ckpt)?;
    let classes = arch.classes as usize;
    let float_test_accuracy = accuracy(
        &float_logits(&ckpt.net, &data.test, device),
        classes,
        &data.test.list.targets,
    );
    eprintln!("float test accuracy: {}", percent(float_test_accuracy));

    let calib = args.ptq.calibration_indices(data.train.len());
    let (observers, ptq) = post_training_quantize(&ckpt.net, &labels, &data.train, &calib, device)?;
    let ptq_test_accuracy = ptq.accuracy(&data.test)?;
    let ptq_validation_accuracy = ptq.accuracy(&data.validation)?;
    eprintln!(
        "PTQ test accuracy (integer model): {} ({} calibration images); validation {}",
        percent(ptq_test_accuracy),
        calib.len(),
        percent(ptq_validation_accuracy)
    );

    let (augment, label_smoothing) = ckpt.meta.options.training_loss();
    let qat = QatOptions {
        augment,
        label_smoothing,
        epochs: args.qat_epochs,
        freeze_epochs: args.freeze_epochs.min(args.qat_epochs),
        lr: args.qat_lr,
        batch: args.batch,
        seed: args.ptq.seed,
    };
    let (selected, qat_epochs) =
        fine_tune(&ckpt, &data, (observers, ptq_validation_accuracy), &qat)?;
    ckpt.vs.copy(&selected.weights)?;
    eprintln!(
        "exporting {} (best integer validation accuracy)",
        if selected.epoch == 0 {
            "the PTQ starting point".to_string()
        } else {
            format!("QAT epoch {}", selected.epoch)
        }
    );
    let exported = Exported::new(&ckpt.net, &labels, &selected.observers)?;
    let int8_test_accuracy = exported.accuracy(&data.test)?;
    let qat_float_test_accuracy = accuracy(
        &float_logits(&ckpt.net, &data.test, device),
        classes,
        &data.test.list.targets,
    );
    eprintln!(
        "QAT test accuracy (integer model): {}",
        percent(int8_test_accuracy)
    );
    let tflite = tflite_bytes(&exported.model, &exported.blob)?;

    let report = QuantizeReport {
        preset: ckpt.meta.preset.clone(),
        arch,
        labels,
        test_images: data.test.len(),
        float_test_accuracy,
        ptq_test_accuracy,
        int8_test_accuracy,
        qat_float_test_accuracy,
        blob_bytes: exported.blob.len(),
        peak_ram_bytes: arch.peak_activation_bytes(),
        macs: arch.macs(),
        tflite_bytes: tflite.as_ref().map(Vec::len),
        calib_images: calib.len(),
        qat_selected_epoch: selected.epoch,
        qat,
        qat_epochs,
        layers: layer_reports(&exported.model),
    };
    let outputs = Outputs {
        out: &out,
        exported: &exported,
        ptq: &ptq,
        tflite: tflite.as_deref(),
        report: &report,
    };
    outputs.write(&checkpoint_path, &mut ckpt, args, &selected.observers)?;
    Ok(report)
}

/// Everything `tinycnn quantize` writes.
struct Outputs<'a> {
    out: &'a Path,
    exported: &'a Exported,
    ptq: &'a Exported,
    tflite: Option<&'a [u8]>,
    report: &'a QuantizeReport,
}

impl Outputs<'_> {
    fn write(
        &self,
        float_checkpoint: &Path,
        ckpt: &mut Checkpoint,
        args: &QuantizeArgs,
        observers: &[Observer],
    ) -> anyhow::Result<()> {
        let write = |name: &str, bytes: &[u8]| {
            tinycnn_runtime::fsutil::write_atomic(&self.out.join(name), bytes)
        };
        let float = float_params(&ckpt.net, &self.report.labels);
        write(BLOB_FILE, &self.exported.blob)?;
        write(PTQ_BLOB_FILE, &self.ptq.blob)?;
        match self.tflite {
            Some(bytes) => write(TFLITE_FILE, bytes)?,
            None => {
                // A stale file from an earlier int8 run would no longer match the blob.
                let _ = std::fs::remove_file(self.out.join(TFLITE_FILE));
                eprintln!("note: {TFLITE_FILE} is not written: the model has int4 layers, which the .tflite export does not take");
            }
        }
        write(
            FLOAT_ONNX_FILE,
            &crate::export::onnx::to_bytes(&crate::export::onnx::float_model(&float)),
        )?;
        write(
            QDQ_ONNX_FILE,
            &crate::export::onnx::to_bytes(&crate::export::onnx::qdq_model(&self.exported.model)),
        )?;
        let meta = checkpoint::quantized_meta(
            &ckpt.meta,
            float_checkpoint,
            &args.ptq.weight_bits,
            &self.report.qat,
            observers,
        );
        checkpoint::save(&self.out.join(QAT_CHECKPOINT_FILE), &ckpt.vs, &meta)?;
        let report = self.report;
        write(
            MODEL_REPORT_JSON,
            serde_json::to_string_pretty(report)?.as_bytes(),
        )?;
        write(MODEL_REPORT_MD, report.markdown().as_bytes())?;
        let report_path = args
            .report
            .clone()
            .unwrap_or_else(|| self.out.join("report.json"));
        tinycnn_runtime::report::merge(
            &report_path,
            serde_json::json!({
                "int8_test_accuracy": report.int8_test_accuracy,
                "ptq_test_accuracy": report.ptq_test_accuracy,
                "qat_float_test_accuracy": report.qat_float_test_accuracy,
                "qat_selected_epoch": report.qat_selected_epoch,
                "blob_bytes": report.blob_bytes,
                "peak_ram_bytes": report.peak_ram_bytes,
            }),
        )?;
        println!("{}", report.markdown());
        println!(
            "wrote {} ({} bytes), {}{}, {}, {}",
            self.out.join(BLOB_FILE).display(),
            report.blob_bytes,
            if self.tflite.is_some() {
                "model.tflite, "
            } else {
                ""
            },
            FLOAT_ONNX_FILE,
            QDQ_ONNX_FILE,
            MODEL_REPORT_MD
        );
        Ok(())
    }
}
