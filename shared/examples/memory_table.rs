//! Prints the const-fn memory table per preset: MACs, parameters, scratch, peak activation RAM of
//! the streaming plan (rings + last row + fc1 accumulators + fc1 output + logits) and of the
//! whole-map plan (input + scratch + logits), the naive layer-by-layer peak, and blob bytes.
//!
//! `cargo run -p tinycnn --example memory_table`

use tinycnn::blob::blob_len;
use tinycnn::Arch;

/// Blob bytes with labels "class0".."classN-1" (what `OwnedModel::random` writes).
const fn blob_bytes(arch: &Arch) -> usize {
    let mut labels = 0;
    let mut i = 0;
    while i < arch.classes as usize {
        labels += if i < 10 { 6 } else { 7 };
        i += 1;
    }
    blob_len(arch, labels)
}

const PRESETS: [(&str, Arch); 3] = [
    ("fashion", Arch::fashion()),
    ("tutorial (2 classes)", Arch::tutorial(2)),
    ("tutorial (10 classes)", Arch::tutorial(10)),
];

// Evaluated at compile time: the firmware can size `static` buffers the same way.
const TUTORIAL_SCRATCH: usize = Arch::tutorial(2).scratch_len();
const _: () = assert!(TUTORIAL_SCRATCH <= 200 * 1024);

fn main() {
    println!("| preset | MACs | params | scratch (B) | streaming peak (B) | whole-map peak (B) | naive layer-by-layer peak (B) | blob (B) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, arch) in PRESETS {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            arch.macs(),
            arch.param_count(),
            arch.scratch_len(),
            arch.peak_activation_bytes(),
            arch.whole_map_activation_bytes(),
            arch.naive_activation_bytes(),
            blob_bytes(&arch)
        );
    }
}
