//! tinycnn on the workstation: data loading, training with tch, quantization, export, evaluation
//! and the checks that the host, `shared` and other runtimes agree.
#![forbid(unsafe_code)]

pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod export;
pub mod firmware;
pub mod fsutil;
pub mod int8_runtime;
pub mod int_sim;
pub mod model;
pub mod onnx;
pub mod parity;
pub mod plot;
pub mod predict;
pub mod preprocess;
pub mod qat;
pub mod report;
pub mod tract_runtime;
pub mod train;
