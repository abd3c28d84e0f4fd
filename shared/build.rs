//! Sets `cfg(tinycnn_arm_dsp)` on targets whose every CPU has the Arm DSP extension
//! (`thumbv7em-*`: Cortex-M4, M7), where `ops` compiles its `asm!` kernels.
//!
//! Stable Rust reports no Arm `target_feature`s to `cfg` (they are unstable), so
//! `cfg(target_feature = "dsp")` is never true on stable; the target name is what is known.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinycnn_arm_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em-") {
        println!("cargo::rustc-cfg=tinycnn_arm_dsp");
    }
}
