//! `tinycnn predict --model model.tcnn` and `--onnx FILE`: class probabilities of images through
//! the int8 blob in `shared` (integer forward pass, no libtorch calls) or through tract.
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::predict::image_pixels;

/// Softmax of float logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Runs every image through the blob at `model_path` with `tinycnn::forward` and prints its
/// probabilities (`tinycnn::probabilities`) in the float predict's format.
pub fn predict_blob(model_path: &Path, images: &[std::path::PathBuf]) -> Result<()> {
    let bytes = std::fs::read(model_path).with_context(|| {
        format!(
            "reading the int8 model {}; pass model.tcnn from `tinycnn quantize`",
            model_path.display()
        )
    })?;
    let model = tinycnn::Model::from_bytes(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a usable tinycnn model: {e}",
            model_path.display()
        )
    })?;
    let arch = model.arch;
    let labels: Vec<String> = model.labels.iter().map(|l| l.to_string()).collect();
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut input = vec![0i8; arch.input_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    let mut probs = vec![0f32; arch.classes as usize];
    for_each_image(images, |path| {
        let pixels = image_pixels(path, &arch)?;
        for (q, &v) in input.iter_mut().zip(&pixels) {
            *q = tinycnn::preprocess::pixel_to_input(v);
        }
        tinycnn::forward(&model, &input, &mut scratch, &mut logits);
        tinycnn::probabilities(&model, &logits, &mut probs);
        crate::predict::print_probabilities(path, &labels, &probs);
        Ok(())
    })
}

/// Runs every image through the ONNX model at `onnx_path` in tract and prints the softmax of its
/// logits in the float predict's format.
pub fn predict_onnx(onnx_path: &Path, images: &[std::path::PathBuf]) -> Result<()> {
    let bytes = std::fs::read(onnx_path).with_context(|| {
        format!("reading the ONNX model {}; pass model.qdq.onnx or model.float.onnx from `tinycnn quantize`", onnx_path.display())
    })?;
    let origin = onnx_path.display().to_string();
    let (arch, labels) = crate::onnx::read_metadata(&bytes, &origin)?;
    let model = crate::tract_runtime::TractModel::from_bytes(&bytes, arch, 1, &origin)?;
    for_each_image(images, |path| {
        let logits = model.run_u8_hwc(&image_pixels(path, &arch)?)?;
        crate::predict::print_probabilities(path, &labels, &softmax(&logits));
        Ok(())
    })
}

/// Runs `classify` on every image, reporting each failure and going on; fails at the end if any
/// image could not be classified.
fn for_each_image(
    images: &[std::path::PathBuf],
    mut classify: impl FnMut(&Path) -> Result<()>,
) -> Result<()> {
    let mut failures = 0;
    for path in images {
        if let Err(e) = classify(path) {
            eprintln!("error: {e:#}");
            failures += 1;
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
