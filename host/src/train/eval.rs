//! Accuracy, loss and confusion matrix of a float checkpoint on a labelled image folder.
use std::path::Path;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use crate::data::{pixels_to_tensor, prefetch_batches, Dataset, ImageSource};
use crate::train::checkpoint;
use crate::train::model::Net;

/// Scores of a model on a set of images.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Evaluates `net` on the images `indices` of `data`, `batch` at a time, without gradients
/// (the next batches are read in the background while one is evaluated).
pub fn evaluate(
    net: &Net,
    data: &dyn ImageSource,
    indices: &[usize],
    batch: usize,
    device: Device,
) -> Result<Evaluation> {
    let n = data.list().arch.classes as usize;
    let mut confusion = vec![vec![0u64; n]; n];
    let (mut loss_sum, mut correct) = (0.0f64, 0u64);
    tch::no_grad(|| -> Result<()> {
        prefetch_batches(
            data,
            indices,
            batch.max(1),
            2,
            |_, pixels| pixels,
            |_, pixels, targets| -> Result<()> {
                let count = targets.len();
                let xs = pixels_to_tensor(pixels, count, &data.list().arch, device);
                let ys = Tensor::from_slice(&targets).to_device(device);
                let logits = net.forward_t(&xs, false);
                loss_sum +=
                    f64::try_from(logits.cross_entropy_for_logits(&ys).to_kind(Kind::Double))?
                        * count as f64;
                let predicted =
                    Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?;
                for (&t, &p) in targets.iter().zip(&predicted) {
                    confusion[t as usize][p as usize] += 1;
                    correct += u64::from(t == p);
                }
                Ok(())
            },
        )
    })?;
    let count = indices.len().max(1) as f64;
    Ok(Evaluation {
        accuracy: correct as f64 / count,
        loss: loss_sum / count,
        confusion,
    })
}

/// Softmax probabilities `[B, classes]` of `net` for a float batch, as rows of f32.
pub fn probabilities(net: &Net, xs: &Tensor) -> Result<Vec<Vec<f32>>> {
    let probs =
        tch::no_grad(|| net.forward_t(xs, false).softmax(-1, Kind::Float)).to_device(Device::Cpu);
    Ok(Vec::<Vec<f32>>::try_from(probs)?)
}

/// Formats a confusion matrix as an aligned text table (rows: true class, columns: predicted).
pub fn format_confusion(labels: &[String], confusion: &[Vec<u64>]) -> String {
    let width = confusion
        .iter()
        .flatten()
        .map(|c| c.to_string().len())
        .max()
        .unwrap_or(1)
        .max(3);
    let row_names: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{i} {l}"))
        .collect();
    let name_width = row_names
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("true\\pred".len());
    let mut text = format!("{:>name_width$} |", "true\\pred");
    for i in 0..labels.len() {
        text.push_str(&format!(" {i:>width$}"));
    }
    text.push('\n');
    for (name, row) in row_names.iter().zip(confusion) {
        text.push_str(&format!("{name:>name_width$} |"));
        for c in row {
            text.push_str(&format!(" {c:>width$}"));
        }
        text.push('\n');
    }
    text
}

/// What `tinycnn eval` found.
#[derive(Clone, Debug)]
pub struct EvalRun {
    pub accuracy: f64,
    pub loss: f64,
    pub confusion: Vec<Vec<u64>>,
    pub labels: Vec<String>,
    pub images: usize,
    pub skipped_files: usize,
}

/// Evaluates the checkpoint at `checkpoint_path` on `data_dir` (whose classes must be the
/// model's), prints accuracy and confusion matrix and, if `confusion_png` is given, draws it.
pub fn run(
    checkpoint_path: &Path,
    data_dir: &Path,
    confusion_png: Option<&Path>,
) -> Result<EvalRun> {
    let device = Device::cuda_if_available();
    let ck = checkpoint::load(checkpoint_path, device)?;
    let data = Dataset::load_for_model(data_dir, &ck.meta.arch, &ck.meta.labels)
        .with_context(|| format!("loading test images from {}", data_dir.display()))?;
    data.list.warn_skipped();
    let all: Vec<usize> = (0..data.len()).collect();
    let ev = evaluate(&ck.net, &data, &all, 256, device)?;
    println!(
        "test accuracy {:.2}% ({} images from {}, {} skipped), loss {:.4}, checkpoint {} (epoch {})",
        ev.accuracy * 100.0,
        data.len(),
        data_dir.display(),
        data.list.skipped.len(),
        ev.loss,
        checkpoint::resolve(checkpoint_path).display(),
        ck.meta.epoch
    );
    print!("{}", format_confusion(&data.list.labels, &ev.confusion));
    if let Some(png) = confusion_png {
        let title = format!("confusion matrix, accuracy {:.2}%", ev.accuracy * 100.0);
        crate::train::plot::confusion_matrix(png, &data.list.labels, &ev.confusion, &title)?;
        println!("confusion matrix saved to {}", png.display());
    }
    Ok(EvalRun {
        accuracy: ev.accuracy,
        loss: ev.loss,
        confusion: ev.confusion,
        images: data.len(),
        skipped_files: data.list.skipped.len(),
        labels: data.list.labels,
    })
}
