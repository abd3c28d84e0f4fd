//! Fixtures shared by the tests in `tests/tests/`: the one home of test helpers.

pub mod firmware_fixtures;
pub mod fixtures;
pub mod onnx_fixtures;
