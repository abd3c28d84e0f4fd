//! Dense weight layouts. Both tch and `shared`'s `dense_s8` store `[out][in]`, but the flatten in
//! front of fc1 differs: tch flattens the pooled `[C, H, W]` tensor (index `c*H*W + h*W + w`),
//! `shared` flattens HWC (index `h*W*C + w*C + c`). fc1's columns are permuted accordingly.

/// Permutes fc1's columns from tch's NCHW flatten order to `shared`'s HWC order.
/// `w` is `[out][channels*height*width]`.
pub fn fc1_columns_nchw_to_hwc<T: Copy>(
    w: &[T],
    out: usize,
    channels: usize,
    height: usize,
    width: usize,
) -> Vec<T> {
    // Each output row is a `[C][H*W]` matrix; HWC order is its transpose.
    super::transpose_blocks(
        w,
        out,
        channels,
        height * width,
        "fc1 weight length must be out * C * H * W",
    )
}

/// Permutes fc1's columns from HWC back to NCHW order (the inverse of [`fc1_columns_nchw_to_hwc`]).
pub fn fc1_columns_hwc_to_nchw<T: Copy>(
    w: &[T],
    out: usize,
    channels: usize,
    height: usize,
    width: usize,
) -> Vec<T> {
    // Each output row is a `[H*W][C]` matrix; NCHW order is its transpose.
    super::transpose_blocks(
        w,
        out,
        height * width,
        channels,
        "fc1 weight length must be out * C * H * W",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permutation must make a dot product with an HWC-flattened activation equal the dot
    /// product of the original row with the NCHW-flattened activation.
    #[test]
    fn permuted_fc1_computes_the_same_dot_product() {
        let (out, c, h, w) = (3, 4, 3, 2);
        let weights: Vec<i64> = (0..(out * c * h * w) as i64)
            .map(|v| (v * 7919) % 23 - 11)
            .collect();
        let act_chw: Vec<i64> = (0..(c * h * w) as i64).map(|v| (v * 31) % 17 - 8).collect();
        let mut act_hwc = vec![0; c * h * w];
        for ci in 0..c {
            for hi in 0..h {
                for wi in 0..w {
                    act_hwc[(hi * w + wi) * c + ci] = act_chw[(ci * h + hi) * w + wi];
                }
            }
        }
        let permuted = fc1_columns_nchw_to_hwc(&weights, out, c, h, w);
        for o in 0..out {
            let len = c * h * w;
            let nchw: i64 = weights[o * len..][..len]
                .iter()
                .zip(&act_chw)
                .map(|(a, b)| a * b)
                .sum();
            let hwc: i64 = permuted[o * len..][..len]
                .iter()
                .zip(&act_hwc)
                .map(|(a, b)| a * b)
                .sum();
            assert_eq!(nchw, hwc, "output {o}");
        }
        assert_eq!(fc1_columns_hwc_to_nchw(&permuted, out, c, h, w), weights);
    }

    #[test]
    fn known_column_lands_where_expected() {
        // One output, C=2, H=1, W=2: NCHW order is [c0w0, c0w1, c1w0, c1w1], HWC is [c0w0, c1w0, c0w1, c1w1].
        assert_eq!(
            fc1_columns_nchw_to_hwc(&[10, 11, 20, 21], 1, 2, 1, 2),
            vec![10, 20, 11, 21]
        );
    }
}
