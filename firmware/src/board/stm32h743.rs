//! STM32H743ZI (e.g. NUCLEO-H743ZI2) with an OV7670 camera module on the DCMI.
//!
//! Runs on the reset clock (HSI, 64 MHz), which keeps the set-up short; the forward pass is
//! timed with DWT CYCCNT. Wiring (all pins on the Nucleo-144 Zio/morpho headers):
//!
//! | signal | pin | AF |     | signal | pin | AF |
//! |---|---|---|---|---|---|---|
//! | DCMI_HSYNC (HREF) | PA4 | 13 | | DCMI_D4 | PC11 | 13 |
//! | DCMI_PIXCLK | PA6 | 13 | | DCMI_D5 | PD3 | 13 |
//! | DCMI_VSYNC | PB7 | 13 | | DCMI_D6 | PB8 | 13 |
//! | DCMI_D0..D3 | PC6..PC9 | 13 | | DCMI_D7 | PB9 | 13 |
//! | I2C2_SCL (SIO_C) | PF1 | 4 | | I2C2_SDA (SIO_D) | PF0 | 4 |
//! | MCO1 (XCLK, 16 MHz) | PA8 | 0 | | | | |
//!
//! Register addresses and bit fields are from RM0433 (rev 7). Every register access is a
//! volatile 32-bit access to a fixed peripheral address through [`reg`].
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};
use static_cell::ConstStaticCell;
use tinycnn::protocol::CountUnit;
use tinycnn::PixelFormat;
use tinycnn_camera::ov7670::{self, Ov7670};

use super::{Counter, FrameInfo, FrameSource};

/// Core clock after reset: HSI at 64 MHz.
pub const CORE_HZ: u32 = 64_000_000;

/// Volatile access to memory-mapped registers.
mod reg {
    /// Reads the 32-bit register at `address`.
    pub fn read(address: usize) -> u32 {
        // SAFETY: callers pass addresses of STM32H743 peripheral registers (RM0433 memory map),
        // which are always mapped, 4-byte aligned, and read with 32-bit accesses.
        unsafe { core::ptr::read_volatile(address as *const u32) }
    }

    /// Writes the 32-bit register at `address`.
    pub fn write(address: usize, value: u32) {
        // SAFETY: as in `read`; the firmware is single-threaded and owns these peripherals.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) }
    }

    /// Clears the bits of `clear`, then sets those of `set`.
    pub fn modify(address: usize, clear: u32, set: u32) {
        write(address, (read(address) & !clear) | set);
    }
}

const RCC: usize = 0x5802_4400;
const RCC_CFGR: usize = RCC + 0x10;
const RCC_AHB1ENR: usize = RCC + 0xd8;
const RCC_AHB2ENR: usize = RCC + 0xdc;
const RCC_AHB4ENR: usize = RCC + 0xe0;
const RCC_APB1LENR: usize = RCC + 0xe8;

const GPIOA: usize = 0x5802_0000;
const GPIOB: usize = 0x5802_0400;
const GPIOC: usize = 0x5802_0800;
const GPIOD: usize = 0x5802_0c00;
const GPIOF: usize = 0x5802_1400;

const I2C2: usize = 0x4000_5800;
const I2C_CR1: usize = 0x00;
const I2C_CR2: usize = 0x04;
const I2C_TIMINGR: usize = 0x10;
const I2C_ISR: usize = 0x18;
const I2C_ICR: usize = 0x1c;
const I2C_RXDR: usize = 0x24;
const I2C_TXDR: usize = 0x28;

const DCMI: usize = 0x4802_0000;
const DCMI_CR: usize = DCMI;
const DCMI_RIS: usize = DCMI + 0x08;
const DCMI_ICR: usize = DCMI + 0x14;
const DCMI_DR: usize = DCMI + 0x28;

const DMA1: usize = 0x4002_0000;
const DMA1_LISR: usize = DMA1;
const DMA1_LIFCR: usize = DMA1 + 0x08;
const DMA1_S0CR: usize = DMA1 + 0x10;
const DMA1_S0NDTR: usize = DMA1 + 0x14;
const DMA1_S0PAR: usize = DMA1 + 0x18;
const DMA1_S0M0AR: usize = DMA1 + 0x1c;
const DMA1_S0FCR: usize = DMA1 + 0x24;
/// DMAMUX1 channel 0 feeds DMA1 stream 0.
const DMAMUX1_C0CR: usize = 0x4002_0800;
/// DMAMUX1 request line of the DCMI (RM0433 table 121).
const DMAMUX_REQ_DCMI: u32 = 75;

/// Puts `pin` of the GPIO port at `port` into alternate function `af`, very high speed;
/// `open_drain` with pull-up for I2C.
fn alternate(port: usize, pin: usize, af: u32, open_drain: bool) {
    reg::modify(port, 0b11 << (2 * pin), 0b10 << (2 * pin));
    reg::modify(port + 0x08, 0, 0b11 << (2 * pin));
    if open_drain {
        reg::modify(port + 0x04, 0, 1 << pin);
        reg::modify(port + 0x0c, 0b11 << (2 * pin), 0b01 << (2 * pin));
    }
    let (afr, shift) = if pin < 8 {
        (port + 0x20, 4 * pin)
    } else {
        (port + 0x24, 4 * (pin - 8))
    };
    reg::modify(afr, 0xf << shift, af << shift);
}

/// Busy-wait delay on the core clock.
pub struct CycleDelay;

impl DelayNs for CycleDelay {
    fn delay_ns(&mut self, ns: u32) {
        let cycles = (u64::from(ns) * u64::from(CORE_HZ)).div_ceil(1_000_000_000);
        cortex_m::asm::delay(cycles.min(u64::from(u32::MAX)) as u32);
    }
}

/// I2C2 as an SCCB master at 100 kHz. Every operation of a transaction ends with a STOP:
/// SCCB has no repeated start, so a register read is a write transaction, then a read one.
pub struct Sccb;

/// I2C failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum SccbError {
    /// The sensor did not acknowledge (wrong address, no power or no XCLK).
    Nack,
    /// Misplaced START/STOP or lost arbitration: check the wiring and pull-ups.
    Bus,
    /// The transfer did not finish in time.
    Timeout,
}

impl embedded_hal::i2c::Error for SccbError {
    fn kind(&self) -> ErrorKind {
        match self {
            SccbError::Nack => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
            SccbError::Bus => ErrorKind::Bus,
            SccbError::Timeout => ErrorKind::Other,
        }
    }
}

impl ErrorType for Sccb {
    type Error = SccbError;
}

const I2C_TIMEOUT_SPINS: u32 = 1_000_000;

impl Sccb {
    /// Enables I2C2 on PF0/PF1 with the 64 MHz kernel clock (rcc_pclk1 after reset).
    pub fn new() -> Self {
        reg::modify(RCC_AHB4ENR, 0, 1 << 5);
        reg::modify(RCC_APB1LENR, 0, 1 << 22);
        alternate(GPIOF, 0, 4, true);
        alternate(GPIOF, 1, 4, true);
        reg::write(I2C2 + I2C_CR1, 0);
        // 100 kHz standard mode from a 64 MHz kernel clock: PRESC 1, SCLDEL 7, SDADEL 0,
        // SCLH 0x7d, SCLL 0xbc (RM0433 section 47.4.10, as computed by STM32CubeMX).
        reg::write(I2C2 + I2C_TIMINGR, 0x1070_7dbc);
        reg::write(I2C2 + I2C_CR1, 1);
        Sccb
    }

    /// Waits until `ISR & mask` is set, failing on NACK, bus error or timeout.
    fn wait(mask: u32) -> Result<(), SccbError> {
        for _ in 0..I2C_TIMEOUT_SPINS {
            let isr = reg::read(I2C2 + I2C_ISR);
            if isr & (1 << 4) != 0 {
                // NACKF: the hardware sends STOP itself (AUTOEND); clear both flags.
                Self::wait_stop();
                reg::write(I2C2 + I2C_ICR, (1 << 4) | (1 << 5));
                return Err(SccbError::Nack);
            }
            if isr & ((1 << 8) | (1 << 9)) != 0 {
                reg::write(I2C2 + I2C_ICR, (1 << 8) | (1 << 9));
                return Err(SccbError::Bus);
            }
            if isr & mask != 0 {
                return Ok(());
            }
        }
        Err(SccbError::Timeout)
    }

    fn wait_stop() {
        for _ in 0..I2C_TIMEOUT_SPINS {
            if reg::read(I2C2 + I2C_ISR) & (1 << 5) != 0 {
                return;
            }
        }
    }

    /// One START .. STOP transfer of up to 255 bytes.
    fn transfer(address: u8, read: bool, len: usize) -> Result<(), SccbError> {
        let len = u32::try_from(len)
            .ok()
            .filter(|&n| n <= 255)
            .ok_or(SccbError::Bus)?;
        let cr2 = (u32::from(address) << 1)
            | (u32::from(read) << 10)
            | (1 << 13) // START
            | (len << 16)
            | (1 << 25); // AUTOEND: STOP after the last byte
        reg::write(I2C2 + I2C_CR2, cr2);
        Ok(())
    }
}

impl Default for Sccb {
    fn default() -> Self {
        Self::new()
    }
}

impl I2c<SevenBitAddress> for Sccb {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), SccbError> {
        for operation in operations {
            match operation {
                Operation::Write(bytes) => {
                    Self::transfer(address, false, bytes.len())?;
                    for &byte in bytes.iter() {
                        Self::wait(1 << 1)?; // TXIS
                        reg::write(I2C2 + I2C_TXDR, u32::from(byte));
                    }
                }
                Operation::Read(buffer) => {
                    Self::transfer(address, true, buffer.len())?;
                    for byte in buffer.iter_mut() {
                        Self::wait(1 << 2)?; // RXNE
                        *byte = reg::read(I2C2 + I2C_RXDR) as u8;
                    }
                }
            }
            Self::wait(1 << 5)?; // STOPF
            reg::write(I2C2 + I2C_ICR, 1 << 5);
        }
        Ok(())
    }
}

/// Camera failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum CameraError {
    /// The frame buffer cannot hold a QVGA RGB565 frame or is not 4-byte aligned, or a row
    /// outside the frame was asked for.
    Buffer,
    /// DMA transfer error or DCMI overrun/sync error.
    Capture,
    /// No frame within a second: check PIXCLK, HREF and VSYNC.
    Timeout,
}

/// The DMA target of the camera: one QVGA RGB565 frame, cache-line aligned so DMA1 fills it
/// with 32-bit transfers. The frame loop reads rows out of it.
#[repr(C, align(32))]
struct FrameBuffer([u8; ov7670::QVGA_RGB565_BYTES]);

static FRAME: ConstStaticCell<FrameBuffer> =
    ConstStaticCell::new(FrameBuffer([0; ov7670::QVGA_RGB565_BYTES]));

/// OV7670 frames over DCMI + DMA1 stream 0, snapshot mode, RGB565 (big-endian in memory),
/// captured whole into a frame buffer and served to the frame loop a row at a time.
pub struct DcmiCamera {
    frame: &'static mut FrameBuffer,
}

impl DcmiCamera {
    /// Clocks the sensor from MCO1, sets it up over SCCB and configures the DCMI. Call once:
    /// the camera owns the frame buffer.
    pub fn new() -> Result<Self, ov7670::Error<SccbError>> {
        reg::modify(RCC_AHB4ENR, 0, 0b1111); // GPIOA..GPIOD
        reg::modify(RCC_AHB1ENR, 0, 1); // DMA1 (and DMAMUX1)
        reg::modify(RCC_AHB2ENR, 0, 1); // DCMI
                                        // XCLK: MCO1 = HSI / 4 = 16 MHz on PA8.
        reg::modify(RCC_CFGR, (0b111 << 22) | (0b1111 << 18), 4 << 18);
        alternate(GPIOA, 8, 0, false);
        for (port, pin) in [
            (GPIOA, 4),
            (GPIOA, 6),
            (GPIOB, 7),
            (GPIOC, 6),
            (GPIOC, 7),
            (GPIOC, 8),
            (GPIOC, 9),
            (GPIOC, 11),
            (GPIOD, 3),
            (GPIOB, 8),
            (GPIOB, 9),
        ] {
            alternate(port, pin, 13, false);
        }
        let mut delay = CycleDelay;
        // The sensor needs XCLK running before it answers on SCCB.
        delay.delay_ms(10);
        Ov7670::new(Sccb::new(), CycleDelay).init()?;
        // Snapshot, 8-bit data, PIXCLK rising edge, VSYNC active high, HREF active low.
        reg::write(DCMI_CR, (1 << 1) | (1 << 5) | (1 << 7));
        reg::write(DMAMUX1_C0CR, DMAMUX_REQ_DCMI);
        Ok(DcmiCamera {
            frame: FRAME.take(),
        })
    }
}

impl FrameSource for DcmiCamera {
    type Error = CameraError;

    fn next_frame(&mut self) -> Result<Option<FrameInfo>, CameraError> {
        let buffer = &mut self.frame.0;
        let len = ov7670::QVGA_RGB565_BYTES;
        if buffer.len() < len || buffer.as_ptr() as usize % 4 != 0 {
            return Err(CameraError::Buffer);
        }
        reg::modify(DMA1_S0CR, 1, 0);
        while reg::read(DMA1_S0CR) & 1 != 0 {}
        reg::write(DMA1_LIFCR, 0b11_1101); // clear stream 0 flags
        reg::write(DMA1_S0PAR, DCMI_DR as u32);
        reg::write(DMA1_S0M0AR, buffer.as_mut_ptr() as u32);
        reg::write(DMA1_S0NDTR, (len / 4) as u32);
        reg::write(DMA1_S0FCR, (1 << 2) | 0b11); // FIFO on, full threshold
                                                 // Peripheral to memory, word to word, memory increment, very high priority, enable.
        reg::write(
            DMA1_S0CR,
            (0b11 << 16) | (0b10 << 13) | (0b10 << 11) | (1 << 10) | 1,
        );
        reg::write(DCMI_ICR, 0b1_1111);
        reg::modify(DCMI_CR, 0, (1 << 14) | 1); // ENABLE, CAPTURE
        let timeout_spins = CORE_HZ / 4;
        for _ in 0..timeout_spins {
            let dma = reg::read(DMA1_LISR);
            let dcmi = reg::read(DCMI_RIS);
            if dma & (1 << 3) != 0 || dcmi & 0b110 != 0 {
                reg::modify(DCMI_CR, 1 << 14, 0);
                return Err(CameraError::Capture);
            }
            if dma & (1 << 5) != 0 {
                reg::modify(DCMI_CR, 1 << 14, 0);
                let (width, height) = ov7670::QVGA;
                return Ok(Some(FrameInfo {
                    width,
                    height,
                    format: PixelFormat::Rgb565Be,
                }));
            }
        }
        reg::modify(DCMI_CR, 1 << 14, 0);
        Err(CameraError::Timeout)
    }

    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), CameraError> {
        let start = y * out.len();
        let row = self
            .frame
            .0
            .get(start..start + out.len())
            .ok_or(CameraError::Buffer)?;
        out.copy_from_slice(row);
        Ok(())
    }
}

/// Core cycles of a code section from DWT CYCCNT (32 bits: wraps after 67 s at 64 MHz).
pub struct DwtCycleCounter {
    started_at: u32,
}

impl DwtCycleCounter {
    /// Enables the cycle counter.
    pub fn new(mut dcb: cortex_m::peripheral::DCB, mut dwt: cortex_m::peripheral::DWT) -> Self {
        dcb.enable_trace();
        cortex_m::peripheral::DWT::unlock();
        dwt.enable_cycle_counter();
        Self { started_at: 0 }
    }
}

impl Counter for DwtCycleCounter {
    const UNIT: CountUnit = CountUnit::Cycles;

    fn start(&mut self) {
        self.started_at = cortex_m::peripheral::DWT::cycle_count();
    }

    fn stop(&mut self) -> u64 {
        u64::from(cortex_m::peripheral::DWT::cycle_count().wrapping_sub(self.started_at))
    }
}
