//! The int8 quantization scheme (TFLite-compatible). This module is its one definition.
//!
//! - Input: pixel `p` in 0..=255 is the real value `p / 255`: scale 1/255, zero point -128, so
//!   `q = p - 128` exactly.
//! - Weights: per output channel, symmetric, int8 in [-127, 127] or int4 in [-7, 7] (per layer,
//!   see [`crate::weights`]), zero point 0.
//! - Bias: int32 with scale `s_in * s_w[c]`.
//! - Activations: per tensor, asymmetric int8. ReLU is folded into the output clamp `[zp, 127]`.
//! - Requantization: `M = s_in * s_w[c] / s_out` is split on the host into a Q0.31 multiplier and
//!   a power-of-two shift by [`quantize_multiplier`]; the integer path applies
//!   [`multiply_by_quantized_multiplier`] (TFLite's double-rounding reference), adds the output
//!   zero point and clamps.

use crate::weights::WeightBits;

/// Zero point of the input tensor (scale 1/255): `q = p - 128`.
pub const INPUT_ZERO_POINT: i8 = -128;
/// Scale of the input tensor.
pub const INPUT_SCALE: f32 = 1.0 / 255.0;
/// Smallest shift a blob may carry (right shift by 31).
pub const MIN_SHIFT: i32 = -31;
/// Largest shift a blob may carry (left shift by 30).
pub const MAX_SHIFT: i32 = 30;

/// Splits a real multiplier into `(m, shift)` with `real ≈ m * 2^shift / 2^31`, exactly as
/// TFLite's `QuantizeMultiplier`: `m` is in `[2^30, 2^31 - 1]` (Q0.31 in [0.5, 1)), rounding
/// half away from zero; `shift > 0` means a left shift.
///
/// `0.0` gives `(0, 0)`. Multipliers below `2^-32` (shift < -31) flush to `(0, 0)`, and ones at
/// or above `2^30` saturate to `(i32::MAX, 30)`, as in current TFLite.
///
/// # Panics
/// If `real` is negative or NaN: requantization multipliers are ratios of positive scales, so
/// such a value is a bug in the caller.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    assert!(
        real >= 0.0,
        "quantize_multiplier: multiplier must be >= 0 and not NaN, got {real}"
    );
    if real == 0.0 {
        return (0, 0);
    }
    if real.is_infinite() {
        return (i32::MAX, MAX_SHIFT);
    }
    let (q, mut shift) = libm::frexp(real);
    // q in [0.5, 1): q * 2^31 in [2^30, 2^31], exact in f64 before rounding.
    let mut q_fixed = libm::round(q * (1u64 << 31) as f64) as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < MIN_SHIFT {
        return (0, 0);
    }
    if shift > MAX_SHIFT {
        return (i32::MAX, MAX_SHIFT);
    }
    (q_fixed as i32, shift)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2 * a * b`, i.e.
/// `a * b / 2^31`, rounded to nearest. Bit-level rule: add the nudge `2^30` (or `1 - 2^30` when
/// the product is negative), then divide by `2^31` truncating toward zero; so exact ties round
/// toward +infinity (0.5 -> 1, -0.5 -> 0). The only overflow, `i32::MIN * i32::MIN`,
/// saturates to `i32::MAX`.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // i64 `/` truncates toward zero, as C does; the quotient fits i32 because |ab| < 2^62.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties away from zero.
///
/// Contract: `exponent` in `0..=31` (debug-asserted; blobs are validated to stay inside it).
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!(
        (0..=31).contains(&exponent),
        "exponent {exponent} outside 0..=31"
    );
    let exponent = (exponent & 31) as u32;
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    // Ties round away from zero: a negative x needs a strictly larger remainder to round up.
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite `MultiplyByQuantizedMultiplier` (double rounding):
/// `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, m), right)` with
/// `left = max(shift, 0)`, `right = max(-shift, 0)`.
///
/// Contract: `shift` in `MIN_SHIFT..=MAX_SHIFT`. For a left shift, `x * 2^left` must fit i32 for
/// the result to match TFLite (in C that overflow is undefined); here it wraps.
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift } else { 0 };
    let right = if shift > 0 { 0 } else { -shift };
    let shifted = x.wrapping_mul(1i32.wrapping_shl(left as u32));
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted, multiplier),
        right,
    )
}

/// Requantizes an int32 accumulator (bias already added) to int8:
/// `clamp(multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point, lo, 127)` with
/// `lo = zero_point` when `relu` (ReLU folded into the clamp) and `-128` otherwise.
pub fn requantize(acc: i32, multiplier: i32, shift: i32, zero_point: i8, relu: bool) -> i8 {
    let scaled = multiply_by_quantized_multiplier(acc, multiplier, shift);
    let lo = if relu { zero_point as i32 } else { -128 };
    scaled.saturating_add(zero_point as i32).clamp(lo, 127) as i8
}

/// Symmetric per-output-channel weight quantization.
///
/// `w` holds `out_channels` equal rows, output channel major (conv `[C_out][3][3][C_in]`, dense
/// `[out][in]`). For each channel: `scale = max|w| / 127` (1.0 for an all-zero channel), and
/// `q = clamp(round_half_away(w / scale), -127, 127)`. Writes `q` (same layout as `w`) and the
/// per-channel `scales`.
///
/// # Panics
/// If `out_channels` is 0 or does not divide `w.len()`, or `q`/`scales` have the wrong length.
pub fn quantize_weights_per_channel(
    w: &[f32],
    out_channels: usize,
    q: &mut [i8],
    scales: &mut [f32],
) {
    quantize_weights_per_channel_bits(w, out_channels, WeightBits::S8, q, scales)
}

/// [`quantize_weights_per_channel`] at bit width `bits`: scale `max|w| / qmax` with `qmax` 127
/// (int8) or 7 (int4), values rounded half away from zero and clamped to `[-qmax, qmax]`. The
/// values stay unpacked, one `i8` each (the blob encoder packs int4).
pub fn quantize_weights_per_channel_bits(
    w: &[f32],
    out_channels: usize,
    bits: WeightBits,
    q: &mut [i8],
    scales: &mut [f32],
) {
    let qmax = bits.qmax() as f32;
    assert!(
        out_channels > 0 && w.len().is_multiple_of(out_channels),
        "quantize_weights_per_channel: {} weights do not split into {out_channels} channels",
        w.len()
    );
    assert_eq!(
        q.len(),
        w.len(),
        "quantize_weights_per_channel: output length"
    );
    assert_eq!(
        scales.len(),
        out_channels,
        "quantize_weights_per_channel: scales length"
    );
    let per = w.len() / out_channels;
    for (c, scale_out) in scales.iter_mut().enumerate() {
        let row = &w[c * per..(c + 1) * per];
        let max_abs = row.iter().fold(0.0f32, |m, v| m.max(libm::fabsf(*v)));
        let scale = if max_abs > 0.0 { max_abs / qmax } else { 1.0 };
        *scale_out = scale;
        for (dst, v) in q[c * per..(c + 1) * per].iter_mut().zip(row) {
            *dst = libm::roundf(v / scale).clamp(-qmax, qmax) as i8;
        }
    }
}

/// Quantizes a float bias to int32 with scale `input_scale * weight_scale`, rounding half away
/// from zero and saturating.
pub fn quantize_bias(bias: f32, input_scale: f32, weight_scale: f32) -> i32 {
    let q = libm::round(bias as f64 / (input_scale as f64 * weight_scale as f64));
    q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact reference: `round(x * 2^left * m / 2^31)` with gemmlowp's two rounding steps,
    /// computed in i128 without any shortcut.
    fn reference_mbqm(x: i32, m: i32, shift: i32) -> i32 {
        let left = shift.max(0);
        let right = (-shift).max(0);
        let xs = (x as i128) << left;
        let xs = xs as i32 as i128; // wrap, as documented
                                    // SaturatingRoundingDoublingHighMul
        let high = if xs == i32::MIN as i128 && m == i32::MIN {
            i32::MAX as i128
        } else {
            let p = xs * m as i128;
            let nudge = if p >= 0 {
                1i128 << 30
            } else {
                1 - (1i128 << 30)
            };
            let n = p + nudge;
            // C truncating division
            let q = n.abs() >> 31;
            if n < 0 {
                -q
            } else {
                q
            }
        };
        // RoundingDivideByPOT: nearest, ties away from zero
        if right == 0 {
            return high as i32;
        }
        let d = 1i128 << right;
        let q = high.div_euclid(d);
        let r = high.rem_euclid(d);
        let twice = 2 * r;
        let rounded = if twice > d || (twice == d && high >= 0) {
            q + 1
        } else {
            q
        };
        rounded as i32
    }

    #[test]
    fn rdbpot_ties_round_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3); // 2.5 -> 3
        assert_eq!(rounding_divide_by_pot(-5, 1), -3); // -2.5 -> -3
        assert_eq!(rounding_divide_by_pot(3, 1), 2); // 1.5 -> 2
        assert_eq!(rounding_divide_by_pot(-3, 1), -2); // -1.5 -> -2
        assert_eq!(rounding_divide_by_pot(6, 2), 2); // 1.5 -> 2
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2); // -1.75 -> -2
        assert_eq!(rounding_divide_by_pot(-5, 2), -1); // -1.25 -> -1
    }

    #[test]
    fn rdbpot_exponent_limits() {
        assert_eq!(rounding_divide_by_pot(i32::MAX, 0), i32::MAX);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 0), i32::MIN);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1); // 0.99999 -> 1
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1); // -1.0 exactly
        assert_eq!(rounding_divide_by_pot(1 << 30, 31), 1); // 0.5 tie -> 1
        assert_eq!(rounding_divide_by_pot(-(1 << 30), 31), -1); // -0.5 tie -> -1
        assert_eq!(rounding_divide_by_pot((1 << 30) - 1, 31), 0);
        assert_eq!(rounding_divide_by_pot(-(1 << 30) + 1, 31), 0);
    }

    #[test]
    fn srdhm_i32_min_saturates() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MAX),
            -i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MAX, i32::MAX),
            i32::MAX - 1
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, 1 << 30),
            -(1 << 30)
        );
    }

    #[test]
    fn srdhm_ties() {
        // a*b = 2^30 exactly: 2*a*b/2^32 = 0.5 -> 1 (positive tie rounds up)
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 15, 1 << 15), 1);
        // negative tie -0.5: nudge 1 - 2^30 gives trunc((1 - 2^31) / 2^31) = 0
        assert_eq!(
            saturating_rounding_doubling_high_mul(-(1 << 15), 1 << 15),
            0
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(-(1 << 15), (1 << 15) + 1),
            -1
        );
    }

    #[test]
    fn mbqm_shift_limits() {
        let m = 1 << 30; // 0.5
        assert_eq!(multiply_by_quantized_multiplier(1000, m, 0), 500);
        assert_eq!(multiply_by_quantized_multiplier(1000, m, 1), 1000);
        assert_eq!(multiply_by_quantized_multiplier(1, m, 30), 1 << 29);
        assert_eq!(multiply_by_quantized_multiplier(i32::MAX, m, -31), 1); // 2^30 / 2^31 tie -> 1
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MIN, i32::MAX, -31),
            -1
        );
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MIN, i32::MIN, 0),
            i32::MAX
        );
        assert_eq!(multiply_by_quantized_multiplier(i32::MIN, i32::MIN, -31), 1);
        for &(x, m, s) in &[
            (i32::MIN, 1 << 30, -31),
            (i32::MAX, i32::MAX, -31),
            (-1, i32::MAX, 0),
            (12345, 1_518_500_250, -7),
            (-12345, 1_518_500_250, -7),
            (3, 1 << 30, 1),
        ] {
            assert_eq!(
                multiply_by_quantized_multiplier(x, m, s),
                reference_mbqm(x, m, s)
            );
        }
    }

    #[test]
    fn requantize_clamps_and_saturates() {
        let (m, s) = quantize_multiplier(0.5);
        assert_eq!(requantize(100, m, s, -10, true), 40);
        assert_eq!(requantize(-100, m, s, -10, true), -10); // ReLU clamp at zero point
        assert_eq!(requantize(-100, m, s, -10, false), -60);
        assert_eq!(requantize(1000, m, s, 0, false), 127);
        assert_eq!(requantize(-1000, m, s, 0, false), -128);
        assert_eq!(requantize(i32::MAX, i32::MAX, 0, 127, false), 127);
        assert_eq!(requantize(i32::MIN, i32::MAX, 0, -128, false), -128);
        // Ties in the high-mul stage round toward +inf: 2.5 -> 3, -2.5 -> -2
        assert_eq!(requantize(5, m, s, 0, false), 3);
        assert_eq!(requantize(-5, m, s, 0, false), -2);
        // Ties in the divide stage round away from zero: 6 * 0.25 = 1.5 -> 2,
        // -6 * 0.25 = -1.5 -> -2 (high-mul gives -3 exactly, then -3 / 2 -> -2).
        // Double rounding (TFLite's default path): 5 * 0.25 = 1.25 -> 2.5 -> 3 -> 1.5 -> 2.
        let (m, s) = quantize_multiplier(0.25);
        assert_eq!(requantize(5, m, s, 0, false), 2);
        assert_eq!(requantize(6, m, s, 0, false), 2);
        assert_eq!(requantize(-6, m, s, 0, false), -2);
    }

    #[test]
    fn quantize_multiplier_matches_tflite() {
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        // 0.75 = 0.75 * 2^0
        assert_eq!(quantize_multiplier(0.75), (1_610_612_736, 0));
        // rounds up to 2^31: renormalized
        assert_eq!(quantize_multiplier(1.0 - 1e-12), (1 << 30, 1));
        assert_eq!(quantize_multiplier(1e-12), (0, 0)); // below 2^-32
        assert_eq!(quantize_multiplier(2f64.powi(-32)), (1 << 30, -31));
        assert_eq!(quantize_multiplier(1e12), (i32::MAX, 30));
        assert_eq!(quantize_multiplier(f64::INFINITY), (i32::MAX, 30));
        let (m, s) = quantize_multiplier(0.001_234_5);
        let back = m as f64 * 2f64.powi(s) / 2f64.powi(31);
        assert!((back - 0.001_234_5).abs() < 1e-12);
    }

    #[test]
    fn weights_per_channel() {
        let w = [0.6f32, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.2, -0.5];
        let mut q = [0i8; 9];
        let mut s = [0f32; 3];
        quantize_weights_per_channel(&w, 3, &mut q, &mut s);
        assert_eq!(q, [76, -127, 32, 0, 0, 0, 127, 76, -32]);
        assert_eq!(s, [1.0 / 127.0, 1.0, 2.0 / 127.0]);
        assert_eq!(quantize_bias(0.5, 0.25, 0.5), 4);
        assert_eq!(quantize_bias(-0.3125, 0.25, 0.5), -3); // -2.5 -> -3
        assert_eq!(quantize_bias(1e30, 1e-3, 1e-3), i32::MAX);
    }

    #[test]
    fn mbqm_matches_i128_reference_dense_sweep() {
        // Deterministic sweep over a grid of edge values (the proptest in tests/ covers random ones).
        let xs = [
            i32::MIN,
            i32::MIN + 1,
            -65536,
            -32769,
            -3,
            -2,
            -1,
            0,
            1,
            2,
            3,
            32767,
            65536,
            i32::MAX,
        ];
        let ms = [
            0,
            1,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            1_518_500_250,
            i32::MAX,
        ];
        for &x in &xs {
            for &m in &ms {
                for s in MIN_SHIFT..=0 {
                    assert_eq!(
                        multiply_by_quantized_multiplier(x, m, s),
                        reference_mbqm(x, m, s),
                        "x={x} m={m} shift={s}"
                    );
                }
            }
        }
    }
}
