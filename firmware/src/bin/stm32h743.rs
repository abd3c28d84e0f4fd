//! STM32H743 + OV7670: classifies camera frames forever, logging over defmt-rtt.
#![no_std]
#![no_main]

use tinycnn_firmware::board::stm32h743::{DcmiCamera, DwtCycleCounter};
use tinycnn_firmware::{classify, exit, ExitCode};

#[cortex_m_rt::entry]
fn main() -> ! {
    let model = classify::load_model();
    let core = defmt::unwrap!(cortex_m::Peripherals::take());
    let mut counter = DwtCycleCounter::new(core.DCB, core.DWT);
    let mut camera = match DcmiCamera::new() {
        Ok(camera) => camera,
        Err(e) => {
            defmt::error!("camera set-up failed: {}", e);
            exit(ExitCode::BadFrame)
        }
    };
    classify::run(&model, &mut camera, &mut counter)
}
