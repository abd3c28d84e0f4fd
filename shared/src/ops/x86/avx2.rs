//! AVX2 kernels: i16 `vpmaddwd`, 8 int32 lanes per vector.
//!
//! Every function here is a safe `#[target_feature]` function; callers must have checked
//! [`KernelLevel::Avx2`](super::KernelLevel::Avx2) is available.

use core::arch::x86_64::*;
use std::vec::Vec;

use super::ChannelVecs;
use crate::arch::KERNEL;
use crate::ops::conv::RowShape;

/// Output channels per vector.
const LANES: usize = 8;
/// Taps per `vpmaddwd` lane.
const GROUP: usize = 2;

/// The 32 bytes of `a` as a vector.
#[inline]
#[target_feature(enable = "avx2")]
fn load<T: bytemuck::Pod, const N: usize>(a: &[T; N]) -> __m256i {
    const { assert!(N * size_of::<T>() == 32) };
    // SAFETY: `a` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// 16 int8 values sign-extended to i16.
#[inline]
#[target_feature(enable = "avx2")]
fn load_i8_as_i16(a: &[i8; 16]) -> __m256i {
    // SAFETY: `a` is 16 readable bytes; `loadu` has no alignment requirement.
    _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(a.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2")]
fn to_array(v: __m256i) -> [i32; 8] {
    let mut out = [0i32; 8];
    // SAFETY: `out` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
    out
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Length of a padded row (see [`super::padded_len`]): `width + 2` pixels and 2 slack values.
pub(super) const fn padded_len(s: RowShape) -> usize {
    super::padded_len(s, GROUP)
}

/// Appends an input row to `buf` as i16 `x - zp` with one pixel of zero padding on each side
/// and 2 slack values ([`padded_len`] in all); `None` (a row outside the image) is all zeros.
/// Taps of pixel `x` then start at `x * C_in`.
#[target_feature(enable = "avx2")]
pub(super) fn pad_row(row: Option<&[i8]>, s: RowShape, zp: i8, buf: &mut Vec<i16>) {
    let ci = s.in_channels;
    let start = buf.len();
    buf.resize(start + padded_len(s), 0);
    if let Some(row) = row {
        let zp = zp as i16;
        for (d, &v) in buf[start + ci..][..s.width * ci].iter_mut().zip(row) {
            *d = v as i16 - zp;
        }
    }
}

/// Packs `[C_out][3][3][C_in]` weights into `[ky][pair][channel block]` vectors of i16 (see
/// [`super::pack_conv`]): lane `l` of block `b` at pair `q` of kernel row `ky` holds the
/// weights of channel `8 b + l` at taps `2 q` (low half) and `2 q + 1` (high half) of that
/// kernel row.
#[target_feature(enable = "avx2")]
pub(super) fn pack_conv(weights: &[i8], ci: usize, co: usize) -> Vec<__m256i> {
    super::pack_conv(weights, ci, co, GROUP, i16::from, |v: &[i16; 16]| load(v))
}

/// `requantize(acc + bias, m, shift, zp_out, relu)` on 8 channels starting at `c0`, exactly as
/// [`crate::quant::requantize`] (the AVX-512 version documents each step).
#[inline]
#[target_feature(enable = "avx2")]
fn requant(acc: __m256i, ch: &ChannelVecs, c0: usize) -> __m256i {
    let lanes = |v: &[i32]| load::<i32, 8>(v[c0..c0 + 8].try_into().expect("padded to 8"));
    let x = _mm256_add_epi32(acc, lanes(&ch.bias));
    let m = lanes(&ch.multiplier);
    let right = lanes(&ch.right);
    let a = _mm256_sllv_epi32(x, lanes(&ch.left));
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(_mm256_mul_epi32(a, m), nudge));
    let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(a), _mm256_srli_epi64::<32>(m));
    let odd = _mm256_slli_epi64::<1>(_mm256_add_epi64(odd, nudge));
    let high = _mm256_blend_epi32::<0b1010_1010>(even, odd);
    let min = _mm256_set1_epi32(i32::MIN);
    let overflow = _mm256_and_si256(_mm256_cmpeq_epi32(a, min), _mm256_cmpeq_epi32(m, min));
    let high = _mm256_blendv_epi8(high, _mm256_set1_epi32(i32::MAX), overflow);
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    let remainder = _mm256_and_si256(high, mask);
    let threshold = _mm256_add_epi32(_mm256_srai_epi32::<1>(mask), _mm256_srli_epi32::<31>(high));
    let q = _mm256_srav_epi32(high, right);
    // cmpgt is -1 where the remainder rounds up.
    let q = _mm256_sub_epi32(q, _mm256_cmpgt_epi32(remainder, threshold));
    let q = _mm256_min_epi32(
        _mm256_max_epi32(q, _mm256_set1_epi32(-512)),
        _mm256_set1_epi32(512),
    );
    let q = _mm256_add_epi32(q, _mm256_set1_epi32(ch.zp_out));
    _mm256_min_epi32(
        _mm256_max_epi32(q, _mm256_set1_epi32(ch.lo)),
        _mm256_set1_epi32(127),
    )
}

/// One pooled row (see [`super`]): `top` and `bottom` are the padded kernel rows of conv rows
/// `2py` and `2py + 1` (`bottom` is `None` at an odd bottom edge, where the window's bottom
/// positions repeat the top ones), as made by [`pad_row`]; `packed` comes from [`pack_conv`].
#[target_feature(enable = "avx2")]
pub(super) fn conv_pool_row(
    top: [&[i16]; 3],
    bottom: Option<[&[i16]; 3]>,
    s: RowShape,
    packed: &[__m256i],
    ch: &ChannelVecs,
    output: &mut [i8],
) {
    let (pairs, blocks) = super::check_conv_pool_row(top, bottom, s, (GROUP, LANES), packed.len());
    let k = Ctx {
        top,
        bottom: bottom.unwrap_or(top),
        s,
        pairs,
        blocks,
        packed,
        ch,
    };
    // 8 accumulators per tile (16 ymm registers in all).
    let mut b0 = 0;
    while b0 < blocks {
        if blocks - b0 >= 2 {
            k.blocks::<2, 1>(b0, output);
            b0 += 2;
        } else {
            k.blocks::<1, 2>(b0, output);
            b0 += 1;
        }
    }
}

struct Ctx<'a> {
    top: [&'a [i16]; 3],
    bottom: [&'a [i16]; 3],
    s: RowShape,
    pairs: usize,
    blocks: usize,
    packed: &'a [__m256i],
    ch: &'a ChannelVecs,
}

impl Ctx<'_> {
    /// Channel blocks `b0 .. b0 + NB` of every pooled pixel, `P` pooled pixels per tile.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn blocks<const NB: usize, const P: usize>(&self, b0: usize, output: &mut [i8]) {
        let ow = self.s.width.div_ceil(2);
        let mut px = 0;
        while px + P <= ow {
            self.tile::<NB, P>(b0, px, output);
            px += P;
        }
        while px < ow {
            self.tile::<NB, 1>(b0, px, output);
            px += 1;
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn tile<const NB: usize, const P: usize>(&self, b0: usize, px0: usize, output: &mut [i8]) {
        let (w, ci, co) = (self.s.width, self.s.in_channels, self.s.out_channels);
        let pairs = self.pairs;
        let mut acc = [[[_mm256_setzero_si256(); NB]; 4]; P];
        for ky in 0..KERNEL {
            let mut taps: [[&[[i16; 2]]; 4]; P] = [[&[]; 4]; P];
            for (p, t) in taps.iter_mut().enumerate() {
                let x0 = 2 * (px0 + p);
                let x1 = (x0 + 1).min(w - 1);
                let (up, down) = (self.top[ky], self.bottom[ky]);
                for (j, (row, x)) in [(up, x0), (up, x1), (down, x0), (down, x1)]
                    .into_iter()
                    .enumerate()
                {
                    t[j] = &row[x * ci..].as_chunks::<2>().0[..pairs];
                }
            }
            let wk = &self.packed[ky * pairs * self.blocks..][..pairs * self.blocks];
            for q in 0..pairs {
                let wq: &[__m256i; NB] = wk[q * self.blocks + b0..][..NB]
                    .try_into()
                    .expect("NB blocks");
                for p in 0..P {
                    for j in 0..4 {
                        let [lo, hi] = taps[p][j][q];
                        let a = _mm256_set1_epi32((lo as u16 as i32) | ((hi as i32) << 16));
                        for b in 0..NB {
                            acc[p][j][b] =
                                _mm256_add_epi32(acc[p][j][b], _mm256_madd_epi16(a, wq[b]));
                        }
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            let [a0, a1, a2, a3] = acc;
            for (b, (((a0, a1), a2), a3)) in a0.iter().zip(a1).zip(a2).zip(a3).enumerate() {
                let c0 = (b0 + b) * LANES;
                let m = _mm256_max_epi32(_mm256_max_epi32(*a0, *a1), _mm256_max_epi32(*a2, *a3));
                let y = to_array(requant(m, self.ch, c0));
                let n = LANES.min(co - c0);
                for (d, &v) in output[(px0 + p) * co + c0..][..n].iter_mut().zip(&y) {
                    *d = v as i8;
                }
            }
        }
    }
}

/// `acc[o] += Σ_i (input[i] - zp) * weights[o * stride + i]` (see
/// [`dense_acc`](crate::ops::dense_acc)) with i16 products, wrapping (exact within the
/// accumulator bound).
#[target_feature(enable = "avx2")]
pub(super) fn dense_acc(input: &[i8], weights: &[i8], stride: usize, zp: i32, acc: &mut [i32]) {
    super::dense_rows(
        input.len(),
        weights,
        stride,
        acc,
        |rows| dot_rows::<4>(input, rows, zp),
        |rows| dot_rows::<1>(input, rows, zp),
    );
}

/// `Σ_i (x_i - zp) r_i` for each row `r` (all `input.len()` long).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_rows<const R: usize>(input: &[i8], rows: [&[i8]; R], zp: i32) -> [i32; R] {
    let zpv = _mm256_set1_epi16(zp as i16);
    let mut acc = [_mm256_setzero_si256(); R];
    let (chunks, tail) = input.as_chunks::<16>();
    for (i, x) in chunks.iter().enumerate() {
        let xv = _mm256_sub_epi16(load_i8_as_i16(x), zpv);
        for r in 0..R {
            let wv = load_i8_as_i16(rows[r][i * 16..][..16].try_into().expect("16 weights"));
            acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(xv, wv));
        }
    }
    let full = chunks.len() * 16;
    core::array::from_fn(|r| {
        let t: i32 = tail
            .iter()
            .zip(&rows[r][full..])
            .map(|(&x, &w)| (x as i32 - zp) * w as i32)
            .sum();
        hsum(acc[r]).wrapping_add(t)
    })
}
