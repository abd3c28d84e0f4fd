//! Fixtures for the firmware tests (`tests/tests/firmware_qemu.rs`, `four_blocks.rs`): model
//! blobs, scratch folders, a built firmware ELF per model and its run in QEMU.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tinycnn::{Arch, Model, OwnedModel};
use tinycnn_runtime::firmware::{self, CameraFrame, QemuBoard};

/// Writes `OwnedModel::random(arch, seed)` to `dir/name` and returns the blob and its path.
pub fn random_model_file(
    arch: Arch,
    seed: u64,
    dir: &Path,
    name: &str,
) -> Result<(Vec<u8>, PathBuf)> {
    random_model_file_bits(arch, &[], seed, dir, name)
}

/// [`random_model_file`] with layer `l`'s weights at `bits[l]` (`OwnedModel::random_bits`).
pub fn random_model_file_bits(
    arch: Arch,
    bits: &[tinycnn::WeightBits],
    seed: u64,
    dir: &Path,
    name: &str,
) -> Result<(Vec<u8>, PathBuf)> {
    let blob = OwnedModel::random_bits(arch, bits, seed)
        .to_bytes()
        .context("encoding a random model")?;
    let path = dir.join(name);
    std::fs::write(&path, &blob).with_context(|| format!("writing {}", path.display()))?;
    Ok((blob, path))
}

/// Builds the QEMU firmware with the model at `model_path` embedded; the ELF lands in `work_dir`.
pub fn build_firmware(model_path: &Path, work_dir: &Path) -> Result<PathBuf> {
    firmware::build(
        &firmware::FirmwareOptions::default_firmware_dir(),
        model_path,
        work_dir,
    )
    .with_context(|| format!("building the firmware for {}", model_path.display()))
}

/// Builds the firmware for `board` with the blob at `model_path` embedded (the ELF lands in
/// `work_dir`), runs it in QEMU on `frames` and compares every frame with `model` on the host.
pub fn build_and_run(
    board: QemuBoard,
    model_path: &Path,
    model: &Model,
    frames: &[CameraFrame],
    work_dir: &Path,
    timeout: Duration,
) -> Result<firmware::FirmwareReport> {
    let firmware_dir = firmware::FirmwareOptions::default_firmware_dir();
    let elf = firmware::build_board(&firmware_dir, model_path, work_dir, board.name())?;
    let blob_bytes = std::fs::metadata(model_path)
        .with_context(|| format!("reading {}", model_path.display()))?
        .len();
    Ok(firmware::run_frames(
        board, &elf, model, blob_bytes, frames, work_dir, timeout,
    )?)
}

#[derive(clap::Parser)]
struct TrainCli {
    #[command(flatten)]
    options: tinycnn_host::train::TrainOptions,
}

#[derive(clap::Parser)]
struct QuantizeCli {
    #[command(flatten)]
    args: tinycnn_host::quant::QuantizeArgs,
}

/// A `fashion` model trained briefly on the Fashion-MNIST training subset (`data/train`), then
/// QAT-quantized and exported: `dir/model.tcnn`. Options go through the CLI's parsers, so the
/// fixture trains exactly as `tinycnn train` / `tinycnn quantize` would with these flags.
pub fn trained_fashion_model(data: &Path, dir: &Path) -> Result<PathBuf> {
    use clap::Parser as _;
    let (train, test) = (data.join("train"), data.join("test"));
    let out = dir.join("run");
    let arg = |p: &Path| p.display().to_string();
    let cli = TrainCli::try_parse_from([
        "train",
        "--data",
        &arg(&train),
        "--out",
        &arg(&out),
        "--preset",
        "fashion",
        "--epochs",
        "4",
        "--lr",
        "2e-3",
        "--val-split",
        "0.1",
        "--seed",
        "1",
        "--force",
    ])?;
    let summary = tinycnn_host::train::train(&cli.options).context("training the fixture model")?;
    let cli = QuantizeCli::try_parse_from([
        "quantize",
        "--checkpoint",
        &arg(&summary.best_checkpoint),
        "--data",
        &arg(&train),
        "--test",
        &arg(&test),
        "--out",
        &arg(&out),
        "--qat-epochs",
        "2",
        "--freeze-epochs",
        "1",
        "--calib-images",
        "500",
    ])?;
    tinycnn_host::quant::quantize_command(&cli.args).context("quantizing the fixture model")?;
    let model = out.join(tinycnn_host::quant::BLOB_FILE);
    anyhow::ensure!(model.is_file(), "quantize wrote no {}", model.display());
    Ok(model)
}
