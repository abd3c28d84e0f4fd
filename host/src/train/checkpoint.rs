//! Training checkpoints: one file holding the `VarStore` tensors and a JSON header (architecture,
//! labels, epoch, metrics) as a u8 tensor, written atomically. A reader never sees weights and a
//! header from different epochs.
//!
//! Adam's moment estimates live inside libtorch's optimizer, which tch cannot save, so a resumed
//! run restarts them (the weights, epoch, metrics and best score carry over).
use std::io::Cursor;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};
use tinycnn::Arch;

use crate::train::model::Net;

/// Name of the header tensor inside a checkpoint file.
const META_TENSOR: &str = "__tinycnn_meta__";
/// Bumped when the header changes incompatibly.
pub const CHECKPOINT_FORMAT: u32 = 1;
/// File name of the most recent epoch's checkpoint in a run folder.
pub const LAST: &str = "last.ot";
/// File name of the best-validation-accuracy checkpoint in a run folder.
pub const BEST: &str = "best.ot";

/// One epoch's training metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub learning_rate: f64,
    pub seconds: f64,
    pub train_images_per_second: f64,
}

/// The checkpoint header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub preset: String,
    pub arch: Arch,
    pub labels: Vec<String>,
    /// Epochs completed (1-based number of the epoch these weights are from).
    pub epoch: usize,
    pub best_val_accuracy: f64,
    pub metrics: Vec<EpochMetrics>,
    /// What made these weights, for the record, `--resume` and the validation split.
    pub options: RunOptions,
}

/// The options of the command that wrote a checkpoint (JSON: the options object itself; a
/// `float_checkpoint` key marks a QAT checkpoint).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged, try_from = "serde_json::Value")]
pub enum RunOptions {
    /// `tinycnn quantize`: QAT fine-tuning of a float run.
    Quantized(Box<QuantizedOptions>),
    /// `tinycnn train`.
    Float(Box<crate::train::TrainOptions>),
}

/// How a QAT checkpoint was made from the float run behind `float_checkpoint`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuantizedOptions {
    pub float_checkpoint: String,
    pub weight_bits: String,
    pub qat: crate::quant::QatOptions,
    pub activation_observers: Vec<crate::quant::Observer>,
    /// The float run's options.
    pub training_options: RunOptions,
}

impl TryFrom<serde_json::Value> for RunOptions {
    type Error = serde_json::Error;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        // Chosen by key rather than by serde's untagged trial, which loses the error of the
        // variant meant and mis-reads some numbers.
        if value.get("float_checkpoint").is_some() {
            serde_json::from_value(value).map(|q| RunOptions::Quantized(Box::new(q)))
        } else {
            serde_json::from_value(value).map(|t| RunOptions::Float(Box::new(t)))
        }
    }
}

impl RunOptions {
    /// The float run's training augmentation and label smoothing (what QAT fine-tunes with).
    pub fn training_loss(&self) -> (crate::data::augment::Augment, f64) {
        match self {
            RunOptions::Float(train) => (train.augment, train.label_smoothing),
            RunOptions::Quantized(q) => q.training_options.training_loss(),
        }
    }

    /// The validation split `tinycnn train` used for the run behind these weights:
    /// (fraction, seed).
    pub fn validation_split(&self) -> (f64, u64) {
        match self {
            RunOptions::Float(train) => (train.val_split, train.seed),
            RunOptions::Quantized(q) => q.training_options.validation_split(),
        }
    }
}

/// A checkpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {0} does not exist; pass a checkpoint written by `tinycnn train` (RUN_DIR/best.ot or RUN_DIR/last.ot)")]
    Missing(PathBuf),
    #[error("cannot read checkpoint {path}: {reason}; it is truncated or not a tinycnn checkpoint, re-run training or pick another file")]
    Unreadable { path: PathBuf, reason: String },
    #[error("checkpoint {path} is inconsistent: {reason}; re-run training to write a fresh one")]
    Inconsistent { path: PathBuf, reason: String },
    #[error("writing checkpoint {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// A loaded checkpoint: its header and the network with its weights.
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub vs: nn::VarStore,
    pub net: Net,
}

/// `path` itself, or `path/best.ot` when `path` is a run folder.
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(BEST)
    } else {
        path.to_path_buf()
    }
}

/// Writes `vs`'s variables and `meta` to `path` atomically.
pub fn save(path: &Path, vs: &nn::VarStore, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
    let err = |reason: String| CheckpointError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let header = serde_json::to_vec(meta).map_err(|e| err(e.to_string()))?;
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.to_device(Device::Cpu)))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.push((META_TENSOR.to_owned(), Tensor::from_slice(&header)));
    let mut bytes = Vec::new();
    Tensor::save_multi_to_stream(&named, &mut bytes).map_err(|e| err(e.to_string()))?;
    tinycnn_runtime::fsutil::write_atomic(path, &bytes).map_err(|e| err(format!("{e:#}")))
}

/// Reads only the header of the checkpoint at `path`.
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    Ok(read_tensors(path)?.0)
}

fn read_tensors(path: &Path) -> Result<(CheckpointMeta, Vec<(String, Tensor)>), CheckpointError> {
    let unreadable = |reason: String| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CheckpointError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let mut tensors = Tensor::load_multi_from_stream(Cursor::new(bytes)).map_err(|e| {
        let text = e.to_string();
        unreadable(
            text.lines()
                .next()
                .unwrap_or("libtorch could not parse it")
                .to_owned(),
        )
    })?;
    let meta_at = tensors
        .iter()
        .position(|(n, _)| n == META_TENSOR)
        .ok_or_else(|| unreadable("it has no tinycnn header".into()))?;
    let (_, header) = tensors.swap_remove(meta_at);
    if header.kind() != Kind::Uint8 || header.dim() != 1 {
        return Err(unreadable("its header tensor is not a byte string".into()));
    }
    let header_bytes: Vec<u8> =
        Vec::<u8>::try_from(&header).map_err(|e| unreadable(e.to_string()))?;
    let meta: CheckpointMeta = serde_json::from_slice(&header_bytes)
        .map_err(|e| unreadable(format!("bad header: {e}")))?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(unreadable(format!(
            "header format {} is not the supported {CHECKPOINT_FORMAT}",
            meta.format
        )));
    }
    Ok((meta, tensors))
}

/// Loads the checkpoint at `path` (or `path/best.ot` for a run folder) onto `device`.
pub fn load(path: &Path, device: Device) -> Result<Checkpoint, CheckpointError> {
    let path = resolve(path);
    let (meta, tensors) = read_tensors(&path)?;
    let inconsistent = |reason: String| CheckpointError::Inconsistent {
        path: path.clone(),
        reason,
    };
    if let Err(e) = meta.arch.validate() {
        return Err(inconsistent(format!("invalid architecture: {e}")));
    }
    if meta.labels.len() != meta.arch.classes as usize {
        return Err(inconsistent(format!(
            "{} labels for {} classes",
            meta.labels.len(),
            meta.arch.classes
        )));
    }
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &meta.arch);
    let mut variables = vs.variables();
    if variables.len() != tensors.len() {
        return Err(inconsistent(format!(
            "{} weight tensors, expected {}",
            tensors.len(),
            variables.len()
        )));
    }
    tch::no_grad(|| {
        for (name, value) in &tensors {
            let Some(var) = variables.get_mut(name) else {
                return Err(inconsistent(format!("unexpected tensor {name}")));
            };
            if var.size() != value.size() {
                return Err(inconsistent(format!(
                    "{name} has shape {:?}, expected {:?}",
                    value.size(),
                    var.size()
                )));
            }
            var.copy_(value);
        }
        Ok(())
    })?;
    Ok(Checkpoint { meta, vs, net })
}

/// The header of a QAT checkpoint made from the float run behind `float`: the float run's
/// options are kept under `training_options`.
pub fn quantized_meta(
    float: &CheckpointMeta,
    float_checkpoint: &Path,
    weight_bits: &str,
    qat: &crate::quant::QatOptions,
    observers: &[crate::quant::Observer],
) -> CheckpointMeta {
    let mut meta = float.clone();
    meta.options = RunOptions::Quantized(Box::new(QuantizedOptions {
        float_checkpoint: float_checkpoint.display().to_string(),
        weight_bits: weight_bits.to_owned(),
        qat: qat.clone(),
        activation_observers: observers.to_vec(),
        training_options: float.options.clone(),
    }));
    meta
}
