//! Writes a model blob with random weights (`OwnedModel::random`), for firmware builds and
//! on-target measurements without the host crate.
//!
//! `cargo run -p tinycnn --example random_model -- <fashion|tutorial> <seed> <out.tcnn>`

use tinycnn::{Arch, OwnedModel};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [preset, seed, out] = args.as_slice() else {
        eprintln!("usage: random_model <fashion|tutorial> <seed> <out.tcnn>");
        std::process::exit(2);
    };
    let arch = match preset.as_str() {
        "fashion" => Arch::fashion(),
        "tutorial" => Arch::tutorial(2),
        other => {
            eprintln!("unknown preset {other:?}: use fashion or tutorial");
            std::process::exit(2);
        }
    };
    let seed: u64 = match seed.parse() {
        Ok(seed) => seed,
        Err(e) => {
            eprintln!("seed {seed:?} is not an unsigned integer ({e})");
            std::process::exit(2);
        }
    };
    let bytes = match OwnedModel::random(arch, seed).to_bytes() {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("encoding the model failed: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = std::fs::write(out, &bytes) {
        eprintln!("cannot write {out}: {e}");
        std::process::exit(1);
    }
    println!("{out}: {preset}, seed {seed}, {} bytes", bytes.len());
}
