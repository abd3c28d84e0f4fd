//! tinycnn's training crate (libtorch through tch), folders in pipeline order:
//! - [`data`]: image-folder data sets as float tensor batches, augmentation;
//! - [`train`]: the tch model, the trainer, checkpoints, evaluation and plots;
//! - [`quant`]: post-training calibration, quantization-aware training, `tinycnn quantize`;
//! - [`export`]: the float model to the blob (`shared`'s quantization) and to ONNX;
//! - [`check`]: the integer simulation in tch and the parity checks against `shared`;
//! - [`import`]: `.tflite` and float ONNX models made elsewhere to the blob.
//!
//! What runs or checks a model without libtorch lives in `tinycnn-runtime`.
#![forbid(unsafe_code)]

pub mod check;
pub mod data;
pub mod export;
pub mod import;
pub mod predict;
pub mod quant;
pub mod train;
