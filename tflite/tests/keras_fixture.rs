//! Models made by TensorFlow's own converter from the Keras tutorial network (committed
//! fixtures, made by `tflite/fixtures/make_keras_fixture.py`) import, and `tinycnn::forward`
//! on them matches the conv-block outputs LiteRT's reference kernels stored, bit for bit; the
//! logits within 1 LSB.

mod common;

use std::path::Path;

use tinycnn::Model;

fn check(folder: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(folder);
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{folder}/{name}: {e}"))
    };
    let imported = tinycnn_tflite::import_tflite(&read("model.tflite"))
        .unwrap_or_else(|e| panic!("{folder}: {e}"));
    for note in &imported.notes {
        println!("{folder}: {note}");
    }
    // The converter writes no tinycnn labels.
    assert!(imported
        .notes
        .iter()
        .any(|n| n.contains("no `tinycnn_labels`")));
    if folder == "keras_float" {
        assert!(imported.notes.iter().any(|n| n.contains("SOFTMAX")));
        assert!(imported.notes.iter().any(|n| n.contains("float pixels")));
    }
    let owned = imported.model;
    let blob = owned.to_bytes().unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    let n = model.arch.input_len();
    let pixels = read("pixels.bin");
    let images = pixels.len() / n;
    assert!(images > 0 && pixels.len() == images * n);
    let stored: Vec<Vec<u8>> = ["block1.bin", "block2.bin", "block3.bin", "logits.bin"]
        .iter()
        .map(|f| read(f))
        .collect();
    let mut logit_diffs = 0;
    for (i, p) in pixels.chunks_exact(n).enumerate() {
        let input: Vec<i8> = p.iter().map(|&v| (v as i16 - 128) as i8).collect();
        let ours = common::traced(&model, &input);
        for (layer, theirs) in [0, 1, 2, 4].into_iter().zip(&stored) {
            let len = ours[layer].len();
            assert_eq!(theirs.len(), len * images, "{folder} layer {layer} length");
            let theirs = &theirs[i * len..(i + 1) * len];
            for (j, (&a, &b)) in ours[layer].iter().zip(theirs).enumerate() {
                let d = (a as i32 - b as i8 as i32).abs();
                if layer < 4 {
                    assert_eq!(
                        d, 0,
                        "{folder} image {i} layer {layer} value {j}: tinycnn {a}, LiteRT {}",
                        b as i8
                    );
                } else {
                    assert!(
                        d <= 1,
                        "{folder} image {i} logit {j}: tinycnn {a}, LiteRT {}",
                        b as i8
                    );
                    logit_diffs += usize::from(d > 0);
                }
            }
        }
    }
    println!("{folder}: {images} images, conv blocks bit-exact, {logit_diffs} logits 1 LSB off");
}

#[test]
fn keras_int8_io_fixture_matches_litert() {
    check("keras_int8");
}

#[test]
fn keras_float_io_fixture_matches_litert() {
    check("keras_float");
}
