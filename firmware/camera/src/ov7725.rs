//! OmniVision OV7725 (VGA CMOS sensor; the camera of the OpenMV Cam M7) register-level driver:
//! QVGA (320 x 240) RGB565 set-up on top of the shared reset and product ID check.
//!
//! The SCCB protocol, reset and ID check are [`crate::sccb`]'s. Register meanings follow the
//! OV7725 datasheet (v1.1): COM7 selects resolution and format, the sensor window is
//! HSTART/HSIZE/VSTART/VSIZE with their low bits in HREF, and the output size is
//! HOUTSIZE/VOUTSIZE with their low bits in EXHCH.
//!
//! With COM3 = 0 pixel data leaves the sensor high byte first (`RRRRRGGG`, `GGGBBBBB`; the Linux
//! `ov772x` driver's RGB565 big-endian setting), so an 8-bit DCMI stores frames as RGB565
//! big-endian, as with the OV7670. The QVGA window is the one that driver uses (252, 6).
//! Exposure, gain and white balance are automatic (COM8).
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

pub use crate::sccb::{Sensor, ADDRESS, COM7_RESET, MANUFACTURER_ID, RESET_DELAY_MS};
pub use crate::{Error, QVGA, QVGA_RGB565_BYTES};

/// The sensor's name, for logs.
pub const NAME: &str = "OV7725";

/// Register addresses used by the driver.
pub mod reg {
    pub use crate::sccb::reg::*;
    pub const COM3: u8 = 0x0c;
    pub const COM4: u8 = 0x0d;
    pub const CLKRC: u8 = 0x11;
    pub const COM8: u8 = 0x13;
    pub const COM10: u8 = 0x15;
    pub const HSTART: u8 = 0x17;
    pub const HSIZE: u8 = 0x18;
    pub const VSTART: u8 = 0x19;
    pub const VSIZE: u8 = 0x1a;
    pub const HOUTSIZE: u8 = 0x29;
    pub const EXHCH: u8 = 0x2a;
    pub const VOUTSIZE: u8 = 0x2c;
    pub const HREF: u8 = 0x32;
}

/// COM7: QVGA (bit 6), RGB565 (bits 3:2 = 01), RGB output (bits 1:0 = 10).
pub const COM7_QVGA_RGB565: u8 = 0x40 | 0x04 | 0x02;
/// COM3 bit 0: colour-bar test pattern instead of the image.
pub const COM3_COLOR_BAR: u8 = 0x01;
/// Product ID (PID, VER) of an OV7725.
pub const PRODUCT_ID: (u8, u8) = (0x77, 0x21);

/// The QVGA sensor window in QVGA-mode pixels and lines: what the sensor loads for QVGA
/// (HSTART 0x3f, HSIZE 0x50, VSTART 0x03, VSIZE 0x78), written explicitly so that the frame
/// shape does not depend on reset values.
pub const QVGA_WINDOW: Window = Window {
    h_start: 0x3f << 2,
    h_size: 320,
    v_start: 0x03 << 1,
    v_size: 240,
};

/// A sensor window: start and size, horizontally in pixels and vertically in lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First pixel of a line (10 bits).
    pub h_start: u16,
    /// Pixels per line (10 bits).
    pub h_size: u16,
    /// First line (9 bits).
    pub v_start: u16,
    /// Lines (9 bits).
    pub v_size: u16,
}

/// QVGA RGB565 register writes, in order, after the reset. COM7 goes first: a resolution change
/// reloads the timing registers. The window and the output size are written afterwards by
/// [`Sensor::set_window`] and [`Sensor::set_output_size`].
pub const QVGA_RGB565: &[(u8, u8)] = &[
    (reg::COM7, COM7_QVGA_RGB565),
    // Pixel clock: XCLK x PLL / (CLKRC[5:0] + 1), halved again by the datasheet's formula. PLL x4
    // (COM4 bits 7:6 = 01, full AEC window, reserved bit 0 written as 1) and CLKRC[5:0] = 3
    // (reserved bit 7 written as 1) make PCLK at most XCLK, 24 MHz: within the DCMI's range
    // and gentler on jumper wires than the sensor's fastest timing.
    (reg::COM4, 0x41),
    (reg::CLKRC, 0x83),
    // No flip or mirror, RGB (not BGR) order, high byte first, no test pattern.
    (reg::COM3, 0x00),
    // Fast AGC/AEC, unlimited AEC steps, fine AEC, and automatic gain, white balance and exposure;
    // the banding filter stays off (it needs the mains frequency).
    (reg::COM8, 0xcf),
    // VSYNC high during vertical blanking, HREF high during active pixels, data changes on the
    // PCLK falling edge (sample on rising): the DCMI polarities the boards configure.
    (reg::COM10, 0x00),
];

/// An OV7725 on an SCCB bus: [`Sensor::init`] resets it, checks the product ID and sets it up
/// for QVGA RGB565.
pub type Ov7725<I2C, D> = Sensor<Chip, I2C, D>;

impl<I2C: I2c, D: DelayNs> Ov7725<I2C, D> {
    /// Sets the sensor window. HSTART/HSIZE hold bits 9..2 of the horizontal start and size and
    /// VSTART/VSIZE bits 8..1 of the vertical ones; HREF holds the low bits: bit 6 `v_start[0]`,
    /// bits 5:4 `h_start[1:0]`, bit 2 `v_size[0]`, bits 1:0 `h_size[1:0]`.
    pub fn set_window(&mut self, window: Window) -> Result<(), Error<I2C::Error>> {
        let Window {
            h_start,
            h_size,
            v_start,
            v_size,
        } = window;
        self.write_register(reg::HSTART, (h_start >> 2) as u8)?;
        self.write_register(reg::HSIZE, (h_size >> 2) as u8)?;
        self.write_register(reg::VSTART, (v_start >> 1) as u8)?;
        self.write_register(reg::VSIZE, (v_size >> 1) as u8)?;
        let href = (((v_start & 1) as u8) << 6)
            | (((h_start & 3) as u8) << 4)
            | (((v_size & 1) as u8) << 2)
            | (h_size & 3) as u8;
        self.write_register(reg::HREF, href)
    }

    /// Sets the output frame size. HOUTSIZE holds bits 9..2 of the width and VOUTSIZE bits 8..1
    /// of the height; EXHCH holds the low bits: bit 2 `height[0]`, bits 1:0 `width[1:0]` (its dummy
    /// pixel bits 7:4 are cleared).
    pub fn set_output_size(&mut self, width: u16, height: u16) -> Result<(), Error<I2C::Error>> {
        self.write_register(reg::HOUTSIZE, (width >> 2) as u8)?;
        self.write_register(reg::VOUTSIZE, (height >> 1) as u8)?;
        let exhch = (((height & 1) as u8) << 2) | (width & 3) as u8;
        self.write_register(reg::EXHCH, exhch)
    }

    /// Replaces the image with the sensor's colour bars (or restores it): a known picture for
    /// checking wiring and byte order at bring-up. COM3's other bits are kept.
    pub fn set_color_bar(&mut self, on: bool) -> Result<(), Error<I2C::Error>> {
        let com3 = self.read_register(reg::COM3)?;
        let com3 = if on {
            com3 | COM3_COLOR_BAR
        } else {
            com3 & !COM3_COLOR_BAR
        };
        self.write_register(reg::COM3, com3)
    }
}

/// The OV7725 as a [`crate::sccb::Model`].
pub enum Chip {}

impl crate::sccb::Model for Chip {
    const PRODUCT_ID: (u8, u8) = PRODUCT_ID;

    fn set_up<I2C: I2c, D: DelayNs>(s: &mut Ov7725<I2C, D>) -> Result<(), Error<I2C::Error>> {
        s.write_registers(QVGA_RGB565)?;
        s.set_window(QVGA_WINDOW)?;
        let (width, height) = QVGA;
        s.set_output_size(width, height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sccb::mock::{on_bus, read, reset_and_id, write};

    #[test]
    fn init_resets_checks_id_and_sets_qvga_rgb565() {
        let mut expected = reset_and_id((0x77, 0x21));
        // COM7 QVGA RGB565, COM4 PLL x4, CLKRC 0x80 | 3, COM3 0, COM8 0x80|0x40|0x08|0x07,
        // COM10 0.
        expected.extend([
            write(0x12, 0x46),
            write(0x0d, 0x41),
            write(0x11, 0x83),
            write(0x0c, 0x00),
            write(0x13, 0xcf),
            write(0x15, 0x00),
        ]);
        // Window 252 + 320, 6 + 240: HSTART 252>>2 = 0x3f, HSIZE 320>>2 = 0x50, VSTART 6>>1 = 3,
        // VSIZE 240>>1 = 0x78; every low bit is 0, so HREF = 0.
        expected.extend([
            write(0x17, 0x3f),
            write(0x18, 0x50),
            write(0x19, 0x03),
            write(0x1a, 0x78),
            write(0x32, 0x00),
        ]);
        // Output 320 x 240: HOUTSIZE 0x50, VOUTSIZE 0x78, EXHCH 0.
        expected.extend([write(0x29, 0x50), write(0x2c, 0x78), write(0x2a, 0x00)]);
        on_bus::<Chip, _>(&expected, Sensor::init).unwrap();
    }

    #[test]
    fn set_up_selects_qvga_rgb565_with_com7_first() {
        assert_eq!(QVGA_RGB565[0], (0x12, 0x46), "COM7: QVGA + RGB565 + RGB");
        assert!(
            !QVGA_RGB565[1..].iter().any(|&(r, _)| r == reg::COM7),
            "COM7 is written once, before the registers it reloads"
        );
        assert_eq!(
            (QVGA_WINDOW.h_size, QVGA_WINDOW.v_size),
            QVGA,
            "the window is the output frame: no scaling"
        );
        assert_eq!(QVGA_RGB565_BYTES, 320 * 240 * 2);
    }

    #[test]
    fn window_and_output_size_split_their_low_bits() {
        // h_start 253 = 0b11111101: HSTART 63, low bits 01 -> HREF bits 5:4 = 01.
        // h_size 322: HSIZE 80, low bits 10 -> HREF bits 1:0. v_start 7: VSTART 3, low bit 1 ->
        // HREF bit 6. v_size 241: VSIZE 120, low bit 1 -> HREF bit 2.
        // HREF = 0x40 | 0x10 | 0x04 | 0x02 = 0x56.
        // Output 321 x 239: HOUTSIZE 80, VOUTSIZE 119, EXHCH = (1 << 2) | 1 = 0x05.
        let expected = [
            write(0x17, 63),
            write(0x18, 80),
            write(0x19, 3),
            write(0x1a, 120),
            write(0x32, 0x56),
            write(0x29, 80),
            write(0x2c, 119),
            write(0x2a, 0x05),
        ];
        on_bus::<Chip, _>(&expected, |camera| {
            camera.set_window(Window {
                h_start: 253,
                h_size: 322,
                v_start: 7,
                v_size: 241,
            })?;
            camera.set_output_size(321, 239)
        })
        .unwrap();
    }

    #[test]
    fn color_bar_keeps_com3s_other_bits() {
        let mut expected = Vec::new();
        expected.extend(read(0x0c, 0xc0));
        expected.push(write(0x0c, 0xc1));
        expected.extend(read(0x0c, 0xc1));
        expected.push(write(0x0c, 0xc0));
        on_bus::<Chip, _>(&expected, |camera| {
            camera.set_color_bar(true)?;
            camera.set_color_bar(false)
        })
        .unwrap();
    }
}
