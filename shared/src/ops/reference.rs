//! Naive reference kernels: the definition the fast kernels are tested against.
//!
//! Written for obviousness, not speed: explicit padding checks, i64 accumulation (then checked
//! to fit i32), and the conv output stored at full resolution before pooling.

use super::conv::ConvShape;
use super::requant::{ChannelParams, Requant};
use crate::quant::requantize;
use crate::weights::Weights;

/// The number of weights `weights` must hold, checked against its stored bytes.
fn check_weight_count(weights: Weights<'_>, count: usize) {
    assert_eq!(
        weights.as_bytes().len(),
        weights.bits().bytes(count),
        "reference: weights length"
    );
}

fn output_stage<P: ChannelParams + ?Sized>(rq: &Requant<P>, c: usize, acc: i64) -> i8 {
    let p = rq.params;
    let total = acc + p.bias(c) as i64;
    let total = i32::try_from(total).expect("reference: accumulator overflows i32");
    requantize(
        total,
        p.multiplier(c),
        p.shift(c),
        rq.output_zero_point,
        rq.relu,
    )
}

/// Conv 3x3 stride 1 SAME + bias + requantize (+ ReLU clamp), full-resolution output.
///
/// Layouts: input HWC `h x w x C_in`, weights `[C_out][3][3][C_in]` (int8, or int4 packed two
/// per byte), output HWC `h x w x C_out`. Padding is the input zero point (real 0).
pub fn conv3x3<P: ChannelParams + ?Sized>(
    input: &[i8],
    shape: ConvShape,
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    let ConvShape {
        height: h,
        width: w,
        in_channels: ci,
        out_channels: co,
    } = shape;
    assert_eq!(input.len(), h * w * ci);
    check_weight_count(weights, co * 9 * ci);
    assert_eq!(output.len(), h * w * co);
    let zp = rq.input_zero_point as i64;
    for y in 0..h {
        for x in 0..w {
            for o in 0..co {
                let mut acc = 0i64;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let iy = y as isize + ky as isize - 1;
                        let ix = x as isize + kx as isize - 1;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        for c in 0..ci {
                            let v = input[(iy as usize * w + ix as usize) * ci + c] as i64;
                            let wt = weights.get(((o * 3 + ky) * 3 + kx) * ci + c) as i64;
                            acc += (v - zp) * wt;
                        }
                    }
                }
                output[(y * w + x) * co + o] = output_stage(rq, o, acc);
            }
        }
    }
}

/// Max-pool 2x2 stride 2 SAME, HWC: output `ceil(h/2) x ceil(w/2) x c`.
pub fn maxpool2x2(input: &[i8], h: usize, w: usize, c: usize, output: &mut [i8]) {
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    assert_eq!(input.len(), h * w * c);
    assert_eq!(output.len(), oh * ow * c);
    for py in 0..oh {
        for px in 0..ow {
            for ch in 0..c {
                let mut m = i8::MIN;
                for y in 2 * py..2 * py + 2 {
                    for x in 2 * px..2 * px + 2 {
                        if y < h && x < w {
                            m = m.max(input[(y * w + x) * c + ch]);
                        }
                    }
                }
                output[(py * ow + px) * c + ch] = m;
            }
        }
    }
}

/// Conv block the layer-by-layer way: [`conv3x3`] into `full` (`h * w * C_out`), then
/// [`maxpool2x2`] into `output`.
pub fn conv3x3_pool<P: ChannelParams + ?Sized>(
    input: &[i8],
    shape: ConvShape,
    weights: Weights<'_>,
    rq: &Requant<P>,
    full: &mut [i8],
    output: &mut [i8],
) {
    conv3x3(input, shape, weights, rq, full);
    maxpool2x2(full, shape.height, shape.width, shape.out_channels, output);
}

/// Dense: `output[o] = requant(Σ_i (input[i] - zp) * weights[o][i] + bias[o])`, weights
/// `[out][in]` (int8, or int4 packed two per byte).
pub fn dense<P: ChannelParams + ?Sized>(
    input: &[i8],
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    let n = input.len();
    check_weight_count(weights, n * output.len());
    let zp = rq.input_zero_point as i64;
    for (o, out) in output.iter_mut().enumerate() {
        let acc: i64 = (input.iter().enumerate())
            .map(|(i, &x)| (x as i64 - zp) * weights.get(o * n + i) as i64)
            .sum();
        *out = output_stage(rq, o, acc);
    }
}

/// Index of the first maximum (0 for an empty slice).
pub fn argmax(values: &[i8]) -> usize {
    let mut best = 0;
    for i in 1..values.len() {
        if values[i] > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxpool_odd_size_same_padding() {
        // 3x3x1 -> 2x2x1: the right column and bottom row pool alone.
        let input = [1, -5, 7, 9, 2, -128, -3, 4, 127];
        let mut out = [0i8; 4];
        maxpool2x2(&input, 3, 3, 1, &mut out);
        assert_eq!(out, [9, 7, 4, 127]);
    }

    #[test]
    fn maxpool_channels_pool_independently() {
        // 2x2x2: channel 0 = [1, 2, 3, 4], channel 1 = [-1, -2, -3, -128]
        let input = [1, -1, 2, -2, 3, -3, 4, -128];
        let mut out = [0i8; 2];
        maxpool2x2(&input, 2, 2, 2, &mut out);
        assert_eq!(out, [4, -1]);
    }
}
