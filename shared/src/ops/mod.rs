//! Integer kernels. Layouts are HWC for activations, `[C_out][3][3][C_in]` for conv weights and
//! `[out][in]` for dense weights. Naive versions live in [`mod@reference`]. Each kernel takes the
//! layer's [`Weights`](crate::weights::Weights), int8 or int4 (packed two per byte, see
//! [`crate::weights`]), and dispatches on the width: int4 runs portable kernels everywhere except
//! [`dense_acc`] on thumbv7em (DSP); the x86 kernels are int8 only.
//!
//! On thumbv7em (`cfg(tinycnn_arm_dsp)`, set by `build.rs`) [`conv3x3_pool_row`] and
//! [`dense_acc`] run Cortex-M DSP kernels unless the `portable` feature is on; everywhere else
//! they run the portable ones. On x86_64 with `std` they (and the whole-map
//! [`conv3x3_pool`]) run AVX-512 VNNI or AVX2 kernels on int8 weights, the best level the CPU
//! has, chosen once per process: `TINYCNN_KERNEL=portable|avx2|avx512vnni` (read on the first
//! kernel call) or `set_kernel_level` force a level, for tests and benchmarks. The doc-hidden
//! `*_portable` functions are the portable kernels on any target, and `*_dsp` the DSP ones, for
//! the on-target kernel suite.

#[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
#[allow(unsafe_code)]
mod arm_dsp;
pub mod conv;
pub mod dense;
pub mod reference;
pub mod requant;
#[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
#[allow(unsafe_code)]
mod x86;

#[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
#[doc(hidden)]
pub use arm_dsp::{conv3x3_pool_row_s8_dsp, dense_acc_s4_dsp, dense_acc_s8_dsp, requantize_dsp};
#[doc(hidden)]
pub use conv::conv3x3_pool_row_portable;
pub use conv::{
    conv3x3_pool, conv3x3_pool_row, pin_weights, pool_rows, ConvShape, PoolRows, RowShape,
};
#[doc(hidden)]
pub use dense::dense_acc_portable;
pub use dense::{dense, dense_acc, dot_s4};
pub use requant::{dot_s8, ChannelParams, ChannelSlices, Requant};
#[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
pub use x86::{
    kernel_level, set_kernel_level, KernelLevel, KernelLevelError, CACHE_LAYERS, KERNEL_ENV,
};
