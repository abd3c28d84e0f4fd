//! Puts libtorch's lib dir on the rpath of every binary, test and bench of this crate and of
//! `tinycnn-tests` (whose Cargo.toml names this script), so that `target/*/tinycnn` and the
//! tests run without LD_LIBRARY_PATH. LIBTORCH comes from `.cargo/config.toml`
//! (the project venv's torch, set up by `cargo xtask setup`) unless the environment overrides it.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
