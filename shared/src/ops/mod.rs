//! Integer kernels. Layouts are HWC for activations, `[C_out][3][3][C_in]` for conv weights and
//! `[out][in]` for dense weights. Naive versions live in [`mod@reference`].
//!
//! On thumbv7em (`cfg(tinycnn_arm_dsp)`, set by `build.rs`) [`conv3x3_pool_row_s8`] and
//! [`dense_acc_s8`] run Cortex-M DSP kernels unless the `portable` feature is on; everywhere else
//! they run the portable ones. The doc-hidden `*_portable` functions are the portable kernels on
//! any target, and `*_dsp` the DSP ones, for the on-target kernel suite.

#[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
#[allow(unsafe_code)]
mod arm_dsp;
pub mod conv;
pub mod dense;
pub mod reference;
pub mod requant;

#[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
#[doc(hidden)]
pub use arm_dsp::{conv3x3_pool_row_s8_dsp, dense_acc_s8_dsp, requantize_dsp};
#[doc(hidden)]
pub use conv::conv3x3_pool_row_s8_portable;
pub use conv::{conv3x3_pool_row_s8, conv3x3_pool_s8, pool_rows, ConvShape, PoolRows, RowShape};
#[doc(hidden)]
pub use dense::dense_acc_s8_portable;
pub use dense::{dense_acc_s8, dense_s8};
pub use requant::{dot_s8, ChannelParams, ChannelSlices, Requant};
