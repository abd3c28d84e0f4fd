//! The `tinycnn` binary end to end on a small real Fashion-MNIST subset: training, resume after
//! an interruption, eval, predict, and every user error exiting non-zero with a helpful message.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tinycnn_tests::fixtures::{
    assert_fails_with, fashion_small, text, tinycnn, tinycnn_bin, train_args, write_gray,
};

/// A run trained once and shared by the tests that only read it.
struct TrainedRun {
    _dir: tempfile::TempDir,
    run: PathBuf,
}

fn trained_run() -> &'static TrainedRun {
    static RUN: OnceLock<TrainedRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let data = fashion_small();
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let out = tinycnn(&train_args(
            &data.join("train"),
            &run,
            &[
                "--preset",
                "fashion",
                "--test",
                data.join("test").to_str().unwrap(),
                "--epochs",
                "6",
                "--lr",
                "2e-3",
                "--batch",
                "32",
            ],
        ));
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "training failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        TrainedRun { _dir: dir, run }
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn short_training_beats_chance_and_writes_every_artifact() {
    let run = &trained_run().run;
    let report = read_json(&run.join("report.json"));
    let accuracy = report["float_test_accuracy"].as_f64().unwrap();
    // 10 classes: chance is 10 %.
    assert!(
        accuracy >= 0.5,
        "test accuracy {accuracy} after a short run"
    );
    assert_eq!(report["preset"], "fashion");
    assert_eq!(report["classes"].as_array().unwrap().len(), 10);
    assert_eq!(report["skipped_files"], 0);
    assert!(report["train_images_per_second"].as_f64().unwrap() > 0.0);
    for file in [
        "best.ot",
        "last.ot",
        "metrics.csv",
        "metrics.json",
        "curves.png",
        "confusion.png",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6);
    let png = image::open(run.join("curves.png")).unwrap();
    assert!(png.width() > 100);
}

#[test]
fn eval_prints_accuracy_and_confusion_matrix() {
    let run = &trained_run().run;
    let data = fashion_small();
    let report = run.with_file_name("eval-report.json");
    let png = run.with_file_name("eval-confusion.png");
    let out = tinycnn(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        data.join("test").to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--confusion-png",
        png.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("test accuracy"), "{stdout}");
    assert!(stdout.contains("true\\pred"), "{stdout}");
    let trained = read_json(&run.join("report.json"))["float_test_accuracy"]
        .as_f64()
        .unwrap();
    assert_eq!(
        read_json(&report)["float_test_accuracy"].as_f64().unwrap(),
        trained
    );
    assert!(image::open(&png).is_ok());
}

#[test]
fn predict_prints_sorted_probabilities_per_image() {
    let run = &trained_run().run;
    let data = fashion_small().join("test");
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.sort();
    let images: Vec<PathBuf> = classes[..2]
        .iter()
        .map(|class| {
            let mut files: Vec<_> = std::fs::read_dir(class)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files.swap_remove(0)
        })
        .collect();
    let best = run.join("best.ot");
    let args: Vec<&str> = ["predict", "--checkpoint", best.to_str().unwrap()]
        .into_iter()
        .chain(images.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let out = tinycnn(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2 * 11, "{stdout}");
    for (block, image) in lines.chunks(11).zip(&images) {
        let header = block[0];
        assert!(
            header.starts_with(&format!("{}: ", image.display())),
            "{header}"
        );
        let probs: Vec<(String, f64)> = block[1..]
            .iter()
            .map(|l| {
                let (label, p) = l.trim().rsplit_once(": ").unwrap();
                (label.to_string(), p.parse().unwrap())
            })
            .collect();
        assert!(
            probs.windows(2).all(|w| w[0].1 >= w[1].1),
            "not sorted:\n{stdout}"
        );
        let sum: f64 = probs.iter().map(|p| p.1).sum();
        assert!((sum - 1.0).abs() < 0.01, "probabilities sum to {sum}");
        assert!(
            header.contains(&format!(": {} (", probs[0].0)),
            "{header} does not name the top class"
        );
    }

    let bad = run.with_file_name("broken.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    let out = tinycnn(&[
        "predict",
        "--checkpoint",
        run.to_str().unwrap(),
        images[0].to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_fails_with(&out, &["cannot decode", "broken.jpg", "1 of 2 images"]);
    assert!(text(&out).0.contains(&images[0].display().to_string()));
}

#[test]
fn resume_continues_after_an_interrupt() {
    let data = fashion_small();
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    tinycnn_tests::fixtures::copy_subset(&data.join("train"), &train, 20);
    let run = dir.path().join("run");
    let args = |epochs: &str| {
        train_args(
            &train,
            &run,
            &["--preset", "fashion", "--epochs", epochs, "--lr", "1e-3"],
        )
    };
    let mut child = Command::new(tinycnn_bin())
        .args(args("100000"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !run.join("last.ot").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "training exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let signal = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");

    let done = tinycnn_host::train::checkpoint::read_meta(&run.join("last.ot")).unwrap();
    assert!(done.epoch >= 1 && done.metrics.len() == done.epoch);
    let target = done.epoch + 2;

    // Without --resume the run refuses to overwrite the checkpoint.
    let out = tinycnn(&args(&target.to_string()));
    assert_fails_with(&out, &["--resume"]);

    let mut a = args(&target.to_string());
    a.push("--resume".into());
    let out = tinycnn(&a);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("resuming after epoch {}", done.epoch)),
        "{stdout}"
    );
    let resumed = tinycnn_host::train::checkpoint::read_meta(&run.join("last.ot")).unwrap();
    assert_eq!(resumed.epoch, target);
    assert_eq!(resumed.metrics.len(), target);
    assert_eq!(resumed.metrics[..done.epoch], done.metrics[..]);
    assert!(
        !stdout.contains(&format!("Training Epoch {} ", done.epoch)),
        "an epoch was repeated:\n{stdout}"
    );
}

#[test]
fn user_errors_exit_non_zero_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let train = |data: &Path| {
        tinycnn(&train_args(
            data,
            &d.join("out"),
            &["--preset", "fashion", "--epochs", "1"],
        ))
    };

    assert_fails_with(&train(&d.join("missing")), &["does not exist", "class"]);

    write_gray(&d.join("one/only/a.png"), 28, 28, 0);
    assert_fails_with(&train(&d.join("one")), &["at least 2"]);

    write_gray(&d.join("empty/a/x.png"), 28, 28, 0);
    std::fs::create_dir_all(d.join("empty/b")).unwrap();
    assert_fails_with(&train(&d.join("empty")), &["no usable images", "empty/b"]);

    let out = tinycnn(&train_args(
        &d.join("empty"),
        Path::new("x"),
        &["--preset", "fashion", "--augment", "mixup"],
    ));
    assert_fails_with(&out, &["unknown augmentation"]);

    let out = tinycnn(&train_args(
        &d.join("empty"),
        Path::new("x"),
        &["--preset", "fashion", "--dropout", "1.5"],
    ));
    assert_fails_with(&out, &["--dropout must be in [0, 1)"]);

    // Evaluation data whose classes differ from the model's.
    let run = &trained_run().run;
    write_gray(&d.join("other/cat/x.png"), 28, 28, 0);
    write_gray(&d.join("other/dog/x.png"), 28, 28, 0);
    let out = tinycnn(&[
        "eval",
        "--checkpoint",
        &s(run),
        "--data",
        &s(&d.join("other")),
    ]);
    assert_fails_with(&out, &["classes", "trained on"]);

    let out = tinycnn(&[
        "eval",
        "--checkpoint",
        &s(&d.join("none.ot")),
        "--data",
        &s(&d.join("other")),
    ]);
    assert_fails_with(&out, &["does not exist", "tinycnn train"]);

    let bytes = std::fs::read(run.join("best.ot")).unwrap();
    std::fs::write(d.join("truncated.ot"), &bytes[..bytes.len() / 2]).unwrap();
    let out = tinycnn(&[
        "predict",
        "--checkpoint",
        &s(&d.join("truncated.ot")),
        &s(&d.join("other/cat/x.png")),
    ]);
    assert_fails_with(&out, &["truncated.ot", "re-run training"]);
}

#[test]
fn tutorial_preset_trains_on_rgb_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("colours");
    // Two classes a 128x128x3 model separates easily: reddish and bluish noisy photos of
    // varying sizes, as JPEG and PNG.
    for i in 0..24u32 {
        for (class, base) in [("blue", [40u8, 60, 200]), ("red", [200u8, 50, 40])] {
            let (w, h) = (48 + i * 3, 40 + (i * 7) % 50);
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let n = ((x * 31 + y * 17 + i * 13) % 61) as u8;
                image::Rgb(base.map(|c| c.saturating_add(n)))
            });
            let ext = if i % 2 == 0 { "jpg" } else { "png" };
            let path = data.join(class).join(format!("{i}.{ext}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            img.save(&path).unwrap();
        }
    }
    let run = dir.path().join("run");
    let out = tinycnn(&train_args(
        &data,
        &run,
        &["--epochs", "3", "--lr", "1e-3", "--batch", "8"],
    ));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let meta = tinycnn_host::train::checkpoint::read_meta(&run.join("best.ot")).unwrap();
    assert_eq!(meta.preset, "tutorial");
    assert_eq!(
        (meta.arch.height, meta.arch.width, meta.arch.channels),
        (128, 128, 3)
    );
    assert_eq!(meta.labels, ["blue", "red"]);
    assert!(
        meta.best_val_accuracy >= 0.9,
        "validation accuracy {}",
        meta.best_val_accuracy
    );
}
