//! STM32H743ZI (NUCLEO-H743ZI / NUCLEO-H743ZI2) with an OV7670 or OV7725 camera module on the
//! DCMI, on `embassy-stm32`. Not yet run on hardware: `firmware/README.md` lists what a first
//! bring-up checks.
//!
//! - Clocks: HSI 64 MHz / 4 x 60 = PLL1 VCO 960 MHz; P / 2 = 480 MHz core, Q / 8 = 120 MHz;
//!   AXI/AHB 240 MHz, APB1..4 120 MHz. 480 MHz needs voltage scale 0 (VOS0), which exists on
//!   revision V silicon only (revision Y stops at 400 MHz, VOS1). The STM32H743 has no SMPS: the
//!   NUCLEO boards supply VCORE from the internal LDO, which is what `embassy-stm32` sets for
//!   this part (PWR_CR3 LDOEN + SCUEN); there is no `supply_config` to choose.
//! - I- and D-cache on. The frame buffer is kept coherent by cache maintenance around each
//!   capture ([`DcmiCamera`]'s `next_frame`); no other buffer is touched by DMA. The frame loop
//!   reads the frame buffer a row at a time. The RTT window (the
//!   first 2 KiB of AXI SRAM, `boards/stm32h743/memory.x`) is made non-cacheable with the MPU,
//!   because the debugger reads and writes it behind the core's back.
//! - Camera: XCLK 24 MHz from MCO1 (PLL1 Q / 5) on PA8; SCCB on I2C1 (PB8 SCL, PB9 SDA) at
//!   100 kHz, blocking; frames by DCMI + DMA1 stream 0 in snapshot mode, 8-bit, VSYNC high and
//!   HREF low while data is invalid, sampled on the PIXCLK rising edge. The sensor is the OV7670
//!   unless the `camera-ov7725` feature selects the OV7725. Wiring: `firmware/README.md`.
//! - defmt over RTT (`defmt-rtt`, selected in `lib.rs`); forward-pass cycles from DWT CYCCNT.
use embassy_futures::block_on;
use embassy_stm32::dcmi::{self, Dcmi};
use embassy_stm32::gpio::Speed;
use embassy_stm32::i2c::{self, I2c};
use embassy_stm32::mode::Blocking;
use embassy_stm32::rcc::{self, Mco, Mco1Source, McoConfig, McoPrescaler};
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, dma, peripherals, Peripherals};
use embassy_time::{with_timeout, Delay, Duration};
use static_cell::ConstStaticCell;
use tinycnn::protocol::CountUnit;
use tinycnn::PixelFormat;

use super::{Counter, FrameInfo, FrameSource};

#[cfg(not(feature = "camera-ov7725"))]
mod sensor {
    pub use tinycnn_camera::ov7670::{Ov7670 as Driver, NAME, QVGA, QVGA_RGB565_BYTES};
}
#[cfg(feature = "camera-ov7725")]
mod sensor {
    pub use tinycnn_camera::ov7725::{Ov7725 as Driver, NAME, QVGA, QVGA_RGB565_BYTES};
}

/// The camera module this image drives (`camera-ov7725` feature: OV7725, else OV7670).
pub const SENSOR: &str = sensor::NAME;
/// Core clock (PLL1 P).
pub const CORE_HZ: u32 = 480_000_000;
/// Bytes of one captured frame: QVGA RGB565.
pub const FRAME_BYTES: usize = sensor::QVGA_RGB565_BYTES;
/// Cortex-M7 D-cache line.
const CACHE_LINE: usize = 32;
const _: () = assert!(FRAME_BYTES % CACHE_LINE == 0);
/// A frame takes 33 ms at 30 fps; no frame within this means no PIXCLK, HREF or VSYNC.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(1);

bind_interrupts!(struct Irqs {
    DCMI => dcmi::InterruptHandler<peripherals::DCMI>;
    DMA1_STREAM0 => dma::InterruptHandler<peripherals::DMA1_CH0>;
});

/// The clock tree above: 480 MHz core at VOS0.
pub fn clock_config() -> embassy_stm32::Config {
    let mut config = embassy_stm32::Config::default();
    let rcc = &mut config.rcc;
    rcc.hsi = Some(rcc::HSIPrescaler::DIV1);
    rcc.pll1 = Some(rcc::Pll {
        source: rcc::PllSource::HSI,
        // 16 MHz reference (PLL input range 8..16 MHz), VCO 960 MHz (wide range, at most 960).
        prediv: rcc::PllPreDiv::DIV4,
        mul: rcc::PllMul::MUL60,
        fracn: None,
        divp: Some(rcc::PllDiv::DIV2),
        divq: Some(rcc::PllDiv::DIV8),
        divr: None,
    });
    rcc.sys = rcc::Sysclk::PLL1_P;
    rcc.d1c_pre = rcc::AHBPrescaler::DIV1;
    rcc.ahb_pre = rcc::AHBPrescaler::DIV2;
    rcc.apb1_pre = rcc::APBPrescaler::DIV2;
    rcc.apb2_pre = rcc::APBPrescaler::DIV2;
    rcc.apb3_pre = rcc::APBPrescaler::DIV2;
    rcc.apb4_pre = rcc::APBPrescaler::DIV2;
    rcc.voltage_scale = rcc::VoltageScale::Scale0;
    config
}

/// Makes the RTT window uncached, turns the caches on, sets the clocks to 480 MHz and hands out
/// the peripherals: the chip's (for [`DcmiCamera::new`]) and the core's (SCB for cache
/// maintenance, DCB/DWT for [`DwtCycleCounter::new`]).
pub fn init() -> (Peripherals, cortex_m::Peripherals) {
    let mut core = defmt::unwrap!(cortex_m::Peripherals::take());
    rtt_uncached(&mut core.MPU);
    core.SCB.enable_icache();
    core.SCB.enable_dcache(&mut core.CPUID);
    let chip = embassy_stm32::init(clock_config());
    (chip, core)
}

/// Size of the RTT window; `memory.x` checks that defmt-rtt's buffer and `.data` fit in it.
const RTT_WINDOW_BYTES: u32 = 2048;

extern "C" {
    /// Start of the RTT window (`memory.x`).
    static _rtt_window_start: u8;
}

/// MPU region 0 over the RTT window: Normal memory, not cacheable (TEX 001, C 0, B 0), read-write
/// (AP 011), never executed (XN), SIZE field n for 2^(n+1) bytes, enabled.
const RTT_REGION_RASR: u32 =
    (1 << 28) | (0b011 << 24) | (0b001 << 19) | ((RTT_WINDOW_BYTES.trailing_zeros() - 1) << 1) | 1;
const _: () = assert!(RTT_WINDOW_BYTES.is_power_of_two() && RTT_WINDOW_BYTES >= 32);
/// MPU_CTRL: enabled, with the default memory map as background for privileged code
/// (PRIVDEFENA), so every address outside region 0 keeps its usual attributes.
const MPU_CTRL_ENABLE_PRIVDEFENA: u32 = (1 << 2) | 1;

/// Makes the RTT window Normal non-cacheable memory. Call before the D-cache is enabled.
fn rtt_uncached(mpu: &mut cortex_m::peripheral::MPU) {
    let start = core::ptr::addr_of!(_rtt_window_start) as u32;
    // An MPU region's base is aligned to its size.
    defmt::assert!(start % RTT_WINDOW_BYTES == 0);
    cortex_m::asm::dmb();
    // The firmware owns the MPU (taken from `cortex_m::Peripherals`) and nothing else
    // has programmed it. Region 0 only removes cacheability from the RTT window, which the
    // D-cache has never held (it is still off); PRIVDEFENA keeps the default map everywhere
    // else, so no access that worked before can fault.
    // SAFETY: programming the MPU this way changes no mapping any code relies on (see above).
    unsafe {
        mpu.ctrl.write(0);
        mpu.rnr.write(0);
        mpu.rbar.write(start);
        mpu.rasr.write(RTT_REGION_RASR);
        mpu.ctrl.write(MPU_CTRL_ENABLE_PRIVDEFENA);
    }
    // The new attributes apply to every access after these.
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}

/// The sensor set-up's error: the SCCB bus, or a chip that is not the selected sensor.
pub type SensorError = tinycnn_camera::Error<i2c::Error>;

/// Logs why the sensor set-up failed and what to do about it.
pub fn log_sensor_error(error: &SensorError) {
    match *error {
        SensorError::Bus(e) => defmt::error!(
            "the {=str} does not answer on SCCB ({}): check its 3.3 V and GND, SIOC on PB8 and \
             SIOD on PB9 with pull-ups, and XCLK on PA8",
            SENSOR,
            e
        ),
        SensorError::WrongChip { pid, ver } => match tinycnn_camera::identify(pid, ver) {
            Some(found) => defmt::error!(
                "the camera is an {=str}, but this firmware drives the {=str}: rebuild {=str}",
                found,
                SENSOR,
                if cfg!(feature = "camera-ov7725") {
                    "without `camera-ov7725`"
                } else {
                    "with `--features board-stm32h743,camera-ov7725`"
                }
            ),
            None => defmt::error!(
                "unknown camera (PID {=u8:#04x}, VER {=u8:#04x}): this firmware drives the OV7670 \
                 (default) and the OV7725 (feature camera-ov7725)",
                pid,
                ver
            ),
        },
    }
}

/// Capture failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum CameraError {
    /// The frame buffer is shorter than a frame or not aligned to a cache line, or a row
    /// outside the frame was asked for.
    Buffer { len: usize, address: usize },
    /// The DCMI reported an overrun or a synchronisation error.
    Capture(dcmi::Error),
    /// No complete frame within 1 s: check PIXCLK, HREF, VSYNC and D0..D7.
    Timeout,
}

/// The DMA target of the camera: one QVGA RGB565 frame, on a cache line and whole cache lines,
/// in AXI SRAM (`.bss`, `boards/stm32h743/memory.x`), which DMA1 reaches.
#[repr(C, align(32))]
struct FrameBuffer([u8; FRAME_BYTES]);

static FRAME: ConstStaticCell<FrameBuffer> = ConstStaticCell::new(FrameBuffer([0; FRAME_BYTES]));

/// Frames from the sensor over DCMI + DMA1 stream 0, one snapshot per
/// [`FrameSource::next_frame`] into the frame buffer, served to the frame loop a row at a time.
pub struct DcmiCamera {
    frame: &'static mut FrameBuffer,
    dcmi: Dcmi<'static, peripherals::DCMI>,
    scb: cortex_m::peripheral::SCB,
    /// Kept so SCCB stays configured for the sensor's lifetime.
    _sensor: sensor::Driver<I2c<'static, Blocking, i2c::Master>, Delay>,
    /// XCLK: the sensor stops without it.
    _xclk: Mco<'static, peripherals::MCO1>,
}

impl DcmiCamera {
    /// Starts XCLK, sets the sensor up over SCCB and configures the DCMI and its DMA stream.
    pub fn new(p: Peripherals, scb: cortex_m::peripheral::SCB) -> Result<Self, SensorError> {
        let mut xclk_config = McoConfig::default();
        xclk_config.prescaler = McoPrescaler::DIV5;
        xclk_config.speed = Speed::VeryHigh;
        let xclk = Mco::new(p.MCO1, p.PA8, Mco1Source::PLL1_Q, xclk_config);
        // The sensor needs XCLK running for a while before it answers on SCCB.
        embedded_hal::delay::DelayNs::delay_ms(&mut Delay, 10);

        let mut i2c_config = i2c::Config::default();
        i2c_config.frequency = Hertz::khz(100);
        // Weak (about 40 kOhm) but enough at 100 kHz over short wires; many camera modules have
        // no pull-ups of their own.
        i2c_config.scl_pullup = true;
        i2c_config.sda_pullup = true;
        let sccb = I2c::new_blocking(p.I2C1, p.PB8, p.PB9, i2c_config);
        let mut sensor = sensor::Driver::new(sccb, Delay);
        sensor.init()?;
        let (width, height) = sensor::QVGA;
        defmt::println!(
            "camera={=str} frame={=u16}x{=u16} rgb565be core_hz={=u32}",
            SENSOR,
            width,
            height,
            CORE_HZ
        );

        let dcmi = Dcmi::new_8bit(
            p.DCMI,
            p.DMA1_CH0,
            Irqs,
            p.PC6,
            p.PC7,
            p.PC8,
            p.PC9,
            p.PE4,
            p.PB6,
            p.PE5,
            p.PE6,
            p.PG9,
            p.PA4,
            p.PA6,
            dcmi::Config::default(),
        );
        Ok(Self {
            frame: FRAME.take(),
            dcmi,
            scb,
            _sensor: sensor,
            _xclk: xclk,
        })
    }
}

impl FrameSource for DcmiCamera {
    type Error = CameraError;

    /// Captures one frame into the frame buffer.
    fn next_frame(&mut self) -> Result<Option<FrameInfo>, CameraError> {
        let buffer = &mut self.frame.0;
        let (len, address) = (buffer.len(), buffer.as_ptr() as usize);
        let bad_buffer = CameraError::Buffer { len, address };
        if address % CACHE_LINE != 0 {
            return Err(bad_buffer);
        }
        let frame = buffer.get_mut(..FRAME_BYTES).ok_or(bad_buffer)?;
        let words: &mut [u32] = bytemuck::try_cast_slice_mut(frame).map_err(|_| bad_buffer)?;

        // Coherence with the D-cache on. The frame covers whole cache lines, so no other data
        // shares them. Before the transfer: write back and drop every line of the frame, so no
        // dirty line can later be evicted on top of DMA data.
        self.scb
            .clean_invalidate_dcache_by_address(address, FRAME_BYTES);
        let result = block_on(with_timeout(CAPTURE_TIMEOUT, self.dcmi.capture(words)));
        // The capture future is gone: the stream completed, or dropping it stopped the stream
        // (embassy waits for it to stop, then fences), so DMA no longer writes the frame. The CPU
        // has not written the frame since the maintenance above, so no line is dirty and this
        // only drops lines the core fetched speculatively during the transfer. The cache
        // operations end with DSB + ISB: the reads that follow see the DMA's data.
        self.scb
            .clean_invalidate_dcache_by_address(address, FRAME_BYTES);
        match result {
            Ok(Ok(())) => {
                let (width, height) = sensor::QVGA;
                Ok(Some(FrameInfo {
                    width,
                    height,
                    format: PixelFormat::Rgb565Be,
                }))
            }
            Ok(Err(e)) => Err(CameraError::Capture(e)),
            Err(_) => {
                // A dropped capture leaves the DCMI armed (embassy disables it only when the
                // capture completes); stop it so the next capture starts at a frame boundary.
                embassy_stm32::pac::DCMI.cr().modify(|w| {
                    w.set_capture(false);
                    w.set_enable(false);
                });
                Err(CameraError::Timeout)
            }
        }
    }

    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), CameraError> {
        let frame = &self.frame.0;
        let bad_row = CameraError::Buffer {
            len: frame.len(),
            address: frame.as_ptr() as usize,
        };
        let start = y.checked_mul(out.len()).ok_or(bad_row)?;
        let row = frame.get(start..start + out.len()).ok_or(bad_row)?;
        out.copy_from_slice(row);
        Ok(())
    }
}

/// Core cycles of a code section from DWT CYCCNT (32 bits: wraps after 8.9 s at 480 MHz).
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
