//! Fuzz battery over the `.tflite` reader: random bytes, mutated and truncated valid files. Each
//! gives an error or a valid model, never a panic; a model that imports also encodes as a blob
//! and runs `forward`. Runs every test run; prints the outcome tally
//! (`cargo test -p tinycnn-tflite --release --test fuzz -- --nocapture`).

mod common;
use proptest::prelude::*;
use tinycnn::{Arch, Model, OwnedModel};
use tinycnn_fuzzing::{self as fuzzing, mutated, mutation, Tally};
use tinycnn_tflite::{from_tflite, to_tflite, ImportError};

const FUZZ_CASES: u32 = 8192;

/// A small model, so that exhaustive damage stays fast.
const SMALL: Arch = Arch {
    height: 5,
    width: 6,
    channels: 1,
    filters: tinycnn::Filters::of([2, 3, 2]),
    fc_width: 3,
    classes: 2,
};

fn small_tflite() -> Vec<u8> {
    let owned = common::consistent_model(SMALL, 11);
    let blob = owned.to_bytes().unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    to_tflite(&model).unwrap()
}

/// Imports `bytes`; a model that imports must encode and run.
fn import(bytes: &[u8]) -> Result<OwnedModel, ImportError> {
    let result = from_tflite(bytes);
    if let Ok(owned) = &result {
        let blob = owned.to_bytes().expect("an imported model encodes");
        fuzzing::forward_zeros(&Model::from_bytes(&blob).unwrap());
    }
    result
}

/// Random bytes, half with the `TFL3` identifier so that the verifier sees them.
#[test]
fn fuzz_random_bytes() {
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..1024),
        any::<bool>(),
    );
    fuzzing::tally(
        "fuzz_random_bytes",
        FUZZ_CASES,
        strategy,
        |(mut bytes, identifier)| {
            if identifier && bytes.len() >= 8 {
                bytes[4..8].copy_from_slice(b"TFL3");
            }
            import(&bytes)
        },
    );
}

/// Valid files with 1 to 4 mutations (flips, overwrites, truncation, extension, insertion,
/// removal).
#[test]
fn fuzz_mutated_files() {
    let good = small_tflite();
    let strategy = proptest::collection::vec(mutation(), 1..5);
    let tally = fuzzing::tally("fuzz_mutated_files", FUZZ_CASES, strategy, |mutations| {
        import(&mutated(&good, &mutations))
    });
    // Damage must reach the graph checks past the verifier, not stop there.
    assert!(tally.count("Unsupported") > 0);
}

/// Mutations of the TensorFlow converter's float-I/O fixture, which reaches the QUANTIZE,
/// shape-op, SOFTMAX and DEQUANTIZE paths of the reader.
#[test]
fn fuzz_mutated_converter_file() {
    let good = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/keras_float/model.tflite"),
    )
    .unwrap();
    assert!(from_tflite(&good).is_ok());
    // Mutations aimed at the graph, not the 170 KB of weights: the first and last 8 KB.
    let near_ends = (any::<bool>(), 0usize..8192, 1u8..=255);
    let strategy = proptest::collection::vec(near_ends, 1..4);
    fuzzing::tally(
        "fuzz_mutated_converter_file",
        FUZZ_CASES / 8,
        strategy,
        |edits| {
            let mut bytes = good.clone();
            let n = bytes.len();
            for (tail, at, mask) in edits {
                let at = if tail { n - 1 - at } else { at };
                bytes[at] ^= mask;
            }
            import(&bytes)
        },
    );
}

/// Every single-byte change (3 masks) at every position of a small file, and every truncation
/// length: exhaustive, deterministic. Truncations are all errors.
#[test]
fn exhaustive_single_byte_damage() {
    let good = small_tflite();
    let mut tally = Tally::default();
    for at in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = good.clone();
            b[at] ^= mask;
            tally.record(&import(&b));
        }
    }
    for len in 0..good.len() {
        assert!(
            from_tflite(&good[..len]).is_err(),
            "{len}-byte prefix imported"
        );
        tally.cases += 1;
    }
    eprintln!(
        "exhaustive_single_byte_damage: {} files from a {}-byte model: {tally:?}",
        tally.cases,
        good.len()
    );
}
