//! `tinycnn`: the int8 CNN that the host and the firmware both run.
//!
//! - [`arch`]: the architecture and every buffer size as a `const fn`.
//! - [`quant`]: the TFLite-compatible int8 quantization scheme (its one definition).
//! - [`blob`]: the postcard model blob, loaded zero-copy by [`Model::from_bytes`].
//! - [`ops`]: integer kernels, with naive versions in [`ops::reference`].
//! - [`forward`](mod@forward): the whole network, no floats and no allocation.
//! - [`preprocess`](mod@preprocess): camera frame to model input, fixed point.
//! - [`protocol`]: the host–firmware protocol (exit codes, frame line, pixel-format names).
//! - [`weights`]: per-layer weight storage, int8 or int4 packed two per byte.
//! - [`rng`]: SplitMix64, seeded test data that is the same on every target.
//! - `session` (std): [`Session`], a model with the buffers of one forward pass.
//!
//! `#![no_std]` without `alloc`; the `std` feature adds `OwnedModel` (owned arrays, the encoder,
//! `OwnedModel::random`) and `std::error::Error` impls; `defmt` derives `defmt::Format`.
//!
//! Unsafe code is denied everywhere except in the optimized-kernel modules of [`ops`], each one
//! `#[allow(unsafe_code)]` and compiled only for its target: Cortex-M DSP `asm!` on thumbv7em
//! (`ops::arm_dsp`), AVX2 and AVX-512 VNNI on x86_64 with `std` (`ops::x86`). Every `unsafe`
//! block there states its `// SAFETY:` argument. The `portable` feature leaves them out, so
//! every target runs the portable kernels.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod arch;
pub mod blob;
mod crc32;
pub mod forward;
pub mod ops;
pub mod preprocess;
pub mod protocol;
pub mod quant;
pub mod rng;
#[cfg(feature = "std")]
pub mod session;
pub mod weights;

pub use arch::{
    Arch, ArchError, Filters, LayerKind, LayerSpec, MAX_BLOCKS, MAX_CLASSES, MAX_LABEL_LEN,
    MAX_LAYERS,
};
#[cfg(feature = "std")]
pub use blob::{EncodeError, OwnedLayer, OwnedModel};
pub use blob::{Field, Layer, LoadError, Model, QuantParams, FORMAT_VERSION, MAGIC};
pub use crc32::crc32;
pub use forward::{
    argmax, forward, forward_rows, forward_rows_from, forward_traced, probabilities,
};
pub use preprocess::{
    preprocess, preprocess_u8, Frame, FrameError, PixelFormat, RowPreprocessor, RowSource,
};
pub use protocol::{ExitCode, FrameReport, ParsedFrame};
pub use quant::{
    multiply_by_quantized_multiplier, quantize_multiplier, quantize_weights_per_channel,
    quantize_weights_per_channel_bits, requantize, rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul, INPUT_ZERO_POINT,
};
#[cfg(feature = "std")]
pub use session::Session;
pub use weights::{parse_weight_bits, LayerBits, WeightBits, WeightBitsError, Weights};
