//! Per-image class probabilities of the float checkpoint, printed like the tutorial's
//! `predict.py` through the runtime's printer, so the float, int8 and ONNX outputs match.
use std::path::Path;

use anyhow::Result;
use tch::Device;
use tinycnn_runtime::images::image_pixels;

use crate::data::pixels_to_tensor;
use crate::train::checkpoint::Checkpoint;

/// Class probabilities of the float checkpoint for the image at `path`.
pub fn predict_float(ck: &Checkpoint, path: &Path, device: Device) -> Result<Vec<f32>> {
    let pixels = image_pixels(path, &ck.meta.arch)?;
    let xs = pixels_to_tensor(&pixels, 1, &ck.meta.arch, device);
    let mut rows = crate::train::eval::probabilities(&ck.net, &xs)?;
    Ok(rows.pop().unwrap_or_default())
}
