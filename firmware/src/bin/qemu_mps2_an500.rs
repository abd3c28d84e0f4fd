//! QEMU mps2-an500 (Cortex-M7): classifies the frames listed in `frames.txt` (read over semihosting).
#![no_std]
#![no_main]

use tinycnn_firmware::board::qemu_mps2_an386::{CmsdkInstructionCounter, SemihostingFrames};
use tinycnn_firmware::{classify, exit, stack, ExitCode};

#[cortex_m_rt::entry]
fn main() -> ! {
    stack::paint();
    let model = classify::load_model();
    let mut camera = match SemihostingFrames::open() {
        Ok(camera) => camera,
        Err(e) => {
            defmt::error!("cannot read the frame list frames.txt: {}", e);
            exit(ExitCode::BadFrame)
        }
    };
    classify::run(&model, &mut camera, &mut CmsdkInstructionCounter::new())
}
