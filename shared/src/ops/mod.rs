//! Integer kernels. Layouts are HWC for activations, `[C_out][3][3][C_in]` for conv weights and
//! `[out][in]` for dense weights. Naive versions live in [`mod@reference`].

pub mod conv;
pub mod dense;
pub mod pool;
pub mod reference;
pub mod requant;

pub use conv::{conv3x3_pool_s8, ConvShape};
pub use dense::dense_s8;
pub use pool::maxpool2x2_s8;
pub use requant::{dot_s8, ChannelParams, ChannelSlices, Requant};
