//! Weight storage per layer: int8, or int4 packed two per byte.
//!
//! - int8: one `i8` per weight, symmetric per output channel in [-127, 127].
//! - int4: symmetric per output channel in [-7, 7], two weights per byte, element `k` in byte
//!   `k / 2`, the low nibble first (CMSIS-NN's packing): weight `2j` is bits 0..4 of byte `j`,
//!   weight `2j + 1` bits 4..8, each a two's-complement nibble. An odd count leaves the high
//!   nibble of the last byte as padding, which must be 0. The nibble `0x8` (-8) is invalid, so
//!   the grid stays symmetric and `|w| <= 7`.
//!
//! Activations stay int8 and requantization is the same at either width: only the weight
//! storage and the kernels that read it differ.

use crate::arch::{Arch, LayerKind, MAX_LAYERS};
use core::fmt;

/// Bit width of one layer's weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WeightBits {
    /// int8 in [-127, 127], one per byte.
    #[default]
    S8,
    /// int4 in [-7, 7], two per byte, low nibble first.
    S4,
}

impl WeightBits {
    /// 8 or 4.
    pub const fn bits(self) -> u8 {
        match self {
            WeightBits::S8 => 8,
            WeightBits::S4 => 4,
        }
    }

    /// The width with `bits` bits (8 or 4), `None` otherwise.
    pub const fn from_bits(bits: u8) -> Option<WeightBits> {
        match bits {
            8 => Some(WeightBits::S8),
            4 => Some(WeightBits::S4),
            _ => None,
        }
    }

    /// Largest |weight|: 127 or 7 (the grids are symmetric).
    pub const fn qmax(self) -> i32 {
        match self {
            WeightBits::S8 => 127,
            WeightBits::S4 => 7,
        }
    }

    /// Bytes that `n` weights take: `n`, or `ceil(n / 2)` packed.
    pub const fn bytes(self, n: usize) -> usize {
        match self {
            WeightBits::S8 => n,
            WeightBits::S4 => n.div_ceil(2),
        }
    }
}

impl fmt::Display for WeightBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightBits::S8 => "int8",
            WeightBits::S4 => "int4",
        })
    }
}

/// A layer's weights as its kernels read them (zero-copy, borrowed from the blob).
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// int8, one per byte, in [-127, 127].
    S8(&'a [i8]),
    /// int4 packed two per byte, low nibble first, in [-7, 7] (see the module docs).
    S4(&'a [u8]),
}

impl<'a> Weights<'a> {
    /// The bit width.
    pub const fn bits(&self) -> WeightBits {
        match self {
            Weights::S8(_) => WeightBits::S8,
            Weights::S4(_) => WeightBits::S4,
        }
    }

    /// The int8 weights, `None` for an int4 layer.
    pub const fn as_s8(&self) -> Option<&'a [i8]> {
        match self {
            Weights::S8(w) => Some(w),
            Weights::S4(_) => None,
        }
    }

    /// The stored bytes (int8 values, or packed nibbles).
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Weights::S8(w) => bytemuck::cast_slice(w),
            Weights::S4(w) => w,
        }
    }

    /// Weight `k` (element index, whatever the width). Panics if `k` is past the storage.
    pub fn get(&self, k: usize) -> i8 {
        match self {
            Weights::S8(w) => w[k],
            Weights::S4(w) => s4_get(w, k),
        }
    }
}

/// Summarizes: the width and the stored bytes (a tutorial fc1 has 2 M weights).
impl fmt::Debug for Weights<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Weights::{:?}({} bytes)",
            self.bits(),
            self.as_bytes().len()
        )
    }
}

/// The low nibble of `b` as a signed value in [-8, 7].
#[inline(always)]
pub const fn s4_lo(b: u8) -> i8 {
    ((b << 4) as i8) >> 4
}

/// The high nibble of `b` as a signed value in [-8, 7].
#[inline(always)]
pub const fn s4_hi(b: u8) -> i8 {
    (b as i8) >> 4
}

/// Element `k` of packed int4 weights. Panics if `k / 2 >= packed.len()`.
#[inline(always)]
pub fn s4_get(packed: &[u8], k: usize) -> i8 {
    let b = packed[k / 2];
    if k.is_multiple_of(2) {
        s4_lo(b)
    } else {
        s4_hi(b)
    }
}

/// Unpacks elements `first .. first + out.len()` of packed int4 weights into `out`.
///
/// # Panics
/// If the elements run past `packed`.
pub fn unpack_s4(packed: &[u8], first: usize, out: &mut [i8]) {
    let mut k = first;
    let mut dst = out.iter_mut();
    if k % 2 == 1 {
        match dst.next() {
            Some(d) => *d = s4_hi(packed[k / 2]),
            None => return,
        }
        k += 1;
    }
    let rest = dst.into_slice();
    let bytes = &packed[k / 2..][..rest.len().div_ceil(2)];
    let mut pairs = rest.chunks_exact_mut(2);
    for (pair, &b) in (&mut pairs).zip(bytes) {
        pair[0] = s4_lo(b);
        pair[1] = s4_hi(b);
    }
    if let [last] = pairs.into_remainder() {
        *last = s4_lo(bytes[bytes.len() - 1]);
    }
}

/// Packs int4 values (each in [-8, 7], unchecked) two per byte, low nibble first, into the
/// first `ceil(values.len() / 2)` bytes of `out`; an odd count gets a 0 padding nibble.
///
/// # Panics
/// If `out` is shorter than that.
pub fn pack_s4_into(values: &[i8], out: &mut [u8]) {
    let out = &mut out[..values.len().div_ceil(2)];
    for (b, p) in out.iter_mut().zip(values.chunks(2)) {
        *b = (p[0] as u8 & 0x0f) | ((p.get(1).copied().unwrap_or(0) as u8 & 0x0f) << 4);
    }
}

/// Packs int4 values (each in [-8, 7]) two per byte, low nibble first; an odd count gets a 0
/// padding nibble. Returns the index of the first value outside [-7, 7] instead, if any.
#[cfg(feature = "std")]
pub fn pack_s4(values: &[i8]) -> Result<std::vec::Vec<u8>, usize> {
    if let Some(bad) = values.iter().position(|v| !(-7..=7).contains(v)) {
        return Err(bad);
    }
    let mut packed = std::vec![0; values.len().div_ceil(2)];
    pack_s4_into(values, &mut packed);
    Ok(packed)
}

/// The weight bit width of every layer, in [`Arch::layer`] order (`arch.layer_count()` values).
pub type LayerBits = heapless::Vec<WeightBits, MAX_LAYERS>;

/// Why a weight-bits choice did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightBitsError {
    /// A list entry is not 8 or 4.
    Bits {
        /// Position in the list.
        index: usize,
    },
    /// The list does not have one entry per layer.
    Count {
        /// `arch.layer_count()`.
        expected: usize,
        /// Entries given.
        found: usize,
    },
}

impl fmt::Display for WeightBitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightBitsError::Bits { index } => write!(
                f,
                "weight bits entry {index} is not 8 or 4; give one of `int8`, `dense4`, `all4` \
                 or a comma-separated list of 8 and 4, one per layer (e.g. `8,8,8,4,8`)"
            ),
            WeightBitsError::Count { expected, found } => write!(
                f,
                "weight bits list has {found} entries but the model has {expected} layers \
                 (conv blocks, fc1, fc2); give one 8 or 4 per layer, or a policy: `int8`, \
                 `dense4`, `all4`"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WeightBitsError {}

/// Every layer at `bits`.
pub fn uniform_bits(arch: &Arch, bits: WeightBits) -> LayerBits {
    arch.layers().map(|_| bits).collect()
}

/// Parses a weight-bits choice for `arch`:
/// - `int8` (or `8`): every layer int8, the default;
/// - `dense4`: the dense layers (fc1, fc2) int4, the conv blocks int8;
/// - `all4` (or `4`): every layer int4;
/// - a comma-separated list of `8`/`4`, one per layer in [`Arch::layer`] order (`8,8,8,4,8`).
pub fn parse_weight_bits(arch: &Arch, spec: &str) -> Result<LayerBits, WeightBitsError> {
    match spec.trim() {
        "int8" | "8" => return Ok(uniform_bits(arch, WeightBits::S8)),
        "all4" | "4" => return Ok(uniform_bits(arch, WeightBits::S4)),
        "dense4" => {
            return Ok(arch
                .layers()
                .map(|l| match l.kind {
                    LayerKind::Dense => WeightBits::S4,
                    LayerKind::ConvBlock(_) => WeightBits::S8,
                })
                .collect())
        }
        _ => {}
    }
    let mut out = LayerBits::new();
    let mut found = 0;
    for (index, entry) in spec.split(',').enumerate() {
        let bits = entry
            .trim()
            .parse::<u8>()
            .ok()
            .and_then(WeightBits::from_bits)
            .ok_or(WeightBitsError::Bits { index })?;
        found += 1;
        // Past MAX_LAYERS the count error below reports it.
        let _ = out.push(bits);
    }
    if found != arch.layer_count() {
        return Err(WeightBitsError::Count {
            expected: arch.layer_count(),
            found,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibbles_low_first() {
        // 0x9f: low nibble 0xf = -1, high nibble 0x9 = -7.
        assert_eq!(s4_lo(0x9f), -1);
        assert_eq!(s4_hi(0x9f), -7);
        assert_eq!(s4_lo(0x07), 7);
        assert_eq!(s4_hi(0x70), 7);
        assert_eq!(s4_lo(0x08), -8);
        let packed = [0x21, 0xf9, 0x03];
        let mut out = [0i8; 5];
        unpack_s4(&packed, 0, &mut out);
        assert_eq!(out, [1, 2, -7, -1, 3]);
        let mut odd = [0i8; 3];
        unpack_s4(&packed, 1, &mut odd);
        assert_eq!(odd, [2, -7, -1]);
        let mut one = [0i8; 1];
        unpack_s4(&packed, 4, &mut one);
        assert_eq!(one, [3]);
        unpack_s4(&packed, 3, &mut []);
        assert_eq!(
            (0..5)
                .map(|k| s4_get(&packed, k))
                .collect::<heapless::Vec<i8, 5>>(),
            out
        );
    }

    #[cfg(feature = "std")]
    #[test]
    fn pack_round_trip() {
        let values = [1, 2, -7, -1, 3];
        assert_eq!(pack_s4(&values), Ok(std::vec![0x21, 0xf9, 0x03]));
        assert_eq!(pack_s4(&[0, -8]), Err(1));
        assert_eq!(pack_s4(&[9]), Err(0));
        // A longer `out` keeps its bytes past the packed ones.
        let mut out = [0xee; 4];
        pack_s4_into(&values, &mut out);
        assert_eq!(out, [0x21, 0xf9, 0x03, 0xee]);
    }

    #[test]
    fn policies() {
        let t = Arch::tutorial(2);
        use WeightBits::{S4, S8};
        assert_eq!(parse_weight_bits(&t, "int8").unwrap(), [S8; 5]);
        assert_eq!(
            parse_weight_bits(&t, "dense4").unwrap(),
            [S8, S8, S8, S4, S4]
        );
        assert_eq!(parse_weight_bits(&t, "all4").unwrap(), [S4; 5]);
        assert_eq!(
            parse_weight_bits(&t, "8, 8,8,4,8").unwrap(),
            [S8, S8, S8, S4, S8]
        );
        assert_eq!(
            parse_weight_bits(&t, "8,8,4"),
            Err(WeightBitsError::Count {
                expected: 5,
                found: 3
            })
        );
        assert_eq!(
            parse_weight_bits(&t, "8,8,8,2,8"),
            Err(WeightBitsError::Bits { index: 3 })
        );
        assert_eq!(
            parse_weight_bits(&t, "8,8,8,8,8,8,8,8,8,8").unwrap_err(),
            WeightBitsError::Count {
                expected: 5,
                found: 10
            }
        );
    }
}
