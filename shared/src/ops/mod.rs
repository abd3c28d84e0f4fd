//! Integer kernels. Layouts are HWC for activations, `[C_out][3][3][C_in]` for conv weights and
//! `[out][in]` for dense weights. Naive versions live in [`mod@reference`].

pub mod conv;
pub mod dense;
pub mod reference;
pub mod requant;

pub use conv::{conv3x3_pool_row_s8, conv3x3_pool_s8, pool_rows, ConvShape, PoolRows, RowShape};
pub use dense::{dense_acc_s8, dense_s8};
pub use requant::{dot_s8, ChannelParams, ChannelSlices, Requant};
