//! Conv 3x3 stride 1 SAME + bias + requantize + ReLU clamp, fused with max-pool 2x2 SAME.
//!
//! The row kernel [`conv3x3_pool_row`] is the one definition: it produces one pooled output
//! row from the four input rows it reads. The whole-map [`conv3x3_pool`] is a loop over it,
//! and the streaming forward pass feeds it from ring buffers. Both take the layer's
//! [`Weights`] at either bit width.

use super::dense::dot_s4;
use super::requant::{dot_s8, ChannelParams, Requant};
use crate::arch::KERNEL;
use crate::weights::{unpack_s4, Weights};

/// Shape of a 3x3 convolution: input `height x width x in_channels` (HWC), weights
/// `[out_channels][3][3][in_channels]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (filters).
    pub out_channels: usize,
}

impl ConvShape {
    /// `height * width * in_channels`.
    pub const fn input_len(&self) -> usize {
        self.height * self.width * self.in_channels
    }

    /// `out_channels * 9 * in_channels`.
    pub const fn weight_len(&self) -> usize {
        self.out_channels * KERNEL * KERNEL * self.in_channels
    }

    /// Pooled output `(ceil(h/2), ceil(w/2))`.
    pub const fn pooled_hw(&self) -> (usize, usize) {
        (self.height.div_ceil(2), self.width.div_ceil(2))
    }

    /// Pooled output length, `ceil(h/2) * ceil(w/2) * out_channels`.
    pub const fn pooled_len(&self) -> usize {
        let (h, w) = self.pooled_hw();
        h * w * self.out_channels
    }

    /// The per-row shape (everything but the height).
    pub const fn row(&self) -> RowShape {
        RowShape {
            width: self.width,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
        }
    }
}

/// Shape of one row of a 3x3 convolution: input rows of `width x in_channels` (HWC), weights
/// `[out_channels][3][3][in_channels]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowShape {
    /// Input (and conv output) width.
    pub width: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (filters).
    pub out_channels: usize,
}

impl RowShape {
    /// Values in one input row, `width * in_channels`.
    pub const fn input_row_len(&self) -> usize {
        self.width * self.in_channels
    }

    /// Values in one pooled output row, `ceil(width/2) * out_channels`.
    pub const fn pooled_row_len(&self) -> usize {
        self.width.div_ceil(2) * self.out_channels
    }

    /// `out_channels * 9 * in_channels`.
    pub const fn weight_len(&self) -> usize {
        self.out_channels * KERNEL * KERNEL * self.in_channels
    }
}

/// The input rows that pooled output row `py` reads: `rows[i]` is input row `2 * py - 1 + i`,
/// or `None` where that row lies outside the image.
///
/// Invariants: `rows[1]` is always `Some` (a pooled row starts inside the image); conv row
/// `2 * py + 1` exists iff `rows[2]` is `Some`; `rows[3]` is `None` whenever `rows[2]` is.
pub type PoolRows<'a> = [Option<&'a [i8]>; 4];

/// The [`PoolRows`] of pooled row `py` of an HWC map `height x row_len`.
pub fn pool_rows(input: &[i8], height: usize, row_len: usize, py: usize) -> PoolRows<'_> {
    let mut rows = [None; 4];
    for (i, r) in rows.iter_mut().enumerate() {
        let y = (2 * py + i).wrapping_sub(1);
        if y < height {
            *r = Some(&input[y * row_len..][..row_len]);
        }
    }
    rows
}

/// Largest `C_in` the patch path handles: four `9 * C_in` i16 patches live on the stack
/// (`4 * 9 * 64 * 2 = 4608` bytes, like CMSIS-NN's q15 im2col buffer). Wider inputs take the
/// row path, which needs no buffer.
pub const PATCH_MAX_IN_CHANNELS: usize = 64;

/// One pooled output row of the fused conv 3x3 stride 1 SAME + bias + requantize (+ ReLU clamp)
/// + max-pool 2x2 stride 2 SAME.
///
/// - `rows`: the four input rows of this pooled row (see [`PoolRows`]), each
///   `shape.input_row_len()` int8 values with zero point `rq.input_zero_point`.
/// - `weights`: `[C_out][3][3][C_in]` (symmetric, zero point 0): int8 in [-127, 127], or int4
///   in [-7, 7] packed two per byte, low nibble first (a channel may start mid-byte).
/// - `output`: `shape.pooled_row_len()` values, `ceil(w/2) x C_out`.
/// - SAME conv padding is 1 pixel of the input zero point on every side; the SAME pool window
///   at an odd bottom/right edge covers only existing pixels (TensorFlow's rule, 7 -> 4).
///
/// The full-resolution conv output is never stored. For each pooled pixel and channel the
/// kernel takes the max of the (up to 4) int32 accumulators and requantizes once: with a
/// multiplier `>= 0`, `acc -> clamp(MBQM(acc + bias) + zp, lo, 127)` is monotonic
/// non-decreasing, so `max(requant(a_i)) == requant(max(a_i))`. The equality with
/// [`reference::conv3x3`](super::reference::conv3x3) followed by
/// [`reference::maxpool2x2`](super::reference::maxpool2x2) is property-tested.
///
/// Int8 weights run the Cortex-M DSP or x86 kernel where there is one; int4 weights run the
/// portable kernel everywhere.
///
/// Accumulator bound: `255 * 127 * 9 * C_in + |bias| <= i32::MAX` (debug-asserted, the int8
/// bound covers int4; [`Arch::validate`](crate::Arch::validate) and blob loading guarantee it
/// for models).
///
/// # Panics
/// If a slice length does not match `shape`, `rows` breaks its invariants, or (debug builds) a
/// multiplier is negative.
pub fn conv3x3_pool_row<P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    shape: RowShape,
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    check_row_args(rows, shape, weights, rq, output);
    #[cfg(all(tinycnn_arm_dsp, not(feature = "portable")))]
    if let Weights::S8(w) = weights {
        if super::arm_dsp::conv3x3_pool_row_s8_dsp(rows, shape, w, rq, output) {
            return;
        }
    }
    #[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
    if let Weights::S8(w) = weights {
        if super::x86::conv3x3_pool_row_s8(rows, shape, w, rq, output) {
            return;
        }
    }
    pool_row_portable(rows, shape, weights, rq, output);
}

/// Runs `f` with the conv weight slices `weights` pinned: they stay borrowed, so unchanged,
/// for the whole call, and an optimized kernel that caches a packed copy of a pinned slice
/// compares it with the slice once per `pin_weights` call instead of on every
/// [`conv3x3_pool_row`] call (a few percent of `fashion` run row by row; the
/// `conv_rows_fashion` benchmark). Results are the same with or without it; without an
/// optimized kernel it just calls `f`.
///
/// A streaming forward pass wraps its row loop in this, pinning every conv layer's weights.
pub fn pin_weights<R>(weights: &[&[i8]], f: impl FnOnce() -> R) -> R {
    #[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
    return super::x86::pin_weights(weights, f);
    #[cfg(not(all(target_arch = "x86_64", feature = "std", not(feature = "portable"))))]
    {
        let _ = weights;
        f()
    }
}

/// The portable [`conv3x3_pool_row`], whatever the target: the baseline that optimized
/// variants are tested against on their own target. Same contract.
#[doc(hidden)]
pub fn conv3x3_pool_row_portable<P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    shape: RowShape,
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    check_row_args(rows, shape, weights, rq, output);
    pool_row_portable(rows, shape, weights, rq, output);
}

/// The argument checks of [`conv3x3_pool_row`] (its `# Panics`).
fn check_row_args<P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    shape: RowShape,
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &[i8],
) {
    check_row_shape(rows, shape, output);
    check_weights(shape, weights, rq);
}

/// The shape checks of every row kernel entry point.
fn check_row_shape(rows: PoolRows<'_>, shape: RowShape, output: &[i8]) {
    let s = shape;
    assert!(s.width > 0, "conv3x3_pool_row: empty row");
    assert!(rows[1].is_some(), "conv3x3_pool_row: rows[1] is missing");
    assert!(
        rows[2].is_some() || rows[3].is_none(),
        "conv3x3_pool_row: rows[3] without rows[2]"
    );
    for r in rows.iter().flatten() {
        assert_eq!(
            r.len(),
            s.input_row_len(),
            "conv3x3_pool_row: input row length"
        );
    }
    assert_eq!(
        output.len(),
        s.pooled_row_len(),
        "conv3x3_pool_row: output length"
    );
}

/// The weight checks every conv entry point makes: the stored length (always), the
/// accumulator bound, the int8 weight range and multipliers `>= 0` (debug builds).
fn check_weights<P: ChannelParams + ?Sized>(s: RowShape, weights: Weights<'_>, rq: &Requant<P>) {
    assert_eq!(
        weights.as_bytes().len(),
        weights.bits().bytes(s.weight_len()),
        "conv3x3_pool: weights length"
    );
    if let Weights::S8(w) = weights {
        debug_assert!(
            !w.contains(&i8::MIN),
            "conv3x3_pool: weights must be in [-127, 127]"
        );
    }
    check_requant(s, rq);
}

/// The accumulator bound and multipliers `>= 0` (debug builds).
fn check_requant<P: ChannelParams + ?Sized>(s: RowShape, rq: &Requant<P>) {
    rq.debug_assert_bound(KERNEL * KERNEL * s.in_channels, s.out_channels);
    if cfg!(debug_assertions) {
        for o in 0..s.out_channels {
            assert!(
                rq.params.multiplier(o) >= 0,
                "negative multiplier breaks pooling order"
            );
        }
    }
}

/// How the portable row kernels read one layer's conv weights, `[C_out][3][3][C_in]` at
/// either bit width.
trait ConvWeights {
    /// The `taps` weights of output channel `o` as int8: borrowed as stored, or unpacked into
    /// `buf` (`taps <= buf.len()`).
    fn channel<'s>(&'s self, o: usize, taps: usize, buf: &'s mut [i8]) -> &'s [i8];
    /// `Σ (x[i] - zp) * w[at + i]`, element `at` of the flat weights onward.
    fn dot(&self, x: &[i8], at: usize, zp: i32) -> i32;
}

impl ConvWeights for [i8] {
    #[inline(always)]
    fn channel<'s>(&'s self, o: usize, taps: usize, _: &'s mut [i8]) -> &'s [i8] {
        &self[o * taps..][..taps]
    }

    #[inline(always)]
    fn dot(&self, x: &[i8], at: usize, zp: i32) -> i32 {
        dot_s8(x, &self[at..][..x.len()], zp)
    }
}

/// Packed int4 conv weights (see [`crate::weights`]).
struct PackedS4<'a>(&'a [u8]);

impl ConvWeights for PackedS4<'_> {
    #[inline(always)]
    fn channel<'s>(&'s self, o: usize, taps: usize, buf: &'s mut [i8]) -> &'s [i8] {
        unpack_s4(self.0, o * taps, &mut buf[..taps]);
        &buf[..taps]
    }

    #[inline(always)]
    fn dot(&self, x: &[i8], at: usize, zp: i32) -> i32 {
        dot_s4(x, self.0, at, zp)
    }
}

/// The portable row kernel at the layer's bit width.
fn pool_row_portable<P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    match weights {
        Weights::S8(w) => pool_row_of(rows, s, w, rq, output),
        Weights::S4(w) => pool_row_of(rows, s, &PackedS4(w), rq, output),
    }
}

/// The portable row kernel for weights read through `W`: the patch path up to
/// [`PATCH_MAX_IN_CHANNELS`] input channels, the direct path above.
fn pool_row_of<P: ChannelParams + ?Sized, W: ConvWeights + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: &W,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    if s.in_channels <= PATCH_MAX_IN_CHANNELS {
        pool_row_patches(rows, s, weights, rq, output);
    } else {
        pool_row_direct(rows, s, weights, rq, output);
    }
}

/// Fused conv 3x3 + pool over a whole HWC map: [`conv3x3_pool_row`] for every pooled row
/// (int8 weights on x86 take a whole-map kernel that packs its input once).
///
/// - `input`: HWC, `shape.input_len()` int8 values with zero point `rq.input_zero_point`.
/// - `weights`: `[C_out][3][3][C_in]` at either bit width, as for [`conv3x3_pool_row`].
/// - `output`: HWC, `shape.pooled_len()` values, `ceil(h/2) x ceil(w/2) x C_out`.
///
/// # Panics
/// If a slice length does not match `shape`.
pub fn conv3x3_pool<P: ChannelParams + ?Sized>(
    input: &[i8],
    shape: ConvShape,
    weights: Weights<'_>,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    check_map_shape(input, shape, output);
    check_weights(shape.row(), weights, rq);
    #[cfg(all(target_arch = "x86_64", feature = "std", not(feature = "portable")))]
    if let Weights::S8(w) = weights {
        if super::x86::conv3x3_pool_s8(input, shape, w, rq, output) {
            return;
        }
    }
    let row = shape.row();
    let out_rows = output.chunks_exact_mut(row.pooled_row_len());
    for (py, out) in out_rows.enumerate() {
        let rows = pool_rows(input, shape.height, row.input_row_len(), py);
        conv3x3_pool_row(rows, row, weights, rq, out);
    }
}

/// The shape checks of the whole-map entry points.
fn check_map_shape(input: &[i8], s: ConvShape, output: &[i8]) {
    assert!(s.height > 0 && s.width > 0, "conv3x3_pool: empty input");
    assert_eq!(input.len(), s.input_len(), "conv3x3_pool: input length");
    assert_eq!(output.len(), s.pooled_len(), "conv3x3_pool: output length");
}

/// Writes the SAME 3x3 patch whose kernel rows are `rows` (input rows y-1, y, y+1; `None` is
/// padding), centred on column `x`, as `x - zp` into `patch` (`[3][3][C_in]` i16); padding taps
/// are 0.
#[inline(always)]
fn gather(rows: [Option<&[i8]>; 3], s: &RowShape, zp: i16, x: usize, patch: &mut [i16]) {
    let (w, ci) = (s.width, s.in_channels);
    for (ky, row) in rows.iter().enumerate() {
        let dst = &mut patch[ky * 3 * ci..][..3 * ci];
        let Some(row) = row else {
            dst.fill(0);
            continue;
        };
        for kx in 0..KERNEL {
            let xx = x + kx;
            let tap = &mut dst[kx * ci..][..ci];
            if xx == 0 || xx > w {
                tap.fill(0);
            } else {
                for (d, &v) in tap.iter_mut().zip(&row[(xx - 1) * ci..][..ci]) {
                    *d = v as i16 - zp;
                }
            }
        }
    }
}

/// Four dot products `Σ p_k * w` sharing one weight row. `|p| <= 255`, `|w| <= 127`.
#[inline(always)]
fn dot4(p: [&[i16]; 4], w: &[i8]) -> [i32; 4] {
    let n = w.len();
    let (p0, p1, p2, p3) = (&p[0][..n], &p[1][..n], &p[2][..n], &p[3][..n]);
    let mut acc = [0i32; 4];
    for i in 0..n {
        // i16 operands widened to i32 before the multiply: the shape x86 matches to pmaddwd.
        let wi = w[i] as i16 as i32;
        acc[0] += p0[i] as i32 * wi;
        acc[1] += p1[i] as i32 * wi;
        acc[2] += p2[i] as i32 * wi;
        acc[3] += p3[i] as i32 * wi;
    }
    acc
}

#[inline(always)]
fn max4(a: [i32; 4]) -> i32 {
    a[0].max(a[1]).max(a[2].max(a[3]))
}

/// The kernel rows of conv rows `2py` (top) and `2py + 1` (bottom). A pool window hanging over
/// the bottom edge repeats its top row: max is idempotent, so the duplicate changes nothing.
#[inline(always)]
#[allow(clippy::type_complexity)]
pub(super) fn conv_rows(rows: PoolRows<'_>) -> ([Option<&[i8]>; 3], [Option<&[i8]>; 3]) {
    let top = [rows[0], rows[1], rows[2]];
    let bottom = if rows[2].is_some() {
        [rows[1], rows[2], rows[3]]
    } else {
        top
    };
    (top, bottom)
}

fn pool_row_patches<P: ChannelParams + ?Sized, W: ConvWeights + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: &W,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    const PATCH: usize = KERNEL * KERNEL * PATCH_MAX_IN_CHANNELS;
    let taps = KERNEL * KERNEL * s.in_channels;
    let ow = s.width.div_ceil(2);
    let co = s.out_channels;
    let zp = rq.input_zero_point as i16;
    let (top, bottom) = conv_rows(rows);
    let mut patches = [[0i16; PATCH]; 4];
    // Unpacked weights of one channel (int4); int8 weights are read in place.
    let mut unpacked = [0i8; PATCH];
    for px in 0..ow {
        // A window hanging over the right edge repeats its left column (max is idempotent).
        let x1 = (2 * px + 1).min(s.width - 1);
        let [a, b, c, d] = &mut patches;
        gather(top, &s, zp, 2 * px, &mut a[..taps]);
        gather(top, &s, zp, x1, &mut b[..taps]);
        gather(bottom, &s, zp, 2 * px, &mut c[..taps]);
        gather(bottom, &s, zp, x1, &mut d[..taps]);
        let p = [&a[..taps], &b[..taps], &c[..taps], &d[..taps]];
        let out = &mut output[px * co..][..co];
        for (o, dst) in out.iter_mut().enumerate() {
            let wk = weights.channel(o, taps, &mut unpacked);
            *dst = rq.apply(o, max4(dot4(p, wk)));
        }
    }
}

/// The int32 accumulator `Σ (x - zp) * w` of the SAME 3x3 convolution at column `x` for output
/// channel `o` (weights `[3][3][C_in]` from element `o * 9 * C_in` of `weights`), with kernel
/// rows `rows`. Padding contributes nothing (it is the zero point, real 0).
#[inline(always)]
fn conv_at<W: ConvWeights + ?Sized>(
    rows: [Option<&[i8]>; 3],
    s: &RowShape,
    zp: i32,
    weights: &W,
    o: usize,
    x: usize,
) -> i32 {
    let (w, ci) = (s.width, s.in_channels);
    let x_lo = x.saturating_sub(1);
    let x_hi = (x + 1).min(w - 1);
    let run = (x_hi + 1 - x_lo) * ci;
    let kx_lo = x_lo + 1 - x;
    let mut acc = 0;
    for (ky, row) in rows.iter().enumerate() {
        if let Some(row) = row {
            let at = (o * KERNEL * KERNEL + ky * 3 + kx_lo) * ci;
            acc += weights.dot(&row[x_lo * ci..][..run], at, zp);
        }
    }
    acc
}

fn pool_row_direct<P: ChannelParams + ?Sized, W: ConvWeights + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: &W,
    rq: &Requant<P>,
    output: &mut [i8],
) {
    let ow = s.width.div_ceil(2);
    let co = s.out_channels;
    let zp = rq.input_zero_point as i32;
    let (top, bottom) = conv_rows(rows);
    for px in 0..ow {
        let x1 = (2 * px + 1).min(s.width - 1);
        let out = &mut output[px * co..][..co];
        for (o, dst) in out.iter_mut().enumerate() {
            let best = conv_at(top, &s, zp, weights, o, 2 * px)
                .max(conv_at(top, &s, zp, weights, o, x1))
                .max(conv_at(bottom, &s, zp, weights, o, 2 * px))
                .max(conv_at(bottom, &s, zp, weights, o, x1));
            *dst = rq.apply(o, best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::requant::{ChannelSlices, HALF};

    /// 3x3x1 input, zero point -1 (so x - zp = x + 1), one filter that sums the 3x3
    /// neighbourhood, multiplier 0.5, output zero point 0, ReLU.
    const INPUT: [i8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, -1];
    const WEIGHTS: [i8; 9] = [1; 9];
    // x - zp = [1 2 3; 4 5 6; 7 8 0]. Full-res SAME sums:
    // (0,0)=1+2+4+5=12 (0,1)=1+2+3+4+5+6=21 (0,2)=2+3+5+6=16
    // (1,0)=1+2+4+5+7+8=27 (1,1)=36 (1,2)=2+3+5+6+8+0=24
    // (2,0)=4+5+7+8=24 (2,1)=4+5+6+7+8+0=30 (2,2)=5+6+8+0=19
    // Pooled max: [36, 24; 30, 19]; + bias 2 -> [38, 26; 32, 21]; * 0.5 -> [19, 13; 16, 10.5->11]
    const EXPECTED: [i8; 4] = [19, 13, 16, 11];

    const SHAPE: ConvShape = ConvShape {
        height: 3,
        width: 3,
        in_channels: 1,
        out_channels: 1,
    };

    #[test]
    fn hand_computed_3x3() {
        let params = ChannelSlices { bias: &[2], ..HALF };
        let mut out = [0i8; 4];
        conv3x3_pool(
            &INPUT,
            SHAPE,
            Weights::S8(&WEIGHTS),
            &Requant::test(&params, -1, 0, true),
            &mut out,
        );
        assert_eq!(out, EXPECTED);
    }

    #[test]
    fn relu_clamps_at_output_zero_point() {
        // Negated filter: every accumulator is negative, so ReLU gives the zero point.
        let mut out = [0i8; 4];
        conv3x3_pool(
            &INPUT,
            SHAPE,
            Weights::S8(&[-1; 9]),
            &Requant::test(&HALF, -1, -7, true),
            &mut out,
        );
        assert_eq!(out, [-7; 4]);
    }
}
