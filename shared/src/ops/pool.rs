//! Max-pool 2x2 stride 2 SAME (standalone; the forward pass fuses it into the conv kernel).

/// Max-pool 2x2, stride 2, TensorFlow SAME padding: output `ceil(h/2) x ceil(w/2) x c`; a window
/// hanging over the bottom or right edge covers only the existing pixels (7 -> 4).
///
/// Layout HWC. Any int8 values; the pool keeps its input's scale and zero point, and commutes
/// with the ReLU clamp `[zp, 127]` and with any monotonic requantization.
///
/// # Panics
/// If `input.len() != h * w * c` or `output.len() != ceil(h/2) * ceil(w/2) * c`.
pub fn maxpool2x2_s8(input: &[i8], h: usize, w: usize, c: usize, output: &mut [i8]) {
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    assert_eq!(input.len(), h * w * c, "maxpool2x2_s8: input length");
    assert_eq!(output.len(), oh * ow * c, "maxpool2x2_s8: output length");
    for py in 0..oh {
        let y1 = (2 * py + 1).min(h - 1);
        for px in 0..ow {
            let x1 = (2 * px + 1).min(w - 1);
            let out = &mut output[(py * ow + px) * c..][..c];
            out.fill(i8::MIN);
            for y in [2 * py, y1] {
                for x in [2 * px, x1] {
                    let pixel = &input[(y * w + x) * c..][..c];
                    for (o, &v) in out.iter_mut().zip(pixel) {
                        *o = (*o).max(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3x3x1 -> 2x2x1: the right column and bottom row pool alone.
    const INPUT: [i8; 9] = [1, -5, 7, 9, 2, -128, -3, 4, 127];
    const EXPECTED: [i8; 4] = [9, 7, 4, 127];

    #[test]
    fn odd_size_same_padding() {
        let mut out = [0i8; 4];
        maxpool2x2_s8(&INPUT, 3, 3, 1, &mut out);
        assert_eq!(out, EXPECTED);
    }

    #[test]
    fn channels_pool_independently() {
        // 2x2x2: channel 0 = [1, 2, 3, 4], channel 1 = [-1, -2, -3, -128]
        let input = [1, -1, 2, -2, 3, -3, 4, -128];
        let mut out = [0i8; 2];
        maxpool2x2_s8(&input, 2, 2, 2, &mut out);
        assert_eq!(out, [4, -1]);
    }
}
