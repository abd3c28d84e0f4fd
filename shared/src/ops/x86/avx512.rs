//! AVX-512 F + BW + VNNI kernels: u8 x s8 `vpdpbusd`, 16 int32 lanes per vector.
//!
//! Every function here is a safe `#[target_feature]` function; callers must have checked
//! [`KernelLevel::Avx512Vnni`](super::KernelLevel::Avx512Vnni) is available.

use core::arch::x86_64::*;
use std::vec::Vec;

use super::ChannelVecs;
use crate::arch::KERNEL;
use crate::ops::conv::RowShape;

/// Output channels per vector.
const LANES: usize = 16;
/// Taps per `vpdpbusd` lane.
const GROUP: usize = 4;

/// The 64 bytes of `a` as a vector.
#[inline]
#[target_feature(enable = "avx512f")]
fn load<T: bytemuck::Pod, const N: usize>(a: &[T; N]) -> __m512i {
    const { assert!(N * size_of::<T>() == 64) };
    // SAFETY: `a` is 64 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
}

/// The first `a.len()` (< 64) bytes of `a` in the low lanes, zeros above.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn load_i8_partial(a: &[i8]) -> __m512i {
    debug_assert!(a.len() < 64);
    let mask: __mmask64 = (1u64 << a.len()) - 1;
    // SAFETY: the mask selects only the `a.len()` bytes `a` owns; masked-off bytes are
    // neither read nor able to fault.
    unsafe { _mm512_maskz_loadu_epi8(mask, a.as_ptr()) }
}

/// The 16 int32 lanes truncated to bytes (callers pass values already in `-128..=127`).
#[inline]
#[target_feature(enable = "avx512f")]
fn to_bytes(v: __m512i) -> [i8; 16] {
    let mut out = [0i8; 16];
    // SAFETY: `out` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(v)) };
    out
}

/// Length of a padded row (see [`super::padded_len`]): `width + 2` pixels and 4 slack bytes.
pub(super) const fn padded_len(s: RowShape) -> usize {
    super::padded_len(s, GROUP)
}

/// Appends an input row to `buf` as `x ^ 0x80` (= `x + 128` as u8) with one pixel of padding
/// (`zp + 128`) on each side and 4 slack bytes ([`padded_len`] in all); `None` (a row outside
/// the image) is all padding. Taps of pixel `x` then start at byte `x * C_in`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn pad_row(row: Option<&[i8]>, s: RowShape, zp: i8, buf: &mut Vec<u8>) {
    let ci = s.in_channels;
    let pad = (zp as u8) ^ 0x80;
    let start = buf.len();
    buf.resize(start + padded_len(s), pad);
    if let Some(row) = row {
        for (d, &v) in buf[start + ci..][..s.width * ci].iter_mut().zip(row) {
            *d = (v as u8) ^ 0x80;
        }
    }
}

/// Packs `[C_out][3][3][C_in]` weights into `[ky][quad][channel block]` vectors (see
/// [`super::pack_conv`]): lane `l` of block `b` at quad `q` of kernel row `ky` holds the 4
/// weights of channel `16 b + l` at taps `4 q .. 4 q + 4` of that kernel row.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn pack_conv(weights: &[i8], ci: usize, co: usize) -> Vec<__m512i> {
    super::pack_conv(weights, ci, co, GROUP, |v| v as u8, |v: &[u8; 64]| load(v))
}

/// `requantize(acc + bias, m, shift, zp_out, relu)` on 16 channels starting at `c0`, exactly as
/// [`crate::quant::requantize`] (see there for the rounding rules).
#[inline]
#[target_feature(enable = "avx512f")]
fn requant(acc: __m512i, ch: &ChannelVecs, c0: usize) -> __m512i {
    let lanes = |v: &[i32]| load::<i32, 16>(v[c0..c0 + 16].try_into().expect("padded to 16"));
    let x = _mm512_add_epi32(acc, lanes(&ch.bias));
    let m = lanes(&ch.multiplier);
    let right = lanes(&ch.right);
    // x * 2^left, wrapping.
    let a = _mm512_sllv_epi32(x, lanes(&ch.left));
    // SaturatingRoundingDoublingHighMul: floor((a * m + 2^30) / 2^31) equals gemmlowp's
    // nudge-and-truncate for both signs; bits 31..63 of the 64-bit sum are the result.
    let nudge = _mm512_set1_epi64(1 << 30);
    let even = _mm512_srli_epi64::<31>(_mm512_add_epi64(_mm512_mul_epi32(a, m), nudge));
    let odd = _mm512_mul_epi32(_mm512_srli_epi64::<32>(a), _mm512_srli_epi64::<32>(m));
    let odd = _mm512_slli_epi64::<1>(_mm512_add_epi64(odd, nudge));
    let high = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    let min = _mm512_set1_epi32(i32::MIN);
    let overflow = _mm512_cmpeq_epi32_mask(a, min) & _mm512_cmpeq_epi32_mask(m, min);
    let high = _mm512_mask_mov_epi32(high, overflow, _mm512_set1_epi32(i32::MAX));
    // RoundingDivideByPOT: ties away from zero.
    let one = _mm512_set1_epi32(1);
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    let remainder = _mm512_and_si512(high, mask);
    let threshold = _mm512_add_epi32(_mm512_srai_epi32::<1>(mask), _mm512_srli_epi32::<31>(high));
    let q = _mm512_srav_epi32(high, right);
    let q = _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(remainder, threshold), q, one);
    // saturating_add(zp).clamp(lo, 127): pre-clamping to +-512 keeps the add exact and maps
    // every saturated sum to the same side of the final clamp.
    let q = _mm512_min_epi32(
        _mm512_max_epi32(q, _mm512_set1_epi32(-512)),
        _mm512_set1_epi32(512),
    );
    let q = _mm512_add_epi32(q, _mm512_set1_epi32(ch.zp_out));
    _mm512_min_epi32(
        _mm512_max_epi32(q, _mm512_set1_epi32(ch.lo)),
        _mm512_set1_epi32(127),
    )
}

/// One pooled row (see [`super`]): `top` and `bottom` are the padded kernel rows of conv rows
/// `2py` and `2py + 1` (`bottom` is `None` at an odd bottom edge), as made by [`pad_row`];
/// `packed` comes from [`pack_conv`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn conv_pool_row(
    top: [&[u8]; 3],
    bottom: Option<[&[u8]; 3]>,
    s: RowShape,
    packed: &[__m512i],
    ch: &ChannelVecs,
    output: &mut [i8],
) {
    let (quads, blocks) = super::check_conv_pool_row(top, bottom, s, (GROUP, LANES), packed.len());
    let k = Ctx {
        top,
        bottom: bottom.unwrap_or(top),
        has_bottom: bottom.is_some(),
        s,
        quads,
        blocks,
        packed,
        ch,
    };
    // 16 accumulators per tile: 4 conv pixels x (NB channel blocks x P pooled pixels) = 16.
    let mut b0 = 0;
    while b0 < blocks {
        match blocks - b0 {
            1 => {
                k.blocks::<1, 4>(b0, output);
                b0 += 1;
            }
            2 | 3 => {
                k.blocks::<2, 2>(b0, output);
                b0 += 2;
            }
            _ => {
                k.blocks::<4, 1>(b0, output);
                b0 += 4;
            }
        }
    }
}

struct Ctx<'a> {
    top: [&'a [u8]; 3],
    bottom: [&'a [u8]; 3],
    has_bottom: bool,
    s: RowShape,
    quads: usize,
    blocks: usize,
    packed: &'a [__m512i],
    ch: &'a ChannelVecs,
}

/// The conv pixels of a pool window, as `(bottom row?, column offset)`.
type Window<const J: usize> = [(bool, usize); J];
/// Two rows, two columns.
const FULL: Window<4> = [(false, 0), (false, 1), (true, 0), (true, 1)];
/// The last pooled row of an odd height: the top row only.
const TOP: Window<2> = [(false, 0), (false, 1)];
/// The last pooled column of an odd width: the left column only.
const LEFT: Window<2> = [(false, 0), (true, 0)];
/// Both at once.
const CORNER: Window<1> = [(false, 0)];

impl Ctx<'_> {
    /// Channel blocks `b0 .. b0 + NB` of every pooled pixel of the row, `P` pooled pixels per
    /// tile. Windows at an odd bottom or right edge hold only the conv pixels that exist.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn blocks<const NB: usize, const P: usize>(&self, b0: usize, output: &mut [i8]) {
        let pairs = self.s.width / 2;
        let odd = self.s.width % 2 == 1;
        if self.has_bottom {
            self.run::<NB, P, 4>(b0, pairs, FULL, output);
            if odd {
                self.tile::<NB, 1, 2>(b0, pairs, LEFT, output);
            }
        } else {
            self.run::<NB, P, 2>(b0, pairs, TOP, output);
            if odd {
                self.tile::<NB, 1, 1>(b0, pairs, CORNER, output);
            }
        }
    }

    /// Pooled pixels `0..n`, `P` per tile, each window `win`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn run<const NB: usize, const P: usize, const J: usize>(
        &self,
        b0: usize,
        n: usize,
        win: Window<J>,
        output: &mut [i8],
    ) {
        let mut px = 0;
        while px + P <= n {
            self.tile::<NB, P, J>(b0, px, win, output);
            px += P;
        }
        while px < n {
            self.tile::<NB, 1, J>(b0, px, win, output);
            px += 1;
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn tile<const NB: usize, const P: usize, const J: usize>(
        &self,
        b0: usize,
        px0: usize,
        win: Window<J>,
        output: &mut [i8],
    ) {
        let (ci, co) = (self.s.in_channels, self.s.out_channels);
        let quads = self.quads;
        let mut acc = [[[_mm512_setzero_si512(); NB]; J]; P];
        for ky in 0..KERNEL {
            let mut taps: [[&[[u8; 4]]; J]; P] = [[&[]; J]; P];
            for (p, t) in taps.iter_mut().enumerate() {
                let x0 = 2 * (px0 + p);
                for (t, &(bottom, dx)) in t.iter_mut().zip(&win) {
                    let row = if bottom {
                        self.bottom[ky]
                    } else {
                        self.top[ky]
                    };
                    *t = &row[(x0 + dx) * ci..].as_chunks::<4>().0[..quads];
                }
            }
            let wk = &self.packed[ky * quads * self.blocks..][..quads * self.blocks];
            for q in 0..quads {
                let wq: &[__m512i; NB] = wk[q * self.blocks + b0..][..NB]
                    .try_into()
                    .expect("NB blocks");
                for p in 0..P {
                    for j in 0..J {
                        let a = _mm512_set1_epi32(i32::from_le_bytes(taps[p][j][q]));
                        for b in 0..NB {
                            acc[p][j][b] = _mm512_dpbusd_epi32(acc[p][j][b], a, wq[b]);
                        }
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            for b in 0..NB {
                let c0 = (b0 + b) * LANES;
                let m = acc[1..]
                    .iter()
                    .fold(acc[0][b], |m, a| _mm512_max_epi32(m, a[b]));
                let y = to_bytes(requant(m, self.ch, c0));
                let out = &mut output[(px0 + p) * co + c0..];
                match out.first_chunk_mut::<LANES>() {
                    // A fixed-size copy is one store; a variable one is a memcpy call.
                    Some(dst) if co - c0 >= LANES => *dst = y,
                    _ => {
                        let n = co - c0;
                        out[..n].copy_from_slice(&y[..n]);
                    }
                }
            }
        }
    }
}

/// `acc[o] += Σ_i (input[i] - zp) * weights[o * stride + i]` (see
/// [`dense_acc`](crate::ops::dense_acc)): `Σ (x + 128) w - (zp + 128) Σ w`, wrapping
/// (exact within the accumulator bound).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn dense_acc(input: &[i8], weights: &[i8], stride: usize, zp: i32, acc: &mut [i32]) {
    let k = _mm512_set1_epi32(zp + 128);
    super::dense_rows(
        input.len(),
        weights,
        stride,
        acc,
        |rows| dot_rows::<4>(input, rows, k),
        |rows| dot_rows::<1>(input, rows, k),
    );
}

/// `Σ_i (x_i + 128) r_i - k Σ_i r_i` for each row `r` (all `input.len()` long).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn dot_rows<const R: usize>(input: &[i8], rows: [&[i8]; R], k: __m512i) -> [i32; R] {
    let n = input.len();
    let flip = _mm512_set1_epi8(i8::MIN);
    let ones = _mm512_set1_epi8(1);
    let mut xw = [_mm512_setzero_si512(); R];
    let mut w = [_mm512_setzero_si512(); R];
    let full = n / 64 * 64;
    let (body, tail) = input.split_at(full);
    let (chunks, _) = body.as_chunks::<64>();
    for (i, x) in chunks.iter().enumerate() {
        let u = _mm512_xor_si512(load(x), flip);
        for r in 0..R {
            let wv = load::<i8, 64>(rows[r][i * 64..][..64].try_into().expect("64 weights"));
            xw[r] = _mm512_dpbusd_epi32(xw[r], u, wv);
            w[r] = _mm512_dpbusd_epi32(w[r], ones, wv);
        }
    }
    if !tail.is_empty() {
        // The weights are zero past the tail, so those lanes add nothing to either sum.
        let u = _mm512_xor_si512(load_i8_partial(tail), flip);
        for r in 0..R {
            let wv = load_i8_partial(&rows[r][full..]);
            xw[r] = _mm512_dpbusd_epi32(xw[r], u, wv);
            w[r] = _mm512_dpbusd_epi32(w[r], ones, wv);
        }
    }
    core::array::from_fn(|r| {
        _mm512_reduce_add_epi32(_mm512_sub_epi32(xw[r], _mm512_mullo_epi32(w[r], k)))
    })
}
