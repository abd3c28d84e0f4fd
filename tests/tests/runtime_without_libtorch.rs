//! `tinycnn-run`, the runtime tool, builds and runs where libtorch is absent: built with
//! `LIBTORCH` pointing nowhere, it links no libtorch (`ldd`), and `predict --model`,
//! `predict --onnx` and `firmware` work with an empty library path.
use std::path::Path;
use std::process::{Command, Output};

use tinycnn::{Arch, OwnedModel};
use tinycnn_tests::fixtures::{binary, fashion_small, scratch_dir, text};

/// Builds `tinycnn-run` with no libtorch reachable.
fn runtime_bin() -> std::path::PathBuf {
    binary(
        "tinycnn-runtime",
        "tinycnn-run",
        &[
            ("LIBTORCH", "/nonexistent/libtorch"),
            ("LIBTORCH_USE_PYTORCH", ""),
        ],
    )
}

/// Runs `bin` with `args`, with no library path that could lead to libtorch.
fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBTORCH")
        .output()
        .expect("tinycnn-run starts")
}

fn first_test_image() -> std::path::PathBuf {
    let class = std::fs::read_dir(fashion_small().join("test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("a class folder");
    std::fs::read_dir(class)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a png")
}

#[test]
fn runtime_tool_links_no_libtorch_and_runs_models() {
    let bin = runtime_bin();
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd runs");
    let (libs, _) = text(&ldd);
    assert!(ldd.status.success(), "ldd failed: {libs}");
    assert!(
        !libs.contains("torch") && !libs.contains("libc10"),
        "tinycnn-run links libtorch:\n{libs}"
    );

    let dir = scratch_dir("runtime-no-libtorch").unwrap();
    let owned = OwnedModel::random(Arch::fashion(), 21);
    let blob = dir.join("model.tcnn");
    std::fs::write(&blob, owned.to_bytes().unwrap()).unwrap();
    let qdq = dir.join("model.qdq.onnx");
    let onnx = tinycnn_host::export::onnx::qdq_model(&owned);
    std::fs::write(&qdq, tinycnn_host::export::onnx::to_bytes(&onnx)).unwrap();
    let image = first_test_image();
    let image = image.to_str().unwrap();

    for backend in [
        ["--model", blob.to_str().unwrap()],
        ["--onnx", qdq.to_str().unwrap()],
    ] {
        let out = run(&bin, &["predict", backend[0], backend[1], image]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "predict {backend:?} failed: {stderr}");
        assert!(
            stdout.contains("class0") && stdout.lines().count() == 11,
            "{stdout}"
        );
    }

    let test = fashion_small().join("test");
    let out = run(
        &bin,
        &[
            "firmware",
            "--model",
            blob.to_str().unwrap(),
            "--data",
            test.to_str().unwrap(),
            "--frames",
            "2",
            "--work-dir",
            dir.join("firmware").to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "firmware failed: {stdout}\n{stderr}");
    assert!(stdout.contains("2/2 frames bit-exact"), "{stdout}");

    let out = run(&bin, &["predict", "--model", "/nonexistent.tcnn", image]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("pass model.tcnn"), "{stderr}");
}
