//! Cortex-M DSP-extension kernels (thumbv7em: M4, M7) in stable inline `asm!`.
//!
//! The only module of the crate with `unsafe` code. Each `asm!` block sits in a safe function
//! that checks, before the block runs, every bound the block relies on.
//!
//! Both kernels multiply with `SMLAD` (two 16x16 products added to a 32-bit accumulator) on
//! operands in "unordered" pairs: for four int8 values `v0 v1 v2 v3` in one little-endian word,
//! `SXTB16 v` gives the i16 pair `[v0, v2]` (low half, high half) and `SXTB16 v, ROR #8` gives
//! `[v1, v3]`. Activations are widened once into the same order, with the input zero point
//! folded in by `SXTAB16` (`[x0 - zp, x2 - zp]`, exact: `|x - zp| <= 255` fits i16), so the
//! weights, read straight from the model (flash), need no repacking.
//!
//! Results equal [`reference`](super::reference) bit for bit: the kernels compute the same
//! integer sums in another order, and no partial sum can overflow under the accumulator bound
//! the callers check (`SMLAD` adds modulo 2^32; the bound keeps every partial sum in i32).

use core::arch::asm;

use super::conv::{conv_rows, PoolRows, RowShape, PATCH_MAX_IN_CHANNELS};
use super::requant::{ChannelParams, Requant};
use crate::arch::KERNEL;

/// Input columns a dense run widens at a time (2 KiB of i16 pairs on the stack).
const DENSE_CHUNK: usize = 1024;

/// Most tap groups (4 taps each) in one conv patch: `ceil(9 * 64 / 4)`.
const MAX_GROUPS: usize = (KERNEL * KERNEL * PATCH_MAX_IN_CHANNELS).div_ceil(4);

/// `SXTAB16` twice: the four int8 values of `x` minus the zero point, as the i16 pairs
/// `([x0 - zp, x2 - zp], [x1 - zp, x3 - zp])`. `neg_zp` is `-zp` in both halves.
#[inline(always)]
fn widen_sub_zp(x: u32, neg_zp: u32) -> (u32, u32) {
    let even: u32;
    let odd: u32;
    // SAFETY: register-only arithmetic (no memory, no stack, no flags); `sxtab16` is part of
    // the DSP extension this module is compiled for.
    unsafe {
        asm!(
            "sxtab16 {even}, {nzp}, {x}",
            "sxtab16 {odd}, {nzp}, {x}, ror #8",
            even = out(reg) even,
            odd = lateout(reg) odd,
            nzp = in(reg) neg_zp,
            x = in(reg) x,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    (even, odd)
}

/// `-zp` in both i16 halves of a word, the `SXTAB16` addend of [`widen_sub_zp`].
#[inline(always)]
fn neg_zp_pair(zp: i32) -> u32 {
    let half = (zp.wrapping_neg() as u32) & 0xffff;
    half | (half << 16)
}

/// Loads 4 bytes of `src` at `i` as a little-endian word (one unaligned `LDR`).
#[inline(always)]
fn word_at(src: &[i8], i: usize) -> u32 {
    let b = &src[i..i + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

/// The im2col patches of the four conv positions of one pool window, as i16 `x - zp` in the
/// unordered pair layout, interleaved by position: group `g` (taps `4g..4g + 4` of the flat
/// `[3][3][C_in]` patch) of position `j` is words `8g + 2j` (`[p_4g, p_4g+2]`) and
/// `8g + 2j + 1` (`[p_4g+1, p_4g+3]`). One `LDM` of 4 words then feeds four `SMLAD`s of two
/// positions.
/// Padding taps, and the taps of a last partial group past `9 * C_in`, are 0.
#[repr(C, align(8))]
struct Patches([u32; 8 * MAX_GROUPS]);

/// Writes the widened bytes of `src` (a multiple of 4 long) as groups `g0..` of position `j`.
#[inline(always)]
fn put_groups(patch: &mut Patches, g0: usize, j: usize, src: &[i8], neg_zp: u32) {
    let groups = src.len() / 4;
    let dst = &mut patch.0[8 * g0..][..8 * groups];
    for (d, x) in dst.chunks_exact_mut(8).zip(src.chunks_exact(4)) {
        let (even, odd) = widen_sub_zp(word_at(x, 0), neg_zp);
        d[2 * j] = even;
        d[2 * j + 1] = odd;
    }
}

/// Zeroes groups `g0..g0 + groups` of position `j` (padding).
#[inline(always)]
fn zero_groups(patch: &mut Patches, g0: usize, j: usize, groups: usize) {
    for d in patch.0[8 * g0..][..8 * groups].chunks_exact_mut(8) {
        d[2 * j] = 0;
        d[2 * j + 1] = 0;
    }
}

/// Fills position `j` of `patch` with the SAME 3x3 patch centred on column `x` of the kernel
/// rows `rows` (input rows y-1, y, y+1; `None` is padding).
///
/// `C_in % 4 == 0`: each in-image run of a kernel row is whole groups, widened straight from
/// the input row. Otherwise the taps are first copied into `flat` (padding as the zero point,
/// which widens to 0), then widened as one run.
// Not inlined: it runs once per position for all output channels, and four inlined copies per
// kernel variant would cost kilobytes of flash.
#[inline(never)]
fn gather(
    rows: [Option<&[i8]>; 3],
    s: &RowShape,
    zp: i8,
    x: usize,
    j: usize,
    patch: &mut Patches,
    flat: &mut [i8; 4 * MAX_GROUPS],
) {
    let (w, ci) = (s.width, s.in_channels);
    let neg_zp = neg_zp_pair(zp as i32);
    let x_lo = x.saturating_sub(1);
    let x_hi = (x + 1).min(w - 1);
    let kx_lo = x_lo + 1 - x;
    let kx_hi = x_hi + 1 - x;
    if ci % 4 == 0 {
        let g_tap = ci / 4;
        for (ky, row) in rows.iter().enumerate() {
            let g_row = ky * 3 * g_tap;
            match row {
                None => zero_groups(patch, g_row, j, 3 * g_tap),
                Some(row) => {
                    zero_groups(patch, g_row, j, kx_lo * g_tap);
                    let run = &row[x_lo * ci..(x_hi + 1) * ci];
                    put_groups(patch, g_row + kx_lo * g_tap, j, run, neg_zp);
                    zero_groups(patch, g_row + (kx_hi + 1) * g_tap, j, (2 - kx_hi) * g_tap);
                }
            }
        }
    } else {
        let taps = KERNEL * KERNEL * ci;
        let padded = taps.next_multiple_of(4);
        let flat = &mut flat[..padded];
        flat.fill(zp);
        for (ky, row) in rows.iter().enumerate() {
            if let Some(row) = row {
                let run = &row[x_lo * ci..(x_hi + 1) * ci];
                flat[(ky * 3 + kx_lo) * ci..][..run.len()].copy_from_slice(run);
            }
        }
        put_groups(patch, 0, j, flat, neg_zp);
    }
}

/// The `asm!` text of a dot loop over whole groups: `$group!()` is one group, which reads one
/// weight word at `$ptr` and post-increments it; the loop ends when `$ptr` reaches `$end`, the
/// end of the weights (at least one group: `$ptr != $end` on entry). An odd count runs one
/// group before the loop of two. Clobbers `r8` (as every group does) and the flags.
#[rustfmt::skip]
macro_rules! group_loop {
    ($group:ident, $ptr:literal, $end:literal) => {
        concat!(
            "sub r8, ", $end, ", ", $ptr, "\n",
            "tst r8, #4\n",
            "beq 2f\n",
            $group!(),
            "cmp ", $ptr, ", ", $end, "\n",
            "beq 3f\n",
            "2:\n",
            $group!(),
            $group!(),
            "cmp ", $ptr, ", ", $end, "\n",
            "bne 2b\n",
            "3:\n",
        )
    };
}

/// One group of the conv dot loop: weights word at `r4` (post-incremented), positions 0..3 at
/// `r5` (8 words, post-incremented), accumulators `r0..r3`; clobbers `r8..r12`, `lr`.
///
/// `LDM` brings two positions' pairs (4 words) per instruction; it loads the lowest address
/// into the lowest-numbered register, so `r8..r11` are `[A_j, B_j, A_j+1, B_j+1]`. 13
/// instructions per 16 MACs. On a real M4/M7 a 4-register `LDM` takes about the cycles of two
/// `LDRD`s, so this is the faster shape there too, not only under QEMU's instruction count.
macro_rules! conv_group {
    () => {
        concat!(
            "ldr r12, [r4], #4\n",
            "sxtb16 lr, r12, ror #8\n",
            "sxtb16 r12, r12\n",
            "ldm r5!, {{r8, r9, r10, r11}}\n",
            "smlad r0, r8, r12, r0\n",
            "smlad r0, r9, lr, r0\n",
            "smlad r1, r10, r12, r1\n",
            "smlad r1, r11, lr, r1\n",
            "ldm r5!, {{r8, r9, r10, r11}}\n",
            "smlad r2, r8, r12, r2\n",
            "smlad r2, r9, lr, r2\n",
            "smlad r3, r10, r12, r3\n",
            "smlad r3, r11, lr, r3\n",
        )
    };
}

/// One group of the two-position loop: as [`conv_group!`] for positions 0 and 1 only, skipping
/// the other two positions' words. 9 instructions per 8 MACs.
macro_rules! conv_group2 {
    () => {
        concat!(
            "ldr r12, [r4], #4\n",
            "sxtb16 lr, r12, ror #8\n",
            "sxtb16 r12, r12\n",
            "ldm r5, {{r8, r9, r10, r11}}\n",
            "add r5, r5, #32\n",
            "smlad r0, r8, r12, r0\n",
            "smlad r0, r9, lr, r0\n",
            "smlad r1, r10, r12, r1\n",
            "smlad r1, r11, lr, r1\n",
        )
    };
}

/// The int32 accumulators of the patch positions one pass over an output channel's weights
/// feeds, with the `asm!` of that pass: `[i32; 4]` for a whole pool window (positions 0..3),
/// `[i32; 2]` for a window with two distinct conv positions (at an odd right or bottom edge the
/// other two repeat them), in positions 0 and 1.
trait Positions: Copy {
    /// All accumulators 0.
    const ZERO: Self;

    /// Adds the dot products of `w` (whole groups of 4 weights, at least one, any alignment)
    /// with the first `w.len() / 4` groups of `patch`; returns the address of the group after
    /// them.
    ///
    /// # Safety
    /// `patch` holds at least `w.len() / 4` groups: `w.len() / 4 <= MAX_GROUPS`.
    unsafe fn groups(&mut self, w: &[i8], patch: &Patches) -> *const u32;

    /// Adds the products of the weight word `tail` (4 int8 values) with the group at `pp`.
    ///
    /// # Safety
    /// `pp` is the address of a group of a live [`Patches`].
    unsafe fn tail(&mut self, tail: u32, pp: *const u32);
}

impl Positions for [i32; 4] {
    const ZERO: Self = [0; 4];

    #[inline(always)]
    unsafe fn groups(&mut self, w: &[i8], patch: &Patches) -> *const u32 {
        let pp: *const u32;
        // `r4` walks `w` one word per group and stops at its end (`group_loop!`). `r5` reads 8
        // words of `patch` per group, `w.len() / 4` groups in all (the caller's contract), word
        // aligned (`Patches` is `align(8)`; `LDM` needs 4). The weight loads are unaligned
        // `LDR`s, which M4 and M7 support. `r7` (the frame pointer, which Rust does not hand
        // out) holds the end of `w` and is pushed and popped around the loop, leaving `sp` as it
        // was. Only memory is read; r8..r12, lr and the flags are declared clobbered.
        // SAFETY: the facts above keep every access inside the borrowed memory.
        unsafe {
            asm!(
                "push {{r7}}",
                "mov r7, r8",
                group_loop!(conv_group, "r4", "r7"),
                "pop {{r7}}",
                inout("r0") self[0],
                inout("r1") self[1],
                inout("r2") self[2],
                inout("r3") self[3],
                inout("r4") w.as_ptr() => _,
                inout("r5") patch.0.as_ptr() => pp,
                inout("r8") w.as_ptr_range().end => _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
                options(readonly),
            );
        }
        pp
    }

    #[inline(always)]
    unsafe fn tail(&mut self, tail: u32, pp: *const u32) {
        // SAFETY: the 8 aligned words of the group at `pp` are read (the caller's contract).
        // Register arithmetic otherwise.
        unsafe {
            asm!(
                "sxtb16 {w1}, {w}, ror #8",
                "sxtb16 {w}, {w}",
                "ldrd {x0}, {x1}, [{pp}], #8",
                "smlad {a0}, {x0}, {w}, {a0}",
                "smlad {a0}, {x1}, {w1}, {a0}",
                "ldrd {x0}, {x1}, [{pp}], #8",
                "smlad {a1}, {x0}, {w}, {a1}",
                "smlad {a1}, {x1}, {w1}, {a1}",
                "ldrd {x0}, {x1}, [{pp}], #8",
                "smlad {a2}, {x0}, {w}, {a2}",
                "smlad {a2}, {x1}, {w1}, {a2}",
                "ldrd {x0}, {x1}, [{pp}]",
                "smlad {a3}, {x0}, {w}, {a3}",
                "smlad {a3}, {x1}, {w1}, {a3}",
                a0 = inout(reg) self[0],
                a1 = inout(reg) self[1],
                a2 = inout(reg) self[2],
                a3 = inout(reg) self[3],
                w = inout(reg) tail => _,
                pp = inout(reg) pp => _,
                w1 = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                options(readonly, nostack, preserves_flags),
            );
        }
    }
}

impl Positions for [i32; 2] {
    const ZERO: Self = [0; 2];

    #[inline(always)]
    unsafe fn groups(&mut self, w: &[i8], patch: &Patches) -> *const u32 {
        let pp: *const u32;
        // As for `[i32; 4]`, with the end of `w` in `r2`: `r4` walks `w`; `r5` reads the first
        // 4 of the 8 words of each of `w.len() / 4` groups of `patch` (word aligned). Only
        // memory is read; r8..r12, lr and the flags are declared clobbered.
        // SAFETY: the facts above keep every access inside the borrowed memory.
        unsafe {
            asm!(
                group_loop!(conv_group2, "r4", "r2"),
                inout("r0") self[0],
                inout("r1") self[1],
                in("r2") w.as_ptr_range().end,
                inout("r4") w.as_ptr() => _,
                inout("r5") patch.0.as_ptr() => pp,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
                options(readonly, nostack),
            );
        }
        pp
    }

    #[inline(always)]
    unsafe fn tail(&mut self, tail: u32, pp: *const u32) {
        // SAFETY: the first 4 aligned words of the group at `pp` are read (the caller's
        // contract). Register arithmetic otherwise.
        unsafe {
            asm!(
                "sxtb16 {w1}, {w}, ror #8",
                "sxtb16 {w}, {w}",
                "ldrd {x0}, {x1}, [{pp}]",
                "smlad {a0}, {x0}, {w}, {a0}",
                "smlad {a0}, {x1}, {w1}, {a0}",
                "ldrd {x0}, {x1}, [{pp}, #8]",
                "smlad {a1}, {x0}, {w}, {a1}",
                "smlad {a1}, {x1}, {w1}, {a1}",
                a0 = inout(reg) self[0],
                a1 = inout(reg) self[1],
                w = inout(reg) tail => _,
                pp = in(reg) pp,
                w1 = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                options(readonly, nostack, preserves_flags),
            );
        }
    }
}

/// The dot products of each output channel's weights `w` (`[3][3][C_in]`, `taps` values) with
/// the patch positions `A` holds, for every output channel in `weights`: calls
/// `f(channel, accumulators)`.
///
/// `T = taps % 4`: the last `T` weights of a channel are loaded as the word that ends at the
/// channel's last byte, shifted right so the `4 - T` bytes that belong to the group before
/// drop out. The weights past `taps` are therefore 0, whatever the patch holds there. No load
/// leaves the slice.
#[inline(always)]
fn pool_dots<const T: usize, A: Positions>(
    weights: &[i8],
    taps: usize,
    patch: &Patches,
    mut f: impl FnMut(usize, A),
) {
    let full = taps / 4;
    assert!(taps % 4 == T && full >= 1 && full + usize::from(T > 0) <= MAX_GROUPS);
    assert!(weights.len() % taps == 0);
    for (o, w) in weights.chunks_exact(taps).enumerate() {
        let mut acc = A::ZERO;
        // SAFETY: `full <= MAX_GROUPS` groups of `patch` (asserted above).
        let pp = unsafe { acc.groups(&w[..4 * full], patch) };
        if T > 0 {
            // The word ending at the channel's last byte: `w[taps - 4..taps]`, `taps >= 9`.
            let tail = word_at(w, taps - 4) >> (8 * (4 - T));
            // SAFETY: `pp` is the address of group `full` of `patch`, which exists
            // (`full + 1 <= MAX_GROUPS`, asserted above).
            unsafe { acc.tail(tail, pp) };
        }
        f(o, acc);
    }
}

/// [`requantize`](crate::quant::requantize), bit for bit, in fewer instructions: for a
/// multiplier `m != i32::MIN`, gemmlowp's `SaturatingRoundingDoublingHighMul` (nudge `2^30`, or
/// `1 - 2^30` for a negative product, then division truncating toward zero) equals
/// `floor((x * m + 2^30) / 2^31)`: for a negative product `n = x*m + 1 - 2^30 < 0` truncation
/// is `ceil(n / 2^31) = floor((n + 2^31 - 1) / 2^31)`, the same expression. That is `SMULL`,
/// a 64-bit add and a funnel shift. `m == i32::MIN` (never in a valid model: multipliers are
/// `>= 0`) takes the definition, whose `i32::MIN * i32::MIN` saturates.
#[doc(hidden)]
#[inline(always)]
pub fn requantize_dsp(acc: i32, multiplier: i32, shift: i32, zero_point: i8, relu: bool) -> i8 {
    if multiplier == i32::MIN {
        return crate::quant::requantize(acc, multiplier, shift, zero_point, relu);
    }
    let lo = if relu { zero_point as i32 } else { -128 };
    let stage = Stage::new(0, multiplier, shift);
    stage.requantize(acc, zero_point as i32, lo)
}

/// One channel's output stage with its shift split into left and right, for multipliers other
/// than `i32::MIN`.
#[derive(Clone, Copy)]
struct Stage {
    bias: i32,
    multiplier: i32,
    left: u32,
    right: i32,
}

impl Stage {
    #[inline(always)]
    fn new(bias: i32, multiplier: i32, shift: i32) -> Self {
        Stage {
            bias,
            multiplier,
            left: shift.max(0) as u32,
            right: (-shift).max(0),
        }
    }

    /// `clamp(RoundingDivideByPOT(SRDHM((x + bias) << left, m), right) + zp, lo, 127)`, see
    /// [`requantize_dsp`].
    #[inline(always)]
    fn requantize(&self, acc: i32, zero_point: i32, lo: i32) -> i8 {
        let x = (acc + self.bias).wrapping_shl(self.left);
        let high = ((x as i64 * self.multiplier as i64 + (1 << 30)) >> 31) as i32;
        let scaled = crate::quant::rounding_divide_by_pot(high, self.right);
        scaled.saturating_add(zero_point).clamp(lo, 127) as i8
    }
}

/// Output channels whose stages [`OutputStages`] decodes at a time.
const STAGE_CHANNELS: usize = 64;

/// The output stages of channels `c0..c0 + n` (`n <= STAGE_CHANNELS`) of a layer, read from
/// the model once per row call instead of once per output. No multiplier may be `i32::MIN`
/// ([`conv3x3_pool_row_s8_dsp`] declines such a layer).
struct OutputStages {
    stages: [Stage; STAGE_CHANNELS],
    zero_point: i32,
    lo: i32,
}

impl OutputStages {
    fn new<P: ChannelParams + ?Sized>(rq: &Requant<P>, c0: usize, n: usize) -> Self {
        let p = rq.params;
        let mut stages = [Stage::new(0, 0, 0); STAGE_CHANNELS];
        for (c, stage) in (c0..).zip(&mut stages[..n]) {
            *stage = Stage::new(p.bias(c), p.multiplier(c), p.shift(c));
        }
        let zero_point = rq.output_zero_point as i32;
        OutputStages {
            stages,
            zero_point,
            lo: if rq.relu { zero_point } else { -128 },
        }
    }

    /// The output of channel `c0 + i` for accumulator `acc` (bias not yet added).
    #[inline(always)]
    fn output(&self, i: usize, acc: i32) -> i8 {
        self.stages[i].requantize(acc, self.zero_point, self.lo)
    }
}

/// The second distinct conv position of an edge pool window whose first is (`top`, `x0`): the
/// one below when the window hangs over the right edge only, the one to the right when it
/// hangs over the bottom edge only, and the first again in the corner (max is idempotent).
#[inline(always)]
fn edge_second<R: Copy>(top: R, bottom: R, x0: usize, width: usize) -> (R, usize) {
    if x0 + 1 < width {
        (top, x0 + 1)
    } else {
        (bottom, x0)
    }
}

#[inline(always)]
fn max4(a: [i32; 4]) -> i32 {
    a[0].max(a[1]).max(a[2].max(a[3]))
}

/// DSP version of [`conv3x3_pool_row`](super::conv3x3_pool_row) on int8 weights, called by it after its
/// argument checks (same contract). Returns `false`, having written nothing, when
/// `C_in > PATCH_MAX_IN_CHANNELS` or a multiplier is `i32::MIN` (outside the contract, where
/// [`Stage`] would not saturate): the caller then runs the portable row path.
#[doc(hidden)]
pub fn conv3x3_pool_row_s8_dsp<P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: &[i8],
    rq: &Requant<P>,
    output: &mut [i8],
) -> bool {
    let saturating = (0..s.out_channels).any(|c| rq.params.multiplier(c) == i32::MIN);
    if s.in_channels > PATCH_MAX_IN_CHANNELS || saturating {
        return false;
    }
    let taps = KERNEL * KERNEL * s.in_channels;
    // conv1 (C_in 1 or 3, the input channels a model may have) takes fixed-size patches from
    // zero-point-padded row copies.
    let narrow = (s.width + 2) * s.in_channels <= PADDED_ROW_MAX;
    match (s.in_channels, taps % 4) {
        (1, _) if narrow => pool_row_narrow::<1, 1, P>(rows, s, weights, rq, output),
        (3, _) if narrow => pool_row_narrow::<3, 3, P>(rows, s, weights, rq, output),
        (_, 0) => pool_row::<0, P>(rows, s, weights, rq, output),
        (_, 1) => pool_row::<1, P>(rows, s, weights, rq, output),
        (_, 2) => pool_row::<2, P>(rows, s, weights, rq, output),
        _ => pool_row::<3, P>(rows, s, weights, rq, output),
    }
    true
}

fn pool_row<const T: usize, P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: &[i8],
    rq: &Requant<P>,
    output: &mut [i8],
) {
    let zp = rq.input_zero_point;
    let (top, bottom) = conv_rows(rows);
    let kernel_rows = WindowRows {
        top,
        bottom,
        bottom_edge: rows[2].is_none(),
    };
    let mut flat = [0i8; 4 * MAX_GROUPS];
    let taps = KERNEL * KERNEL * s.in_channels;
    pool_windows::<T, _, P>(
        kernel_rows,
        s,
        taps,
        weights,
        rq,
        output,
        |rows, x, j, patch| gather(rows, &s, zp, x, j, patch, &mut flat),
    );
}

/// The kernel rows of a pooled row's two conv rows, in a row kernel's own form `R`.
#[derive(Clone, Copy)]
struct WindowRows<R> {
    /// The kernel rows of conv row `2py`.
    top: R,
    /// The kernel rows of conv row `2py + 1`; `top` again where that row does not exist (see
    /// [`conv_rows`]).
    bottom: R,
    /// Conv row `2py + 1` does not exist (the last pooled row of an odd height).
    bottom_edge: bool,
}

/// The loops of both row kernels: output channels in blocks of [`STAGE_CHANNELS`] (one block
/// for every preset; the patches are gathered again per block), then every pool window of the
/// row. `gather(rows, x, j, patch)` fills patch position `j` with the conv position at column
/// `x` of the kernel rows `rows` (`top` or `bottom` of `kernel_rows`). `taps` is `9 * C_in`.
#[inline(always)]
fn pool_windows<const T: usize, R: Copy, P: ChannelParams + ?Sized>(
    kernel_rows: WindowRows<R>,
    s: RowShape,
    taps: usize,
    weights: &[i8],
    rq: &Requant<P>,
    output: &mut [i8],
    mut gather: impl FnMut(R, usize, usize, &mut Patches),
) {
    let WindowRows {
        top,
        bottom,
        bottom_edge,
    } = kernel_rows;
    let ow = s.width.div_ceil(2);
    let co = s.out_channels;
    let mut patch = Patches([0; 8 * MAX_GROUPS]);
    for c0 in (0..co).step_by(STAGE_CHANNELS) {
        let n = (co - c0).min(STAGE_CHANNELS);
        let stages = OutputStages::new(rq, c0, n);
        let block = &weights[c0 * taps..(c0 + n) * taps];
        for (px, out) in output.chunks_exact_mut(co).enumerate().take(ow) {
            let out = &mut out[c0..c0 + n];
            let x0 = 2 * px;
            if x0 + 1 < s.width && !bottom_edge {
                gather(top, x0, 0, &mut patch);
                gather(top, x0 + 1, 1, &mut patch);
                gather(bottom, x0, 2, &mut patch);
                gather(bottom, x0 + 1, 3, &mut patch);
                pool_dots::<T, _>(block, taps, &patch, |o, acc: [i32; 4]| {
                    out[o] = stages.output(o, max4(acc));
                });
            } else {
                // An edge window: its distinct positions go to slots 0 and 1.
                let (second_rows, second_x) = edge_second(top, bottom, x0, s.width);
                gather(top, x0, 0, &mut patch);
                gather(second_rows, second_x, 1, &mut patch);
                pool_dots::<T, _>(block, taps, &patch, |o, acc: [i32; 2]| {
                    out[o] = stages.output(o, acc[0].max(acc[1]));
                });
            }
        }
    }
}

/// Longest zero-point-padded input row, `(width + 2) * C_in` bytes, of the narrow path (C_in
/// 1 or 3: widths up to 339 with 3 channels). Wider rows take the generic gather.
const PADDED_ROW_MAX: usize = 1024;

/// A copy of input row `row` with one pixel of the zero point on each side (`None`: all zero
/// point), so that every 3x3 window reads `3 * C_in` bytes at column offset `x * C_in`.
fn pad_row(row: Option<&[i8]>, ci: usize, zp: i8, buf: &mut [i8; PADDED_ROW_MAX]) {
    match row {
        None => buf.fill(zp),
        Some(row) => {
            buf[..ci].fill(zp);
            buf[ci..ci + row.len()].copy_from_slice(row);
            buf[ci + row.len()..2 * ci + row.len()].fill(zp);
        }
    }
}

/// Fills position `j` of `patch` for `C_in = CI` (1 or 3) from the three padded kernel rows at
/// column offset `x * CI`: the flat `[3][3][CI]` patch is assembled at constant offsets, then
/// widened in groups of 4. Bytes past `9 * CI` are 0 (their weights are 0, see [`pool_dots`]).
#[inline(never)]
fn gather_narrow<const CI: usize>(
    rows: [&[i8; PADDED_ROW_MAX]; 3],
    x: usize,
    j: usize,
    neg_zp: u32,
    patch: &mut Patches,
) {
    let run = 3 * CI;
    let groups = (3 * run).div_ceil(4);
    let mut flat = [0i8; 28];
    for (r, row) in rows.iter().enumerate() {
        flat[r * run..][..run].copy_from_slice(&row[x * CI..][..run]);
    }
    for (g, d) in patch.0[..8 * groups].chunks_exact_mut(8).enumerate() {
        let (even, odd) = widen_sub_zp(word_at(&flat, 4 * g), neg_zp);
        d[2 * j] = even;
        d[2 * j + 1] = odd;
    }
}

fn pool_row_narrow<const CI: usize, const T: usize, P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: &[i8],
    rq: &Requant<P>,
    output: &mut [i8],
) {
    const { assert!(9 * CI % 4 == T) };
    let zp = rq.input_zero_point;
    let neg_zp = neg_zp_pair(zp as i32);
    let mut padded = [[0i8; PADDED_ROW_MAX]; 4];
    for (buf, row) in padded.iter_mut().zip(rows) {
        pad_row(row, CI, zp, buf);
    }
    let [p0, p1, p2, p3] = &padded;
    let top = [p0, p1, p2];
    // See `conv_rows`: without conv row 2py + 1 the bottom positions repeat the top ones.
    let bottom_edge = rows[2].is_none();
    let kernel_rows = WindowRows {
        top,
        bottom: if bottom_edge { top } else { [p1, p2, p3] },
        bottom_edge,
    };
    pool_windows::<T, _, P>(
        kernel_rows,
        s,
        9 * CI,
        weights,
        rq,
        output,
        |rows, x, j, patch| gather_narrow::<CI>(rows, x, j, neg_zp, patch),
    );
}

/// Widened dense inputs: group `g` (inputs `4g..4g + 4`) is words `2g` (`[x_4g - zp,
/// x_4g+2 - zp]`) and `2g + 1` (`[x_4g+1 - zp, x_4g+3 - zp]`).
#[repr(C, align(8))]
struct DenseInput([u32; DENSE_CHUNK / 2]);

/// One group of the dense loop for two rows: inputs at `r4` (2 words, post-incremented),
/// weights of row 0 at `r2` and of row 1 at `r3` (one word each, post-incremented),
/// accumulators `r0`, `r1`; clobbers `r8..r11`.
macro_rules! dense_group {
    () => {
        concat!(
            "ldrd r8, r9, [r4], #8\n",
            "ldr r10, [r2], #4\n",
            "sxtb16 r11, r10, ror #8\n",
            "sxtb16 r10, r10\n",
            "smlad r0, r8, r10, r0\n",
            "smlad r0, r9, r11, r0\n",
            "ldr r10, [r3], #4\n",
            "sxtb16 r11, r10, ror #8\n",
            "sxtb16 r10, r10\n",
            "smlad r1, r8, r10, r1\n",
            "smlad r1, r9, r11, r1\n",
        )
    };
}

/// `(Σ x·w0, Σ x·w1)` over `groups` groups of the widened input `x` and the int8 rows `w0`,
/// `w1` (`4 * groups` values each, any alignment).
#[inline(always)]
fn dot2(x: &DenseInput, w0: &[i8], w1: &[i8], groups: usize) -> (i32, i32) {
    assert!(groups >= 1 && 2 * groups <= x.0.len());
    let (w0, w1) = (&w0[..4 * groups], &w1[..4 * groups]);
    let (mut a0, mut a1) = (0i32, 0i32);
    // `r2`/`r3` walk `w0`/`w1` (4 * groups bytes each, unaligned `LDR`s, supported on
    // M4/M7) and `r2` stops at `end`, its end; `r4` reads 2 words of `x` per group, `2 * groups
    // <= x.0.len()`, 8-byte aligned for `LDRD` (`group_loop!`). Only memory is read; r8..r11
    // and the flags are declared clobbered.
    // SAFETY: the facts above keep every access inside the borrowed memory.
    unsafe {
        asm!(
            group_loop!(dense_group, "r2", "r5"),
            inout("r0") a0,
            inout("r1") a1,
            inout("r2") w0.as_ptr() => _,
            inout("r3") w1.as_ptr() => _,
            inout("r4") x.0.as_ptr() => _,
            in("r5") w0.as_ptr_range().end,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(readonly, nostack),
        );
    }
    (a0, a1)
}

/// DSP version of [`dense_acc`](super::dense_acc) on int8 weights, called by it after its argument
/// checks: the same contract, with `weights` starting at the run's first element.
#[doc(hidden)]
pub fn dense_acc_s8_dsp(input: &[i8], weights: &[i8], stride: usize, zp: i32, acc: &mut [i32]) {
    let neg_zp = neg_zp_pair(zp);
    let mut x = DenseInput([0; DENSE_CHUNK / 2]);
    for (c, chunk) in input.chunks(DENSE_CHUNK).enumerate() {
        let c0 = c * DENSE_CHUNK;
        let groups = chunk.len() / 4;
        for (pair, xs) in x.0[..2 * groups]
            .chunks_exact_mut(2)
            .zip(chunk.chunks_exact(4))
        {
            let (even, odd) = widen_sub_zp(word_at(xs, 0), neg_zp);
            pair[0] = even;
            pair[1] = odd;
        }
        let body = 4 * groups;
        let row = |o: usize| &weights[o * stride + c0..][..chunk.len()];
        let tail = |a: &mut i32, w: &[i8]| {
            for (&xi, &wi) in chunk[body..].iter().zip(&w[body..]) {
                *a += (xi as i32 - zp) * wi as i32;
            }
        };
        let last = acc.len().wrapping_sub(1);
        let mut pairs = acc.chunks_exact_mut(2);
        for (p, a) in (&mut pairs).enumerate() {
            let (w0, w1) = (row(2 * p), row(2 * p + 1));
            if groups > 0 {
                let (d0, d1) = dot2(&x, w0, w1, groups);
                a[0] += d0;
                a[1] += d1;
            }
            tail(&mut a[0], w0);
            tail(&mut a[1], w1);
        }
        if let [a] = pairs.into_remainder() {
            let w = row(last);
            if groups > 0 {
                *a += dot2(&x, w, w, groups).0;
            }
            tail(a, w);
        }
    }
}

/// Inputs a dense int4 run widens at a time, in each of its two layouts (2 x 1 KiB of i16
/// pairs on the stack).
const DENSE4_CHUNK: usize = 512;

/// Widened dense inputs for int4 weights: group `g` (inputs `8g..8g + 8`, minus the zero point,
/// as i16) is the 4 words `[x0, x4] [x2, x6] [x1, x5] [x3, x7]` (low half first), the order in
/// which [`dot_s4_groups`] splits a word of 8 packed weights.
#[repr(C, align(8))]
struct Dense4Input([u32; DENSE4_CHUNK / 2]);

/// Widens `x` (whole groups of 8; a shorter tail is left to the caller) into `out` in the
/// [`Dense4Input`] order; returns the number of groups.
fn widen_s4(x: &[i8], zp: i32, out: &mut [u32]) -> usize {
    let groups = x.len() / 8;
    for (words, xs) in out.chunks_exact_mut(4).zip(x.chunks_exact(8)) {
        // |x - zp| <= 255 fits i16; its 16 low bits go in one half.
        let d = |i: usize| ((xs[i] as i32 - zp) as u16) as u32;
        words[0] = d(0) | d(4) << 16;
        words[1] = d(2) | d(6) << 16;
        words[2] = d(1) | d(5) << 16;
        words[3] = d(3) | d(7) << 16;
    }
    groups
}

/// `Σ x·w` over `groups` groups of 8: the widened inputs `x` (see [`Dense4Input`]) and the
/// packed int4 weights `w` (`4 * groups` bytes, element 0 in the low nibble of byte 0, any
/// alignment).
///
/// Per word `W` of 8 weights `n0..n7` (nibble `i` at bits `4i..4i + 4`): `E = (W << 4) &
/// 0xf0f0f0f0` holds `16 * n0, 16 * n2, 16 * n4, 16 * n6` as int8 bytes, `O = W & 0xf0f0f0f0`
/// holds `16 * n1, .., 16 * n7`, and `SXTB16` (plain and `ROR #8`) splits each into the i16
/// pairs `[16n0, 16n4] [16n2, 16n6]` and `[16n1, 16n5] [16n3, 16n7]`, which `SMLAD` multiplies
/// with the matching input words. Every product is 16 times the true one, so the sum is
/// `16 * Σ x·w` exactly, and `>> 4` undoes it. No partial sum overflows: `|16 * w * (x - zp)|
/// <= 16 * 7 * 255 < 255 * 127`, inside the int8 accumulator bound the callers check.
/// 12 instructions per 8 MACs, plus the loop's 2.
#[inline(always)]
fn dot_s4_groups(x: &Dense4Input, w: &[u8], groups: usize) -> i32 {
    assert!(groups >= 1 && 4 * groups <= x.0.len());
    let w = &w[..4 * groups];
    let mut acc = 0i32;
    // `r2` walks `w` (4 * groups bytes, one unaligned `LDR` per group, supported on
    // M4/M7) and the loop ends when it reaches `r5`, the end of `w`; `r4` reads 4 words of `x`
    // per group (`LDM`, word-aligned: `Dense4Input` is 8-byte aligned), `4 * groups <=
    // x.0.len()`. Only memory is read; r1, r3, r8..r11, lr and the flags are declared
    // clobbered.
    // SAFETY: the facts above keep every access inside the borrowed memory.
    unsafe {
        asm!(
            "2:",
            "ldm r4!, {{r8, r9, r10, r11}}",
            "ldr r3, [r2], #4",
            "and r1, r12, r3, lsl #4",
            "and r3, r3, r12",
            "sxtb16 lr, r1",
            "smlad r0, r8, lr, r0",
            "sxtb16 lr, r1, ror #8",
            "smlad r0, r9, lr, r0",
            "sxtb16 lr, r3",
            "smlad r0, r10, lr, r0",
            "sxtb16 lr, r3, ror #8",
            "smlad r0, r11, lr, r0",
            "cmp r2, r5",
            "bne 2b",
            inout("r0") acc,
            inout("r2") w.as_ptr() => _,
            inout("r4") x.0.as_ptr() => _,
            in("r5") w.as_ptr_range().end,
            in("r12") 0xf0f0_f0f0u32,
            out("r1") _,
            out("r3") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("lr") _,
            options(readonly, nostack),
        );
    }
    acc >> 4
}

/// DSP version of [`dense_acc`](super::dense_acc) on int4 weights, called by it after its argument
/// checks (same contract).
///
/// A row whose run starts at an odd element takes its first weight from a high nibble, then
/// reads whole bytes: the inputs are widened in two layouts, from input 0 and from input 1,
/// and each row uses the one that matches its start's parity (the second only when some row
/// needs it).
#[doc(hidden)]
pub fn dense_acc_s4_dsp(
    input: &[i8],
    weights: &[u8],
    first: usize,
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) {
    let mut even = Dense4Input([0; DENSE4_CHUNK / 2]);
    let mut odd = Dense4Input([0; DENSE4_CHUNK / 2]);
    let need_odd = first % 2 == 1 || (stride % 2 == 1 && acc.len() > 1);
    for (c, chunk) in input.chunks(DENSE4_CHUNK).enumerate() {
        let c0 = c * DENSE4_CHUNK;
        let even_groups = widen_s4(chunk, zp, &mut even.0);
        let odd_groups = if need_odd {
            widen_s4(&chunk[1..], zp, &mut odd.0)
        } else {
            0
        };
        for (o, a) in acc.iter_mut().enumerate() {
            // Element of input `chunk[i]` in this row: `k0 + i`.
            let k0 = first + o * stride + c0;
            let (mut sum, skip, x, groups) = if k0.is_multiple_of(2) {
                (0, 0, &even, even_groups)
            } else {
                let w0 = crate::weights::s4_hi(weights[k0 / 2]) as i32;
                ((chunk[0] as i32 - zp) * w0, 1, &odd, odd_groups)
            };
            if groups > 0 {
                sum += dot_s4_groups(x, &weights[(k0 + skip) / 2..], groups);
            }
            for (i, &xi) in chunk.iter().enumerate().skip(skip + 8 * groups) {
                sum += (xi as i32 - zp) * crate::weights::s4_get(weights, k0 + i) as i32;
            }
            *a += sum;
        }
    }
}
