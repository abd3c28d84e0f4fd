//! Links the kernel suite with the QEMU MPS2 memory map. `mps2-an386` (M4) and `mps2-an500` (M7)
//! share it: 4 MiB of code memory at 0x0 and 4 MiB of RAM at 0x20000000 (QEMU hw/arm/mps2.c).
use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let memory_x = manifest_dir.join("../boards/qemu-mps2-an386/memory.x");
    println!("cargo:rerun-if-changed={}", memory_x.display());
    let memory =
        std::fs::read(&memory_x).unwrap_or_else(|e| panic!("reading {}: {e}", memory_x.display()));
    std::fs::write(out_dir.join("memory.x"), memory)
        .unwrap_or_else(|e| panic!("writing memory.x into {}: {e}", out_dir.display()));
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
