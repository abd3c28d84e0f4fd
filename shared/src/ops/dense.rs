//! Fully connected layer.

use super::requant::{dot_s8, ChannelParams, Requant};
use crate::weights::{s4_hi, s4_lo, Weights};

/// Outputs per block in [`dense`]: accumulators live on the stack in blocks this size.
const DENSE_BLOCK: usize = 16;

/// Accumulates a run of dense-layer columns:
/// `acc[o] += Σ_i (input[i] - zp) * w[first + o * stride + i]` for `o` in `0..acc.len()` and `i`
/// in `0..input.len()`, where `w[k]` is weight element `k` of `weights`.
///
/// - `input`: the `n = input.len()` inputs of this run, zero point `zp` (`-128..=127`).
/// - `weights`: the layer's `[out][in]` weights, int8 in [-127, 127] or int4 in [-7, 7] packed
///   two per byte, low nibble first (see [`crate::weights`]). Row `o`'s run starts at element
///   `first + o * stride` (an int4 run can start mid-byte) and reads `n` elements;
///   `stride >= n`, and the last run ends inside `weights`.
///
/// Integer sums do not depend on order, so accumulating a layer in runs (fc1 fed one pooled
/// row at a time) gives the same sums as one pass, as long as the whole layer stays within
/// the accumulator bound `255 * 127 * fan_in + |bias| <= i32::MAX` (the int8 bound covers
/// int4). Cortex-M DSP kernels run both widths on thumbv7em, x86 kernels int8 on x86_64.
///
/// # Panics
/// If `stride < n` or the last run ends past `weights`.
pub fn dense_acc(
    input: &[i8],
    weights: Weights<'_>,
    first: usize,
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    check_acc_args(input, weights, first, stride, zp, acc);
    if acc.is_empty() {
        return;
    }
    #[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
    return match weights {
        Weights::S8(w) => super::arm_dsp::dense_acc_s8_dsp(input, &w[first..], stride, zp, acc),
        Weights::S4(w) => super::arm_dsp::dense_acc_s4_dsp(input, w, first, stride, zp, acc),
    };
    #[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
    if let Weights::S8(w) = weights {
        if super::x86::dense_acc_s8(input, &w[first..], stride, zp, acc) {
            return;
        }
    }
    #[allow(unreachable_code)]
    dense_acc_unchecked(input, weights, first, stride, zp, acc);
}

/// The portable [`dense_acc`], whatever the target: the baseline that optimized variants are
/// tested against on their own target. Same contract.
#[doc(hidden)]
pub fn dense_acc_portable(
    input: &[i8],
    weights: Weights<'_>,
    first: usize,
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    check_acc_args(input, weights, first, stride, zp, acc);
    dense_acc_unchecked(input, weights, first, stride, zp, acc);
}

/// The argument checks of [`dense_acc`] (its `# Panics`), in weight elements.
fn check_acc_args(
    input: &[i8],
    weights: Weights<'_>,
    first: usize,
    stride: usize,
    zp: i32,
    acc: &[i32],
) {
    let (n, outputs) = (input.len(), acc.len());
    let elements = match weights {
        Weights::S8(w) => w.len(),
        Weights::S4(w) => w.len() * 2,
    };
    assert!(stride >= n, "dense_acc: stride {stride} < run length {n}");
    if let Some(last) = outputs.checked_sub(1) {
        assert!(
            elements >= first + last * stride + n,
            "dense_acc: weights length"
        );
    }
    debug_assert!((-128..=127).contains(&zp), "dense_acc: zero point {zp}");
}

/// The portable [`dense_acc`] after its checks.
fn dense_acc_unchecked(
    input: &[i8],
    weights: Weights<'_>,
    first: usize,
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    let n = input.len();
    let rows = acc
        .iter_mut()
        .enumerate()
        .map(|(o, a)| (first + o * stride, a));
    match weights {
        Weights::S8(w) => rows.for_each(|(at, a)| *a += dot_s8(input, &w[at..][..n], zp)),
        Weights::S4(w) => rows.for_each(|(at, a)| *a += dot_s4(input, w, at, zp)),
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

/// The output loop of [`dense`]: for each block of up to [`DENSE_BLOCK`]
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

/// Dense layer: `output[o] = requant(Σ_i (input[i] - zp_in) * w[o * n + i] + bias[o])`.
///
/// - `input`: `n` int8 values (fc1: the HWC flatten of the last conv block), zero point
///   `rq.input_zero_point`.
/// - `weights`: `[out][n]` row-major, int8 in [-127, 127] or int4 in [-7, 7] packed two per
///   byte, low nibble first (`ceil(out * n / 2)` bytes; rows may start mid-byte).
/// - `output`: `out` int8 values.
///
/// Accumulator bound: `255 * 127 * n + |bias| <= i32::MAX` (debug-asserted).
///
/// # Panics
/// If `weights` does not hold exactly `output.len() * input.len()` weights.
pub fn dense<P: ChannelParams + ?Sized>(
    input: &[i8],
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    let n = input.len();
    assert_eq!(
        weights.as_bytes().len(),
        weights.bits().bytes(n * output.len()),
        "dense: weights length"
    );
    rq.debug_assert_bound(n, output.len());
    if let Weights::S8(w) = weights {
        debug_assert!(
            !w.contains(&i8::MIN),
            "dense: weights must be in [-127, 127]"
        );
    }
    let zp = rq.input_zero_point as i32;
    dense_blocks(rq, output, |first, acc| {
        dense_acc(input, weights, first * n, n, zp, acc)
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
        dense(
            &INPUT,
            Weights::S8(&WEIGHTS),
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
        dense(&INPUT, Weights::S4(&[0x21, 0x93, 0x70]), &rq, &mut out);
        assert_eq!(out, [77, 127]);
        // Row 1 starts mid-byte: element 3.
        let mut acc = [0i32; 1];
        dense_acc(&INPUT, Weights::S4(&[0x21, 0x93, 0x70]), 3, 3, 5, &mut acc);
        assert_eq!(acc, [819]);
    }

    #[test]
    fn negative_without_relu() {
        let mut out = [0i8; 1];
        // -10 * 3 = -30, * 0.5 = -15
        let rq = Requant::test(&HALF, 0, 0, false);
        dense(&[-10], Weights::S8(&[3]), &rq, &mut out);
        assert_eq!(out, [-15]);
    }
}
