//! Writes a model blob with random weights for a preset, for building the firmware without the
//! host (libtorch): the blob is valid, so `firmware/build.rs` checks and embeds it like a trained
//! one, and the firmware's flash and RAM figures are those of a trained model of that preset.
//!
//! `cargo run -p tinycnn --example random_model -- <fashion|tutorial> <out.tcnn>`
use std::process::ExitCode;

use tinycnn::{Arch, OwnedModel};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (arch, path) = match args.as_slice() {
        [preset, path] if preset == "fashion" => (Arch::fashion(), path),
        [preset, path] if preset == "tutorial" => (Arch::tutorial(2), path),
        _ => {
            eprintln!("usage: random_model <fashion|tutorial> <out.tcnn>");
            return ExitCode::from(2);
        }
    };
    let bytes = match OwnedModel::random(arch, 1).to_bytes() {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("cannot encode the model: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(path, &bytes) {
        eprintln!("cannot write {path}: {e}; check that its folder exists and is writable");
        return ExitCode::FAILURE;
    }
    println!("{path}: {} bytes", bytes.len());
    ExitCode::SUCCESS
}
