//! Fuzz battery over the `.tflite` reader: random bytes, mutated and truncated valid files. Each
//! gives an error or a valid model, never a panic; a model that imports also encodes as a blob
//! and runs `forward`. Runs every test run; prints the outcome tally
//! (`cargo test -p tinycnn-tflite --release --test fuzz -- --nocapture`).

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tinycnn::{Arch, Model, OwnedModel};
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

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: FUZZ_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    imported: usize,
    errors: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn record(&mut self, result: &Result<OwnedModel, ImportError>) {
        self.cases += 1;
        match result {
            Ok(_) => self.imported += 1,
            Err(e) => *self.errors.entry(kind(e)).or_default() += 1,
        }
    }
}

fn kind(e: &ImportError) -> &'static str {
    match e {
        ImportError::Malformed(_) => "malformed",
        ImportError::NotTflite => "not tflite",
        ImportError::Subgraphs(_) | ImportError::Subgraph(_) => "subgraph",
        ImportError::Unsupported { .. } => "unsupported",
        ImportError::Inexact { .. } => "inexact",
        ImportError::Labels(_) => "labels",
        ImportError::BlockCount { .. } => "blocks",
        ImportError::TooLarge { .. } => "too large",
        ImportError::Arch(_) => "arch",
        ImportError::Blob(_) => "blob",
    }
}

/// Imports `bytes`; a model that imports must encode and run.
fn import(bytes: &[u8]) -> Result<OwnedModel, ImportError> {
    let result = from_tflite(bytes);
    if let Ok(owned) = &result {
        let blob = owned.to_bytes().expect("an imported model encodes");
        let model = Model::from_bytes(&blob).unwrap();
        let arch = model.arch;
        let mut scratch = vec![0i8; arch.scratch_len()];
        let mut logits = vec![0i8; arch.classes as usize];
        tinycnn::forward(
            &model,
            &vec![0i8; arch.input_len()],
            &mut scratch,
            &mut logits,
        );
    }
    result
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, value: u8 },
    Truncate { len: usize },
    Extend(Vec<u8>),
    Insert { at: usize, value: u8 },
    Remove { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        1 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        1 => proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Insert { at, value }),
        1 => any::<usize>().prop_map(|at| Mutation::Remove { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match *m {
        Mutation::Flip { at, mask } => bytes[at % n] ^= mask,
        Mutation::Set { at, value } => bytes[at % n] = value,
        Mutation::Truncate { len } => bytes.truncate(len % n),
        Mutation::Extend(ref extra) => bytes.extend_from_slice(extra),
        Mutation::Insert { at, value } => bytes.insert(at % (n + 1), value),
        Mutation::Remove { at } => {
            bytes.remove(at % n);
        }
    }
}

/// Random bytes, half with the `TFL3` identifier so that the verifier sees them.
#[test]
fn fuzz_random_bytes() {
    let tally = RefCell::new(Tally::default());
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..1024),
        any::<bool>(),
    );
    runner()
        .run(&strategy, |(mut bytes, identifier)| {
            if identifier && bytes.len() >= 8 {
                bytes[4..8].copy_from_slice(b"TFL3");
            }
            tally.borrow_mut().record(&import(&bytes));
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("fuzz_random_bytes: {tally:?}");
    assert_eq!(tally.cases, FUZZ_CASES as usize);
}

/// Valid files with 1 to 4 mutations (flips, overwrites, truncation, extension, insertion,
/// removal).
#[test]
fn fuzz_mutated_files() {
    let good = small_tflite();
    let tally = RefCell::new(Tally::default());
    runner()
        .run(&proptest::collection::vec(mutation(), 1..5), |mutations| {
            let mut bytes = good.clone();
            for m in &mutations {
                if bytes.is_empty() {
                    break;
                }
                apply(&mut bytes, m);
            }
            tally.borrow_mut().record(&import(&bytes));
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("fuzz_mutated_files: {tally:?}");
    assert_eq!(tally.cases, FUZZ_CASES as usize);
    // Damage must reach the graph checks past the verifier, not stop there.
    assert!(tally.errors.get("unsupported").copied().unwrap_or(0) > 0);
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
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: FUZZ_CASES / 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    // Mutations aimed at the graph, not the 170 KB of weights: the first and last 8 KB.
    let near_ends = (any::<bool>(), 0usize..8192, 1u8..=255);
    runner
        .run(&proptest::collection::vec(near_ends, 1..4), |edits| {
            let mut bytes = good.clone();
            let n = bytes.len();
            for (tail, at, mask) in edits {
                let at = if tail { n - 1 - at } else { at };
                bytes[at] ^= mask;
            }
            tally.borrow_mut().record(&import(&bytes));
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("fuzz_mutated_converter_file: {tally:?}");
    assert_eq!(tally.cases, (FUZZ_CASES / 8) as usize);
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
