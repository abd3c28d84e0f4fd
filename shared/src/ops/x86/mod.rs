//! x86_64 variants of the conv+pool row kernel and the dense accumulation: AVX2 and AVX-512
//! VNNI, bit-identical to the portable kernels (integer sums do not depend on order).
//!
//! This module and its two children are the only place in `shared` with `unsafe` code: the
//! `#[target_feature]` kernels are safe functions, and calling one is `unsafe` only because the
//! caller must know the CPU has the features. [`KernelLevel::is_available`] is that check, and
//! a level is stored only after it passed.
//!
//! # Selection
//! The level is chosen once per process, on the first kernel call: the environment variable
//! [`KERNEL_ENV`] (`portable`, `avx2` or `avx512vnni`) if set, else the best level the CPU has
//! ([`KernelLevel::best`]). [`set_kernel_level`] changes it for the whole process (tests and
//! benchmarks compare levels side by side this way). Each kernel call reads it with one relaxed
//! atomic load.
//!
//! # Conv+pool row kernel
//! Both variants run the pooled row as a GEMM of `4 * ceil(w/2)` conv pixels by `C_out` by
//! `K = 9 * C_in`, with no im2col copy: the input rows are copied, padded by one pixel on each
//! side (once per map for [`conv3x3_pool`](super::conv3x3_pool), the four rows of each
//! call for the row kernel), and pixel `x`'s kernel-row taps are then the contiguous run
//! `x * C_in .. (x + 3) * C_in` of a padded row. Weights are packed per layer as
//! `[ky][K-group][C_out][group]` vectors (zero-filled past `3 * C_in` taps and past `C_out`),
//! so one vector load serves 16 (VNNI) or 8 (AVX2) output channels and one broadcast
//! activation group serves them all. The packed weights are cached per thread
//! ([`CACHE_LAYERS`] layers), keyed by the weight slice's address and shape and validated
//! against a copy of its contents on every call, so a different slice at a reused address is
//! packed again. The conv pixels of each pool window (four, or fewer at an odd bottom or right
//! edge for VNNI) are accumulated side by side and max-pooled as int32 before one vectorized
//! requantization.
//!
//! - AVX-512 VNNI (XNNPACK's scheme): activations become `x ^ 0x80 = x + 128` as u8, padding is
//!   `zp + 128`, and `vpdpbusd` sums u8 x s8 quads. Then `Σ (x + 128) w = Σ (x - zp) w +
//!   (zp + 128) Σ w` over all nine taps (padding included), so the per-channel constant
//!   `(zp + 128) Σ w` is folded into the bias. It is the same for the four pixels of a pool
//!   window, so pooling before the correction is exact.
//! - AVX2: activations become i16 `x - zp` (padding 0) and `vpmaddwd` sums i16 pairs; no
//!   correction is needed.
//!
//! # Dense
//! Row-wise dot products, four output rows sharing each activation load. VNNI sums
//! `Σ (x + 128) w` and `Σ w` (a `vpdpbusd` against ones) and subtracts `(zp + 128) Σ w`; AVX2
//! widens both operands to i16 for `vpmaddwd`. Dense weights are read in place (fc1 of
//! `tutorial` is 2 MiB; no cache).

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};
use std::cell::RefCell;
use std::vec::Vec;

use super::conv::{ConvShape, PoolRows, RowShape};
use super::requant::{ChannelParams, Requant};
use crate::arch::KERNEL;

mod avx2;
mod avx512;

/// Environment variable that forces a [`KernelLevel`] for the process: `portable`, `avx2` or
/// `avx512vnni`. Read once, on the first kernel call, unless [`set_kernel_level`] ran first.
pub const KERNEL_ENV: &str = "TINYCNN_KERNEL";

/// Packed conv layers kept per thread: the forward pass has three.
pub const CACHE_LAYERS: usize = 8;

/// Which implementation of the conv+pool row kernel and the dense accumulation runs; every
/// level gives the same bits. The process uses [`kernel_level`]: [`KERNEL_ENV`] if set, else
/// [`KernelLevel::best`]; [`set_kernel_level`] changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelLevel {
    /// The portable Rust kernels (`ops::conv`, `ops::dense`).
    Portable,
    /// AVX2: i16 `vpmaddwd` kernels, 8 output channels per vector.
    Avx2,
    /// AVX-512 F + BW + VNNI: u8 x s8 `vpdpbusd` kernels, 16 output channels per vector.
    Avx512Vnni,
}

impl KernelLevel {
    /// Every level, slowest first.
    pub const ALL: [KernelLevel; 3] = [
        KernelLevel::Portable,
        KernelLevel::Avx2,
        KernelLevel::Avx512Vnni,
    ];

    /// The name [`KERNEL_ENV`] and [`KernelLevel::from_name`] use.
    pub const fn name(self) -> &'static str {
        match self {
            KernelLevel::Portable => "portable",
            KernelLevel::Avx2 => "avx2",
            KernelLevel::Avx512Vnni => "avx512vnni",
        }
    }

    /// The level called `name` (see [`KernelLevel::name`]), if any.
    pub fn from_name(name: &str) -> Option<KernelLevel> {
        KernelLevel::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Whether this CPU has the instructions the level needs.
    pub fn is_available(self) -> bool {
        match self {
            KernelLevel::Portable => true,
            KernelLevel::Avx2 => std::is_x86_feature_detected!("avx2"),
            KernelLevel::Avx512Vnni => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
        }
    }

    /// The fastest level this CPU has.
    pub fn best() -> KernelLevel {
        KernelLevel::ALL
            .into_iter()
            .rev()
            .find(|l| l.is_available())
            .unwrap_or(KernelLevel::Portable)
    }

    const fn code(self) -> u8 {
        self as u8
    }

    const fn from_code(code: u8) -> KernelLevel {
        match code {
            1 => KernelLevel::Avx2,
            2 => KernelLevel::Avx512Vnni,
            _ => KernelLevel::Portable,
        }
    }
}

impl fmt::Display for KernelLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// [`set_kernel_level`] was asked for a level this CPU lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLevelError {
    /// The level asked for.
    pub requested: KernelLevel,
    /// The best level this CPU has.
    pub best: KernelLevel,
}

impl fmt::Display for KernelLevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this CPU lacks the instructions of kernel level `{}`; use one it has: {}",
            self.requested,
            names(&KernelLevel::is_available)
        )
    }
}

impl std::error::Error for KernelLevelError {}

const UNSET: u8 = u8::MAX;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

/// The kernel level in use; on the first call it is chosen from [`KERNEL_ENV`] or the CPU.
///
/// An unknown or unavailable [`KERNEL_ENV`] value is reported on stderr once and the best
/// available level is used instead (forward passes are infallible).
pub fn kernel_level() -> KernelLevel {
    let code = LEVEL.load(Ordering::Relaxed);
    if code != UNSET {
        return KernelLevel::from_code(code);
    }
    let level = level_from_env();
    // A concurrent first call computes the same level; whichever store lands first wins.
    match LEVEL.compare_exchange(UNSET, level.code(), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => level,
        Err(code) => KernelLevel::from_code(code),
    }
}

fn level_from_env() -> KernelLevel {
    let value = std::env::var(KERNEL_ENV).ok();
    let (level, warning) = choose(value.as_deref(), &KernelLevel::is_available);
    if let Some(warning) = warning {
        std::eprintln!("tinycnn: {warning}");
    }
    level
}

/// The names of the levels `available` accepts, comma-separated.
fn names(available: &dyn Fn(KernelLevel) -> bool) -> std::string::String {
    let names: Vec<&str> = KernelLevel::ALL
        .into_iter()
        .filter(|&l| available(l))
        .map(KernelLevel::name)
        .collect();
    names.join(", ")
}

/// The level for a [`KERNEL_ENV`] value (`None`: unset) on a CPU with the levels `available`
/// accepts, and a warning when the value cannot be honoured.
fn choose(
    value: Option<&str>,
    available: &dyn Fn(KernelLevel) -> bool,
) -> (KernelLevel, Option<std::string::String>) {
    let best = KernelLevel::ALL
        .into_iter()
        .rev()
        .find(|&l| available(l))
        .unwrap_or(KernelLevel::Portable);
    let Some(value) = value else {
        return (best, None);
    };
    let warning = match KernelLevel::from_name(value.trim()) {
        Some(level) if available(level) => return (level, None),
        Some(level) => std::format!(
            "{KERNEL_ENV}={value}: this CPU lacks the instructions of `{level}`; using `{best}`. \
             Set {KERNEL_ENV} to one of: {}",
            names(available)
        ),
        None => std::format!(
            "{KERNEL_ENV}={value} is not a kernel level; using `{best}`. Set {KERNEL_ENV} to \
             one of: {}",
            names(available)
        ),
    };
    (best, Some(warning))
}

/// Uses `level` for every later kernel call in this process (all threads).
///
/// # Errors
/// [`KernelLevelError`] if this CPU lacks the level's instructions; the level is then
/// unchanged.
pub fn set_kernel_level(level: KernelLevel) -> Result<(), KernelLevelError> {
    if !level.is_available() {
        return Err(KernelLevelError {
            requested: level,
            best: KernelLevel::best(),
        });
    }
    LEVEL.store(level.code(), Ordering::Relaxed);
    Ok(())
}

/// Lanes of the per-channel parameter vectors: channel counts are padded to a multiple.
const LANES: usize = 16;

/// Per-channel requantization parameters, padded with zeros to a multiple of [`LANES`].
#[derive(Default)]
struct ChannelVecs {
    /// `bias[c]` minus the VNNI correction `(zp + 128) * Σ w[c]` where it applies.
    bias: Vec<i32>,
    multiplier: Vec<i32>,
    /// `max(shift, 0)`.
    left: Vec<i32>,
    /// `max(-shift, 0)`.
    right: Vec<i32>,
    /// Output zero point.
    zp_out: i32,
    /// Lower clamp: the output zero point with ReLU, else -128.
    lo: i32,
}

impl ChannelVecs {
    fn fill<P: ChannelParams + ?Sized>(
        &mut self,
        rq: &Requant<P>,
        channels: usize,
        correction: Option<(i32, &[i32])>,
    ) {
        let n = channels.next_multiple_of(LANES);
        for v in [
            &mut self.bias,
            &mut self.multiplier,
            &mut self.left,
            &mut self.right,
        ] {
            v.clear();
            v.resize(n, 0);
        }
        let p = rq.params;
        for c in 0..channels {
            let shift = p.shift(c);
            // Within the accumulator bound: |(zp + 128) * Σ w| <= 255 * 127 * K.
            self.bias[c] = match correction {
                Some((k, wsum)) => p.bias(c).wrapping_sub(k.wrapping_mul(wsum[c])),
                None => p.bias(c),
            };
            self.multiplier[c] = p.multiplier(c);
            self.left[c] = shift.max(0);
            self.right[c] = (-shift).max(0);
        }
        self.zp_out = rq.output_zero_point as i32;
        self.lo = if rq.relu { self.zp_out } else { -128 };
    }
}

/// Packs `[C_out][3][3][C_in]` conv weights into `[ky][tap group][channel block]` blocks of `N`
/// values, `N / group` channels of `group` taps: element `l * group + j` of block `b` at group
/// `q` of kernel row `ky` is `convert(w)` of the weight of channel `(N / group) * b + l` at tap
/// `group * q + j` of that kernel row (tap `kx * C_in + c`), zero past `3 * C_in` taps and past
/// `C_out`. `load` makes each block a vector.
fn pack_conv<E: Copy + Default, V, const N: usize>(
    weights: &[i8],
    ci: usize,
    co: usize,
    group: usize,
    convert: impl Fn(i8) -> E,
    mut load: impl FnMut(&[E; N]) -> V,
) -> Vec<V> {
    let lanes = N / group;
    let seg = KERNEL * ci;
    let groups = seg.div_ceil(group);
    let blocks = co.div_ceil(lanes);
    let taps = KERNEL * seg;
    let mut out = Vec::with_capacity(KERNEL * groups * blocks);
    for ky in 0..KERNEL {
        for q in 0..groups {
            for b in 0..blocks {
                let mut block = [E::default(); N];
                for l in 0..lanes.min(co - b * lanes) {
                    let w = &weights[(b * lanes + l) * taps + ky * seg..][..seg];
                    for j in 0..group {
                        if let Some(&v) = w.get(q * group + j) {
                            block[l * group + j] = convert(v);
                        }
                    }
                }
                out.push(load(&block));
            }
        }
    }
    out
}

/// Length of a padded input row of a level with `group` taps per vector lane: `width + 2`
/// pixels and `group` slack values, so that the taps of the last pixel, read in whole groups,
/// stay in the row.
const fn padded_len(s: RowShape, group: usize) -> usize {
    (s.width + 2) * s.in_channels + group
}

/// The argument checks of a level's `conv_pool_row` with `group` taps by `lanes` output
/// channels per vector: `packed_len` packed vectors (see [`pack_conv`]) and padded rows of
/// [`padded_len`] (`bottom` is `None` at an odd bottom edge). Returns the tap groups per kernel
/// row and the channel blocks.
fn check_conv_pool_row<T>(
    top: [&[T]; 3],
    bottom: Option<[&[T]; 3]>,
    s: RowShape,
    (group, lanes): (usize, usize),
    packed_len: usize,
) -> (usize, usize) {
    let groups = (KERNEL * s.in_channels).div_ceil(group);
    let blocks = s.out_channels.div_ceil(lanes);
    assert_eq!(
        packed_len,
        KERNEL * groups * blocks,
        "packed weights length"
    );
    let row_len = padded_len(s, group);
    for r in top.iter().chain(bottom.iter().flatten()) {
        assert_eq!(r.len(), row_len, "padded row length");
    }
    (groups, blocks)
}

/// Packed weights of one conv layer.
enum PackedWeights {
    Avx512(Vec<core::arch::x86_64::__m512i>),
    Avx2(Vec<core::arch::x86_64::__m256i>),
}

struct PackedLayer {
    level: KernelLevel,
    addr: usize,
    in_channels: usize,
    out_channels: usize,
    /// The weights the packing was made from (validates a cache hit).
    original: Vec<i8>,
    /// `Σ w` per output channel.
    wsum: Vec<i32>,
    packed: PackedWeights,
    /// The [`State::epoch`] in which `original` was last compared while its slice was pinned.
    trusted_epoch: u64,
}

/// Per-thread buffers: packed layers (most recent first) and padded input rows.
#[derive(Default)]
struct State {
    layers: Vec<PackedLayer>,
    /// `(address, length)` of the slices pinned by the enclosing [`pin_weights`] scopes.
    pinned: Vec<(usize, usize)>,
    /// Incremented on entering each [`pin_weights`] scope.
    epoch: u64,
    rows_u8: Vec<u8>,
    rows_i16: Vec<i16>,
    channels: ChannelVecs,
}

std::thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// The packed form of `weights` for `level`, from the cache or packed now.
///
/// A hit is validated against the copy of the weights, except for a slice pinned by an
/// enclosing [`pin_weights`] scope that was already validated in this scope: its contents
/// cannot have changed since (the pin holds a shared borrow of it).
fn packed_layer<'c>(
    layers: &'c mut Vec<PackedLayer>,
    (pinned, epoch): (&[(usize, usize)], u64),
    level: KernelLevel,
    weights: &[i8],
    s: RowShape,
) -> &'c PackedLayer {
    let addr = weights.as_ptr() as usize;
    let is_pinned = pinned.contains(&(addr, weights.len()));
    let same_key = |p: &PackedLayer| {
        p.level == level
            && p.addr == addr
            && p.in_channels == s.in_channels
            && p.out_channels == s.out_channels
    };
    let trusted = |p: &PackedLayer| is_pinned && p.trusted_epoch == epoch;
    match layers
        .iter()
        .position(|p| same_key(p) && (trusted(p) || p.original == weights))
    {
        Some(i) => {
            if i != 0 {
                let hit = layers.remove(i);
                layers.insert(0, hit);
            }
            if is_pinned {
                layers[0].trusted_epoch = epoch;
            }
        }
        None => {
            layers.retain(|p| !same_key(p));
            let (ci, co) = (s.in_channels, s.out_channels);
            let packed = if level == KernelLevel::Avx512Vnni {
                // SAFETY: `level` was stored only after `is_available` confirmed its features.
                let packed = unsafe { avx512::pack_conv(weights, ci, co) };
                PackedWeights::Avx512(packed)
            } else {
                // SAFETY: as above (the only other level that reaches here is Avx2).
                let packed = unsafe { avx2::pack_conv(weights, ci, co) };
                PackedWeights::Avx2(packed)
            };
            let taps = KERNEL * KERNEL * ci;
            let wsum = weights
                .chunks_exact(taps)
                .map(|w| w.iter().map(|&v| v as i32).sum())
                .collect();
            layers.insert(
                0,
                PackedLayer {
                    level,
                    addr,
                    in_channels: ci,
                    out_channels: co,
                    original: weights.to_vec(),
                    wsum,
                    packed,
                    trusted_epoch: if is_pinned { epoch } else { 0 },
                },
            );
            layers.truncate(CACHE_LAYERS);
        }
    }
    &layers[0]
}

/// The row kernel at the selected level; `false` means the caller runs the portable kernel.
/// Arguments are already checked by the caller.
pub(crate) fn conv3x3_pool_row_s8<P: ChannelParams + ?Sized>(
    rows: PoolRows<'_>,
    s: RowShape,
    weights: &[i8],
    rq: &Requant<P>,
    output: &mut [i8],
) -> bool {
    let level = kernel_level();
    if level == KernelLevel::Portable {
        return false;
    }
    let has_bottom = rows[2].is_some();
    conv_padded(level, s, weights, rq, rows.into_iter(), output, |_| {
        (0, has_bottom)
    });
    true
}

/// The whole-map kernel at the selected level: the same row kernel for every pooled row, with
/// one cache lookup and one padded copy of the map per call. `false` means the caller runs the
/// portable loop. Arguments are already checked by the caller.
pub(crate) fn conv3x3_pool_s8<P: ChannelParams + ?Sized>(
    input: &[i8],
    shape: ConvShape,
    weights: &[i8],
    rq: &Requant<P>,
    output: &mut [i8],
) -> bool {
    let level = kernel_level();
    if level == KernelLevel::Portable {
        return false;
    }
    let s = shape.row();
    let h = shape.height;
    // Padded row i is input row i - 1; pooled row py reads padded rows 2py .. 2py + 4.
    let rows = core::iter::once(None)
        .chain(input.chunks_exact(s.input_row_len()).map(Some))
        .chain(core::iter::once(None));
    conv_padded(level, s, weights, rq, rows, output, |py| {
        (2 * py, 2 * py + 1 < h)
    });
    true
}

/// Pads `rows` into the thread's row buffer, then runs the row kernel for each pooled row of
/// `output`: `window(py) = (first, has_bottom)` says that pooled row `py` reads padded rows
/// `first ..= first + 2` (conv row `2py`) and, if `has_bottom`, `first + 1 ..= first + 3`.
fn conv_padded<'r, P: ChannelParams + ?Sized>(
    level: KernelLevel,
    s: RowShape,
    weights: &[i8],
    rq: &Requant<P>,
    rows: impl Iterator<Item = Option<&'r [i8]>>,
    output: &mut [i8],
    window: impl Fn(usize) -> (usize, bool),
) {
    STATE.with(|state| {
        let state = &mut *state.borrow_mut();
        let pins = (&state.pinned[..], state.epoch);
        let layer = packed_layer(&mut state.layers, pins, level, weights, s);
        let zp = rq.input_zero_point;
        let out_rows = output.chunks_exact_mut(s.pooled_row_len());
        match &layer.packed {
            PackedWeights::Avx512(packed) => {
                state
                    .channels
                    .fill(rq, s.out_channels, Some((zp as i32 + 128, &layer.wsum)));
                let ch = &state.channels;
                pad_and_run(
                    &mut state.rows_u8,
                    avx512::padded_len(s),
                    rows,
                    // SAFETY: this variant is packed only at level Avx512Vnni, which was
                    // stored after `is_available` confirmed avx512f, avx512bw and avx512vnni.
                    |row, buf| unsafe { avx512::pad_row(row, s, zp, buf) },
                    out_rows,
                    window,
                    // SAFETY: as above.
                    |top, bottom, out| unsafe {
                        avx512::conv_pool_row(top, bottom, s, packed, ch, out)
                    },
                );
            }
            PackedWeights::Avx2(packed) => {
                state.channels.fill(rq, s.out_channels, None);
                let ch = &state.channels;
                pad_and_run(
                    &mut state.rows_i16,
                    avx2::padded_len(s),
                    rows,
                    // SAFETY: this variant is packed only at level Avx2, which was stored after
                    // `is_available` confirmed avx2.
                    |row, buf| unsafe { avx2::pad_row(row, s, zp, buf) },
                    out_rows,
                    window,
                    // SAFETY: as above.
                    |top, bottom, out| unsafe {
                        avx2::conv_pool_row(top, bottom, s, packed, ch, out)
                    },
                );
            }
        }
    });
}

/// The part of [`conv_padded`] both levels share, over their padded element type `T`:
/// `pad_row` appends each of `rows` to `buf`, cleared first, as a padded row of `len` elements;
/// then `row_kernel(top, bottom, out)` runs for each pooled row `out` of `out_rows` with the
/// padded kernel rows of its conv rows `2py` (`top`) and `2py + 1` (`bottom`, `None` where that
/// row does not exist) as `window` gives them.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn pad_and_run<'r, T>(
    buf: &mut Vec<T>,
    len: usize,
    rows: impl Iterator<Item = Option<&'r [i8]>>,
    mut pad_row: impl FnMut(Option<&[i8]>, &mut Vec<T>),
    out_rows: core::slice::ChunksExactMut<'_, i8>,
    window: impl Fn(usize) -> (usize, bool),
    mut row_kernel: impl FnMut([&[T]; 3], Option<[&[T]; 3]>, &mut [i8]),
) {
    buf.clear();
    for row in rows {
        pad_row(row, buf);
    }
    for (py, out) in out_rows.enumerate() {
        let (first, has_bottom) = window(py);
        let r = |i: usize| &buf[(first + i) * len..][..len];
        let top = [r(0), r(1), r(2)];
        let bottom = has_bottom.then(|| [r(1), r(2), r(3)]);
        row_kernel(top, bottom, out);
    }
}

/// [`pin_weights`](super::pin_weights) on x86_64: records the pinned slices for the calls `f`
/// makes on this thread.
pub(crate) fn pin_weights<R>(weights: &[&[i8]], f: impl FnOnce() -> R) -> R {
    let mark = STATE.with(|state| {
        let mut state = state.borrow_mut();
        state.epoch += 1;
        let mark = state.pinned.len();
        let keys = weights.iter().map(|w| (w.as_ptr() as usize, w.len()));
        state.pinned.extend(keys);
        mark
    });
    /// Unpins on every exit, unwinding included.
    struct Unpin(usize);
    impl Drop for Unpin {
        fn drop(&mut self) {
            STATE.with(|state| state.borrow_mut().pinned.truncate(self.0));
        }
    }
    let _unpin = Unpin(mark);
    f()
}

/// [`dense_acc`](super::dense::dense_acc) at the selected level; `false` means the
/// caller runs the portable loop. Arguments are already checked by the caller.
pub(crate) fn dense_acc_s8(
    input: &[i8],
    weights: &[i8],
    stride: usize,
    zp: i32,
    acc: &mut [i32],
) -> bool {
    match kernel_level() {
        KernelLevel::Portable => false,
        KernelLevel::Avx2 => {
            // SAFETY: level Avx2 is stored only after `is_available` confirmed avx2.
            unsafe { avx2::dense_acc(input, weights, stride, zp, acc) };
            true
        }
        KernelLevel::Avx512Vnni => {
            // SAFETY: level Avx512Vnni is stored only after `is_available` confirmed avx512f,
            // avx512bw and avx512vnni.
            unsafe { avx512::dense_acc(input, weights, stride, zp, acc) };
            true
        }
    }
}

/// The row loop of both levels' `dense_acc`: `acc[o] += Σ` over row `o` of the layer (the `n`
/// weights at `o * stride`), wrapping, with `dot4` taking four rows at a time and `dot1` the
/// rest. Nothing to add when `n == 0`.
#[inline(always)]
fn dense_rows(
    n: usize,
    weights: &[i8],
    stride: usize,
    acc: &mut [i32],
    mut dot4: impl FnMut([&[i8]; 4]) -> [i32; 4],
    mut dot1: impl FnMut([&[i8]; 1]) -> [i32; 1],
) {
    if n == 0 {
        return;
    }
    let row = |o: usize| &weights[o * stride..][..n];
    let mut chunks = acc.chunks_exact_mut(4);
    let mut o = 0;
    for out in &mut chunks {
        let sums = dot4([row(o), row(o + 1), row(o + 2), row(o + 3)]);
        for (a, s) in out.iter_mut().zip(sums) {
            *a = a.wrapping_add(s);
        }
        o += 4;
    }
    for a in chunks.into_remainder() {
        let [s] = dot1([row(o)]);
        *a = a.wrapping_add(s);
        o += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_picks_an_available_level_or_warns() {
        let avx2_cpu = |l: KernelLevel| l != KernelLevel::Avx512Vnni;
        assert_eq!(choose(None, &avx2_cpu), (KernelLevel::Avx2, None));
        assert_eq!(
            choose(Some("portable"), &avx2_cpu),
            (KernelLevel::Portable, None)
        );
        assert_eq!(
            choose(Some(" avx2\n"), &avx2_cpu),
            (KernelLevel::Avx2, None)
        );
        let (level, warning) = choose(Some("avx512vnni"), &avx2_cpu);
        assert_eq!(level, KernelLevel::Avx2);
        let warning = warning.expect("a warning");
        assert!(warning.contains("lacks"), "{warning}");
        assert!(warning.contains("one of: portable, avx2"), "{warning}");
        let (level, warning) = choose(Some("sse9"), &avx2_cpu);
        assert_eq!(level, KernelLevel::Avx2);
        assert!(warning
            .expect("a warning")
            .contains("is not a kernel level"));
        let bare = |l: KernelLevel| l == KernelLevel::Portable;
        assert_eq!(choose(None, &bare), (KernelLevel::Portable, None));
    }

    #[test]
    fn unavailable_level_error_names_the_levels_there_are() {
        let e = KernelLevelError {
            requested: KernelLevel::Avx512Vnni,
            best: KernelLevel::Portable,
        };
        let text = std::format!("{e}");
        assert!(
            text.contains("`avx512vnni`") && text.contains("portable"),
            "{text}"
        );
    }
}
