//! Camera sensor drivers for tinycnn boards: register-level set-up over SCCB through
//! `embedded_hal::i2c::I2c` (blocking) and `DelayNs`. `no_std`; built for the firmware's target
//! and unit-tested on the host against `embedded-hal-mock`:
//! `cd firmware && cargo test -p tinycnn-camera --target x86_64-unknown-linux-gnu`.
//!
//! Each driver resets its sensor, checks the product ID and sets up QVGA (320 x 240) RGB565,
//! high byte first, which an 8-bit DCMI stores as RGB565 big-endian. Both sensors answer at
//! SCCB address 0x21, so a board tells them apart by the product ID: [`identify`]. [`sccb`]
//! holds what they share (the register protocol, reset and ID check, [`sccb::Sensor`]); each
//! driver module adds its sensor's register set-up.
#![cfg_attr(not(test), no_std)]

pub mod ov7670;
pub mod ov7725;
pub mod sccb;

/// Frame width and height after every driver's `init`.
pub const QVGA: (u16, u16) = (320, 240);
/// Bytes of one QVGA RGB565 frame.
pub const QVGA_RGB565_BYTES: usize = 320 * 240 * 2;

/// What went wrong talking to a sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error<E> {
    /// The SCCB (I2C) bus failed: check wiring, pull-ups, the sensor's power and XCLK.
    Bus(E),
    /// A chip answered with another product ID (PID, VER registers) than the driver's sensor.
    /// [`identify`] names the sensors this crate knows.
    WrongChip { pid: u8, ver: u8 },
}

impl<E> From<E> for Error<E> {
    fn from(e: E) -> Self {
        Error::Bus(e)
    }
}

/// The sensor a product ID (PID, VER) belongs to, among those this crate drives.
pub fn identify(pid: u8, ver: u8) -> Option<&'static str> {
    match (pid, ver) {
        ov7670::PRODUCT_ID => Some(ov7670::NAME),
        ov7725::PRODUCT_ID => Some(ov7725::NAME),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_names_both_sensors_and_nothing_else() {
        assert_eq!(identify(0x76, 0x73), Some("OV7670"));
        assert_eq!(identify(0x77, 0x21), Some("OV7725"));
        // An OV7720 (same die family, VER 0x20) and an OV2640 (PID 0x26, VER 0x42) are not driven.
        assert_eq!(identify(0x77, 0x20), None);
        assert_eq!(identify(0x26, 0x42), None);
    }
}
