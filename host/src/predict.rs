//! Per-image class probabilities, printed like the tutorial's `predict.py`. The printing is shared
//! by every backend (float checkpoint here; int8 blob and ONNX elsewhere) so their output matches.
use std::path::Path;

use anyhow::{Context, Result};
use tch::Device;

use crate::checkpoint::Checkpoint;
use crate::data::{decode_image, pixels_to_tensor};
use crate::preprocess::preprocess_image;

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

/// Decodes the image at `path` and preprocesses it for `arch` with `shared`'s preprocessing:
/// HWC u8 pixels, the same as training, the int8 model and the firmware see.
pub fn image_pixels(path: &Path, arch: &tinycnn::Arch) -> Result<Vec<u8>> {
    let image = decode_image(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "cannot decode {}; pass a jpg, png, webp or bmp image",
                path.display()
            )
        })?;
    preprocess_image(&image, arch).with_context(|| format!("preprocessing {}", path.display()))
}

/// Class probabilities of the float checkpoint for the image at `path`.
pub fn predict_float(ck: &Checkpoint, path: &Path, device: Device) -> Result<Vec<f32>> {
    let pixels = image_pixels(path, &ck.meta.arch)?;
    let xs = pixels_to_tensor(&pixels, 1, &ck.meta.arch, device);
    let mut rows = crate::eval::probabilities(&ck.net, &xs)?;
    Ok(rows.pop().unwrap_or_default())
}
