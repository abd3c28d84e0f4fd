//! The model blob: postcard, zero-copy on load.
//!
//! Layout (postcard encoding of the fields below in order, then 4 bytes):
//! - `magic`: the 4 bytes [`MAGIC`] (`b"TCNN"`), then `version`: [`FORMAT_VERSION`] (u16 varint)
//! - `arch`: [`Arch`]
//! - `labels`: `classes` UTF-8 strings of at most [`MAX_LABEL_LEN`] bytes
//! - `input`: [`QuantParams`] of the input (scale 1/255, zero point -128)
//! - `layers`: a sequence of `arch.layer_count()` layers in [`Arch::layer`] order (the conv
//!   blocks, fc1, fc2), each a sequence of byte strings:
//!   - `weight_bits`: u8, 8 or 4 (see [`crate::weights`])
//!   - `weights`: conv `[C_out][3][3][C_in]`, dense `[out][in]`; fc1's `in` index is the
//!     HWC flatten order `(h, w, c)` of the last block's output. int8: one byte per weight;
//!     int4: `ceil(n / 2)` bytes, two weights per byte, low nibble first, a 0 padding nibble
//!     after an odd count
//!   - `bias`: int32 little-endian, one per output channel (scale `s_in * s_w[c]`)
//!   - `multiplier`: int32 little-endian Q0.31, one per output channel, in `0..=i32::MAX`
//!   - `shift`: int8, one per output channel, in `MIN_SHIFT..=MAX_SHIFT` (> 0 = left)
//!   - `weight_scales`: f32 little-endian per output channel (reporting/export only)
//!   - `output`: [`QuantParams`] of the layer output (scale for reporting only)
//! - CRC-32 (IEEE, as zlib/PNG) of every byte before it, little-endian u32.
//!
//! Version 3 added `weight_bits` (int4 layers); version 2 made the number of conv blocks
//! variable. Older blobs are refused with a message that says to re-export.
//!
//! Loading checks, in order: magic, version, structure (truncated/malformed), CRC, architecture,
//! label count, layer count, the weight bit width (8 or 4), every array length against `Arch` and
//! the bit width, weights in [-127, 127] (int8) or [-7, 7] with 0 padding (int4), multipliers >= 0,
//! shifts in range, `|bias| <= i32::MAX - accumulator_bound` (so `acc + bias` cannot overflow),
//! the input zero point -128, finite scales. No input bytes can make it panic.

use crate::arch::{Arch, ArchError, MAX_CLASSES, MAX_LABEL_LEN, MAX_LAYERS};
use crate::crc32::crc32;
use crate::quant::{INPUT_ZERO_POINT, MAX_SHIFT, MIN_SHIFT};
use crate::weights::{WeightBits, Weights};
use core::fmt;
use serde::{Deserialize, Serialize};

/// First 4 bytes of every blob.
pub const MAGIC: [u8; 4] = *b"TCNN";
/// Blob format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 3;

/// Scale and zero point of a tensor. The scale is for reporting and export only: the integer
/// forward pass never reads it (except [`crate::probabilities`] for the logits).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QuantParams {
    /// Real value of one step.
    pub scale: f32,
    /// Integer that represents real 0.
    pub zero_point: i8,
}

/// Which per-layer array an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Field {
    /// Weight bit width.
    WeightBits,
    /// Weights (int8, or packed int4).
    Weights,
    /// int32 biases.
    Bias,
    /// Q0.31 multipliers.
    Multiplier,
    /// Shifts.
    Shift,
    /// Per-channel weight scales.
    WeightScales,
    /// Output quantization.
    Output,
    /// Input quantization.
    Input,
}

impl Field {
    const fn name(self) -> &'static str {
        match self {
            Field::WeightBits => "weight bit width",
            Field::Weights => "weights",
            Field::Bias => "bias",
            Field::Multiplier => "multiplier",
            Field::Shift => "shift",
            Field::WeightScales => "weight scales",
            Field::Output => "output quantization",
            Field::Input => "input quantization",
        }
    }
}

/// Why a blob did not load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoadError {
    /// The first 4 bytes are not [`MAGIC`].
    BadMagic,
    /// The blob has another format version.
    UnsupportedVersion {
        /// Version in the blob.
        found: u16,
    },
    /// The blob ends before its structure does (or has no room for the CRC).
    Truncated,
    /// The bytes do not decode as a blob (invalid varint, UTF-8, too many labels...).
    Malformed,
    /// Bytes follow the CRC.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The CRC does not match the content.
    CrcMismatch {
        /// CRC stored in the blob.
        stored: u32,
        /// CRC of the content.
        computed: u32,
    },
    /// The architecture is invalid.
    Arch(ArchError),
    /// The number of layers is not `arch.layer_count()`.
    LayerCount {
        /// `arch.layer_count()`.
        expected: usize,
        /// Layers in the blob.
        found: usize,
    },
    /// The number of labels is not `arch.classes`.
    LabelCount {
        /// `arch.classes`.
        expected: usize,
        /// Labels in the blob.
        found: usize,
    },
    /// An array length disagrees with the architecture. Lengths are in elements.
    ShapeMismatch {
        /// Layer name (`conv1`.., `fc1`, `fc2`).
        layer: &'static str,
        /// Which array.
        field: Field,
        /// Length the architecture implies.
        expected: usize,
        /// Length in the blob (bytes / element size, rounded down).
        found: usize,
    },
    /// An int4 layer with an odd weight count has a non-zero padding nibble (the high nibble
    /// of its last weight byte).
    PaddingNibble {
        /// Layer name (`conv1`.., `fc1`, `fc2`).
        layer: &'static str,
    },
    /// A value is outside its allowed range.
    OutOfRange {
        /// Layer name (`conv1`.., `fc1`, `fc2`), or `input`.
        layer: &'static str,
        /// Which array.
        field: Field,
        /// Element index (output channel, or weight index).
        index: usize,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoadError::BadMagic => f.write_str(
                "not a tinycnn model: the file does not start with \"TCNN\"; pass a model.tcnn written by `tinycnn quantize`",
            ),
            LoadError::UnsupportedVersion { found } => write!(
                f,
                "model blob format version {found} is not supported (this build reads version {FORMAT_VERSION}); re-export the model with this version of tinycnn"
            ),
            LoadError::Truncated => f.write_str(
                "model blob is truncated (it ends early); copy or flash the whole file again",
            ),
            LoadError::Malformed => f.write_str(
                "model blob is malformed (its bytes do not decode); re-export the model",
            ),
            LoadError::TrailingBytes { extra } => write!(
                f,
                "model blob has {extra} unexpected bytes after its CRC; the file is corrupt or concatenated"
            ),
            LoadError::CrcMismatch { stored, computed } => write!(
                f,
                "model blob CRC mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt; re-export or re-flash it"
            ),
            LoadError::Arch(e) => write!(f, "model blob has an invalid architecture: {e}"),
            LoadError::LayerCount { expected, found } => write!(
                f,
                "model blob has {found} layers but its architecture has {expected}; re-export the model"
            ),
            LoadError::LabelCount { expected, found } => write!(
                f,
                "model blob has {found} labels but its architecture has {expected} classes; re-export the model"
            ),
            LoadError::ShapeMismatch { layer, field, expected, found } => write!(
                f,
                "model blob {layer} {} has {found} elements but the architecture needs {expected}; re-export the model",
                field.name()
            ),
            LoadError::PaddingNibble { layer } => write!(
                f,
                "model blob {layer} int4 weights have a non-zero padding nibble after the last weight; the file is corrupt, re-export the model"
            ),
            LoadError::OutOfRange { layer, field, index } => write!(
                f,
                "model blob {layer} {} value at index {index} is out of range; re-export the model",
                field.name()
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LoadError {}

/// The serialized form of one layer: arrays as borrowed byte strings.
#[derive(Serialize, Deserialize)]
struct WireLayer<'a> {
    weight_bits: u8,
    #[serde(borrow)]
    weights: &'a [u8],
    #[serde(borrow)]
    bias: &'a [u8],
    #[serde(borrow)]
    multiplier: &'a [u8],
    #[serde(borrow)]
    shift: &'a [u8],
    #[serde(borrow)]
    weight_scales: &'a [u8],
    output: QuantParams,
}

/// The serialized form of a model (without the trailing CRC).
#[derive(Serialize, Deserialize)]
struct WireModel<'a> {
    magic: [u8; 4],
    version: u16,
    arch: Arch,
    labels: heapless::Vec<heapless::String<MAX_LABEL_LEN>, MAX_CLASSES>,
    input: QuantParams,
    #[serde(borrow)]
    layers: heapless::Vec<WireLayer<'a>, MAX_LAYERS>,
}

/// One validated layer, borrowing its arrays from the blob.
///
/// Invariants (checked by [`Model::from_bytes`]): lengths match the model's `Arch` and the
/// layer's bit width, weights in [-127, 127] (int8) or [-7, 7] (int4), multipliers >= 0, shifts in `MIN_SHIFT..=MAX_SHIFT`, biases leave room for the
/// accumulator bound.
#[derive(Clone, Copy)]
pub struct Layer<'a> {
    weights: Weights<'a>,
    bias: &'a [u8],
    multiplier: &'a [u8],
    shift: &'a [i8],
    weight_scales: &'a [u8],
    output: QuantParams,
}

/// Summarizes (a tutorial fc1 has 2 M weights): lengths and output quantization.
impl fmt::Debug for Layer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("weights", &self.weights)
            .field("out_channels", &self.out_channels())
            .field("output", &self.output)
            .finish()
    }
}

fn le_i32(bytes: &[u8], i: usize) -> i32 {
    let b = &bytes[i * 4..i * 4 + 4];
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Layer<'a> {
    /// The weights at the layer's bit width: conv `[C_out][3][3][C_in]`, dense `[out][in]`.
    pub fn weights(&self) -> Weights<'a> {
        self.weights
    }

    /// The bit width of the weights.
    pub fn weight_bits(&self) -> WeightBits {
        self.weights.bits()
    }

    /// Number of output channels (length of bias, multiplier, shift).
    pub fn out_channels(&self) -> usize {
        self.shift.len()
    }

    /// int32 bias of output channel `i`. Panics if `i >= out_channels()`.
    pub fn bias(&self, i: usize) -> i32 {
        le_i32(self.bias, i)
    }

    /// Q0.31 multiplier of output channel `i`.
    pub fn multiplier(&self, i: usize) -> i32 {
        le_i32(self.multiplier, i)
    }

    /// Shift of output channel `i` (> 0 = left).
    pub fn shift(&self, i: usize) -> i32 {
        self.shift[i] as i32
    }

    /// Weight scale of output channel `i` (reporting/export only).
    pub fn weight_scale(&self, i: usize) -> f32 {
        f32::from_bits(le_i32(self.weight_scales, i) as u32)
    }

    /// Output quantization of the layer.
    pub fn output(&self) -> QuantParams {
        self.output
    }
}

/// A validated model borrowing its weights from the blob (zero-copy: on a device they stay in
/// flash).
#[derive(Clone, Debug)]
pub struct Model<'a> {
    /// The architecture.
    pub arch: Arch,
    /// One label per class.
    pub labels: heapless::Vec<heapless::String<MAX_LABEL_LEN>, MAX_CLASSES>,
    /// Input quantization (scale 1/255, zero point -128).
    pub input: QuantParams,
    /// One per [`Arch::layer`], in order: the conv blocks, fc1, fc2.
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
}

impl<'a> Model<'a> {
    /// The layer whose output is the logits (the last one).
    pub fn logits_layer(&self) -> &Layer<'a> {
        &self.layers[self.arch.layer_count() - 1]
    }
}

fn map_postcard(e: postcard::Error) -> LoadError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => LoadError::Truncated,
        _ => LoadError::Malformed,
    }
}

fn check_len(
    layer: &'static str,
    field: Field,
    bytes: &[u8],
    elem: usize,
    expected: usize,
) -> Result<(), LoadError> {
    if bytes.len() != expected * elem {
        return Err(LoadError::ShapeMismatch {
            layer,
            field,
            expected,
            found: bytes.len() / elem,
        });
    }
    Ok(())
}

fn check_scale(
    layer: &'static str,
    field: Field,
    index: usize,
    scale: f32,
) -> Result<(), LoadError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(LoadError::OutOfRange {
            layer,
            field,
            index,
        })
    }
}

/// The weights of layer `layer` (`n` of them, `bits` as stored) if their length and values are
/// valid: int8 in [-127, 127]; int4 `ceil(n / 2)` bytes, nibbles in [-7, 7], the padding nibble
/// of an odd count 0.
fn check_weights<'a>(
    layer: &'static str,
    bits: u8,
    bytes: &'a [u8],
    n: usize,
) -> Result<Weights<'a>, LoadError> {
    let out_of_range = |index| LoadError::OutOfRange {
        layer,
        field: Field::Weights,
        index,
    };
    match WeightBits::from_bits(bits) {
        Some(WeightBits::S8) => {
            check_len(layer, Field::Weights, bytes, 1, n)?;
            let weights: &'a [i8] = bytemuck::cast_slice(bytes);
            match weights.iter().position(|&v| v == i8::MIN) {
                Some(index) => Err(out_of_range(index)),
                None => Ok(Weights::S8(weights)),
            }
        }
        Some(WeightBits::S4) => {
            if bytes.len() != n.div_ceil(2) {
                return Err(LoadError::ShapeMismatch {
                    layer,
                    field: Field::Weights,
                    expected: n,
                    found: bytes.len().saturating_mul(2),
                });
            }
            if n % 2 == 1 && bytes[n / 2] >> 4 != 0 {
                return Err(LoadError::PaddingNibble { layer });
            }
            // -8 is the nibble 0x8, in either half of a byte.
            if let Some(j) = bytes.iter().position(|&b| b & 0x0f == 8 || b >> 4 == 8) {
                let index = if bytes[j] & 0x0f == 8 {
                    2 * j
                } else {
                    2 * j + 1
                };
                return Err(out_of_range(index));
            }
            Ok(Weights::S4(bytes))
        }
        None => Err(LoadError::OutOfRange {
            layer,
            field: Field::WeightBits,
            index: 0,
        }),
    }
}

impl<'a> Model<'a> {
    /// Validates `bytes` and borrows the weights in place. Never panics; see the module docs for
    /// the checks.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, LoadError> {
        if bytes.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(bytes) {
                LoadError::Truncated
            } else {
                LoadError::BadMagic
            });
        }
        if bytes[..4] != MAGIC {
            return Err(LoadError::BadMagic);
        }
        let (version, _) = postcard::take_from_bytes::<u16>(&bytes[4..]).map_err(map_postcard)?;
        if version != FORMAT_VERSION {
            return Err(LoadError::UnsupportedVersion { found: version });
        }
        let (wire, rest) =
            postcard::take_from_bytes::<WireModel<'a>>(bytes).map_err(map_postcard)?;
        if rest.len() < 4 {
            return Err(LoadError::Truncated);
        }
        if rest.len() > 4 {
            return Err(LoadError::TrailingBytes {
                extra: rest.len() - 4,
            });
        }
        let body = &bytes[..bytes.len() - 4];
        let stored = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let computed = crc32(body);
        if stored != computed {
            return Err(LoadError::CrcMismatch { stored, computed });
        }
        let arch = wire.arch;
        arch.validate().map_err(LoadError::Arch)?;
        if wire.labels.len() != arch.classes as usize {
            return Err(LoadError::LabelCount {
                expected: arch.classes as usize,
                found: wire.labels.len(),
            });
        }
        if wire.layers.len() != arch.layer_count() {
            return Err(LoadError::LayerCount {
                expected: arch.layer_count(),
                found: wire.layers.len(),
            });
        }
        if wire.input.zero_point != INPUT_ZERO_POINT {
            return Err(LoadError::OutOfRange {
                layer: "input",
                field: Field::Input,
                index: 0,
            });
        }
        check_scale("input", Field::Input, 0, wire.input.scale)?;
        let mut layers = heapless::Vec::new();
        for (spec, w) in arch.layers().zip(wire.layers.iter()) {
            let layer = spec.name;
            let channels = spec.outputs;
            let weights = check_weights(layer, w.weight_bits, w.weights, spec.weight_len())?;
            check_len(layer, Field::Bias, w.bias, 4, channels)?;
            check_len(layer, Field::Multiplier, w.multiplier, 4, channels)?;
            check_len(layer, Field::Shift, w.shift, 1, channels)?;
            check_len(layer, Field::WeightScales, w.weight_scales, 4, channels)?;
            check_scale(layer, Field::Output, 0, w.output.scale)?;
            let shift: &'a [i8] = bytemuck::cast_slice(w.shift);
            let bias_limit = i32::MAX as i64 - spec.accumulator_bound();
            for (c, &sh) in shift.iter().enumerate() {
                if (le_i32(w.bias, c) as i64).abs() > bias_limit {
                    return Err(LoadError::OutOfRange {
                        layer,
                        field: Field::Bias,
                        index: c,
                    });
                }
                if le_i32(w.multiplier, c) < 0 {
                    return Err(LoadError::OutOfRange {
                        layer,
                        field: Field::Multiplier,
                        index: c,
                    });
                }
                if !(MIN_SHIFT..=MAX_SHIFT).contains(&(sh as i32)) {
                    return Err(LoadError::OutOfRange {
                        layer,
                        field: Field::Shift,
                        index: c,
                    });
                }
                let scale = f32::from_bits(le_i32(w.weight_scales, c) as u32);
                check_scale(layer, Field::WeightScales, c, scale)?;
            }
            let loaded = Layer {
                weights,
                bias: w.bias,
                multiplier: w.multiplier,
                shift,
                weight_scales: w.weight_scales,
                output: w.output,
            };
            // Cannot fail: both vectors hold at most MAX_LAYERS.
            let _ = layers.push(loaded);
        }
        Ok(Model {
            arch,
            labels: wire.labels,
            input: wire.input,
            layers,
        })
    }
}

const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Exact blob size in bytes for `arch` with int8 weights whose labels total `label_bytes` UTF-8
/// bytes (each label shorter than 128 bytes, which `MAX_LABEL_LEN` guarantees).
pub const fn blob_len(arch: &Arch, label_bytes: usize) -> usize {
    blob_len_bits(arch, &[], label_bytes)
}

/// [`blob_len`] with layer `l` stored at `bits[l]` (int8 where `bits` is shorter).
pub const fn blob_len_bits(arch: &Arch, bits: &[WeightBits], label_bytes: usize) -> usize {
    // magic, version, arch fields (varints), label count + per-label length byte + text, input
    let mut n = 4 + varint_len(FORMAT_VERSION as u64);
    n += varint_len(arch.height as u64) + varint_len(arch.width as u64) + 1;
    n += varint_len(arch.blocks() as u64);
    let mut b = 0;
    while b < arch.blocks() {
        n += varint_len(arch.filters.get(b) as u64);
        b += 1;
    }
    n += varint_len(arch.fc_width as u64) + varint_len(arch.classes as u64);
    n += varint_len(arch.classes as u64) + arch.classes as usize + label_bytes;
    n += QUANT_PARAMS_LEN;
    n += varint_len(arch.layer_count() as u64);
    let mut l = 0;
    while l < arch.layer_count() {
        let spec = arch.layer(l);
        let b = if l < bits.len() {
            bits[l]
        } else {
            WeightBits::S8
        };
        let w = spec.weight_bytes(b);
        let c = spec.outputs;
        // weight_bits (one byte: 8 and 4 are single-byte varints), then the weights.
        n += 1 + varint_len(w as u64) + w;
        n += 3 * (varint_len(4 * c as u64) + 4 * c) + varint_len(c as u64) + c;
        n += QUANT_PARAMS_LEN;
        l += 1;
    }
    n + 4
}

/// postcard size of [`QuantParams`]: f32 (4 bytes) + i8 (1 byte).
const QUANT_PARAMS_LEN: usize = 5;

#[cfg(feature = "std")]
pub use owned::{EncodeError, OwnedLayer, OwnedModel};

#[cfg(feature = "std")]
mod owned {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    /// One layer with owned arrays (host side). Same layouts and invariants as [`Layer`].
    #[derive(Clone, Debug, PartialEq)]
    pub struct OwnedLayer {
        /// Bit width the weights are stored at.
        pub weight_bits: WeightBits,
        /// Weight values (unpacked, one `i8` each, whatever the width; in [-127, 127], or
        /// [-7, 7] for int4), conv `[C_out][3][3][C_in]`, dense `[out][in]` (fc1: HWC flatten
        /// order).
        pub weights: Vec<i8>,
        /// int32 bias per output channel.
        pub bias: Vec<i32>,
        /// Q0.31 multiplier per output channel.
        pub multiplier: Vec<i32>,
        /// Shift per output channel (> 0 = left).
        pub shift: Vec<i8>,
        /// Output quantization.
        pub output: QuantParams,
        /// Per-channel weight scale (reporting/export only).
        pub weight_scales: Vec<f32>,
    }

    /// A model with owned arrays: what the host builds and encodes.
    #[derive(Clone, Debug, PartialEq)]
    pub struct OwnedModel {
        /// The architecture.
        pub arch: Arch,
        /// One label per class.
        pub labels: Vec<String>,
        /// Input quantization (scale 1/255, zero point -128).
        pub input: QuantParams,
        /// One per [`Arch::layer`], in order: the conv blocks, fc1, fc2.
        pub layers: Vec<OwnedLayer>,
    }

    /// Why a model could not be encoded.
    #[derive(Clone, Debug, PartialEq)]
    pub enum EncodeError {
        /// A label is longer than [`MAX_LABEL_LEN`] bytes.
        LabelTooLong {
            /// Label index.
            index: usize,
            /// Its length in bytes.
            len: usize,
        },
        /// More than [`MAX_CLASSES`] labels.
        TooManyLabels(usize),
        /// More than [`MAX_LAYERS`] layers.
        TooManyLayers(usize),
        /// The model fails the checks [`Model::from_bytes`] makes.
        Invalid(LoadError),
        /// postcard failed to serialize.
        Serialize,
    }

    impl fmt::Display for EncodeError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                EncodeError::LabelTooLong { index, len } => write!(
                    f,
                    "class label {index} is {len} bytes; labels may be at most {MAX_LABEL_LEN} bytes, rename the class folder"
                ),
                EncodeError::TooManyLabels(n) => write!(
                    f,
                    "{n} class labels; a model may have at most {MAX_CLASSES} classes"
                ),
                EncodeError::TooManyLayers(n) => write!(
                    f,
                    "{n} layers; a model may have at most {MAX_LAYERS}"
                ),
                EncodeError::Invalid(e) => write!(f, "model is not valid: {e}"),
                EncodeError::Serialize => f.write_str("postcard failed to serialize the model"),
            }
        }
    }

    impl std::error::Error for EncodeError {}

    fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }

    impl OwnedModel {
        /// Encodes the blob (see the module docs), then loads it back with [`Model::from_bytes`] so
        /// only valid blobs are ever written.
        pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
            let mut labels = heapless::Vec::new();
            for (index, l) in self.labels.iter().enumerate() {
                let s = heapless::String::try_from(l.as_str()).map_err(|_| {
                    EncodeError::LabelTooLong {
                        index,
                        len: l.len(),
                    }
                })?;
                labels
                    .push(s)
                    .map_err(|_| EncodeError::TooManyLabels(self.labels.len()))?;
            }
            let mut packed = Vec::with_capacity(self.layers.len());
            for (i, l) in self.layers.iter().enumerate() {
                packed.push(match l.weight_bits {
                    WeightBits::S8 => bytemuck::cast_slice::<i8, u8>(&l.weights).to_vec(),
                    WeightBits::S4 => crate::weights::pack_s4(&l.weights).map_err(|index| {
                        let layer = if i < self.arch.layer_count() {
                            self.arch.layer(i).name
                        } else {
                            "extra layer"
                        };
                        EncodeError::Invalid(LoadError::OutOfRange {
                            layer,
                            field: Field::Weights,
                            index,
                        })
                    })?,
                });
            }
            let bytes: Vec<[Vec<u8>; 5]> = self
                .layers
                .iter()
                .zip(packed)
                .map(|(l, weights)| {
                    [
                        weights,
                        le_bytes(&l.bias, i32::to_le_bytes),
                        le_bytes(&l.multiplier, i32::to_le_bytes),
                        bytemuck::cast_slice::<i8, u8>(&l.shift).to_vec(),
                        le_bytes(&l.weight_scales, f32::to_le_bytes),
                    ]
                })
                .collect();
            let layer = |i: usize| WireLayer {
                weight_bits: self.layers[i].weight_bits.bits(),
                weights: &bytes[i][0],
                bias: &bytes[i][1],
                multiplier: &bytes[i][2],
                shift: &bytes[i][3],
                weight_scales: &bytes[i][4],
                output: self.layers[i].output,
            };
            let mut layers = heapless::Vec::new();
            for i in 0..self.layers.len() {
                layers
                    .push(layer(i))
                    .map_err(|_| EncodeError::TooManyLayers(self.layers.len()))?;
            }
            let wire = WireModel {
                magic: MAGIC,
                version: FORMAT_VERSION,
                arch: self.arch,
                labels,
                input: self.input,
                layers,
            };
            let mut out = postcard::to_allocvec(&wire).map_err(|_| EncodeError::Serialize)?;
            let crc = crc32(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            Model::from_bytes(&out).map_err(EncodeError::Invalid)?;
            Ok(out)
        }

        /// A valid model with pseudo-random weights (deterministic in `seed`), for tests and
        /// benchmarks: weights uniform in [-127, 127], small biases, multipliers chosen so that
        /// activations keep a useful spread, output zero points in [-128, -64] (ReLU layers) or
        /// [-32, 32] (fc2).
        ///
        /// # Panics
        /// If `arch` fails [`Arch::validate`].
        pub fn random(arch: Arch, seed: u64) -> OwnedModel {
            OwnedModel::random_bits(arch, &[], seed)
        }

        /// [`OwnedModel::random`] with layer `l`'s weights at `bits[l]` (int8 where `bits` is
        /// shorter): int4 weights are uniform in [-7, 7], with multipliers scaled to keep the
        /// same activation spread. With every layer int8 it is exactly `random(arch, seed)`.
        ///
        /// # Panics
        /// If `arch` fails [`Arch::validate`].
        pub fn random_bits(arch: Arch, bits: &[WeightBits], seed: u64) -> OwnedModel {
            if let Err(e) = arch.validate() {
                panic!("OwnedModel::random: {e}");
            }
            let mut rng = crate::rng::SplitMix64(seed);
            let layers = arch
                .layers()
                .map(|spec| {
                    let (fan_in, out) = (spec.fan_in, spec.outputs);
                    let weight_bits = bits.get(spec.index).copied().unwrap_or_default();
                    let qmax = weight_bits.qmax();
                    let weights = (0..fan_in * out)
                        .map(|_| rng.range(-qmax, qmax) as i8)
                        .collect();
                    // std of (x - zp) * w over fan_in terms ~ sqrt(fan_in) * 74 * std(w), std(w)
                    // ~ qmax / sqrt(3) (73 for int8); aim at ~40 steps.
                    let w_std = match weight_bits {
                        WeightBits::S8 => 73.0,
                        WeightBits::S4 => qmax as f64 / 3f64.sqrt(),
                    };
                    let target = 40.0 / ((fan_in as f64).sqrt() * 74.0 * w_std);
                    let mut multiplier = Vec::with_capacity(out);
                    let mut shift = Vec::with_capacity(out);
                    for _ in 0..out {
                        let jitter = 0.5 + rng.unit();
                        let (m, s) = crate::quant::quantize_multiplier(target * jitter);
                        multiplier.push(m);
                        shift.push(s as i8);
                    }
                    let bias = (0..out).map(|_| rng.range(-2000, 2000)).collect();
                    let zero_point = if spec.is_logits() {
                        rng.range(-32, 32)
                    } else {
                        rng.range(-128, -64)
                    };
                    OwnedLayer {
                        weight_bits,
                        weights,
                        bias,
                        multiplier,
                        shift,
                        output: QuantParams {
                            scale: 0.05 + rng.unit() as f32 * 0.1,
                            zero_point: zero_point as i8,
                        },
                        weight_scales: (0..out).map(|_| 0.001 + rng.unit() as f32 * 0.01).collect(),
                    }
                })
                .collect();
            OwnedModel {
                arch,
                labels: (0..arch.classes)
                    .map(|i| std::format!("class{i}"))
                    .collect(),
                input: QuantParams {
                    scale: crate::quant::INPUT_SCALE,
                    zero_point: INPUT_ZERO_POINT,
                },
                layers,
            }
        }
    }

    impl Model<'_> {
        /// Copies the model into an [`OwnedModel`] (host side).
        pub fn to_owned_model(&self) -> OwnedModel {
            let layers = self
                .arch
                .layers()
                .zip(self.layers.iter())
                .map(|(spec, layer)| {
                    let n = layer.out_channels();
                    let weights = match layer.weights() {
                        Weights::S8(w) => w.to_vec(),
                        Weights::S4(packed) => {
                            let mut w = std::vec![0; spec.weight_len()];
                            crate::weights::unpack_s4(packed, 0, &mut w);
                            w
                        }
                    };
                    OwnedLayer {
                        weight_bits: layer.weight_bits(),
                        weights,
                        bias: (0..n).map(|i| layer.bias(i)).collect(),
                        multiplier: (0..n).map(|i| layer.multiplier(i)).collect(),
                        shift: (0..n).map(|i| layer.shift(i) as i8).collect(),
                        output: layer.output(),
                        weight_scales: (0..n).map(|i| layer.weight_scale(i)).collect(),
                    }
                })
                .collect();
            OwnedModel {
                arch: self.arch,
                labels: self
                    .labels
                    .iter()
                    .map(|s| String::from(s.as_str()))
                    .collect(),
                input: self.input,
                layers,
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_exact_len() {
        for arch in [
            Arch::fashion(),
            Arch {
                height: 7,
                width: 9,
                channels: 3,
                ..Arch::fashion()
            },
        ] {
            let owned = OwnedModel::random(arch, 7);
            let bytes = owned.to_bytes().unwrap();
            let labels: usize = owned.labels.iter().map(|l| l.len()).sum();
            assert_eq!(bytes.len(), blob_len(&arch, labels));
            let model = Model::from_bytes(&bytes).unwrap();
            assert_eq!(model.to_owned_model(), owned);
        }
    }
}
