//! Conv weight layouts: tch stores `[out, in, 3, 3]` (OIHW); `shared`'s `conv3x3_pool` reads
//! `[out][3][3][in]` (OHWI), so one output channel's 3x3xC_in window is contiguous.

/// Reorders OIHW conv weights to OHWI.
pub fn weights_oihw_to_ohwi<T: Copy>(w: &[T], out: usize, cin: usize) -> Vec<T> {
    // Each output channel is a `[in][3*3]` matrix; OHWI is its transpose.
    super::transpose_blocks(w, out, cin, 9, "conv weight length must be out * in * 9")
}

/// Reorders OHWI conv weights back to OIHW (the inverse of [`weights_oihw_to_ohwi`]).
pub fn weights_ohwi_to_oihw<T: Copy>(w: &[T], out: usize, cin: usize) -> Vec<T> {
    // Each output channel is a `[3*3][in]` matrix; OIHW is its transpose.
    super::transpose_blocks(w, out, 9, cin, "conv weight length must be out * in * 9")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oihw_to_ohwi_moves_each_tap() {
        // out 2, in 3: value encodes (o, i, ky, kx) as o*1000 + i*100 + ky*10 + kx.
        let (out, cin) = (2, 3);
        let mut w = Vec::new();
        for o in 0..out {
            for i in 0..cin {
                for ky in 0..3 {
                    for kx in 0..3 {
                        w.push(o * 1000 + i * 100 + ky * 10 + kx);
                    }
                }
            }
        }
        let r = weights_oihw_to_ohwi(&w, out, cin);
        for o in 0..out {
            for ky in 0..3 {
                for kx in 0..3 {
                    for i in 0..cin {
                        assert_eq!(
                            r[((o * 3 + ky) * 3 + kx) * cin + i],
                            o * 1000 + i * 100 + ky * 10 + kx
                        );
                    }
                }
            }
        }
        assert_eq!(weights_ohwi_to_oihw(&r, out, cin), w);
    }
}
