//! Camera sensor drivers for tinycnn boards. `no_std`; built for the firmware's target and
//! unit-tested on the host against `embedded-hal-mock`:
//! `cargo test --manifest-path firmware/camera/Cargo.toml --target x86_64-unknown-linux-gnu`.
#![cfg_attr(not(test), no_std)]

pub mod ov7670;
