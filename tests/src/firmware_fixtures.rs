//! Fixtures for the firmware tests (`tests/tests/firmware_qemu.rs`): model blobs, scratch folders
//! and a built firmware ELF per model.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tinycnn::{Arch, OwnedModel};
use tinycnn_host::firmware;

/// A fresh, empty scratch folder for one test, under the system temp folder.
pub fn scratch_dir(test: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tinycnn-firmware-{test}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes `OwnedModel::random(arch, seed)` to `dir/name` and returns the blob and its path.
pub fn random_model_file(
    arch: Arch,
    seed: u64,
    dir: &Path,
    name: &str,
) -> Result<(Vec<u8>, PathBuf)> {
    let blob = OwnedModel::random(arch, seed)
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

/// Camera frames from `count` test images of `data`, alternating QVGA RGB565 and the model's
/// native format (the same frames `tinycnn firmware` sends).
pub fn camera_frames(data: &Path, arch: &Arch, count: usize) -> Result<Vec<firmware::CameraFrame>> {
    let images = firmware::pick_images(data, count.div_ceil(2))?;
    let mut frames = Vec::new();
    for path in &images {
        let image = tinycnn_host::data::decode_image(path)
            .map_err(|reason| anyhow::anyhow!("decoding {}: {reason}", path.display()))?;
        frames.push(firmware::qvga_rgb565_frame(&image, path));
        frames.push(firmware::native_frame(&image, path, arch)?);
    }
    frames.truncate(count);
    Ok(frames)
}
