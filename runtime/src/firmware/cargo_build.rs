//! Builds the firmware (its own cargo workspace) for a board with a model embedded.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{FirmwareError, QemuBoard, Result};

/// Serializes firmware builds in this process: the ELF is copied out of the shared target folder
/// before another model's build overwrites it.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The STM32H743 board profile (binary `stm32h743`, feature `board-stm32h743`).
pub const STM32H743_BOARD: &str = "stm32h743";

/// Builds the default QEMU board's firmware with `model` embedded and copies the ELF to
/// `work_dir`.
pub fn build(firmware_dir: &Path, model: &Path, work_dir: &Path) -> Result<PathBuf> {
    build_board(firmware_dir, model, work_dir, QemuBoard::default().name())
}

/// Builds the firmware of `board` (a [`QemuBoard`] name or [`STM32H743_BOARD`]: the binary and its
/// `board-*` feature share the name) with `model` embedded; copies the ELF to
/// `work_dir/<board>.elf`.
pub fn build_board(
    firmware_dir: &Path,
    model: &Path,
    work_dir: &Path,
    board: &str,
) -> Result<PathBuf> {
    if !firmware_dir.join("Cargo.toml").is_file() {
        return Err(FirmwareError::NoFirmwareDir(firmware_dir.to_path_buf()));
    }
    // Absolute, because cargo runs inside it and resolves a relative --target-dir from there.
    let firmware_dir = &firmware_dir
        .canonicalize()
        .map_err(|error| FirmwareError::Io {
            path: firmware_dir.to_path_buf(),
            error,
        })?;
    let model = model
        .canonicalize()
        .map_err(|source| FirmwareError::ReadModel {
            path: model.to_path_buf(),
            error: source,
        })?;
    let target_dir = firmware_dir.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = Command::new(&cargo)
        .current_dir(firmware_dir)
        .args([
            "build",
            "--release",
            "--bin",
            board,
            "--target",
            "thumbv7em-none-eabihf",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("board-{board}"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("TINYCNN_MODEL", &model)
        // The firmware's own .cargo/config.toml decides its flags, not the caller's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| FirmwareError::Spawn {
            program: cargo.to_string_lossy().into_owned(),
            error: source,
            hint: "is cargo on PATH?",
        })?;
    if !output.status.success() {
        return Err(FirmwareError::Build {
            status: output.status.to_string(),
            // Keep cargo's diagnostics, not its progress lines.
            stderr: String::from_utf8_lossy(&output.stderr)
                .lines()
                .filter(|line| {
                    let word = line.trim_start().split(' ').next().unwrap_or("");
                    !matches!(
                        word,
                        "Compiling"
                            | "Downloading"
                            | "Downloaded"
                            | "Updating"
                            | "Locking"
                            | "Blocking"
                            | "Adding"
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    let built = target_dir
        .join("thumbv7em-none-eabihf")
        .join("release")
        .join(board);
    std::fs::create_dir_all(work_dir).map_err(|source| FirmwareError::Io {
        path: work_dir.to_path_buf(),
        error: source,
    })?;
    let elf = work_dir.join(format!("{board}.elf"));
    std::fs::copy(&built, &elf).map_err(|source| FirmwareError::Io {
        path: built.clone(),
        error: source,
    })?;
    let blob = std::fs::read(&model).map_err(|error| FirmwareError::ReadModel {
        path: model.clone(),
        error,
    })?;
    let elf_bytes = std::fs::read(&elf).map_err(|error| FirmwareError::Io {
        path: elf.clone(),
        error,
    })?;
    if !elf_bytes
        .windows(blob.len())
        .any(|window| window == blob.as_slice())
    {
        return Err(FirmwareError::StaleBuild { elf: built, model });
    }
    Ok(elf)
}
