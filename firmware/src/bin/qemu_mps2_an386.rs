//! QEMU mps2-an386: classifies the frames listed in `frames.txt` (read over semihosting).
#![no_std]
#![no_main]

#[cortex_m_rt::entry]
fn main() -> ! {
    tinycnn_firmware::board::qemu_mps2_an386::run()
}
