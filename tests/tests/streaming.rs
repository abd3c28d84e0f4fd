//! The training loader over its memory budget: a data set that is decoded batch by batch from its
//! files trains exactly as the same data set held in memory (same batches, order, seeds and
//! augmentation), and both skip and count the same unusable files.
use std::path::Path;

use serde_json::Value;
use tinycnn_tests::fixtures::{copy_subset, fashion_small, scratch_dir, text, tinycnn, train_args};

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Trains 2 epochs on `data` into `out` with `extra` options; returns stdout.
fn train(data: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "--preset",
        "fashion",
        "--epochs",
        "2",
        "--lr",
        "2e-3",
        "--batch",
        "16",
        "--seed",
        "7",
        "--threads",
        "1",
        "--augment",
        "flip,crop=0.1",
    ];
    args.extend_from_slice(extra);
    let output = tinycnn(&train_args(data, out, &args));
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "training failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[test]
fn streamed_training_matches_in_memory_training_epoch_by_epoch() {
    let dir = scratch_dir("streaming").unwrap();
    let data = dir.join("data");
    copy_subset(&fashion_small().join("train"), &data, 12);
    let classes: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // Sorted first within its class, so every index after it shifts if it were not skipped.
    std::fs::write(
        classes[0].join("0000-corrupt.png"),
        b"\x89PNG\r\n\x1a\nnot a png",
    )
    .unwrap();
    std::fs::write(classes[1].join("notes.txt"), b"not an image").unwrap();

    let memory = train(&data, &dir.join("memory"), &[]);
    let streamed = train(&data, &dir.join("streamed"), &["--memory-budget-mb", "0"]);
    assert!(
        streamed.contains("decoded batch by batch") && !memory.contains("decoded batch by batch"),
        "only the second run should stream:\n{memory}\n{streamed}"
    );

    let metrics = |run: &str| read_json(&dir.join(run).join("metrics.json"));
    let (memory_metrics, streamed_metrics) = (metrics("memory"), metrics("streamed"));
    let epochs = memory_metrics.as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    for (m, s) in epochs.iter().zip(streamed_metrics.as_array().unwrap()) {
        for key in [
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "learning_rate",
        ] {
            assert_eq!(m[key], s[key], "{key} differs: in memory {m}, streamed {s}");
        }
    }

    for run in ["memory", "streamed"] {
        let report = read_json(&dir.join(run).join("report.json"));
        assert_eq!(report["skipped_files"], 2, "{run}: {report}");
        assert!(report["train_images_per_second"].as_f64().unwrap() > 0.0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
