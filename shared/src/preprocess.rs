//! Camera-frame preprocessing: the one definition, used by training, host inference and firmware.
//!
//! All integer arithmetic, no floats, so every platform produces identical pixels.
//!
//! Steps, for a frame of `fw x fh` pixels and a model input of `W x H x C`:
//! 1. **Center crop** to the model's aspect ratio: if `fw * H > fh * W` the crop is
//!    `cw = (fh * W) / H` wide and `fh` high, else `fw` wide and `ch = (fw * H) / W` high
//!    (integer division, at least 1); the offset is half the excess, `(fw - cw) / 2` or
//!    `(fh - ch) / 2` (integer division).
//! 2. **Channel conversion** of each source pixel the resize reads (see [`PixelFormat`]):
//!    - RGB565: 5/6-bit fields widened by bit replication (`r8 = r5 << 3 | r5 >> 2`,
//!      `g8 = g6 << 2 | g6 >> 4`).
//!    - YUYV: BT.601 full range (JFIF), 16-bit fixed point, `floor` via arithmetic shift:
//!      `R = Y + (91881 (V-128) + 32768) >> 16`, `G = Y + (-22554 (U-128) - 46802 (V-128) + 32768) >> 16`,
//!      `B = Y + (116130 (U-128) + 32768) >> 16`, each clamped to 0..=255. Gray models take `Y`.
//!    - RGB to gray: `(77 R + 150 G + 29 B + 128) >> 8`. Gray to RGB: replicate.
//! 3. **Bilinear resize** with half-pixel centers (OpenCV `INTER_LINEAR`, TF
//!    `half_pixel_centers=true`, no antialiasing): destination pixel `d` samples source
//!    coordinate `s = (d + 0.5) * crop / out - 0.5`, clamped to `[0, crop - 1]`. `s` is computed
//!    in 16.16 fixed point as `floor(((2d + 1) * crop - out) * 2^16 / (2 * out))`; the fractional
//!    part is truncated to an 11-bit weight `f` (0..2048). The output is
//!    `(Σ p * wx * wy + 2^21) >> 22` with `wx` in {`2048 - fx`, `fx`}, `wy` likewise: exact
//!    rounding half up of the 22-bit product. With `crop == out` every `f` is 0, so a frame that
//!    already has the model's size and channel count passes through unchanged.
//! 4. **Quantize** ([`preprocess`] only): `q = p - 128` (input scale 1/255, zero point -128).
//!
//! [`preprocess`] and [`preprocess_u8`] take a whole frame; [`RowPreprocessor`] emits the same
//! model input a row at a time, reading source rows from a [`RowSource`] into a two-row window.
//! Both run the same per-row resize.

use crate::arch::Arch;
use crate::protocol::rgb565_to_rgb888;
use core::fmt;

/// Byte layout of a camera frame, row-major, no padding between rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PixelFormat {
    /// 1 byte per pixel.
    Gray8,
    /// 3 bytes per pixel: R, G, B.
    Rgb888,
    /// 2 bytes per pixel, a little-endian u16 `RRRRRGGG GGGBBBBB` (low byte first).
    Rgb565Le,
    /// 2 bytes per pixel, a big-endian u16 `RRRRRGGG GGGBBBBB` (high byte first).
    Rgb565Be,
    /// YUV 4:2:2, 4 bytes per 2 pixels: Y0 U Y1 V. Width must be even.
    Yuyv,
}

impl PixelFormat {
    /// Bytes per `width` pixels of one row.
    pub const fn row_bytes(self, width: usize) -> usize {
        match self {
            PixelFormat::Gray8 => width,
            PixelFormat::Rgb888 => width * 3,
            PixelFormat::Rgb565Le | PixelFormat::Rgb565Be | PixelFormat::Yuyv => width * 2,
        }
    }
}

/// Why a frame or an output buffer was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// Width or height is zero.
    ZeroSize,
    /// The data length does not match `width * height * bytes_per_pixel`.
    WrongLength {
        /// Bytes the format and size need.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// A YUYV frame has an odd width.
    OddYuyvWidth(u16),
    /// The output buffer length is not the model's `input_len()`.
    WrongOutputLength {
        /// `arch.input_len()`.
        expected: usize,
        /// Output buffer length.
        found: usize,
    },
    /// The model has neither 1 nor 3 channels.
    Channels(u8),
    /// The source-row window of a [`RowPreprocessor`] is smaller than
    /// [`row_window_len`] of the frame.
    WindowTooSmall {
        /// `row_window_len(format, width)`.
        expected: usize,
        /// Window length given.
        found: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ZeroSize => f.write_str("frame has zero width or height"),
            FrameError::WrongLength { expected, found } => write!(
                f,
                "frame data is {found} bytes but its format and size need {expected}; \
                 check the declared width, height and pixel format"
            ),
            FrameError::OddYuyvWidth(w) => {
                write!(
                    f,
                    "YUYV frame width {w} is odd; YUYV packs pixel pairs, width must be even"
                )
            }
            FrameError::WrongOutputLength { expected, found } => write!(
                f,
                "preprocess output buffer is {found} bytes but the model input needs {expected}"
            ),
            FrameError::Channels(c) => {
                write!(
                    f,
                    "model has {c} input channels; preprocessing supports 1 or 3"
                )
            }
            FrameError::WindowTooSmall { expected, found } => write!(
                f,
                "the source-row window is {found} bytes but this frame's rows need {expected} \
                 (two rows); size it with preprocess::row_window_len for the widest frame"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// A borrowed camera frame whose length matches its format and size.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    data: &'a [u8],
    width: u16,
    height: u16,
    format: PixelFormat,
}

impl<'a> Frame<'a> {
    /// Wraps `data` as a `width x height` frame in `format`; checks the length (and YUYV's even
    /// width).
    pub fn new(
        data: &'a [u8],
        width: u16,
        height: u16,
        format: PixelFormat,
    ) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::ZeroSize);
        }
        if format == PixelFormat::Yuyv && !width.is_multiple_of(2) {
            return Err(FrameError::OddYuyvWidth(width));
        }
        // u64: on 32-bit targets a huge declared size must not wrap into a small length.
        let expected = format.row_bytes(1) as u64 * width as u64 * height as u64;
        if data.len() as u64 != expected {
            let expected = usize::try_from(expected).unwrap_or(usize::MAX);
            return Err(FrameError::WrongLength {
                expected,
                found: data.len(),
            });
        }
        Ok(Frame {
            data,
            width,
            height,
            format,
        })
    }

    /// The raw bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Width in pixels.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u16 {
        self.height
    }

    /// Pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }
}

/// RGB of pixel `x` of one source row in `format`; `x` must be in range.
#[inline(always)]
fn rgb(row: &[u8], format: PixelFormat, x: usize) -> [u8; 3] {
    match format {
        PixelFormat::Gray8 => {
            let g = row[x];
            [g, g, g]
        }
        PixelFormat::Rgb888 => {
            let i = x * 3;
            [row[i], row[i + 1], row[i + 2]]
        }
        PixelFormat::Rgb565Le => {
            let i = x * 2;
            rgb565_to_rgb888(u16::from_le_bytes([row[i], row[i + 1]]))
        }
        PixelFormat::Rgb565Be => {
            let i = x * 2;
            rgb565_to_rgb888(u16::from_be_bytes([row[i], row[i + 1]]))
        }
        PixelFormat::Yuyv => {
            let pair = (x & !1) * 2;
            yuv_to_rgb(row[x * 2], row[pair + 1], row[pair + 3])
        }
    }
}

/// Pixel `x` of one source row in `C` channels (1: gray, 3: RGB).
#[inline(always)]
fn sample<const C: usize>(row: &[u8], format: PixelFormat, x: usize) -> [u8; C] {
    let mut out = [0u8; C];
    if C == 1 {
        out[0] = match format {
            PixelFormat::Gray8 => row[x],
            PixelFormat::Yuyv => row[x * 2],
            _ => luma(rgb(row, format, x)),
        };
    } else {
        out.copy_from_slice(&rgb(row, format, x)[..C]);
    }
    out
}

/// Fixed-point luma: `(77 R + 150 G + 29 B + 128) >> 8` (BT.601 weights / 256, sum 256).
pub const fn luma(rgb: [u8; 3]) -> u8 {
    ((77 * rgb[0] as u32 + 150 * rgb[1] as u32 + 29 * rgb[2] as u32 + 128) >> 8) as u8
}

/// BT.601 full-range YUV to RGB in 16.16 fixed point (see the module docs).
pub const fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let y = y as i32;
    let u = u as i32 - 128;
    let v = v as i32 - 128;
    let r = y + ((91881 * v + 32768) >> 16);
    let g = y + ((-22554 * u - 46802 * v + 32768) >> 16);
    let b = y + ((116130 * u + 32768) >> 16);
    [clamp_u8(r), clamp_u8(g), clamp_u8(b)]
}

const fn clamp_u8(v: i32) -> u8 {
    if v < 0 {
        0
    } else if v > 255 {
        255
    } else {
        v as u8
    }
}

/// Fractional bits of the source coordinate.
const COORD_BITS: u32 = 16;
/// Bits of each bilinear weight (the two weights of an axis sum to `1 << WEIGHT_BITS`).
const WEIGHT_BITS: u32 = 11;
const WEIGHT_ONE: u32 = 1 << WEIGHT_BITS;

/// One axis of the resize: for output index `d`, the two source indices (absolute, including the
/// crop offset) and the weight of the second one.
#[derive(Clone, Copy)]
struct Axis {
    offset: usize,
    crop: usize,
    out: usize,
}

impl Axis {
    /// Taps for `d` given `s`, the 16.16 source coordinate before clamping at 0.
    fn tap_at(&self, s: i64) -> (usize, usize, u32) {
        let s = s.max(0);
        let i0 = (s >> COORD_BITS) as usize;
        if i0 + 1 >= self.crop {
            return (self.offset + self.crop - 1, self.offset + self.crop - 1, 0);
        }
        let frac = ((s as u64 & ((1 << COORD_BITS) - 1)) >> (COORD_BITS - WEIGHT_BITS)) as u32;
        (self.offset + i0, self.offset + i0 + 1, frac)
    }

    /// The taps of `d = 0, 1, ..`: `s(d) = floor(((2d + 1) * crop - out) * 2^16 / (2 * out))`
    /// stepped exactly with a quotient/remainder pair (two divisions per axis instead of one per
    /// pixel, which matters on cores without a 64-bit divider).
    fn taps(self) -> Taps {
        let den = 2 * self.out as i64;
        let start = (self.crop as i64 - self.out as i64) << COORD_BITS;
        let step = (2 * self.crop as i64) << COORD_BITS;
        Taps {
            axis: self,
            q: start.div_euclid(den),
            r: start.rem_euclid(den),
            dq: step / den,
            dr: step % den,
            den,
        }
    }

    /// The direct formula the stepping must equal.
    #[cfg(test)]
    fn tap(&self, d: usize) -> (usize, usize, u32) {
        let (crop, out) = (self.crop as i64, self.out as i64);
        let s = ((2 * d as i64 + 1) * crop - out) * (1 << COORD_BITS);
        self.tap_at(s.div_euclid(2 * out))
    }
}

/// Iterator over one axis' taps; invariant: `s(d) = q`, with remainder `0 <= r < den`.
struct Taps {
    axis: Axis,
    q: i64,
    r: i64,
    dq: i64,
    dr: i64,
    den: i64,
}

impl Iterator for Taps {
    type Item = (usize, usize, u32);

    fn next(&mut self) -> Option<Self::Item> {
        let tap = self.axis.tap_at(self.q);
        self.q += self.dq;
        self.r += self.dr;
        if self.r >= self.den {
            self.r -= self.den;
            self.q += 1;
        }
        Some(tap)
    }
}

/// Center crop of a `fw x fh` frame to the aspect ratio `w : h`: (x0, y0, cw, ch).
fn center_crop(fw: usize, fh: usize, w: usize, h: usize) -> (usize, usize, usize, usize) {
    if fw * h > fh * w {
        let cw = ((fh * w) / h).max(1);
        ((fw - cw) / 2, 0, cw, fh)
    } else {
        let ch = ((fw * h) / w).max(1);
        (0, (fh - ch) / 2, fw, ch)
    }
}

/// The crop and both resize axes of a `fw x fh` frame into `arch`'s input.
#[derive(Clone, Copy)]
struct Plan {
    ax: Axis,
    ay: Axis,
}

impl Plan {
    fn new(fw: u16, fh: u16, arch: &Arch) -> Plan {
        let (out_w, out_h) = (arch.width as usize, arch.height as usize);
        let (x0, y0, cw, ch) = center_crop(fw as usize, fh as usize, out_w, out_h);
        Plan {
            ax: Axis {
                offset: x0,
                crop: cw,
                out: out_w,
            },
            ay: Axis {
                offset: y0,
                crop: ch,
                out: out_h,
            },
        }
    }
}

/// One output row of the resize, the one definition both the whole-frame and the row form run:
/// `row_a` and `row_b` are source rows `ya` and `yb` of the row's taps, `fy` the weight of `yb`.
/// Calls `emit(i, p)` for the row's `out_w * C` values in HWC order.
#[inline(always)]
fn resize_row<const C: usize>(
    row_a: &[u8],
    row_b: &[u8],
    format: PixelFormat,
    ax: Axis,
    fy: u32,
    mut emit: impl FnMut(usize, u8),
) {
    let mut i = 0;
    let (wy0, wy1) = (WEIGHT_ONE - fy, fy);
    for (xa, xb, fx) in ax.taps().take(ax.out) {
        let p00 = sample::<C>(row_a, format, xa);
        let p01 = sample::<C>(row_a, format, xb);
        let p10 = sample::<C>(row_b, format, xa);
        let p11 = sample::<C>(row_b, format, xb);
        let (wx0, wx1) = (WEIGHT_ONE - fx, fx);
        for c in 0..C {
            // <= 255 * 2^22 < 2^32
            let acc = (p00[c] as u32 * wx0 + p01[c] as u32 * wx1) * wy0
                + (p10[c] as u32 * wx0 + p11[c] as u32 * wx1) * wy1;
            emit(
                i,
                ((acc + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)) as u8,
            );
            i += 1;
        }
    }
}

/// [`resize_row`] at `C` = `channels` (1 or 3, checked by the callers).
#[inline(always)]
fn resize_row_any(
    channels: u8,
    rows: (&[u8], &[u8]),
    format: PixelFormat,
    ax: Axis,
    fy: u32,
    emit: impl FnMut(usize, u8),
) {
    if channels == 1 {
        resize_row::<1>(rows.0, rows.1, format, ax, fy, emit)
    } else {
        resize_row::<3>(rows.0, rows.1, format, ax, fy, emit)
    }
}

/// Checks the model side of a preprocessing run: a non-empty input of 1 or 3 channels, and an
/// output of `expected` values.
fn check_output(arch: &Arch, expected: u64, out_len: usize) -> Result<(), FrameError> {
    if arch.height == 0 || arch.width == 0 {
        return Err(FrameError::ZeroSize);
    }
    if out_len as u64 != expected {
        let expected = usize::try_from(expected).unwrap_or(usize::MAX);
        return Err(FrameError::WrongOutputLength {
            expected,
            found: out_len,
        });
    }
    match arch.channels {
        1 | 3 => Ok(()),
        c => Err(FrameError::Channels(c)),
    }
}

fn run(
    frame: &Frame,
    arch: &Arch,
    out_len: usize,
    mut emit: impl FnMut(usize, u8),
) -> Result<(), FrameError> {
    let expected = arch.height as u64 * arch.width as u64 * arch.channels as u64;
    check_output(arch, expected, out_len)?;
    let plan = Plan::new(frame.width, frame.height, arch);
    let row_bytes = frame.format.row_bytes(frame.width as usize);
    let row_len = arch.width as usize * arch.channels as usize;
    for (y, (ya, yb, fy)) in plan.ay.taps().take(plan.ay.out).enumerate() {
        let rows = (
            &frame.data[ya * row_bytes..][..row_bytes],
            &frame.data[yb * row_bytes..][..row_bytes],
        );
        resize_row_any(arch.channels, rows, frame.format, plan.ax, fy, |i, p| {
            emit(y * row_len + i, p)
        });
    }
    Ok(())
}

/// Center-crops `frame` to the model's aspect ratio, resizes it bilinearly (fixed point) to
/// `arch.height x arch.width`, converts to `arch.channels` and writes HWC u8 pixels to `out`
/// (`arch.input_len()` bytes). See the module docs for the exact arithmetic.
///
/// Training feeds `out[i] as f32 / 255.0`; the int8 model gets [`preprocess`].
pub fn preprocess_u8(frame: &Frame, arch: &Arch, out: &mut [u8]) -> Result<(), FrameError> {
    let len = out.len();
    run(frame, arch, len, |i, p| out[i] = p)
}

/// [`preprocess_u8`] then quantization `q = p - 128` into `out` (`arch.input_len()` bytes), the
/// int8 input of [`crate::forward()`].
pub fn preprocess(frame: &Frame, arch: &Arch, out: &mut [i8]) -> Result<(), FrameError> {
    let len = out.len();
    run(frame, arch, len, |i, p| out[i] = pixel_to_input(p))
}

/// A frame read a row at a time: "give me source row `y`". A board implements it over its
/// camera's frame buffer, a file, or a sensor that streams rows.
pub trait RowSource {
    /// Why a row could not be read.
    type Error;
    /// Writes source row `y` (`format.row_bytes(width)` bytes of the frame's rows) into `out`.
    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), Self::Error>;
}

impl RowSource for Frame<'_> {
    type Error = core::convert::Infallible;

    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        let row_bytes = out.len();
        out.copy_from_slice(&self.data[y * row_bytes..][..row_bytes]);
        Ok(())
    }
}

/// Bytes of the source-row window a [`RowPreprocessor`] needs for frames `width` pixels wide
/// in `format`: two rows, the most one bilinear output row reads.
pub const fn row_window_len(format: PixelFormat, width: usize) -> usize {
    2 * format.row_bytes(width)
}

/// The row form of [`preprocess`]: emits the model input one row at a time, reading only the
/// (at most 2) source rows each output row needs into a caller-owned window. Same crop, resize
/// and quantization as [`preprocess`] (the same per-row code), so the rows equal the whole-frame
/// output's rows exactly.
///
/// Source rows are read in increasing order, each at most once per frame: an output row's two
/// taps never go back, and the rows they share with the previous output row stay in the window.
pub struct RowPreprocessor<'w> {
    format: PixelFormat,
    channels: u8,
    ax: Axis,
    taps: Taps,
    /// The window's two row slots and which source row each holds.
    window: &'w mut [u8],
    held: [Option<usize>; 2],
    row_bytes: usize,
    /// The next output row [`RowPreprocessor::input_row`] must be asked for.
    next: usize,
    height: usize,
}

impl<'w> RowPreprocessor<'w> {
    /// Plans the rows of a `width x height` frame in `format` for `arch`'s input, with `window`
    /// (at least [`row_window_len`]`(format, width)` bytes) for the source rows.
    pub fn new(
        width: u16,
        height: u16,
        format: PixelFormat,
        arch: &Arch,
        window: &'w mut [u8],
    ) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::ZeroSize);
        }
        if format == PixelFormat::Yuyv && !width.is_multiple_of(2) {
            return Err(FrameError::OddYuyvWidth(width));
        }
        let row_len = arch.width as u64 * arch.channels as u64;
        check_output(arch, row_len, row_len as usize)?;
        let row_bytes = format.row_bytes(width as usize);
        let expected = row_window_len(format, width as usize);
        if window.len() < expected {
            return Err(FrameError::WindowTooSmall {
                expected,
                found: window.len(),
            });
        }
        let plan = Plan::new(width, height, arch);
        Ok(RowPreprocessor {
            format,
            channels: arch.channels,
            ax: plan.ax,
            taps: plan.ay.taps(),
            window: &mut window[..expected],
            held: [None; 2],
            row_bytes,
            next: 0,
            height: arch.height as usize,
        })
    }

    /// Writes model-input row `y` (`arch.width * arch.channels` values, quantized as
    /// [`preprocess`] does) into `out`, reading the source rows it needs from `source`.
    ///
    /// # Panics
    /// If rows are not asked for in order `0, 1, ..` (the vertical taps are stepped, not
    /// recomputed), past the last row, or `out` has the wrong length.
    pub fn input_row<S: RowSource + ?Sized>(
        &mut self,
        y: usize,
        source: &mut S,
        out: &mut [i8],
    ) -> Result<(), S::Error> {
        assert!(
            y == self.next && y < self.height,
            "RowPreprocessor: asked for row {y}, expected row {} of {}",
            self.next,
            self.height
        );
        assert_eq!(
            out.len(),
            self.ax.out * self.channels as usize,
            "RowPreprocessor: output row length"
        );
        let (ya, yb, fy) = self.taps.next().expect("Taps never ends");
        for want in [ya, yb] {
            if self.held.contains(&Some(want)) {
                continue;
            }
            // The slot to replace holds neither of this row's source rows.
            let slot = if self.held[0] == Some(ya) || self.held[0] == Some(yb) {
                1
            } else {
                0
            };
            source.read_row(
                want,
                &mut self.window[slot * self.row_bytes..][..self.row_bytes],
            )?;
            self.held[slot] = Some(want);
        }
        let slot_of = |r| if self.held[0] == Some(r) { 0 } else { 1 };
        let (a, b) = (slot_of(ya), slot_of(yb));
        let rb = self.row_bytes;
        let rows = (&self.window[a * rb..][..rb], &self.window[b * rb..][..rb]);
        resize_row_any(self.channels, rows, self.format, self.ax, fy, |i, p| {
            out[i] = pixel_to_input(p)
        });
        self.next += 1;
        Ok(())
    }
}

/// Quantizes one pixel: `q = p - 128` (scale 1/255, zero point -128; exact).
pub const fn pixel_to_input(p: u8) -> i8 {
    (p as i16 - 128) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepped_taps_equal_direct_formula() {
        // Every small crop and size, and large frames: QVGA/VGA/HD crops into small models
        // and back.
        let small = (1..120).flat_map(|crop| (1..120).map(move |out| (3, crop, out)));
        let large = [(240, 28), (480, 128), (1080, 96), (65535, 128), (2, 65535)];
        for (offset, crop, out) in small.chain(large.map(|(crop, out)| (0, crop, out))) {
            let axis = Axis { offset, crop, out };
            for (d, tap) in axis.taps().take(out).enumerate() {
                assert_eq!(tap, axis.tap(d), "crop {crop} out {out} d {d}");
            }
        }
    }
}
