//! blob -> `.tflite` -> import -> blob gives back the same bytes, and the export refuses models
//! whose multipliers TFLite would not re-derive.

mod common;

use tinycnn::{Arch, Model, OwnedModel};
use tinycnn_tflite::{from_tflite, to_tflite, ExportError};

#[test]
fn round_trip_is_byte_identical() {
    let odd = Arch {
        height: 7,
        width: 9,
        channels: 3,
        filters: tinycnn::Filters::of([4, 5, 6]),
        fc_width: 7,
        classes: 3,
    };
    for (arch, seed) in [(Arch::fashion(), 1), (Arch::tutorial(2), 2), (odd, 3)] {
        let owned = common::consistent_model(arch, seed);
        let blob = owned.to_bytes().unwrap();
        let tflite = to_tflite(&Model::from_bytes(&blob).unwrap()).unwrap();
        let imported = from_tflite(&tflite).unwrap();
        assert_eq!(imported, owned, "{arch:?}");
        // Labels travel in the metadata, so nothing differs: the blob is the same byte for byte.
        assert_eq!(imported.to_bytes().unwrap(), blob, "{arch:?}");
    }
}

#[test]
fn labels_round_trip() {
    let mut owned = common::consistent_model(Arch::fashion(), 4);
    // Spaces, a slash and non-ASCII UTF-8: labels travel as text, one per line.
    owned.labels = (0..owned.labels.len())
        .map(|c| format!("class {c} / étiquette-{c}"))
        .collect();
    let blob = owned.to_bytes().unwrap();
    let imported = from_tflite(&to_tflite(&Model::from_bytes(&blob).unwrap()).unwrap()).unwrap();
    assert_eq!(imported.labels, owned.labels);
}

#[test]
fn export_refuses_multipliers_tflite_would_not_derive() {
    // OwnedModel::random's scales are for reporting only: unrelated to its multipliers.
    let owned = OwnedModel::random(Arch::fashion(), 5);
    let blob = owned.to_bytes().unwrap();
    let err = to_tflite(&Model::from_bytes(&blob).unwrap()).unwrap_err();
    assert!(matches!(
        err,
        ExportError::MultiplierMismatch {
            layer: "conv1",
            channel: 0,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("conv1 channel 0") && msg.contains("tinycnn quantize"),
        "{msg}"
    );
}

#[test]
fn export_refuses_line_breaks_in_labels() {
    let mut owned = common::consistent_model(Arch::fashion(), 6);
    owned.labels[2] = "two\nlines".into();
    let blob = owned.to_bytes().unwrap();
    let err = to_tflite(&Model::from_bytes(&blob).unwrap()).unwrap_err();
    assert!(err.to_string().contains("class label 2"), "{err}");
}
