//! Fully connected layer.

use super::requant::{dot_s8, ChannelParams, Requant};
use crate::weights::{s4_hi, s4_lo};

/// Outputs per block in [`dense_s8`]: accumulators live on the stack in blocks this size.
const DENSE_BLOCK: usize = 16;

/// Accumulates a run of dense-layer columns: `acc[o] += Σ_i (input[i] - zp) * weights[o * stride + i]`
/// for `o` in `0..acc.len()` and `i` in `0..input.len()`.
///
/// - `input`: the `n = input.len()` inputs of this run, zero point `zp` (`-128..=127`).
/// - `weights`: row `o` of the layer starts at `o * stride`; this run reads its first `n`
///   values (the caller offsets `weights` to the run's first column). Values in [-127, 127].
///   `stride >= n`, and `weights.len() >= (acc.len() - 1) * stride + n` when `acc` is not empty.
///
/// Integer sums do not depend on order, so accumulating a layer in runs (fc1 fed one pooled
/// row at a time) gives the same sums as one pass, as long as the whole layer stays within
/// the accumulator bound `255 * 127 * fan_in + |bias| <= i32::MAX`.
///
/// # Panics
/// If `stride < n` or `weights` is too short.
pub fn dense_acc_s8(input: &[i8], weights: &[i8], stride: usize, zp: i32, acc: &mut [i32]) {
    check_acc_args(input, weights, stride, zp, acc);
    #[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
    {
        return super::arm_dsp::dense_acc_s8_dsp(input, weights, stride, zp, acc);
    }
    #[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
    if super::x86::dense_acc_s8(input, weights, stride, zp, acc) {
        return;
    }
    #[allow(unreachable_code)]
    dense_acc_portable(input, weights, stride, zp, acc);
}

/// The portable [`dense_acc_s8`], whatever the target: the baseline that optimized variants are
/// tested against on their own target. Same contract.
#[doc(hidden)]
pub fn dense_acc_s8_portable(
    input: &[i8],
    weights: &[i8],
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    check_acc_args(input, weights, stride, zp, acc);
    dense_acc_portable(input, weights, stride, zp, acc);
}

/// The argument checks of [`dense_acc_s8`] (its `# Panics`).
fn check_acc_args(input: &[i8], weights: &[i8], stride: usize, zp: i32, acc: &[i32]) {
    check_run(input.len(), weights.len(), 0, stride, zp, acc.len());
}

/// The argument checks of both dense run kernels, in weight elements: the layer holds
/// `weight_len` of them, row `o`'s run starts at element `first + o * stride` and reads `n`,
/// for `outputs` rows.
#[inline(always)]
fn check_run(n: usize, weight_len: usize, first: usize, stride: usize, zp: i32, outputs: usize) {
    assert!(stride >= n, "dense_acc: stride {stride} < run length {n}");
    if let Some(last) = outputs.checked_sub(1) {
        assert!(
            weight_len >= first + last * stride + n,
            "dense_acc: weights length"
        );
    }
    debug_assert!((-128..=127).contains(&zp), "dense_acc: zero point {zp}");
}

fn dense_acc_portable(input: &[i8], weights: &[i8], stride: usize, zp: i32, acc: &mut [i32]) {
    let n = input.len();
    for (o, a) in acc.iter_mut().enumerate() {
        *a += dot_s8(input, &weights[o * stride..][..n], zp);
    }
}

/// `Σ_i (x[i] - zp) * w[first + i]` where `w` is packed int4 (two per byte, low nibble first):
/// the int4 twin of [`dot_s8`]. `first` may be odd (a run that starts mid-byte).
///
/// # Panics
/// If the run ends past `packed`.
#[inline]
pub fn dot_s4(x: &[i8], packed: &[u8], first: usize, zp: i32) -> i32 {
    let zp = zp as i16;
    let term = |x: i8, w: i8| (x as i16 - zp) as i32 * w as i32;
    let (mut x, mut k, mut acc) = (x, first, 0i32);
    if k % 2 == 1 {
        if let Some((&x0, rest)) = x.split_first() {
            acc += term(x0, s4_hi(packed[k / 2]));
            (x, k) = (rest, k + 1);
        }
    }
    let bytes = &packed[k / 2..][..x.len().div_ceil(2)];
    let pairs = x.chunks_exact(2);
    if let [last] = pairs.remainder() {
        acc += term(*last, s4_lo(bytes[bytes.len() - 1]));
    }
    acc + pairs
        .zip(bytes)
        .map(|(p, &b)| term(p[0], s4_lo(b)) + term(p[1], s4_hi(b)))
        .sum::<i32>()
}

/// [`dense_acc_s8`] for int4 weights: `acc[o] += Σ_i (input[i] - zp) * w[first + o * stride + i]`
/// where `w[k]` is element `k` of `weights`, packed two per byte, low nibble first (see
/// [`crate::weights`]); values in [-7, 7].
///
/// `first` is an element offset (a run of fc1 columns can start mid-byte); the other arguments
/// and the accumulator bound are as in [`dense_acc_s8`] (the int8 bound covers int4).
///
/// # Panics
/// If `stride < n` or the last run ends past `weights`.
pub fn dense_acc_s4(
    input: &[i8],
    weights: &[u8],
    first: usize,
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    check_acc_s4_args(input, weights, first, stride, zp, acc);
    #[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
    {
        return super::arm_dsp::dense_acc_s4_dsp(input, weights, first, stride, zp, acc);
    }
    #[allow(unreachable_code)]
    dense_acc_s4_portable_unchecked(input, weights, first, stride, zp, acc);
}

/// The portable [`dense_acc_s4`], whatever the target. Same contract.
#[doc(hidden)]
pub fn dense_acc_s4_portable(
    input: &[i8],
    weights: &[u8],
    first: usize,
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    check_acc_s4_args(input, weights, first, stride, zp, acc);
    dense_acc_s4_portable_unchecked(input, weights, first, stride, zp, acc);
}

/// The argument checks of [`dense_acc_s4`] (its `# Panics`): two weight elements per byte.
fn check_acc_s4_args(
    input: &[i8],
    weights: &[u8],
    first: usize,
    stride: usize,
    zp: i32,
    acc: &[i32],
) {
    check_run(input.len(), weights.len() * 2, first, stride, zp, acc.len());
}

fn dense_acc_s4_portable_unchecked(
    input: &[i8],
    weights: &[u8],
    first: usize,
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    for (o, a) in acc.iter_mut().enumerate() {
        *a += dot_s4(input, weights, first + o * stride, zp);
    }
}

/// [`dense_s8`] for int4 weights: `weights` is `[out][n]` row-major packed two per byte, low
/// nibble first (`ceil(out * n / 2)` bytes, rows may start mid-byte), values in [-7, 7].
///
/// # Panics
/// If `weights.len() != ceil(output.len() * input.len() / 2)`.
pub fn dense_s4<P: ChannelParams + ?Sized>(
    input: &[i8],
    weights: &[u8],
    rq: &Requant<P>,
    output: &mut [i8],
) {
    let n = input.len();
    assert_eq!(
        weights.len(),
        (n * output.len()).div_ceil(2),
        "dense_s4: weights length"
    );
    rq.debug_assert_bound(n, output.len());
    let zp = rq.input_zero_point as i32;
    dense_blocks(rq, output, |first, acc| {
        dense_acc_s4(input, weights, first * n, n, zp, acc)
    });
}

/// The output loop of [`dense_s8`] and [`dense_s4`]: for each block of up to [`DENSE_BLOCK`]
/// outputs `first..first + acc.len()`, `accumulate(first, acc)` adds their sums to the zeroed
/// `acc`, then each is requantized into `output`.
#[inline(always)]
fn dense_blocks<P: ChannelParams + ?Sized>(
    rq: &Requant<P>,
    output: &mut [i8],
    mut accumulate: impl FnMut(usize, &mut [i32]),
) {
    for (b, out) in output.chunks_mut(DENSE_BLOCK).enumerate() {
        let first = b * DENSE_BLOCK;
        let mut acc = [0i32; DENSE_BLOCK];
        let acc = &mut acc[..out.len()];
        accumulate(first, acc);
        for (i, (dst, &a)) in out.iter_mut().zip(acc.iter()).enumerate() {
            *dst = rq.apply(first + i, a);
        }
    }
}

/// Dense layer: `output[o] = requant(Σ_i (input[i] - zp_in) * weights[o * n + i] + bias[o])`.
///
/// - `input`: `n` int8 values (fc1: the HWC flatten of the last conv block), zero point
///   `rq.input_zero_point`.
/// - `weights`: `[out][n]` row-major, values in [-127, 127].
/// - `output`: `out` int8 values.
///
/// Accumulator bound: `255 * 127 * n + |bias| <= i32::MAX` (debug-asserted).
///
/// # Panics
/// If `weights.len() != output.len() * input.len()`.
pub fn dense_s8<P: ChannelParams + ?Sized>(
    input: &[i8],
    weights: &[i8],
    rq: &Requant<P>,
    output: &mut [i8],
) {
    let n = input.len();
    assert_eq!(weights.len(), n * output.len(), "dense_s8: weights length");
    rq.debug_assert_bound(n, output.len());
    debug_assert!(
        !weights.contains(&i8::MIN),
        "dense_s8: weights must be in [-127, 127]"
    );
    let zp = rq.input_zero_point as i32;
    dense_blocks(rq, output, |first, acc| {
        dense_acc_s8(input, &weights[first * n..], n, zp, acc)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::requant::{ChannelSlices, HALF};

    const INPUT: [i8; 3] = [10, -20, 127];
    const WEIGHTS: [i8; 6] = [1, 2, 3, -127, 0, 127];
    // zp_in = 5: x - zp = [5, -25, 122]
    // o0: 5 - 50 + 366 = 321, + bias -1 = 320, * 0.25 = 80, + zp_out -3 = 77
    // o1: -635 + 15494 = 14859, + bias 1 = 14860, * 0.25 = 3715 -> 127
    const EXPECTED: [i8; 2] = [77, 127];
    /// Bias -1 and 1, multiplier 0.5, shift -1: scale 0.25.
    const PARAMS: ChannelSlices<'static> = ChannelSlices {
        bias: &[-1, 1],
        multiplier: &[1 << 30, 1 << 30],
        shift: &[-1, -1],
    };

    #[test]
    fn hand_computed() {
        let mut out = [0i8; 2];
        dense_s8(
            &INPUT,
            &WEIGHTS,
            &Requant::test(&PARAMS, 5, -3, false),
            &mut out,
        );
        assert_eq!(out, EXPECTED);
    }

    #[test]
    fn hand_computed_s4() {
        // The int8 case with weights clamped to int4: [1, 2, 3, -7, 0, 7], packed low first.
        // o0: 5 - 50 + 366 = 321 -> 77 as above.
        // o1: -35 + 854 = 819, + 1 = 820, * 0.25 = 205 -> 127
        let mut out = [0i8; 2];
        let rq = Requant::test(&PARAMS, 5, -3, false);
        dense_s4(&INPUT, &[0x21, 0x93, 0x70], &rq, &mut out);
        assert_eq!(out, [77, 127]);
        // Row 1 starts mid-byte: element 3.
        let mut acc = [0i32; 1];
        dense_acc_s4(&INPUT, &[0x21, 0x93, 0x70], 3, 3, 5, &mut acc);
        assert_eq!(acc, [819]);
    }

    #[test]
    fn negative_without_relu() {
        let mut out = [0i8; 1];
        // -10 * 3 = -30, * 0.5 = -15
        dense_s8(&[-10], &[3], &Requant::test(&HALF, 0, 0, false), &mut out);
        assert_eq!(out, [-15]);
    }
}
