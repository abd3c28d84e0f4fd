//! Blob round trip, every load error, and "no bytes make `from_bytes` panic".

mod common;

use proptest::prelude::*;
use tinycnn::arch::ArchError;
use tinycnn::blob::{blob_len, blob_len_bits};
use tinycnn::{
    crc32, parse_weight_bits, Arch, EncodeError, Field, Filters, LoadError, Model, OwnedModel,
    WeightBits, Weights, FORMAT_VERSION, MAGIC,
};
use tinycnn_fuzzing::{self as fuzzing, mutated, mutation, Tally};

/// A 5x6 RGB input, three conv blocks of `filters`, fc1 of `fc_width`, 3 classes.
const fn small_arch(filters: [u16; 3], fc_width: u16) -> Arch {
    Arch {
        height: 5,
        width: 6,
        channels: 3,
        filters: Filters::of(filters),
        fc_width,
        classes: 3,
    }
}

/// A small architecture so mutation fuzzing reaches the semantic checks quickly.
const SMALL: Arch = small_arch([2, 3, 2], 4);

fn small_blob() -> Vec<u8> {
    OwnedModel::random(SMALL, 11).to_bytes().unwrap()
}

/// A small architecture whose every layer has an odd weight count (conv 81, 81, 27; fc 5, 15),
/// so each int4 layer ends in a padding nibble.
const ODD: Arch = small_arch([3, 3, 1], 5);

/// [`ODD`] with int4 conv1, conv3, fc1 and fc2, int8 conv2: both widths, and every int4 layer
/// with padding.
const ODD_BITS: [WeightBits; 5] = [
    WeightBits::S4,
    WeightBits::S8,
    WeightBits::S4,
    WeightBits::S4,
    WeightBits::S4,
];

fn int4_blob() -> Vec<u8> {
    OwnedModel::random_bits(ODD, &ODD_BITS, 11)
        .to_bytes()
        .unwrap()
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
        let w = model.layers[3].weights().as_bytes();
        let range = bytes.as_ptr_range();
        assert!(range.contains(&w.as_ptr()));
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

/// Cases each fuzz run executes unless `TINYCNN_FUZZ_CASES` says otherwise (the long run); the
/// tests print the tally (`cargo test -p tinycnn --test blob -- --nocapture`).
const FUZZ_CASES: u32 = 16384;

fn fuzz_cases() -> u32 {
    match std::env::var("TINYCNN_FUZZ_CASES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("TINYCNN_FUZZ_CASES={v:?}: give a case count")),
        Err(_) => FUZZ_CASES,
    }
}

/// Random bytes, with and without a valid header and CRC: an error, never a panic.
#[test]
fn fuzz_random_bytes() {
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..512),
        any::<bool>(),
        any::<bool>(),
    );
    fuzzing::tally(
        "fuzz_random_bytes",
        fuzz_cases(),
        strategy,
        |(mut bytes, header, fix)| {
            if header && bytes.len() >= 5 {
                bytes[..4].copy_from_slice(&MAGIC);
                bytes[4] = FORMAT_VERSION as u8;
            }
            if fix {
                fix_crc(&mut bytes);
            }
            Model::from_bytes(&bytes).map(|_| ())
        },
    );
}

/// Mutated valid blobs (1 to 4 mutations: flips, overwrites, truncation, extension, insertion,
/// removal), half with the original CRC and half with a recomputed one (so the structural and
/// range checks see the damage): an error or a valid model, never a panic; a model that loads
/// also runs `forward`.
#[test]
fn fuzz_mutated_blobs() {
    let tally = fuzz_mutations("fuzz_mutated_blobs", &small_blob());
    // The recomputed-CRC half must reach the semantic checks, not stop at the CRC.
    assert!(tally.count("ShapeMismatch") + tally.count("OutOfRange") > 0);
}

/// [`fuzz_mutated_blobs`] on an int4 blob (mixed widths, every int4 layer with a padding
/// nibble): the nibble range and padding checks are reached, and nothing panics.
#[test]
fn fuzz_mutated_int4_blobs() {
    let tally = fuzz_mutations("fuzz_mutated_int4_blobs", &int4_blob());
    for kind in ["PaddingNibble", "OutOfRange", "ShapeMismatch"] {
        assert!(tally.count(kind) > 0, "no {kind} errors: {tally:?}");
    }
}

/// 1 to 4 mutations of `good` per case (see [`fuzz_mutated_blobs`]); prints and returns the
/// tally.
fn fuzz_mutations(name: &str, good: &[u8]) -> Tally {
    let strategy = (proptest::collection::vec(mutation(), 1..5), any::<bool>());
    fuzzing::tally(name, fuzz_cases(), strategy, |(mutations, fix)| {
        let mut bytes = mutated(good, &mutations);
        if fix {
            fix_crc(&mut bytes);
        }
        fuzzing::forward_zeros(&Model::from_bytes(&bytes)?);
        Ok::<(), LoadError>(())
    })
}

/// Every single-byte flip at every position of a small blob, with a recomputed CRC, and every
/// truncation length: exhaustive, deterministic.
#[test]
fn exhaustive_single_byte_damage() {
    for good in [small_blob(), int4_blob()] {
        exhaustive_damage(&good);
    }
}

fn exhaustive_damage(good: &[u8]) {
    let mut cases = 0usize;
    for at in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = good.to_vec();
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

/// Where layer `l`'s weight bytes start in `blob` (they are borrowed from it).
fn weights_offset(blob: &[u8], l: usize) -> (usize, usize) {
    let model = Model::from_bytes(blob).unwrap();
    let w = model.layers[l].weights().as_bytes();
    (w.as_ptr() as usize - blob.as_ptr() as usize, w.len())
}

#[test]
fn int4_round_trip_and_size() {
    let owned = OwnedModel::random_bits(ODD, &ODD_BITS, 4);
    let bytes = owned.to_bytes().unwrap();
    let labels: usize = owned.labels.iter().map(String::len).sum();
    assert_eq!(bytes.len(), blob_len_bits(&ODD, &ODD_BITS, labels));
    let model = Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.to_owned_model(), owned);
    for (l, spec) in ODD.layers().enumerate() {
        let layer = &model.layers[l];
        assert_eq!(layer.weight_bits(), ODD_BITS[l]);
        assert_eq!(
            layer.weights().as_bytes().len(),
            spec.weight_bytes(ODD_BITS[l])
        );
        // Zero-copy at either width.
        let range = bytes.as_ptr_range();
        assert!(range.contains(&layer.weights().as_bytes().as_ptr()));
        match layer.weights() {
            Weights::S8(_) => assert_eq!(ODD_BITS[l], WeightBits::S8),
            Weights::S4(_) => assert!(owned.layers[l].weights.iter().all(|w| w.abs() <= 7)),
        }
        for k in 0..spec.weight_len() {
            assert_eq!(layer.weights().get(k), owned.layers[l].weights[k]);
        }
    }
    // The size target: the tutorial net with int4 fc1 in at most 1.1 MB (int8: over 2 MB).
    let t = Arch::tutorial(2);
    let dense4 = parse_weight_bits(&t, "dense4").unwrap();
    let fc1_only = parse_weight_bits(&t, "8,8,8,4,8").unwrap();
    let labels = "cat".len() + "dog".len();
    eprintln!(
        "tutorial blob: int8 {} B, int4 fc1 {} B, int4 dense {} B",
        blob_len(&t, labels),
        blob_len_bits(&t, &fc1_only, labels),
        blob_len_bits(&t, &dense4, labels)
    );
    assert!(blob_len(&t, labels) > 2_000_000);
    assert!(blob_len_bits(&t, &fc1_only, labels) <= 1_100_000);
    assert!(blob_len_bits(&t, &dense4, labels) <= blob_len_bits(&t, &fc1_only, labels));
    let random = OwnedModel::random_bits(t, &fc1_only, 1).to_bytes().unwrap();
    assert_eq!(
        random.len(),
        blob_len_bits(&t, &fc1_only, "class0".len() + "class1".len())
    );
}

#[test]
fn int4_errors() {
    // Out of the int4 grid at encode time: 8 (does not fit a nibble) and -8 (invalid).
    for bad in [8i8, -8, 100] {
        let mut m = OwnedModel::random_bits(ODD, &ODD_BITS, 2);
        m.layers[3].weights[4] = bad;
        assert_eq!(
            m.to_bytes(),
            Err(EncodeError::Invalid(LoadError::OutOfRange {
                layer: "fc1",
                field: Field::Weights,
                index: 4
            }))
        );
    }
    let good = int4_blob();
    let patched = |at: usize, value: u8| {
        let mut b = good.clone();
        b[at] = value;
        fix_crc(&mut b);
        Model::from_bytes(&b).map(drop).unwrap_err()
    };
    // conv1: 81 weights in 41 bytes; the last byte's high nibble is padding.
    let (start, len) = weights_offset(&good, 0);
    assert_eq!(len, 41);
    let last = good[start + 40];
    assert_eq!(last >> 4, 0);
    assert_eq!(
        patched(start + 40, last | 0x10),
        LoadError::PaddingNibble { layer: "conv1" }
    );
    // -8 in the low nibble of byte 3 is weight 6, in the high nibble weight 7.
    let b3 = good[start + 3];
    assert_eq!(
        patched(start + 3, (b3 & 0xf0) | 0x08),
        LoadError::OutOfRange {
            layer: "conv1",
            field: Field::Weights,
            index: 6
        }
    );
    assert_eq!(
        patched(start + 3, (b3 & 0x0f) | 0x80),
        LoadError::OutOfRange {
            layer: "conv1",
            field: Field::Weights,
            index: 7
        }
    );
    // The bit width byte precedes the weights' one-byte length.
    let bits_at = start - 2;
    assert_eq!(good[bits_at], 4);
    assert_eq!(
        patched(bits_at, 5),
        LoadError::OutOfRange {
            layer: "conv1",
            field: Field::WeightBits,
            index: 0
        }
    );
    // Claiming int8 for packed bytes: the length no longer matches.
    assert_eq!(
        patched(bits_at, 8),
        LoadError::ShapeMismatch {
            layer: "conv1",
            field: Field::Weights,
            expected: 81,
            found: 41
        }
    );
    // And int4 for int8 bytes (conv2: 81 bytes for 81 weights, int4 needs 41).
    let (start2, len2) = weights_offset(&good, 1);
    assert_eq!(len2, 81);
    assert_eq!(
        patched(start2 - 2, 4),
        LoadError::ShapeMismatch {
            layer: "conv2",
            field: Field::Weights,
            expected: 81,
            found: 162
        }
    );
    let msg = LoadError::PaddingNibble { layer: "fc1" }.to_string();
    assert!(msg.contains("fc1") && msg.contains("re-export"), "{msg}");
}

#[test]
fn older_versions_are_refused_with_a_fix() {
    let mut old = small_blob();
    old[4] = 2;
    fix_crc(&mut old);
    let e = load_err(&old);
    assert_eq!(e, LoadError::UnsupportedVersion { found: 2 });
    assert!(e.to_string().contains("re-export"), "{e}");
}
