//! `cargo xtask demo` (the main job) and `cargo xtask test` (everything CI checks).

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::cmd::{self, Context};
use crate::data::{self, Subset};
use crate::setup;

/// The demo's training run: the `fashion` preset on the full Fashion-MNIST training set, tuned on
/// the validation split to reach >= 93% test accuracy (BENCHMARKS.md, "fourth round: the demo's
/// recipe") in about 10 minutes of training on 2 CPU cores. The one place to change them.
const DEMO_TRAIN_OPTIONS: &[&str] = &[
    "--epochs",
    "75",
    "--lr",
    "1e-3",
    "--lr-schedule",
    "cosine",
    "--augment",
    "flip,translate=0.1,erase=0.25",
    "--label-smoothing",
    "0.1",
];
/// Test images the demo turns into camera frames for the firmware in QEMU.
const DEMO_FIRMWARE_FRAMES: &str = "8";
const DEMO_DATA: &str = "data/fashion-mnist";
const DEMO_RUN: &str = "runs/demo";

/// The subset the test suite trains and evaluates on, so CI stays fast.
const TEST_DATA: &str = "data/fashion-mnist-small";
const TEST_SUBSET: Subset = Subset {
    train_per_class: Some(50),
    test_per_class: Some(50),
};
/// A `LIBTORCH` that points nowhere, for building the runtime tool as a user without libtorch
/// would (the same value `tests/tests/runtime_without_libtorch.rs` builds with).
const NO_LIBTORCH: &str = "/nonexistent/libtorch";
/// Tests find the small subset here: a folder with `train/<class>/*.png` and `test/<class>/*.png`.
pub const TEST_DATA_ENV: &str = "TINYCNN_FASHION_SMALL";

pub fn demo(ctx: &Context) -> Result<()> {
    setup::run_all(ctx)?;
    ctx.step("data: Fashion-MNIST, full", || {
        let raw = setup::fashion_mnist_raw(ctx)?;
        data::prepare_fashion_mnist(&raw, &ctx.path(DEMO_DATA), Subset::ALL)
    })?;
    ctx.step("build tinycnn", || {
        cmd::run(
            ctx.cargo()
                .args(["build", "--release", "-p", "tinycnn-host"]),
        )
    })?;
    let train = format!("{DEMO_DATA}/train");
    let test = format!("{DEMO_DATA}/test");
    let report = format!("{DEMO_RUN}/report.json");
    let mut train_args = vec!["--data", &train, "--preset", "fashion", "--out", DEMO_RUN];
    train_args.extend_from_slice(DEMO_TRAIN_OPTIONS);
    // A run folder with a checkpoint is an earlier demo: continue it (a finished run is kept).
    if ctx.path(DEMO_RUN).join("last.ot").is_file() {
        println!(
            "{DEMO_RUN} holds a checkpoint: resuming that run (delete {DEMO_RUN} to train afresh)"
        );
        train_args.push("--resume");
    }
    tinycnn(ctx, "train", &train_args)?;
    tinycnn(
        ctx,
        "eval",
        &[
            "--checkpoint",
            DEMO_RUN,
            "--data",
            &test,
            "--report",
            &report,
        ],
    )?;
    tinycnn(
        ctx,
        "quantize",
        &[
            "--run", DEMO_RUN, "--data", &train, "--test", &test, "--report", &report,
        ],
    )?;
    tinycnn(
        ctx,
        "parity",
        &["--run", DEMO_RUN, "--data", &test, "--report", &report],
    )?;
    tinycnn(
        ctx,
        "firmware",
        &[
            "--run",
            DEMO_RUN,
            "--data",
            &test,
            "--frames",
            DEMO_FIRMWARE_FRAMES,
            "--report",
            &report,
        ],
    )?;
    let summary = std::fs::read_to_string(ctx.path(&report))
        .with_context(|| format!("the pipeline finished but {report} cannot be read"))?;
    println!("\n{report}:\n{}", summary.trim_end());
    ctx.print_timings();
    // The contract: the report's path is the very last line of output.
    let shown = if std::env::current_dir().is_ok_and(|dir| dir == ctx.root) {
        Path::new(&report).to_path_buf()
    } else {
        ctx.path(&report)
    };
    println!("{}", shown.display());
    Ok(())
}

/// One `tinycnn` subcommand as a pipeline step, through `cargo run` so it is always up to date.
fn tinycnn(ctx: &Context, subcommand: &str, args: &[&str]) -> Result<()> {
    ctx.step(subcommand, || {
        cmd::run(
            ctx.cargo()
                .args([
                    "run",
                    "--quiet",
                    "--release",
                    "-p",
                    "tinycnn-host",
                    "--bin",
                    "tinycnn",
                    "--",
                ])
                .arg(subcommand)
                .args(args),
        )
    })
}

pub fn test(ctx: &Context) -> Result<()> {
    setup::run_all(ctx)?;
    let test_data = ctx.path(TEST_DATA);
    ctx.step("data: Fashion-MNIST test subset", || {
        let raw = setup::fashion_mnist_raw(ctx)?;
        data::prepare_fashion_mnist(&raw, &test_data, TEST_SUBSET)
    })?;
    ctx.step("fmt", || {
        cmd::run(ctx.cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    ctx.step("clippy", || {
        cmd::run(ctx.cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    ctx.step("shared for thumbv7em-none-eabihf", || {
        build_shared_for(ctx, "thumbv7em-none-eabihf", &[])
    })?;
    portability(ctx)?;
    firmware_lints(ctx)?;
    ctx.step("binaries", || {
        // Tests run these binaries; building them here keeps cargo out of the test run.
        cmd::run(
            ctx.cargo()
                .args(["build", "--workspace", "--release", "--bins"]),
        )?;
        // The runtime tool must build where libtorch is absent.
        cmd::run(
            ctx.cargo()
                .args([
                    "build",
                    "--release",
                    "-p",
                    "tinycnn-runtime",
                    "--bin",
                    "tinycnn-run",
                ])
                .env("LIBTORCH", NO_LIBTORCH)
                .env("LIBTORCH_USE_PYTORCH", ""),
        )
    })?;
    let mut totals = (0, 0);
    ctx.step("cargo test", || {
        totals = cmd::run_tests(
            ctx.cargo()
                .args(["test", "--workspace", "--release"])
                .env(TEST_DATA_ENV, &test_data)
                // Tests train in parallel; libgomp's spinning waits make contended libtorch
                // thread pools ~4x slower (BENCHMARKS.md, host training). Sleep instead.
                .env("OMP_WAIT_POLICY", "PASSIVE"),
        )?;
        Ok(())
    })?;
    ctx.step("firmware: camera driver tests on the host", || {
        let firmware = ctx.path("firmware");
        if !firmware.join("Cargo.toml").is_file() {
            bail!(
                "{} has no Cargo.toml: the firmware crate is missing",
                firmware.display()
            );
        }
        // The firmware workspace builds for thumbv7em by default; the driver tests run on the host.
        let (passed, failed) = cmd::run_tests(ctx.firmware_cargo().args([
            "test",
            "-p",
            "tinycnn-camera",
            "--target",
            &host_triple()?,
        ]))?;
        totals = (totals.0 + passed, totals.1 + failed);
        Ok(())
    })?;
    let (passed, failed) = kernel_suite(ctx)?;
    totals = (totals.0 + passed, totals.1 + failed);
    ctx.print_timings();
    println!("\nall checks passed");
    println!("tests: {} passed, {} failed", totals.0, totals.1);
    Ok(())
}

/// Targets `shared` must build for with warnings denied, beyond thumbv7em: Cortex-M0 (no DSP),
/// Cortex-M33 and an ESP32-C3-class RISC-V core. None of them compiles the DSP `asm!`.
pub const PORTABLE_TARGETS: [&str; 3] = [
    "thumbv6m-none-eabi",
    "thumbv8m.main-none-eabihf",
    "riscv32imc-unknown-none-elf",
];

/// `shared` for the other no_std targets, and for thumbv7em with the `portable` feature (the
/// kernels the DSP ones replace there).
fn portability(ctx: &Context) -> Result<()> {
    for target in PORTABLE_TARGETS {
        ctx.step(&format!("shared for {target}"), || {
            build_shared_for(ctx, target, &[])
        })?;
    }
    ctx.step("shared for thumbv7em-none-eabihf, portable kernels", || {
        build_shared_for(ctx, "thumbv7em-none-eabihf", &["--features", "portable"])
    })
}

/// `shared` (release) for the no_std `target`, with `extra` cargo arguments, warnings denied.
fn build_shared_for(ctx: &Context, target: &str, extra: &[&str]) -> Result<()> {
    cmd::run(
        ctx.cargo()
            .args(["build", "-p", "tinycnn", "--release", "--target", target])
            .args(extra)
            .env("RUSTFLAGS", "-Dwarnings"),
    )
}

/// QEMU boards the on-target kernel suite runs on: (machine, CPU).
const KERNEL_SUITE_BOARDS: [(&str, &str); 2] =
    [("mps2-an386", "cortex-m4"), ("mps2-an500", "cortex-m7")];
/// A hung QEMU (a fault loop) ends after this long; the suite takes about a second.
const KERNEL_SUITE_TIMEOUT_S: &str = "300";

/// Each firmware build the lints cover: the boards' binaries and their features (the STM32 board
/// with each camera sensor), and the model-free kernel suite.
const FIRMWARE_BUILDS: [&[&str]; 5] = [
    &["--bin", "qemu-mps2-an386"],
    &[
        "--bin",
        "qemu-mps2-an500",
        "--no-default-features",
        "--features",
        "board-qemu-mps2-an500",
    ],
    &[
        "--bin",
        "stm32h743",
        "--no-default-features",
        "--features",
        "board-stm32h743",
    ],
    &[
        "--bin",
        "stm32h743",
        "--no-default-features",
        "--features",
        "board-stm32h743,camera-ov7725",
    ],
    &["-p", "tinycnn-kernel-tests"],
];

/// `cargo fmt --check` and `cargo clippy -D warnings` on the firmware workspace, every board,
/// with a random `fashion` model embedded (the boards need one to build).
fn firmware_lints(ctx: &Context) -> Result<()> {
    ctx.step("firmware: fmt", || {
        cmd::run(ctx.firmware_cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    let model = ctx.path("target/lint-model.tcnn");
    ctx.step("firmware: clippy, every board", || {
        cmd::run(
            ctx.cargo()
                .args(["run", "--quiet", "--release", "-p", "tinycnn", "--example"])
                .args(["random_model", "--", "fashion", "1"])
                .arg(&model),
        )?;
        for build in FIRMWARE_BUILDS {
            cmd::run(
                ctx.firmware_cargo()
                    .args(["clippy", "--release"])
                    .args(build)
                    .args(["--", "-D", "warnings"])
                    .env("TINYCNN_MODEL", &model),
            )?;
        }
        Ok(())
    })
}

/// The on-target kernel suite (`firmware/kernel-tests`: DSP vs portable vs reference kernels)
/// in QEMU on each of [`KERNEL_SUITE_BOARDS`]; returns its (passed, failed) cases, summed.
fn kernel_suite(ctx: &Context) -> Result<(u64, u64)> {
    let firmware = ctx.path("firmware");
    ctx.step("firmware: build the kernel suite", || {
        cmd::run(
            ctx.firmware_cargo()
                .args(["build", "--release", "-p", "tinycnn-kernel-tests"]),
        )
    })?;
    let elf = firmware.join("target/thumbv7em-none-eabihf/release/kernel-tests");
    let mut totals = (0, 0);
    for (machine, cpu) in KERNEL_SUITE_BOARDS {
        ctx.step(&format!("firmware: kernel suite on QEMU {machine} ({cpu})"), || {
            let (passed, failed) = cmd::run_tests(
                ctx.command("timeout")
                    .args([KERNEL_SUITE_TIMEOUT_S, "qemu-system-arm", "-cpu", cpu, "-machine"])
                    .args([machine, "-nographic", "-monitor", "none", "-serial", "none"])
                    .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
                    .arg(&elf),
            )
            .with_context(|| {
                format!("the kernel suite failed on {machine}: its output above names the case and the first differing index (exit 124: QEMU timed out)")
            })?;
            totals = (totals.0 + passed, totals.1 + failed);
            Ok(())
        })?;
    }
    Ok(totals)
}

/// The host's target triple, as `rustc -vV` reports it.
fn host_triple() -> Result<String> {
    let info = cmd::probe(std::process::Command::new("rustc").arg("-vV"))
        .context("`rustc -vV` failed; is the Rust toolchain installed?")?;
    info.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|triple| triple.trim().to_owned())
        .context("`rustc -vV` printed no `host:` line")
}
