//! STM32H743 + OV7670 (or OV7725): classifies camera frames forever, logging over defmt-rtt.
#![no_std]
#![no_main]

use tinycnn_firmware::board::stm32h743::{self, DcmiCamera, DwtCycleCounter};
use tinycnn_firmware::{classify, exit, ExitCode};

#[cortex_m_rt::entry]
fn main() -> ! {
    let (chip, core) = stm32h743::init();
    let model = classify::load_model();
    let mut counter = DwtCycleCounter::new(core.DCB, core.DWT);
    let mut camera = match DcmiCamera::new(chip, core.SCB) {
        Ok(camera) => camera,
        Err(e) => {
            stm32h743::log_sensor_error(&e);
            exit(ExitCode::BadFrame)
        }
    };
    classify::run(&model, &mut camera, &mut counter)
}
