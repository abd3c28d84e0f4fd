//! Fixtures shared by every test in `tests/tests/`: the Fashion-MNIST test subset, images on
//! disk, scratch folders and the workspace's binaries.
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Environment variable naming the small Fashion-MNIST subset (`train/<class>/*.png`,
/// `test/<class>/*.png`), as written by `cargo xtask data fashion-mnist --per-class 50`.
pub const FASHION_SMALL_ENV: &str = "TINYCNN_FASHION_SMALL";

/// The small Fashion-MNIST subset, or a panic that says how to create it.
pub fn fashion_small() -> PathBuf {
    let path = std::env::var_os(FASHION_SMALL_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("data/fashion-mnist-small"));
    assert!(
        path.join("train").is_dir() && path.join("test").is_dir(),
        "the Fashion-MNIST test subset is missing at {}: run `cargo xtask data fashion-mnist --per-class 50` \
         (or `cargo xtask test`), or point {FASHION_SMALL_ENV} at a folder with train/ and test/",
        path.display()
    );
    path
}

/// The release binary `name` of package `package`, built once per test process with
/// `cargo build --release` into this test's own target folder (integration tests of another crate
/// get no `CARGO_BIN_EXE_*`). `envs` is the build's extra environment.
pub fn binary(package: &str, name: &str, envs: &[(&str, &str)]) -> PathBuf {
    let target_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .expect("test executables live in <target>/release/deps");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            package,
            "--bin",
            name,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace_root())
        .envs(envs.iter().copied())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    target_dir.join("release").join(name)
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `tinycnn` binary (the training crate's), built once per test process.
pub fn tinycnn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("tinycnn-host", "tinycnn", &[]))
}

/// Runs the `tinycnn` binary with `args`.
pub fn tinycnn<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(tinycnn_bin())
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("the tinycnn binary runs")
}

/// The arguments of `tinycnn train --data DATA --out OUT`, then `extra`.
pub fn train_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "train".into(),
        "--data".into(),
        data.into(),
        "--out".into(),
        out.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

/// stdout and stderr of `output` as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts `output` failed and its stderr contains every one of `needles`.
pub fn assert_fails_with(output: &Output, needles: &[&str]) {
    let (stdout, stderr) = text(output);
    assert!(
        !output.status.success(),
        "expected failure, got success\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
}

/// Writes a `width`x`height` RGB gradient image at `path` (format from the extension).
pub fn write_rgb(path: &Path, width: u32, height: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 + seed as u32) as u8,
            (y * 5) as u8,
            ((x + y) * 3) as u8,
        ])
    });
    img.save(path).unwrap();
}

/// Writes a `width`x`height` gray image at `path` and returns its pixels.
pub fn write_gray(path: &Path, width: u32, height: u32, seed: u8) -> Vec<u8> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::GrayImage::from_fn(width, height, |x, y| {
        image::Luma([(x * 9 + y * 3 + seed as u32) as u8])
    });
    img.save(path).unwrap();
    img.into_raw()
}

/// Copies the first `per_class` images of every class of `src` into `dst`.
pub fn copy_subset(src: &Path, dst: &Path, per_class: usize) {
    for class in std::fs::read_dir(src).unwrap() {
        let class = class.unwrap().path();
        if !class.is_dir() {
            continue;
        }
        let out = dst.join(class.file_name().unwrap());
        std::fs::create_dir_all(&out).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.into_iter().take(per_class) {
            std::fs::copy(&f, out.join(f.file_name().unwrap())).unwrap();
        }
    }
}

/// A fresh, empty scratch folder for one test, under the system temp folder.
pub fn scratch_dir(test: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let dir = std::env::temp_dir().join(format!("tinycnn-{test}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
