//! Writes a model blob with random weights (`OwnedModel::random`), for firmware builds and
//! on-target measurements without the host crate.
//!
//! `cargo run -p tinycnn --example random_model -- <fashion|tutorial> <seed> <out.tcnn> [bits]`
//!
//! `bits` is a `--weight-bits` choice (`int8`, the default, `dense4`, `all4` or `8,8,8,4,8`).

use tinycnn::{parse_weight_bits, Arch, OwnedModel};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (preset, seed, out, bits) = match args.as_slice() {
        [preset, seed, out] => (preset, seed, out, "int8"),
        [preset, seed, out, bits] => (preset, seed, out, bits.as_str()),
        _ => {
            eprintln!("usage: random_model <fashion|tutorial> <seed> <out.tcnn> [weight bits]");
            std::process::exit(2);
        }
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
    let bits = match parse_weight_bits(&arch, bits) {
        Ok(bits) => bits,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let bytes = match OwnedModel::random_bits(arch, &bits, seed).to_bytes() {
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
    println!(
        "{out}: {preset}, seed {seed}, weight bits {bits:?}, {} bytes",
        bytes.len()
    );
}
