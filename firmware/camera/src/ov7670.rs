//! OmniVision OV7670 (VGA CMOS sensor) register-level driver: QVGA (320 x 240) RGB565 set-up
//! on top of the shared reset and product ID check ([`crate::sccb`]). Register values follow the
//! OV7670 datasheet (v1.4) and the Linux driver (`drivers/media/i2c/ov7670.c`), which documents
//! the QVGA window and scaler settings.
//!
//! Pixel data leaves the sensor high byte first (`RRRRRGGG`, `GGGBBBBB`); a DCMI capturing
//! 8-bit data stores it in that order, so frames in memory are RGB565 big-endian.
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

pub use crate::sccb::{Sensor, ADDRESS, COM7_RESET, MANUFACTURER_ID, RESET_DELAY_MS};
pub use crate::{Error, QVGA, QVGA_RGB565_BYTES};

/// The sensor's name, for logs.
pub const NAME: &str = "OV7670";

/// Register addresses used by the driver.
pub mod reg {
    pub use crate::sccb::reg::*;
    pub const VREF: u8 = 0x03;
    pub const COM3: u8 = 0x0c;
    pub const CLKRC: u8 = 0x11;
    pub const HSTART: u8 = 0x17;
    pub const HSTOP: u8 = 0x18;
    pub const VSTART: u8 = 0x19;
    pub const VSTOP: u8 = 0x1a;
    pub const HREF: u8 = 0x32;
    pub const TSLB: u8 = 0x3a;
    pub const COM13: u8 = 0x3d;
    pub const COM14: u8 = 0x3e;
    pub const COM15: u8 = 0x40;
    pub const MTX1: u8 = 0x4f;
    pub const MTXS: u8 = 0x58;
    pub const SCALING_XSC: u8 = 0x70;
    pub const SCALING_YSC: u8 = 0x71;
    pub const SCALING_DCWCTR: u8 = 0x72;
    pub const SCALING_PCLK_DIV: u8 = 0x73;
    pub const RGB444: u8 = 0x8c;
    pub const SCALING_PCLK_DELAY: u8 = 0xa2;
}

/// COM7: QVGA output (bit 4) in RGB (bit 2).
pub const COM7_QVGA_RGB: u8 = 0x10 | 0x04;
/// Product ID (PID, VER) of an OV7670.
pub const PRODUCT_ID: (u8, u8) = (0x76, 0x73);

/// QVGA window (Linux `ov7670_win_sizes`): edges in sensor pixels and lines.
const H_START: u16 = 164;
const H_STOP: u16 = 20;
const V_START: u16 = 14;
const V_STOP: u16 = 494;

/// QVGA RGB565 register writes, in order, after the reset. The window edges (HSTART/HSTOP/HREF,
/// VSTART/VSTOP/VREF) are written separately by [`Sensor::set_window`] because HREF and VREF
/// keep their other bits.
pub const QVGA_RGB565: &[(u8, u8)] = &[
    // PCLK = XCLK / 2 (24 MHz XCLK: 30 fps VGA timing, 12 MHz pixel clock).
    (reg::CLKRC, 0x01),
    (reg::COM7, COM7_QVGA_RGB),
    // Output sequence UYVY/RGB order default, auto output window off.
    (reg::TSLB, 0x04),
    // RGB444 off, so COM15 selects RGB565 with the full 0x00..0xff output range.
    (reg::RGB444, 0x00),
    (reg::COM15, 0xd0),
    // Down-sampling and scaling to QVGA: DCW enable, PCLK divided by 2, scale 1/2 both ways.
    (reg::COM3, 0x04),
    (reg::COM14, 0x19),
    (reg::SCALING_XSC, 0x3a),
    (reg::SCALING_YSC, 0x35),
    (reg::SCALING_DCWCTR, 0x11),
    (reg::SCALING_PCLK_DIV, 0xf1),
    (reg::SCALING_PCLK_DELAY, 0x02),
    // RGB colour matrix (MTX1..MTX6, MTXS) for RGB565 output.
    (reg::MTX1, 0xb3),
    (reg::MTX1 + 1, 0xb3),
    (reg::MTX1 + 2, 0x00),
    (reg::MTX1 + 3, 0x3d),
    (reg::MTX1 + 4, 0xa7),
    (reg::MTX1 + 5, 0xe4),
    (reg::MTXS, 0x9e),
    // Gamma and UV saturation auto-adjust on.
    (reg::COM13, 0xc0),
];

/// An OV7670 on an SCCB bus: [`Sensor::init`] resets it, checks the product ID and sets it up
/// for QVGA RGB565.
pub type Ov7670<I2C, D> = Sensor<Chip, I2C, D>;

impl<I2C: I2c, D: DelayNs> Ov7670<I2C, D> {
    /// Sets the output window. HSTART/HSTOP hold bits 10..3 of the edges and HREF bits 2..0;
    /// VSTART/VSTOP hold bits 9..2 and VREF bits 1..0. HREF's and VREF's other bits are kept.
    pub fn set_window(
        &mut self,
        h_start: u16,
        h_stop: u16,
        v_start: u16,
        v_stop: u16,
    ) -> Result<(), Error<I2C::Error>> {
        self.write_register(reg::HSTART, (h_start >> 3) as u8)?;
        self.write_register(reg::HSTOP, (h_stop >> 3) as u8)?;
        let href = self.read_register(reg::HREF)?;
        let href = (href & 0xc0) | (((h_stop & 0x7) as u8) << 3) | (h_start & 0x7) as u8;
        self.write_register(reg::HREF, href)?;
        self.write_register(reg::VSTART, (v_start >> 2) as u8)?;
        self.write_register(reg::VSTOP, (v_stop >> 2) as u8)?;
        let vref = self.read_register(reg::VREF)?;
        let vref = (vref & 0xf0) | (((v_stop & 0x3) as u8) << 2) | (v_start & 0x3) as u8;
        self.write_register(reg::VREF, vref)?;
        Ok(())
    }
}

/// The OV7670 as a [`crate::sccb::Model`].
pub enum Chip {}

impl crate::sccb::Model for Chip {
    const PRODUCT_ID: (u8, u8) = PRODUCT_ID;

    fn set_up<I2C: I2c, D: DelayNs>(s: &mut Ov7670<I2C, D>) -> Result<(), Error<I2C::Error>> {
        s.write_registers(QVGA_RGB565)?;
        s.set_window(H_START, H_STOP, V_START, V_STOP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sccb::mock::{on_bus, read, reset_and_id, write};

    #[test]
    fn init_resets_checks_id_and_sets_qvga_rgb565() {
        let mut expected = reset_and_id((0x76, 0x73));
        expected.extend(QVGA_RGB565.iter().map(|&(r, v)| write(r, v)));
        // Window: HSTART 164>>3 = 20, HSTOP 20>>3 = 2, HREF keeps 0xc0 bits of its default 0x80:
        // 0x80 | (20&7)<<3 | (164&7) = 0x80 | 0x20 | 0x04 = 0xa4.
        expected.push(write(0x17, 20));
        expected.push(write(0x18, 2));
        expected.extend(read(0x32, 0x80));
        expected.push(write(0x32, 0xa4));
        // VSTART 14>>2 = 3, VSTOP 494>>2 = 123, VREF from default 0x03:
        // (0x03 & 0xf0) | (494&3)<<2 | (14&3) = 0x08 | 0x02 = 0x0a.
        expected.push(write(0x19, 3));
        expected.push(write(0x1a, 123));
        expected.extend(read(0x03, 0x03));
        expected.push(write(0x03, 0x0a));
        on_bus::<Chip, _>(&expected, Sensor::init).unwrap();
    }

    #[test]
    fn set_up_selects_qvga_rgb565_full_range() {
        assert!(QVGA_RGB565.contains(&(0x12, 0x14)), "COM7: QVGA + RGB");
        assert!(
            QVGA_RGB565.contains(&(0x40, 0xd0)),
            "COM15: RGB565, output range 00..ff"
        );
        assert!(QVGA_RGB565.contains(&(0x8c, 0x00)), "RGB444 off");
        let com7 = QVGA_RGB565.iter().position(|&(r, _)| r == 0x12).unwrap();
        let com15 = QVGA_RGB565.iter().position(|&(r, _)| r == 0x40).unwrap();
        assert!(
            com7 < com15,
            "COM7 rewrites the format, so it goes before COM15"
        );
    }
}
