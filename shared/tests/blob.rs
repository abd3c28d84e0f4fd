//! Blob round trip, every load error, and "no bytes make `from_bytes` panic".

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::cell::RefCell;
use std::collections::BTreeMap;
use tinycnn::arch::ArchError;
use tinycnn::blob::blob_len;
use tinycnn::{
    crc32, Arch, EncodeError, Field, Filters, LoadError, Model, OwnedModel, FORMAT_VERSION, MAGIC,
};

/// A small architecture so mutation fuzzing reaches the semantic checks quickly.
const SMALL: Arch = Arch {
    height: 5,
    width: 6,
    channels: 3,
    filters: Filters::of([2, 3, 2]),
    fc_width: 4,
    classes: 3,
};

fn small_blob() -> Vec<u8> {
    OwnedModel::random(SMALL, 11).to_bytes().unwrap()
}

/// Replaces the trailing CRC so that a mutation reaches the checks after the CRC.
fn fix_crc(bytes: &mut [u8]) {
    let n = bytes.len();
    if n >= 4 {
        let crc = crc32(&bytes[..n - 4]);
        bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }
}

fn load_err(bytes: &[u8]) -> LoadError {
    Model::from_bytes(bytes).unwrap_err()
}

#[test]
fn round_trip_presets() {
    for arch in [Arch::fashion(), Arch::tutorial(2), SMALL] {
        let owned = OwnedModel::random(arch, 5);
        let bytes = owned.to_bytes().unwrap();
        let labels: usize = owned.labels.iter().map(String::len).sum();
        assert_eq!(bytes.len(), blob_len(&arch, labels));
        assert_eq!(&bytes[..4], &MAGIC);
        let model = Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.arch, arch);
        assert_eq!(model.to_owned_model(), owned);
        // Zero-copy: the weights point into the blob.
        let w = model.layers[3].weights();
        let range = bytes.as_ptr_range();
        assert!(range.contains(&(w.as_ptr() as *const u8)));
    }
}

#[test]
fn errors_header() {
    let good = small_blob();
    assert_eq!(load_err(&[]), LoadError::Truncated);
    assert_eq!(load_err(b"TC"), LoadError::Truncated);
    assert_eq!(load_err(b"XCNN"), LoadError::BadMagic);
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(load_err(&bad), LoadError::BadMagic);
    let mut v2 = good.clone();
    v2[4] = FORMAT_VERSION as u8 + 1;
    assert_eq!(
        load_err(&v2),
        LoadError::UnsupportedVersion {
            found: FORMAT_VERSION + 1
        }
    );
    assert_eq!(load_err(&good[..good.len() - 1]), LoadError::Truncated);
    assert_eq!(load_err(&good[..good.len() / 2]), LoadError::Truncated);
    let mut longer = good.clone();
    longer.extend_from_slice(&[0, 0]);
    assert_eq!(load_err(&longer), LoadError::TrailingBytes { extra: 2 });
    let mut flipped = good.clone();
    let last_weight = good.len() - 40;
    flipped[last_weight] ^= 0x10;
    assert!(matches!(load_err(&flipped), LoadError::CrcMismatch { .. }));
    let mut crc = good.clone();
    let n = crc.len();
    crc[n - 1] ^= 1;
    assert!(matches!(load_err(&crc), LoadError::CrcMismatch { .. }));
}

/// Builds a blob from a deliberately inconsistent model, bypassing `to_bytes`' own check, by
/// encoding a valid model and patching it. Returns the load error.
fn invalid(mutate: impl FnOnce(&mut OwnedModel)) -> LoadError {
    let mut m = OwnedModel::random(SMALL, 2);
    mutate(&mut m);
    match m.to_bytes() {
        Err(EncodeError::Invalid(e)) => e,
        other => panic!("expected EncodeError::Invalid, got {other:?}"),
    }
}

#[test]
fn errors_semantic() {
    assert_eq!(
        invalid(|m| m.arch.channels = 2),
        LoadError::Arch(ArchError::Channels(2))
    );
    assert_eq!(
        invalid(|m| m.labels.pop().map(drop).unwrap()),
        LoadError::LabelCount {
            expected: 3,
            found: 2
        }
    );
    assert_eq!(
        invalid(|m| m.layers[1].weights.pop().map(drop).unwrap()),
        LoadError::ShapeMismatch {
            layer: "conv2",
            field: Field::Weights,
            expected: 54,
            found: 53
        }
    );
    assert_eq!(
        invalid(|m| m.layers[4].bias.push(0)),
        LoadError::ShapeMismatch {
            layer: "fc2",
            field: Field::Bias,
            expected: 3,
            found: 4
        }
    );
    assert_eq!(
        invalid(|m| m.layers[3].multiplier.clear()),
        LoadError::ShapeMismatch {
            layer: "fc1",
            field: Field::Multiplier,
            expected: 4,
            found: 0
        }
    );
    assert_eq!(
        invalid(|m| m.layers[0].shift.push(0)),
        LoadError::ShapeMismatch {
            layer: "conv1",
            field: Field::Shift,
            expected: 2,
            found: 3
        }
    );
    assert_eq!(
        invalid(|m| m.layers[0].weights[5] = i8::MIN),
        LoadError::OutOfRange {
            layer: "conv1",
            field: Field::Weights,
            index: 5
        }
    );
    assert_eq!(
        invalid(|m| m.layers[2].multiplier[1] = -1),
        LoadError::OutOfRange {
            layer: "conv3",
            field: Field::Multiplier,
            index: 1
        }
    );
    assert_eq!(
        invalid(|m| m.layers[2].shift[0] = 31),
        LoadError::OutOfRange {
            layer: "conv3",
            field: Field::Shift,
            index: 0
        }
    );
    assert_eq!(
        invalid(|m| m.layers[2].shift[0] = -32),
        LoadError::OutOfRange {
            layer: "conv3",
            field: Field::Shift,
            index: 0
        }
    );
    // conv2 fan-in 9*2: headroom is i32::MAX - 32385*18.
    assert_eq!(
        invalid(|m| m.layers[1].bias[2] = i32::MAX - 32385 * 18 + 1),
        LoadError::OutOfRange {
            layer: "conv2",
            field: Field::Bias,
            index: 2
        }
    );
    assert!(OwnedModel {
        ..OwnedModel::random(SMALL, 2)
    }
    .to_bytes()
    .is_ok());
    let mut edge = OwnedModel::random(SMALL, 2);
    edge.layers[1].bias[2] = -(i32::MAX - 32385 * 18);
    assert!(edge.to_bytes().is_ok());
    assert_eq!(
        invalid(|m| m.input.zero_point = 0),
        LoadError::OutOfRange {
            layer: "input",
            field: Field::Input,
            index: 0
        }
    );
    assert_eq!(
        invalid(|m| m.layers[4].output.scale = f32::NAN),
        LoadError::OutOfRange {
            layer: "fc2",
            field: Field::Output,
            index: 0
        }
    );
    assert_eq!(
        invalid(|m| m.layers[3].weight_scales[2] = -1.0),
        LoadError::OutOfRange {
            layer: "fc1",
            field: Field::WeightScales,
            index: 2
        }
    );
    let mut long = OwnedModel::random(SMALL, 2);
    long.labels[1] = "x".repeat(33);
    assert_eq!(
        long.to_bytes(),
        Err(EncodeError::LabelTooLong { index: 1, len: 33 })
    );
}

#[test]
fn error_messages_say_what_to_do() {
    let msg = LoadError::ShapeMismatch {
        layer: "fc1",
        field: Field::Weights,
        expected: 10,
        found: 9,
    }
    .to_string();
    assert!(msg.contains("fc1") && msg.contains("re-export"), "{msg}");
    let msg = LoadError::CrcMismatch {
        stored: 1,
        computed: 2,
    }
    .to_string();
    assert!(msg.contains("corrupt"), "{msg}");
    assert!(LoadError::BadMagic.to_string().contains("TCNN"));
}

/// Cases each fuzz run executes; the tests print the tally (`cargo test -p tinycnn --test blob
/// -- --nocapture`).
const FUZZ_CASES: u32 = 16384;

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: FUZZ_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Outcome tally of one fuzz run.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    loaded: usize,
    errors: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn record(&mut self, result: &Result<Model, LoadError>) {
        self.cases += 1;
        match result {
            Ok(_) => self.loaded += 1,
            Err(e) => *self.errors.entry(kind(e)).or_default() += 1,
        }
    }
}

fn kind(e: &LoadError) -> &'static str {
    match e {
        LoadError::BadMagic => "bad magic",
        LoadError::UnsupportedVersion { .. } => "version",
        LoadError::Truncated => "truncated",
        LoadError::Malformed => "malformed",
        LoadError::TrailingBytes { .. } => "trailing",
        LoadError::CrcMismatch { .. } => "crc",
        LoadError::Arch(_) => "arch",
        LoadError::LabelCount { .. } => "labels",
        LoadError::LayerCount { .. } => "layers",
        LoadError::ShapeMismatch { .. } => "shape",
        LoadError::OutOfRange { .. } => "range",
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte.
    Flip { at: usize, mask: u8 },
    /// Overwrite a byte.
    Set { at: usize, value: u8 },
    /// Keep only the first `len` bytes.
    Truncate { len: usize },
    /// Append bytes.
    Extend(Vec<u8>),
    /// Insert a byte (shifts everything after it).
    Insert { at: usize, value: u8 },
    /// Remove a byte.
    Remove { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        // In-place damage keeps the structure and reaches the semantic checks: weight it up.
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

/// Random bytes, with and without a valid header and CRC: an error, never a panic.
#[test]
fn fuzz_random_bytes() {
    let tally = RefCell::new(Tally::default());
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..512),
        any::<bool>(),
        any::<bool>(),
    );
    runner()
        .run(&strategy, |(mut bytes, header, fix)| {
            if header && bytes.len() >= 5 {
                bytes[..4].copy_from_slice(&MAGIC);
                bytes[4] = FORMAT_VERSION as u8;
            }
            if fix {
                fix_crc(&mut bytes);
            }
            tally.borrow_mut().record(&Model::from_bytes(&bytes));
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("fuzz_random_bytes: {tally:?}");
    assert_eq!(tally.cases, FUZZ_CASES as usize);
}

/// Mutated valid blobs (1 to 4 mutations: flips, overwrites, truncation, extension, insertion,
/// removal), half with the original CRC and half with a recomputed one (so the structural and
/// range checks see the damage): an error or a valid model, never a panic; a model that loads
/// also runs `forward`.
#[test]
fn fuzz_mutated_blobs() {
    let good = small_blob();
    let tally = RefCell::new(Tally::default());
    let strategy = (proptest::collection::vec(mutation(), 1..5), any::<bool>());
    runner()
        .run(&strategy, |(mutations, fix)| {
            let mut bytes = good.clone();
            for m in &mutations {
                if bytes.is_empty() {
                    break;
                }
                apply(&mut bytes, m);
            }
            if fix {
                fix_crc(&mut bytes);
            }
            let result = Model::from_bytes(&bytes);
            if let Ok(model) = &result {
                let arch = model.arch;
                let mut scratch = vec![0i8; arch.scratch_len()];
                let mut logits = vec![0i8; arch.classes as usize];
                tinycnn::forward(
                    model,
                    &vec![0i8; arch.input_len()],
                    &mut scratch,
                    &mut logits,
                );
            }
            tally.borrow_mut().record(&result);
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    eprintln!("fuzz_mutated_blobs: {tally:?}");
    assert_eq!(tally.cases, FUZZ_CASES as usize);
    // The recomputed-CRC half must reach the semantic checks, not stop at the CRC.
    assert!(
        tally.errors.get("shape").copied().unwrap_or(0)
            + tally.errors.get("range").copied().unwrap_or(0)
            > 0
    );
}

/// Every single-byte flip at every position of a small blob, with a recomputed CRC, and every
/// truncation length: exhaustive, deterministic.
#[test]
fn exhaustive_single_byte_damage() {
    let good = small_blob();
    let mut cases = 0usize;
    for at in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = good.clone();
            b[at] ^= mask;
            fix_crc(&mut b);
            let _ = Model::from_bytes(&b);
            cases += 1;
        }
    }
    for len in 0..good.len() {
        assert!(Model::from_bytes(&good[..len]).is_err());
        cases += 1;
    }
    eprintln!(
        "exhaustive_single_byte_damage: {cases} blobs of a {}-byte model",
        good.len()
    );
}
