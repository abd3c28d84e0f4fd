//! OmniVision OV7670 (VGA CMOS sensor) register-level driver: reset, product ID check and
//! QVGA (320 x 240) RGB565 set-up, over SCCB.
//!
//! SCCB is I2C-like but has no repeated start: a register read is a write of the register
//! address, a stop, then a separate read. So reads use `I2c::write` then `I2c::read`, never
//! `write_read`. Register values follow the OV7670 datasheet (v1.4) and the Linux driver
//! (`drivers/media/i2c/ov7670.c`), which documents the QVGA window and scaler settings.
//!
//! Pixel data leaves the sensor high byte first (`RRRRRGGG`, `GGGBBBBB`); a DCMI capturing
//! 8-bit data stores it in that order, so frames in memory are RGB565 big-endian.
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

/// The sensor's name, for logs.
pub const NAME: &str = "OV7670";
/// 7-bit SCCB address (0x42 write / 0x43 read on the wire).
pub const ADDRESS: u8 = 0x21;
/// Frame width and height after [`Ov7670::init`].
pub const QVGA: (u16, u16) = (320, 240);
/// Bytes of one QVGA RGB565 frame.
pub const QVGA_RGB565_BYTES: usize = 320 * 240 * 2;

/// Register addresses used by the driver.
pub mod reg {
    pub const VREF: u8 = 0x03;
    pub const COM3: u8 = 0x0c;
    pub const PID: u8 = 0x0a;
    pub const VER: u8 = 0x0b;
    pub const CLKRC: u8 = 0x11;
    pub const COM7: u8 = 0x12;
    pub const HSTART: u8 = 0x17;
    pub const HSTOP: u8 = 0x18;
    pub const VSTART: u8 = 0x19;
    pub const VSTOP: u8 = 0x1a;
    pub const MIDH: u8 = 0x1c;
    pub const MIDL: u8 = 0x1d;
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

/// COM7 bit 7: reset every register to its default.
pub const COM7_RESET: u8 = 0x80;
/// COM7: QVGA output (bit 4) in RGB (bit 2).
pub const COM7_QVGA_RGB: u8 = 0x10 | 0x04;
/// Product ID (PID, VER) of an OV7670.
pub const PRODUCT_ID: (u8, u8) = (0x76, 0x73);
/// Manufacturer ID (MIDH, MIDL): OmniVision.
pub const MANUFACTURER_ID: (u8, u8) = (0x7f, 0xa2);
/// Settling time after a register reset.
pub const RESET_DELAY_MS: u32 = 10;

/// QVGA window (Linux `ov7670_win_sizes`): edges in sensor pixels and lines.
const H_START: u16 = 164;
const H_STOP: u16 = 20;
const V_START: u16 = 14;
const V_STOP: u16 = 494;

/// QVGA RGB565 register writes, in order, after the reset. The window edges (HSTART/HSTOP/HREF,
/// VSTART/VSTOP/VREF) are written separately by [`Ov7670::set_window`] because HREF and VREF
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

pub use crate::Error;

/// An OV7670 on an SCCB bus.
pub struct Ov7670<I2C, D> {
    i2c: I2C,
    delay: D,
}

impl<I2C: I2c, D: DelayNs> Ov7670<I2C, D> {
    /// Takes the bus and a delay; touches nothing until [`Self::init`] or a register call.
    pub fn new(i2c: I2C, delay: D) -> Self {
        Self { i2c, delay }
    }

    /// Resets the sensor, checks that it is an OV7670 and sets it up for QVGA RGB565.
    pub fn init(&mut self) -> Result<(), Error<I2C::Error>> {
        self.reset()?;
        self.check_product_id()?;
        for &(register, value) in QVGA_RGB565 {
            self.write_register(register, value)?;
        }
        self.set_window(H_START, H_STOP, V_START, V_STOP)
    }

    /// Resets every register to its default and waits for the sensor to settle.
    pub fn reset(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_register(reg::COM7, COM7_RESET)?;
        self.delay.delay_ms(RESET_DELAY_MS);
        Ok(())
    }

    /// Reads PID and VER and fails with [`Error::WrongChip`] unless they are the OV7670's.
    pub fn check_product_id(&mut self) -> Result<(), Error<I2C::Error>> {
        let pid = self.read_register(reg::PID)?;
        let ver = self.read_register(reg::VER)?;
        if (pid, ver) == PRODUCT_ID {
            Ok(())
        } else {
            Err(Error::WrongChip { pid, ver })
        }
    }

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

    /// SCCB register read: write the address, stop, then read one byte.
    pub fn read_register(&mut self, register: u8) -> Result<u8, Error<I2C::Error>> {
        self.i2c.write(ADDRESS, &[register])?;
        let mut value = [0u8];
        self.i2c.read(ADDRESS, &mut value)?;
        Ok(value[0])
    }

    /// SCCB register write: address and value in one transfer.
    pub fn write_register(&mut self, register: u8, value: u8) -> Result<(), Error<I2C::Error>> {
        self.i2c.write(ADDRESS, &[register, value])?;
        Ok(())
    }

    /// Gives the bus and the delay back.
    pub fn release(self) -> (I2C, D) {
        (self.i2c, self.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    fn read(register: u8, value: u8) -> [Transaction; 2] {
        [
            Transaction::write(ADDRESS, vec![register]),
            Transaction::read(ADDRESS, vec![value]),
        ]
    }

    fn write(register: u8, value: u8) -> Transaction {
        Transaction::write(ADDRESS, vec![register, value])
    }

    #[test]
    fn init_resets_checks_id_and_sets_qvga_rgb565() {
        let mut expected = vec![write(0x12, 0x80)];
        expected.extend(read(0x0a, 0x76));
        expected.extend(read(0x0b, 0x73));
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
        let mut i2c = Mock::new(&expected);
        let mut camera = Ov7670::new(i2c.clone(), NoopDelay::new());
        camera.init().unwrap();
        i2c.done();
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

    #[test]
    fn wrong_chip_id_is_reported_and_nothing_is_configured() {
        let mut expected = vec![write(0x12, 0x80)];
        // An OV7725 answers PID 0x77, VER 0x21.
        expected.extend(read(0x0a, 0x77));
        expected.extend(read(0x0b, 0x21));
        let mut i2c = Mock::new(&expected);
        let mut camera = Ov7670::new(i2c.clone(), NoopDelay::new());
        assert_eq!(
            camera.init(),
            Err(Error::WrongChip {
                pid: 0x77,
                ver: 0x21
            })
        );
        i2c.done();
    }

    #[test]
    fn bus_error_stops_init_at_the_failing_transfer() {
        let expected = [write(0x12, 0x80).with_error(ErrorKind::Other)];
        let mut i2c = Mock::new(&expected);
        let mut camera = Ov7670::new(i2c.clone(), NoopDelay::new());
        assert_eq!(camera.init(), Err(Error::Bus(ErrorKind::Other)));
        i2c.done();
    }

    #[test]
    fn bus_error_during_id_read_is_reported() {
        let expected = [
            write(0x12, 0x80),
            Transaction::write(ADDRESS, vec![0x0a]),
            Transaction::read(ADDRESS, vec![0]).with_error(ErrorKind::Other),
        ];
        let mut i2c = Mock::new(&expected);
        let mut camera = Ov7670::new(i2c.clone(), NoopDelay::new());
        assert_eq!(
            {
                camera.reset().unwrap();
                camera.check_product_id()
            },
            Err(Error::Bus(ErrorKind::Other))
        );
        i2c.done();
    }
}
