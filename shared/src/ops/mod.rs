//! Integer kernels. Layouts are HWC for activations, `[C_out][3][3][C_in]` for conv weights and
//! `[out][in]` for dense weights. Naive versions live in [`mod@reference`].

pub mod conv;
pub mod dense;
pub mod reference;
pub mod requant;
#[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
#[allow(unsafe_code)]
mod x86;

pub use conv::{
    conv3x3_pool_row_s8, conv3x3_pool_s8, pin_weights, pool_rows, ConvShape, PoolRows, RowShape,
};
pub use dense::{dense_acc_s8, dense_s8};
pub use requant::{dot_s8, ChannelParams, ChannelSlices, Requant};
#[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
pub use x86::{
    kernel_level, set_kernel_level, KernelLevel, KernelLevelError, CACHE_LAYERS, KERNEL_ENV,
};
