//! `cargo xtask setup`: everything the build, the tests and the demo need, installed once.
//!
//! Each part checks first and skips what is already in place, so running it again costs seconds.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::cmd::{self, Context};

/// The libtorch that tch 0.26 links, installed from PyPI's `torch` wheel.
const TORCH_VERSION: &str = "2.13.0";
/// LiteRT (TFLite's interpreter), which the tinycnn-tflite parity test runs.
const LITERT_VERSION: &str = "2.3.0";
const VENV: &str = ".venv";
const LIBTORCH_LINK: &str = ".libtorch";
const THUMB_TARGET: &str = "thumbv7em-none-eabihf";
const FASHION_MNIST_PACKAGE: &str = "dataset-fashion-mnist";
/// Where `dpkg -x` puts the package's files below its extraction root.
const FASHION_MNIST_PACKAGE_DIR: &str = "usr/share/datasets/fashion-mnist";
pub const FASHION_MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

pub fn run_all(ctx: &Context) -> Result<()> {
    ctx.step("setup: python venv with torch", || venv_with_torch(ctx))?;
    ctx.step("setup: .libtorch link", || libtorch_link(ctx))?;
    ctx.step("setup: LiteRT in the venv", || venv_with_litert(ctx))?;
    ctx.step("setup: rust target", || thumb_target(ctx))?;
    ctx.step("setup: rust targets for the portability builds", || {
        portable_targets(ctx)
    })?;
    ctx.step("setup: qemu-system-arm", || qemu(ctx))?;
    ctx.step("setup: Fashion-MNIST package", || {
        fashion_mnist_raw(ctx).map(drop)
    })
}

/// Whether the user's own LIBTORCH makes the project's libtorch, and so `what`, unneeded; says so.
fn user_libtorch_skips(ctx: &Context, what: &str) -> bool {
    let Some(libtorch) = ctx.user_libtorch() else {
        return false;
    };
    println!(
        "LIBTORCH={} is set, so the build uses it; skipping {what}",
        libtorch.display()
    );
    true
}

fn torch_version(python: &Path) -> Option<String> {
    cmd::probe(Command::new(python).args(["-c", "import torch; print(torch.__version__)"]))
        .map(|version| version.trim().to_owned())
}

fn venv_with_torch(ctx: &Context) -> Result<()> {
    if user_libtorch_skips(ctx, "the project venv") {
        return Ok(());
    }
    let python = ctx.path(VENV).join("bin/python");
    if let Some(version) = torch_version(&python) {
        if version.starts_with(TORCH_VERSION) {
            println!("{VENV} already has torch {version}; nothing to do");
            return Ok(());
        }
        println!("{VENV} has torch {version}, tch needs {TORCH_VERSION}; installing it");
    }
    pip_install(
        ctx,
        &python,
        &format!("torch=={TORCH_VERSION}"),
        "about 2 minutes and 4.7 GB",
        "installing torch into the project venv failed; check the network and free disk space (4.7 GB)",
    )?;
    match torch_version(&python) {
        Some(version) if version.starts_with(TORCH_VERSION) => {
            println!("{VENV} now has torch {version}");
            Ok(())
        }
        Some(version) => bail!("{VENV} has torch {version} after installing {TORCH_VERSION}; remove {VENV} and run `cargo xtask setup` again"),
        None => bail!("`import torch` fails in {VENV} after installing it; remove {VENV} and run `cargo xtask setup` again"),
    }
}

fn litert_version(python: &Path) -> Option<String> {
    cmd::probe(Command::new(python).args([
        "-c",
        "import ai_edge_litert.interpreter; from importlib.metadata import version; print(version('ai-edge-litert'))",
    ]))
    .map(|version| version.trim().to_owned())
}

/// `ai-edge-litert` in the project venv (created here when `LIBTORCH` skipped it).
fn venv_with_litert(ctx: &Context) -> Result<()> {
    let python = ctx.path(VENV).join("bin/python");
    if let Some(version) = litert_version(&python) {
        if version == LITERT_VERSION {
            println!("{VENV} already has ai-edge-litert {version}; nothing to do");
            return Ok(());
        }
        println!(
            "{VENV} has ai-edge-litert {version}, the tests pin {LITERT_VERSION}; installing it"
        );
    }
    pip_install(
        ctx,
        &python,
        &format!("ai-edge-litert=={LITERT_VERSION}"),
        "about 30 s and 150 MB",
        "installing ai-edge-litert into the project venv failed; check the network",
    )?;
    match litert_version(&python) {
        Some(version) if version == LITERT_VERSION => {
            println!("{VENV} now has ai-edge-litert {version}");
            Ok(())
        }
        Some(version) => bail!("{VENV} has ai-edge-litert {version} after installing {LITERT_VERSION}; remove {VENV} and run `cargo xtask setup` again"),
        None => bail!("`import ai_edge_litert` fails in {VENV} after installing it; remove {VENV} and run `cargo xtask setup` again"),
    }
}

/// `pip install requirement` into the project venv whose interpreter is `python`, creating the
/// venv first when it has no working pip. `size` tells the user what the download costs;
/// `on_failure` says what to check when pip itself fails.
fn pip_install(
    ctx: &Context,
    python: &Path,
    requirement: &str,
    size: &str,
    on_failure: &'static str,
) -> Result<()> {
    let has_pip = || cmd::probe(Command::new(python).args(["-m", "pip", "--version"])).is_some();
    if !has_pip() {
        create_venv(ctx)?;
        if !has_pip() {
            bail!(
                "{VENV} was created but has no pip; remove {} and run `cargo xtask setup` again",
                ctx.path(VENV).display()
            );
        }
    }
    println!("installing {requirement} into {VENV} ({size})");
    cmd::run(ctx.command(python).args([
        "-m",
        "pip",
        "install",
        "--progress-bar",
        "off",
        requirement,
    ]))
    .context(on_failure)
}

/// `python3 -m venv`; on Debian and Ubuntu that needs the `python3-venv` package, installed here
/// when missing. Only called when `.venv` has no working pip, so nothing usable is cleared.
fn create_venv(ctx: &Context) -> Result<()> {
    if !cmd::on_path("python3") {
        bail!("python3 is not installed; install Python 3.10 or newer (for example `apt-get install python3 python3-venv`), then run again");
    }
    println!("creating the project venv {VENV}");
    if cmd::run(ctx.command("python3").args(["-m", "venv", VENV])).is_ok() {
        return Ok(());
    }
    if !cmd::on_path("apt-get") {
        bail!("`python3 -m venv` failed; install your system's Python venv support (ensurepip), then run again");
    }
    println!("`python3 -m venv` failed; on Debian/Ubuntu that means python3-venv is missing: installing it");
    ctx.apt_install(&["python3-venv"])?;
    // The failed attempt left a venv without pip; `--clear` rebuilds it from scratch.
    cmd::run(ctx.command("python3").args(["-m", "venv", "--clear", VENV]))
}

/// The torch package folder in the venv: `.venv/lib/pythonX.Y/site-packages/torch`, relative.
fn venv_torch_dir(ctx: &Context) -> Result<PathBuf> {
    let lib = Path::new(VENV).join("lib");
    let entries = fs::read_dir(ctx.path(&lib))
        .with_context(|| format!("reading {}; run `cargo xtask setup`", lib.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if name.to_string_lossy().starts_with("python") {
            let torch = lib.join(&name).join("site-packages/torch");
            if ctx.path(&torch).join("lib").is_dir() {
                found.push(torch);
            }
        }
    }
    found.sort();
    match found.as_slice() {
        [torch] => Ok(torch.clone()),
        [] => bail!("no {}/pythonX.Y/site-packages/torch/lib in the venv; remove {VENV} and run `cargo xtask setup` again", lib.display()),
        _ => bail!("several Python versions in {VENV} have torch ({found:?}); remove {VENV} and run `cargo xtask setup` again"),
    }
}

fn libtorch_link(ctx: &Context) -> Result<()> {
    if user_libtorch_skips(ctx, LIBTORCH_LINK) {
        return Ok(());
    }
    let target = venv_torch_dir(ctx)?;
    let link = ctx.path(LIBTORCH_LINK);
    match fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let current = fs::read_link(&link)?;
            if current == target {
                println!(
                    "{LIBTORCH_LINK} -> {} already; nothing to do",
                    target.display()
                );
                return Ok(());
            }
            println!(
                "{LIBTORCH_LINK} points at {}; pointing it at {}",
                current.display(),
                target.display()
            );
            fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a symlink; move it away so setup can link it to {}",
            link.display(),
            target.display()
        ),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            println!("linking {LIBTORCH_LINK} -> {}", target.display());
        }
        Err(error) => {
            return Err(error).with_context(|| format!("inspecting {}", link.display()));
        }
    }
    symlink(&target, &link)?;
    if !link.join("lib").is_dir() {
        bail!(
            "{} has no lib/ folder; remove {VENV} and run `cargo xtask setup` again",
            link.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    bail!(
        "linking {} -> {} needs a Unix system; set LIBTORCH to a libtorch {TORCH_VERSION} folder instead",
        link.display(),
        target.display()
    )
}

fn thumb_target(ctx: &Context) -> Result<()> {
    let Some(installed) = cmd::probe(
        ctx.command("rustup")
            .args(["target", "list", "--installed"]),
    ) else {
        bail!("`rustup target list --installed` failed; tinycnn's firmware needs rustup with the {THUMB_TARGET} target (https://rustup.rs)");
    };
    if installed.lines().any(|line| line.trim() == THUMB_TARGET) {
        println!("{THUMB_TARGET} is installed; nothing to do");
        return Ok(());
    }
    // Only the target: never `rustup update` or `toolchain install` (a newer stable may ship no thumbv7em std for this machine).
    cmd::run(ctx.command("rustup").args(["target", "add", THUMB_TARGET]))
}

/// The no_std targets `cargo xtask test` builds `shared` for (`pipeline::PORTABLE_TARGETS`).
fn portable_targets(ctx: &Context) -> Result<()> {
    let installed = cmd::probe(
        ctx.command("rustup")
            .args(["target", "list", "--installed"]),
    )
    .context("`rustup target list --installed` failed; the portability builds need rustup (https://rustup.rs)")?;
    let missing: Vec<&str> = crate::pipeline::PORTABLE_TARGETS
        .into_iter()
        .filter(|target| !installed.lines().any(|line| line.trim() == *target))
        .collect();
    if missing.is_empty() {
        println!("the portability targets are installed; nothing to do");
        return Ok(());
    }
    // Only targets: never `rustup update` or `toolchain install` (a newer stable may ship no thumbv7em std for this machine).
    cmd::run(ctx.command("rustup").args(["target", "add"]).args(&missing))
}

fn qemu(ctx: &Context) -> Result<()> {
    if cmd::on_path("qemu-system-arm") {
        let version = cmd::probe(Command::new("qemu-system-arm").arg("--version"))
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_default();
        println!("qemu-system-arm is installed ({version}); nothing to do");
        return Ok(());
    }
    println!("qemu-system-arm is missing; installing it");
    ctx.apt_install(&["qemu-system-arm"])
}

/// The folder with the four gzip IDX files of Fashion-MNIST, fetched and extracted when missing.
pub fn fashion_mnist_raw(ctx: &Context) -> Result<PathBuf> {
    let complete = |dir: &Path| {
        FASHION_MNIST_FILES
            .iter()
            .all(|file| dir.join(file).is_file())
    };
    let cache = ctx.path("data/cache");
    let extracted = cache.join(FASHION_MNIST_PACKAGE);
    let dir = extracted.join(FASHION_MNIST_PACKAGE_DIR);
    if complete(&dir) {
        println!(
            "{} has the Fashion-MNIST files; nothing to do",
            dir.display()
        );
        return Ok(dir);
    }
    let system = Path::new("/").join(FASHION_MNIST_PACKAGE_DIR);
    if complete(&system) {
        println!(
            "using the installed package's files in {}",
            system.display()
        );
        return Ok(system);
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let deb = match find_deb(&cache)? {
        Some(deb) => {
            println!("{} is downloaded already", deb.display());
            deb
        }
        None => download_deb(ctx, &cache)?,
    };
    println!("extracting {} into {}", deb.display(), extracted.display());
    if !cmd::on_path("dpkg-deb") && !cmd::on_path("dpkg") {
        bail!(
            "dpkg is not available to extract {}; this step needs a Debian-based system",
            deb.display()
        );
    }
    cmd::run(ctx.command("dpkg").arg("-x").arg(&deb).arg(&extracted))
        .with_context(|| format!("extracting {}; delete it and run again", deb.display()))?;
    if !complete(&dir) {
        bail!(
            "{} does not contain {} after extraction; delete it and run again",
            deb.display(),
            FASHION_MNIST_FILES
                .map(|file| format!("{FASHION_MNIST_PACKAGE_DIR}/{file}"))
                .join(", ")
        );
    }
    Ok(dir)
}

fn find_deb(cache: &Path) -> Result<Option<PathBuf>> {
    let prefix = format!("{FASHION_MNIST_PACKAGE}_");
    let mut debs = Vec::new();
    for entry in fs::read_dir(cache).with_context(|| format!("reading {}", cache.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            debs.push(cache.join(name));
        }
    }
    debs.sort();
    Ok(debs.pop())
}

fn download_deb(ctx: &Context, cache: &Path) -> Result<PathBuf> {
    if !cmd::on_path("apt-get") {
        bail!("apt-get is not available to download {FASHION_MNIST_PACKAGE}; fetch its .deb from https://packages.debian.org/{FASHION_MNIST_PACKAGE} into {}", cache.display());
    }
    let download = || {
        cmd::run(
            ctx.command("apt-get")
                .args(["download", FASHION_MNIST_PACKAGE])
                .current_dir(cache),
        )
    };
    if let Err(error) = download() {
        // A fresh system often has no package lists yet.
        if !cmd::is_root() {
            return Err(error.context(format!(
                "if apt does not know {FASHION_MNIST_PACKAGE} yet, run `sudo apt-get update` and try again"
            )));
        }
        println!("download failed; refreshing the package lists and trying again");
        ctx.apt_update()?;
        download()?;
    }
    find_deb(cache)?.with_context(|| {
        format!(
            "apt-get download left no {FASHION_MNIST_PACKAGE}_*.deb in {}",
            cache.display()
        )
    })
}
