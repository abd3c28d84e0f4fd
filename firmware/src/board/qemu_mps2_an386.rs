//! QEMU `mps2-an386` (Cortex-M4) and `mps2-an500` (Cortex-M7): frames from host files over
//! semihosting, read a row at a time (no frame buffer), instruction counts from the CMSDK APB
//! timer under `-icount shift=0`. Both FPGA images put the timer at 0x40000000 on the 25 MHz
//! system clock (QEMU hw/arm/mps2.c).
use core::ffi::CStr;

use semihosting::fs::File;
use semihosting::io::{Read as _, Seek as _, SeekFrom};
use tinycnn::protocol::CountUnit;
use tinycnn::PixelFormat;

use super::{Counter, FrameInfo, FrameSource};
use crate::{classify, exit, stack, ExitCode};

/// The whole program of both QEMU boards (each bin's `main` calls it first thing): paints the
/// stack, classifies the frames listed in [`MANIFEST`] with instruction counts, and exits with
/// [`ExitCode::BadFrame`] if the list cannot be opened.
pub fn run() -> ! {
    stack::paint();
    let model = classify::load_model();
    let mut camera = match SemihostingFrames::open() {
        Ok(camera) => camera,
        Err(e) => {
            defmt::error!("cannot read the frame list frames.txt: {}", e);
            exit(ExitCode::BadFrame)
        }
    };
    classify::run(&model, &mut camera, &mut CmsdkInstructionCounter::new())
}

/// The frame list the host writes next to the frames, read from QEMU's working folder a line at
/// a time. One frame per line: `<path> <width> <height> <format>`, format one of `gray8 rgb888
/// rgb565le rgb565be yuyv`; blank lines and lines starting with `#` are skipped.
pub const MANIFEST: &CStr = c"frames.txt";
const PATH_CAPACITY: usize = 256;
/// Longest line of the frame list: a path and its three fields.
const LINE_CAPACITY: usize = PATH_CAPACITY + 32;
/// Bytes of the frame list read per semihosting call.
const CHUNK: usize = 64;

/// Why a frame could not be read.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub enum SemihostingFrameError {
    /// `frames.txt` could not be opened or read (QEMU must run in the folder that holds it).
    Manifest,
    /// A line of `frames.txt` is longer than the firmware's line buffer.
    LineTooLong { line: usize, capacity: usize },
    /// A line is not `<path> <width> <height> <format>`.
    BadLine { line: usize },
    /// A path is longer than the firmware's path buffer.
    PathTooLong { line: usize },
    /// The frame file could not be opened, sought or read.
    Read { line: usize },
    /// The frame file's length is not `height` rows of `width` pixels in its format.
    WrongLength {
        line: usize,
        len: usize,
        expected: usize,
    },
}

/// Reads the frames named in [`MANIFEST`], in order; serves each frame's rows from its file.
pub struct SemihostingFrames {
    manifest: File,
    chunk: [u8; CHUNK],
    chunk_pos: usize,
    chunk_len: usize,
    line: usize,
    /// The current frame: its file, row size, the file position, and its list line.
    frame: Option<(File, usize, usize)>,
}

impl SemihostingFrames {
    /// Opens the frame list.
    pub fn open() -> Result<Self, SemihostingFrameError> {
        let manifest = File::open(MANIFEST).map_err(|_| SemihostingFrameError::Manifest)?;
        Ok(Self {
            manifest,
            chunk: [0; CHUNK],
            chunk_pos: 0,
            chunk_len: 0,
            line: 0,
            frame: None,
        })
    }

    fn next_byte(&mut self) -> Result<Option<u8>, SemihostingFrameError> {
        if self.chunk_pos == self.chunk_len {
            self.chunk_len = self
                .manifest
                .read(&mut self.chunk)
                .map_err(|_| SemihostingFrameError::Manifest)?;
            self.chunk_pos = 0;
            if self.chunk_len == 0 {
                return Ok(None);
            }
        }
        self.chunk_pos += 1;
        Ok(Some(self.chunk[self.chunk_pos - 1]))
    }

    /// The next line that names a frame, into `buffer`; `None` at the end of the list.
    fn next_line<'b>(
        &mut self,
        buffer: &'b mut [u8; LINE_CAPACITY],
    ) -> Result<Option<&'b [u8]>, SemihostingFrameError> {
        loop {
            let mut len = 0;
            let mut any = false;
            while let Some(b) = self.next_byte()? {
                any = true;
                if b == b'\n' {
                    break;
                }
                if len == LINE_CAPACITY {
                    return Err(SemihostingFrameError::LineTooLong {
                        line: self.line + 1,
                        capacity: LINE_CAPACITY,
                    });
                }
                buffer[len] = b;
                len += 1;
            }
            if !any {
                return Ok(None);
            }
            self.line += 1;
            let line = buffer[..len].trim_ascii();
            if !line.is_empty() && line[0] != b'#' {
                let start = line.as_ptr() as usize - buffer.as_ptr() as usize;
                let end = start + line.len();
                return Ok(Some(&buffer[start..end]));
            }
        }
    }
}

fn parse_u16(word: &[u8]) -> Option<u16> {
    core::str::from_utf8(word).ok()?.parse().ok()
}

impl FrameSource for SemihostingFrames {
    type Error = SemihostingFrameError;

    fn next_frame(&mut self) -> Result<Option<FrameInfo>, Self::Error> {
        self.frame = None;
        let mut buffer = [0u8; LINE_CAPACITY];
        let Some(text) = self.next_line(&mut buffer)? else {
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
        let format = core::str::from_utf8(format)
            .ok()
            .and_then(PixelFormat::parse);
        let (Some(width), Some(height), Some(format)) =
            (parse_u16(width), parse_u16(height), format)
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
        let file = File::open(c_path).map_err(|_| read)?;
        let len = file
            .metadata()
            .map_err(|_| SemihostingFrameError::Read { line })?
            .len() as usize;
        let row_bytes = format.row_bytes(width as usize);
        let expected = row_bytes * height as usize;
        if len != expected {
            return Err(SemihostingFrameError::WrongLength {
                line,
                len,
                expected,
            });
        }
        self.frame = Some((file, row_bytes, 0));
        Ok(Some(FrameInfo {
            width,
            height,
            format,
        }))
    }

    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        let read = SemihostingFrameError::Read { line: self.line };
        let Some((file, row_bytes, position)) = &mut self.frame else {
            return Err(read);
        };
        let offset = y * *row_bytes;
        // Rows come in increasing order, mostly consecutive: seek only over skipped rows.
        if *position != offset {
            file.seek(SeekFrom::Start(offset as u64))
                .map_err(|_| read)?;
        }
        file.read_exact(out).map_err(|_| read)?;
        *position = offset + out.len();
        Ok(())
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
    const UNIT: CountUnit = CountUnit::Instructions;

    fn start(&mut self) {
        self.started_at = Self::value();
    }

    fn stop(&mut self) -> u64 {
        // The timer counts down.
        u64::from(self.started_at.wrapping_sub(Self::value())) * INSTRUCTIONS_PER_TICK
    }
}
