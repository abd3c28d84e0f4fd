//! What a board provides to the classification loop: a frame source that serves rows, and a
//! counter.
use tinycnn::protocol::CountUnit;
use tinycnn::PixelFormat;

/// Also the `mps2-an500` (Cortex-M7) board: same memory map, timer and semihosting.
#[cfg(any(feature = "board-qemu-mps2-an386", feature = "board-qemu-mps2-an500"))]
pub mod qemu_mps2_an386;
#[cfg(feature = "board-stm32h743")]
pub mod stm32h743;

/// One frame's shape. Its rows are `format.row_bytes(width)` bytes each.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct FrameInfo {
    pub width: u16,
    pub height: u16,
    pub format: PixelFormat,
}

/// A camera, or anything that delivers frames like one, a row at a time: "give me source row
/// `y`". The classification loop reads rows in increasing order, each at most once per frame,
/// so a source may stream them (a file read in order, a sensor's line buffer) or serve them
/// from a frame buffer that DMA filled.
pub trait FrameSource {
    type Error: defmt::Format;
    /// Starts the next frame and returns its shape. `Ok(None)` means the source has no more
    /// frames (a file list ran out); a live camera never returns it.
    fn next_frame(&mut self) -> Result<Option<FrameInfo>, Self::Error>;
    /// Writes row `y` of the current frame into `out` (`format.row_bytes(width)` bytes).
    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), Self::Error>;
}

/// Counts the cost of a code section in the board's best available unit.
pub trait Counter {
    /// The unit of [`Counter::stop`]'s result, as logged.
    const UNIT: CountUnit;
    fn start(&mut self);
    /// The count since the last [`Counter::start`]. Reading it changes nothing, so repeated
    /// calls are lap readings (the loop subtracts the preprocessing laps from the total).
    fn stop(&mut self) -> u64;
}
