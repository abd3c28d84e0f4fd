//! Fully connected layer.

use super::requant::{dot_s8, ChannelParams, Requant};

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
    if n == 0 {
        for (o, dst) in output.iter_mut().enumerate() {
            *dst = rq.apply(o, 0);
        }
        return;
    }
    for (o, (dst, row)) in output.iter_mut().zip(weights.chunks_exact(n)).enumerate() {
        *dst = rq.apply(o, dot_s8(input, row, zp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::requant::ChannelSlices;

    const INPUT: [i8; 3] = [10, -20, 127];
    const WEIGHTS: [i8; 6] = [1, 2, 3, -127, 0, 127];
    // zp_in = 5: x - zp = [5, -25, 122]
    // o0: 5 - 50 + 366 = 321, + bias -1 = 320, * 0.25 = 80, + zp_out -3 = 77
    // o1: -635 + 15494 = 14859, + bias 1 = 14860, * 0.25 = 3715 -> 127
    const EXPECTED: [i8; 2] = [77, 127];

    #[test]
    fn hand_computed() {
        let params = ChannelSlices {
            bias: &[-1, 1],
            multiplier: &[1 << 30, 1 << 30],
            shift: &[-1, -1],
        };
        let rq = Requant {
            params: &params,
            input_zero_point: 5,
            output_zero_point: -3,
            relu: false,
        };
        let mut out = [0i8; 2];
        dense_s8(&INPUT, &WEIGHTS, &rq, &mut out);
        assert_eq!(out, EXPECTED);
    }

    #[test]
    fn negative_without_relu() {
        let params = ChannelSlices {
            bias: &[0],
            multiplier: &[1 << 30],
            shift: &[0],
        };
        let rq = Requant {
            params: &params,
            input_zero_point: 0,
            output_zero_point: 0,
            relu: false,
        };
        let mut out = [0i8; 1];
        // -10 * 3 = -30, * 0.5 = -15
        dense_s8(&[-10], &[3], &rq, &mut out);
        assert_eq!(out, [-15]);
    }
}
