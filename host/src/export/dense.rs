//! Dense weight layouts. Both tch and `shared`'s `dense` store `[out][in]`, but the flatten in
//! front of fc1 differs: tch flattens the pooled `[C, H, W]` tensor (index `c*H*W + h*W + w`),
//! `shared` flattens HWC (index `h*W*C + w*C + c`). fc1's columns are permuted accordingly.

/// The order in which fc1's input map is flattened: tch's NCHW or `shared`'s HWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlattenOrder {
    Nchw,
    Hwc,
}

/// Permutes fc1's columns from the `from` flatten order to the other one (NCHW to HWC on export,
/// HWC back to NCHW for ONNX). `w` is `[out][H*W*C]`; `input_hwc` is fc1's input map
/// (`LayerSpec::input_hwc`).
pub fn fc1_columns<T: Copy>(
    w: &[T],
    out: usize,
    input_hwc: (usize, usize, usize),
    from: FlattenOrder,
) -> Vec<T> {
    let (height, width, channels) = input_hwc;
    // Each output row is a `[C][H*W]` matrix in NCHW order and a `[H*W][C]` one in HWC order:
    // either is the other's transpose.
    let (rows, cols) = match from {
        FlattenOrder::Nchw => (channels, height * width),
        FlattenOrder::Hwc => (height * width, channels),
    };
    super::transpose_blocks(
        w,
        out,
        rows,
        cols,
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
        let permuted = fc1_columns(&weights, out, (h, w, c), FlattenOrder::Nchw);
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
        assert_eq!(
            fc1_columns(&permuted, out, (h, w, c), FlattenOrder::Hwc),
            weights
        );
    }

    #[test]
    fn known_column_lands_where_expected() {
        // One output, C=2, H=1, W=2: NCHW order is [c0w0, c0w1, c1w0, c1w1], HWC is [c0w0, c1w0, c0w1, c1w1].
        assert_eq!(
            fc1_columns(&[10, 11, 20, 21], 1, (1, 2, 2), FlattenOrder::Nchw),
            vec![10, 20, 11, 21]
        );
    }
}
