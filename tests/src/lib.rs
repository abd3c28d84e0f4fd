//! Fixtures shared by the cross-crate tests in `tests/tests/`.

pub mod firmware_fixtures;
pub mod onnx_fixtures;
