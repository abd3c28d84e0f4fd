//! QEMU `mps2-an386` (Cortex-M4) and `mps2-an500` (Cortex-M7): frames from host files over
//! semihosting, instruction counts from the CMSDK APB timer under `-icount shift=0`. Both FPGA
//! images put the timer at 0x40000000 on the 25 MHz system clock (QEMU hw/arm/mps2.c).
use core::ffi::CStr;

use semihosting::fs::File;
use semihosting::io::Read as _;
use tinycnn::PixelFormat;

use super::{Counter, FrameInfo, FrameSource};

/// The frame list the host writes next to the frames, read from QEMU's working folder. One frame
/// per line: `<path> <width> <height> <format>`, format one of `gray8 rgb888 rgb565le rgb565be
/// yuyv`; blank lines and lines starting with `#` are skipped.
pub const MANIFEST: &CStr = c"frames.txt";
const MANIFEST_CAPACITY: usize = 16 * 1024;
const PATH_CAPACITY: usize = 256;

/// Why a frame could not be read.
#[derive(Debug, defmt::Format)]
pub enum SemihostingFrameError {
    /// `frames.txt` could not be opened or read (QEMU must run in the folder that holds it).
    Manifest,
    /// `frames.txt` is larger than the firmware's buffer.
    ManifestTooLarge { len: usize, capacity: usize },
    /// A line is not `<path> <width> <height> <format>`.
    BadLine { line: usize },
    /// A path is longer than the firmware's path buffer.
    PathTooLong { line: usize },
    /// The frame file could not be opened or read.
    Read { line: usize },
    /// The frame file is larger than the capture buffer.
    FrameTooLarge {
        line: usize,
        len: usize,
        capacity: usize,
    },
}

/// Reads the frames named in [`MANIFEST`], in order, one per `capture`.
pub struct SemihostingFrames {
    manifest: &'static [u8],
    position: usize,
    line: usize,
}

impl SemihostingFrames {
    /// Reads the manifest into `buffer` (which must be `'static`; see `qemu-mps2-an386.rs`).
    pub fn open(
        buffer: &'static mut [u8; MANIFEST_CAPACITY],
    ) -> Result<Self, SemihostingFrameError> {
        let mut file = File::open(MANIFEST).map_err(|_| SemihostingFrameError::Manifest)?;
        let len = file
            .metadata()
            .map_err(|_| SemihostingFrameError::Manifest)?
            .len() as usize;
        if len > buffer.len() {
            return Err(SemihostingFrameError::ManifestTooLarge {
                len,
                capacity: buffer.len(),
            });
        }
        file.read_exact(&mut buffer[..len])
            .map_err(|_| SemihostingFrameError::Manifest)?;
        Ok(Self {
            manifest: &buffer[..len],
            position: 0,
            line: 0,
        })
    }

    /// The capacity `open` needs.
    pub const CAPACITY: usize = MANIFEST_CAPACITY;

    fn next_line(&mut self) -> Option<&'static [u8]> {
        while self.position < self.manifest.len() {
            let rest = &self.manifest[self.position..];
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            self.position += end + 1;
            self.line += 1;
            let line = rest[..end].trim_ascii();
            if !line.is_empty() && line[0] != b'#' {
                return Some(line);
            }
        }
        None
    }
}

fn parse_format(word: &[u8]) -> Option<PixelFormat> {
    Some(match word {
        b"gray8" => PixelFormat::Gray8,
        b"rgb888" => PixelFormat::Rgb888,
        b"rgb565le" => PixelFormat::Rgb565Le,
        b"rgb565be" => PixelFormat::Rgb565Be,
        b"yuyv" => PixelFormat::Yuyv,
        _ => return None,
    })
}

fn parse_u16(word: &[u8]) -> Option<u16> {
    core::str::from_utf8(word).ok()?.parse().ok()
}

impl FrameSource for SemihostingFrames {
    type Error = SemihostingFrameError;

    fn capture(&mut self, buffer: &mut [u8]) -> Result<Option<FrameInfo>, Self::Error> {
        let Some(text) = self.next_line() else {
            return Ok(None);
        };
        let line = self.line;
        let bad_line = SemihostingFrameError::BadLine { line };
        let mut words = text
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let (Some(path), Some(width), Some(height), Some(format), None) = (
            words.next(),
            words.next(),
            words.next(),
            words.next(),
            words.next(),
        ) else {
            return Err(bad_line);
        };
        let (Some(width), Some(height), Some(format)) =
            (parse_u16(width), parse_u16(height), parse_format(format))
        else {
            return Err(bad_line);
        };
        let mut c_path = [0u8; PATH_CAPACITY];
        if path.len() >= PATH_CAPACITY {
            return Err(SemihostingFrameError::PathTooLong { line });
        }
        c_path[..path.len()].copy_from_slice(path);
        let c_path = CStr::from_bytes_until_nul(&c_path).map_err(|_| bad_line)?;
        let read = SemihostingFrameError::Read { line };
        let mut file = File::open(c_path).map_err(|_| read)?;
        let len = file
            .metadata()
            .map_err(|_| SemihostingFrameError::Read { line })?
            .len() as usize;
        if len > buffer.len() {
            return Err(SemihostingFrameError::FrameTooLarge {
                line,
                len,
                capacity: buffer.len(),
            });
        }
        file.read_exact(&mut buffer[..len])
            .map_err(|_| SemihostingFrameError::Read { line })?;
        Ok(Some(FrameInfo {
            width,
            height,
            format,
            len,
        }))
    }
}

/// CMSDK APB timer 0 of the MPS2 FPGA images, clocked by the 25 MHz system clock.
const TIMER0_BASE: usize = 0x4000_0000;
const TIMER_CTRL: usize = TIMER0_BASE;
const TIMER_VALUE: usize = TIMER0_BASE + 0x4;
const TIMER_RELOAD: usize = TIMER0_BASE + 0x8;
/// Under `-icount shift=0` one instruction takes one virtual nanosecond, and the 25 MHz timer
/// ticks every 40 ns: 40 instructions per tick.
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

/// Instructions executed, from the CMSDK timer counting down from `u32::MAX`: it wraps after
/// 2^32 ticks = 171 G instructions, far beyond one inference.
pub struct CmsdkInstructionCounter {
    started_at: u32,
}

impl CmsdkInstructionCounter {
    /// Starts timer 0 free-running. Call once at boot.
    pub fn new() -> Self {
        // SAFETY: TIMER0 is the CMSDK APB timer of mps2-an386 at this fixed address; nothing else
        // in the firmware uses it, and 32-bit volatile accesses are how it is programmed.
        unsafe {
            core::ptr::write_volatile(TIMER_CTRL as *mut u32, 0);
            core::ptr::write_volatile(TIMER_RELOAD as *mut u32, u32::MAX);
            core::ptr::write_volatile(TIMER_VALUE as *mut u32, u32::MAX);
            core::ptr::write_volatile(TIMER_CTRL as *mut u32, 1);
        }
        Self { started_at: 0 }
    }

    fn value() -> u32 {
        // SAFETY: a volatile read of the timer's VALUE register (see `new`).
        unsafe { core::ptr::read_volatile(TIMER_VALUE as *const u32) }
    }
}

impl Default for CmsdkInstructionCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl Counter for CmsdkInstructionCounter {
    const UNIT: &'static str = "instructions";

    fn start(&mut self) {
        self.started_at = Self::value();
    }

    fn stop(&mut self) -> u64 {
        // The timer counts down.
        u64::from(self.started_at.wrapping_sub(Self::value())) * INSTRUCTIONS_PER_TICK
    }
}
