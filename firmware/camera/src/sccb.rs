//! What the OmniVision sensors of this crate share: the SCCB register protocol at [`ADDRESS`],
//! the register reset through COM7 and the product ID in PID/VER. [`Sensor`] drives any of them;
//! a [`Model`] adds the sensor's own register set-up.
//!
//! SCCB is I2C-like but has no repeated start: a register read is a write of the register
//! address, a stop, then a separate read. So reads use `I2c::write` then `I2c::read`, never
//! `write_read`.
use core::marker::PhantomData;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

use crate::Error;

/// 7-bit SCCB address (0x42 write / 0x43 read on the wire) of every sensor this crate drives.
pub const ADDRESS: u8 = 0x21;
/// COM7 bit 7: reset every register to its default.
pub const COM7_RESET: u8 = 0x80;
/// Manufacturer ID (MIDH, MIDL): OmniVision.
pub const MANUFACTURER_ID: (u8, u8) = (0x7f, 0xa2);
/// Settling time after a register reset.
pub const RESET_DELAY_MS: u32 = 10;

/// The registers every sensor of this crate has at the same address.
pub mod reg {
    pub const PID: u8 = 0x0a;
    pub const VER: u8 = 0x0b;
    pub const COM7: u8 = 0x12;
    pub const MIDH: u8 = 0x1c;
    pub const MIDL: u8 = 0x1d;
}

/// One sensor model: its product ID and the register set-up that [`Sensor::init`] runs after
/// the reset and the product ID check.
pub trait Model: Sized {
    /// Product ID (PID, VER).
    const PRODUCT_ID: (u8, u8);
    /// Sets the sensor up for QVGA RGB565; stops at the first failing transfer.
    fn set_up<I2C: I2c, D: DelayNs>(s: &mut Sensor<Self, I2C, D>) -> Result<(), Error<I2C::Error>>;
}

/// A sensor of model `M` on an SCCB bus.
pub struct Sensor<M, I2C, D> {
    i2c: I2C,
    delay: D,
    model: PhantomData<M>,
}

impl<M: Model, I2C: I2c, D: DelayNs> Sensor<M, I2C, D> {
    /// Takes the bus and a delay; touches nothing until [`Self::init`] or a register call.
    pub fn new(i2c: I2C, delay: D) -> Self {
        Self {
            i2c,
            delay,
            model: PhantomData,
        }
    }

    /// Resets the sensor, checks that it is an `M` and sets it up ([`Model::set_up`]). Stops at
    /// the first failing transfer.
    pub fn init(&mut self) -> Result<(), Error<I2C::Error>> {
        self.reset()?;
        self.check_product_id()?;
        M::set_up(self)
    }

    /// Resets every register to its default and waits for the sensor to settle.
    pub fn reset(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_register(reg::COM7, COM7_RESET)?;
        self.delay.delay_ms(RESET_DELAY_MS);
        Ok(())
    }

    /// Reads PID and VER and fails with [`Error::WrongChip`] unless they are `M`'s.
    pub fn check_product_id(&mut self) -> Result<(), Error<I2C::Error>> {
        let pid = self.read_register(reg::PID)?;
        let ver = self.read_register(reg::VER)?;
        if (pid, ver) == M::PRODUCT_ID {
            Ok(())
        } else {
            Err(Error::WrongChip { pid, ver })
        }
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

    /// Writes `(register, value)` pairs in order; stops at the first failing transfer.
    pub fn write_registers(&mut self, writes: &[(u8, u8)]) -> Result<(), Error<I2C::Error>> {
        for &(register, value) in writes {
            self.write_register(register, value)?;
        }
        Ok(())
    }

    /// Gives the bus and the delay back.
    pub fn release(self) -> (I2C, D) {
        (self.i2c, self.delay)
    }
}

/// The transfers the drivers' tests expect, on `embedded-hal-mock`.
#[cfg(test)]
pub(crate) mod mock {
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    use super::{reg, Model, Sensor, ADDRESS, COM7_RESET};

    /// Runs `f` on an `M` whose bus expects exactly `expected`, in order.
    pub fn on_bus<M: Model, R>(
        expected: &[Transaction],
        f: impl FnOnce(&mut Sensor<M, Mock, NoopDelay>) -> R,
    ) -> R {
        let mut i2c = Mock::new(expected);
        let result = f(&mut Sensor::new(i2c.clone(), NoopDelay::new()));
        i2c.done();
        result
    }

    /// A register read that answers `value`.
    pub fn read(register: u8, value: u8) -> [Transaction; 2] {
        [
            Transaction::write(ADDRESS, vec![register]),
            Transaction::read(ADDRESS, vec![value]),
        ]
    }

    /// A register write.
    pub fn write(register: u8, value: u8) -> Transaction {
        Transaction::write(ADDRESS, vec![register, value])
    }

    /// The start of every `init`: the reset, then a chip answering `(pid, ver)`.
    pub fn reset_and_id((pid, ver): (u8, u8)) -> Vec<Transaction> {
        let mut expected = vec![write(reg::COM7, COM7_RESET)];
        expected.extend(read(reg::PID, pid));
        expected.extend(read(reg::VER, ver));
        expected
    }
}

#[cfg(test)]
mod tests {
    use super::mock::{on_bus, reset_and_id, write};
    use super::*;
    use crate::ov7670::Chip as Ov7670;
    use crate::ov7725::Chip as Ov7725;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::i2c::Transaction;

    /// Runs `init` of an `M` on a bus that expects exactly `expected`.
    fn init<M: Model>(expected: &[Transaction]) -> Result<(), Error<ErrorKind>> {
        on_bus::<M, _>(expected, Sensor::init)
    }

    /// `M` is told apart from `other` by the product ID, and nothing is configured.
    fn wrong_chip_is_reported<M: Model>(other: (u8, u8)) {
        let (pid, ver) = other;
        assert_eq!(
            init::<M>(&reset_and_id(other)),
            Err(Error::WrongChip { pid, ver })
        );
    }

    fn bus_error_stops_init_at_the_failing_transfer<M: Model>() {
        let expected = [write(0x12, 0x80).with_error(ErrorKind::Other)];
        assert_eq!(init::<M>(&expected), Err(Error::Bus(ErrorKind::Other)));
    }

    fn bus_error_during_id_read_is_reported<M: Model>() {
        let expected = [
            write(0x12, 0x80),
            Transaction::write(ADDRESS, vec![0x0a]),
            Transaction::read(ADDRESS, vec![0]).with_error(ErrorKind::Other),
        ];
        assert_eq!(init::<M>(&expected), Err(Error::Bus(ErrorKind::Other)));
    }

    /// `set_up` is `M`'s register set-up, which starts with two plain writes.
    fn bus_error_during_the_set_up_stops_it_there<M: Model>(set_up: &[(u8, u8)]) {
        let mut expected = reset_and_id(M::PRODUCT_ID);
        let (first, second) = (set_up[0], set_up[1]);
        expected.push(write(first.0, first.1));
        expected.push(write(second.0, second.1).with_error(ErrorKind::Other));
        assert_eq!(init::<M>(&expected), Err(Error::Bus(ErrorKind::Other)));
    }

    #[test]
    fn each_sensor_refuses_the_other() {
        wrong_chip_is_reported::<Ov7670>((0x77, 0x21));
        wrong_chip_is_reported::<Ov7725>((0x76, 0x73));
        assert_eq!(crate::identify(0x76, 0x73), Some("OV7670"));
    }

    #[test]
    fn bus_errors_stop_init_at_the_failing_transfer() {
        bus_error_stops_init_at_the_failing_transfer::<Ov7670>();
        bus_error_stops_init_at_the_failing_transfer::<Ov7725>();
        bus_error_during_id_read_is_reported::<Ov7670>();
        bus_error_during_id_read_is_reported::<Ov7725>();
        bus_error_during_the_set_up_stops_it_there::<Ov7670>(crate::ov7670::QVGA_RGB565);
        bus_error_during_the_set_up_stops_it_there::<Ov7725>(crate::ov7725::QVGA_RGB565);
    }
}
