//! What a board provides to the classification loop: a frame source and a counter.
use tinycnn::PixelFormat;

/// Also the `mps2-an500` (Cortex-M7) board: same memory map, timer and semihosting.
#[cfg(any(feature = "board-qemu-mps2-an386", feature = "board-qemu-mps2-an500"))]
pub mod qemu_mps2_an386;
#[cfg(feature = "board-stm32h743")]
pub mod stm32h743;

/// One captured frame's shape. The bytes are the first `len` bytes of the capture buffer.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct FrameInfo {
    pub width: u16,
    pub height: u16,
    pub format: PixelFormat,
    pub len: usize,
}

/// A camera, or anything that delivers frames like one.
pub trait FrameSource {
    type Error: defmt::Format;
    /// Fills the start of `buffer` with the next frame. `Ok(None)` means the source has no more
    /// frames (a file list ran out); a live camera never returns it.
    fn capture(&mut self, buffer: &mut [u8]) -> Result<Option<FrameInfo>, Self::Error>;
}

/// Counts the cost of a code section in the board's best available unit.
pub trait Counter {
    /// The unit of [`Counter::stop`]'s result, as logged (`instructions` or `cycles`).
    const UNIT: &'static str;
    fn start(&mut self);
    /// The count since the last [`Counter::start`].
    fn stop(&mut self) -> u64;
}
