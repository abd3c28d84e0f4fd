//! The real firmware ELF in QEMU (mps2-an386, Cortex-M4) against `tinycnn::forward` on the host:
//! every frame's int8 logits must be equal, bit for bit.
//!
//! Frames come from the Fashion-MNIST test subset (`TINYCNN_FASHION_SMALL`, see
//! `fixtures::fashion_small`), as QVGA RGB565 camera frames and as native frames. The
//! models: `fashion` trained briefly on the subset's training half and QAT-quantized (the real
//! pipeline), `fashion` with random weights, and a `tutorial`-sized one with random weights
//! (128x128x3, 2 MiB fc1: the large model fits and runs).
use std::time::Duration;

use anyhow::{ensure, Result};
use tinycnn::ExitCode;
use tinycnn::{Arch, Model};
use tinycnn_runtime::firmware::{self, FirmwareError, QemuBoard};
use tinycnn_tests::firmware_fixtures::{
    build_and_run, build_firmware, random_model_file, random_model_file_bits, trained_fashion_model,
};
use tinycnn_tests::fixtures::{fashion_small, scratch_dir};

const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a test's model comes from.
enum ModelSource {
    /// `OwnedModel::random(arch, seed)`.
    Random(Arch, u64),
    /// `OwnedModel::random_bits(arch, bits, seed)`, `bits` a `--weight-bits` choice.
    RandomBits(Arch, &'static str, u64),
    /// `fashion`, trained briefly on the test subset and QAT-quantized.
    TrainedFashion,
}

/// Builds, runs and checks one model; returns the report for further checks.
fn run_model(
    test: &str,
    source: ModelSource,
    frame_count: usize,
) -> Result<firmware::FirmwareReport> {
    run_model_on(QemuBoard::Mps2An386, test, source, frame_count)
}

/// [`run_model`] on `board`.
fn run_model_on(
    board: QemuBoard,
    test: &str,
    source: ModelSource,
    frame_count: usize,
) -> Result<firmware::FirmwareReport> {
    let dir = scratch_dir(test)?;
    let data = fashion_small();
    let (blob, model_path) = match source {
        ModelSource::Random(arch, seed) => random_model_file(arch, seed, &dir, "model.tcnn")?,
        ModelSource::RandomBits(arch, bits, seed) => {
            let bits = tinycnn::parse_weight_bits(&arch, bits)?;
            random_model_file_bits(arch, &bits, seed, &dir, "model.tcnn")?
        }
        ModelSource::TrainedFashion => {
            let path = trained_fashion_model(&data, &dir)?;
            (std::fs::read(&path)?, path)
        }
    };
    let model = Model::from_bytes(&blob)?;
    let arch = model.arch;
    let frames = firmware::camera_frames(&data.join("test"), &arch, frame_count)?;
    ensure!(
        frames.len() == frame_count,
        "only {} frames from the test subset",
        frames.len()
    );
    let report = build_and_run(board, &model_path, &model, &frames, &dir, QEMU_TIMEOUT)?;
    assert_eq!(report.board, board.name());
    for check in &report.per_frame {
        assert!(
            check.bit_exact,
            "{test}: frame {} ({}, {}) differs: firmware {:?}, host {:?}",
            check.firmware.frame,
            check.kind,
            check.source.display(),
            check.firmware.logits,
            check.host_logits
        );
        assert_eq!(check.firmware.class, check.host_class);
        assert_eq!(
            check.firmware.label,
            model.labels[check.host_class].as_str()
        );
    }
    assert_eq!(report.frames, frame_count);
    assert_eq!(report.frames_bit_exact, frame_count);
    // Instruction counts come from the CMSDK timer under -icount; a MAC costs at least one
    // instruction and, for these kernels, well under a hundred.
    assert!(
        (1.0..100.0).contains(&report.instructions_per_mac),
        "{test}: {} instructions per MAC is implausible",
        report.instructions_per_mac
    );
    assert!(
        report.memory.flash_bytes > blob.len() as u64,
        "the model is in flash"
    );
    // The streaming buffers are the firmware's statics; no frame or model-input buffer.
    assert!(
        report.memory.ram_bytes >= arch.peak_activation_bytes() as u64,
        "the static buffers are in RAM"
    );
    let budget = if arch.input_len() > Arch::fashion().input_len() {
        32 * 1024
    } else {
        12 * 1024
    };
    assert!(
        report.memory.ram_bytes <= budget,
        "{test}: {} bytes of static RAM, over the {budget}-byte budget",
        report.memory.ram_bytes
    );
    // The figures BENCHMARKS.md quotes (`-- --nocapture` shows them).
    eprintln!("{test}: {}", report.summary_line());
    std::fs::remove_dir_all(&dir)?;
    Ok(report)
}

#[test]
fn trained_fashion_model_in_qemu_matches_host_bit_for_bit() -> Result<()> {
    // One image per class, each as a QVGA RGB565 and a native frame.
    let report = run_model("fashion", ModelSource::TrainedFashion, 20)?;
    // The firmware really classifies: its labels match the images' class folders well above
    // chance (1 in 10).
    let correct = report
        .per_frame
        .iter()
        .filter(|c| {
            c.source
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| *n == *c.firmware.label)
        })
        .count();
    eprintln!(
        "fashion: {correct} of {} frames labelled with their class folder",
        report.frames
    );
    assert!(
        correct * 2 >= report.frames,
        "only {correct} of {} frames classified right",
        report.frames
    );
    Ok(())
}

#[test]
fn random_fashion_model_in_qemu_matches_host_bit_for_bit() -> Result<()> {
    let report = run_model(
        "fashion-random",
        ModelSource::Random(Arch::fashion(), 11),
        4,
    )?;
    // Different images must give different logits, or the comparison proves little.
    let first = &report.per_frame[0].host_logits;
    assert!(
        report.per_frame.iter().any(|c| &c.host_logits != first),
        "every frame gave the same logits {first:?}"
    );
    Ok(())
}

/// The same frame loop on QEMU's Cortex-M7 board (`mps2-an500`), bit-exact like the M4.
#[test]
fn random_fashion_model_on_cortex_m7_matches_host_bit_for_bit() -> Result<()> {
    let report = run_model_on(
        QemuBoard::Mps2An500,
        "fashion-m7",
        ModelSource::Random(Arch::fashion(), 11),
        4,
    )?;
    eprintln!("{}", report.summary_line());
    Ok(())
}

#[test]
fn tutorial_sized_model_in_qemu_matches_host_bit_for_bit() -> Result<()> {
    let report = run_model("tutorial", ModelSource::Random(Arch::tutorial(2), 12), 2)?;
    assert!(
        report.memory.flash_bytes > 2 * 1024 * 1024,
        "fc1 alone is 2 MiB"
    );
    Ok(())
}

/// The tutorial net with int4 fc1 (fc1 packed two weights per byte, the DSP `dense_acc` on int4 weights):
/// half the flash, the same bit-exactness.
#[test]
fn tutorial_int4_fc1_model_in_qemu_matches_host_bit_for_bit() -> Result<()> {
    let source = ModelSource::RandomBits(Arch::tutorial(2), "8,8,8,4,8", 12);
    let report = run_model("tutorial-int4-fc1", source, 2)?;
    assert!(
        report.memory.flash_bytes < 1_200_000,
        "{} bytes of flash: fc1 should be 1 MiB packed",
        report.memory.flash_bytes
    );
    Ok(())
}

#[test]
fn corrupt_model_is_rejected_at_boot_with_a_non_zero_exit() -> Result<()> {
    let dir = scratch_dir("corrupt")?;
    let arch = Arch::fashion();
    let (blob, model_path) = random_model_file(arch, 13, &dir, "model.tcnn")?;
    let model = Model::from_bytes(&blob)?;
    let elf = build_firmware(&model_path, &dir)?;
    // Flip one weight byte of the blob inside the ELF: the CRC check at boot must catch it.
    let mut elf_bytes = std::fs::read(&elf)?;
    let at = elf_bytes
        .windows(blob.len())
        .position(|w| w == blob.as_slice())
        .expect("the model blob is embedded verbatim in the ELF");
    elf_bytes[at + blob.len() / 2] ^= 0x5a;
    let corrupt = dir.join("corrupt.elf");
    std::fs::write(&corrupt, &elf_bytes)?;
    let frames = firmware::camera_frames(&fashion_small().join("test"), &arch, 1)?;
    let error = firmware::run_frames(
        QemuBoard::Mps2An386,
        &corrupt,
        &model,
        blob.len() as u64,
        &frames,
        &dir,
        QEMU_TIMEOUT,
    )
    .expect_err("a corrupt model must not run");
    match &error {
        FirmwareError::FirmwareFailed {
            exit, meaning, log, ..
        } => {
            assert_eq!(*exit, Some(ExitCode::InvalidModel));
            assert_eq!(*meaning, "the embedded model is invalid");
            assert!(
                log.contains("the embedded model") && log.contains("is invalid"),
                "log: {log}"
            );
        }
        other => panic!("expected the firmware to fail at boot, got: {other}"),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn stm32h743_profile_builds_for_fashion_and_refuses_tutorial_clearly() -> Result<()> {
    let dir = scratch_dir("stm32h743")?;
    let firmware_dir = firmware::FirmwareOptions::default_firmware_dir();
    let (blob, fashion) = random_model_file(Arch::fashion(), 14, &dir, "fashion.tcnn")?;
    let elf = firmware::build_board(&firmware_dir, &fashion, &dir, firmware::STM32H743_BOARD)?;
    let memory = firmware::elf_memory(&elf, &std::fs::read(&elf)?, blob.len() as u64)?;
    // boards/stm32h743/memory.x: 2 MiB of flash, 512 KiB of AXI SRAM.
    assert!(memory.flash_bytes <= 2 * 1024 * 1024 && memory.flash_bytes > blob.len() as u64);
    assert!(memory.ram_bytes <= 512 * 1024);

    // The tutorial net with int4 fc1 (1.08 MB) fits the 2 MiB part.
    let t = Arch::tutorial(2);
    let fc1_int4 = tinycnn::parse_weight_bits(&t, "8,8,8,4,8")?;
    let (blob, tutorial4) = random_model_file_bits(t, &fc1_int4, 15, &dir, "tutorial-int4.tcnn")?;
    assert!(blob.len() <= 1_100_000, "{} bytes", blob.len());
    let elf = firmware::build_board(&firmware_dir, &tutorial4, &dir, firmware::STM32H743_BOARD)?;
    let memory = firmware::elf_memory(&elf, &std::fs::read(&elf)?, blob.len() as u64)?;
    assert!(memory.flash_bytes <= 2 * 1024 * 1024 && memory.flash_bytes > blob.len() as u64);
    assert!(memory.ram_bytes <= 512 * 1024);
    eprintln!(
        "stm32h743 tutorial int4 fc1: flash {} B, RAM {} B",
        memory.flash_bytes, memory.ram_bytes
    );

    let (_, tutorial) = random_model_file(t, 15, &dir, "tutorial.tcnn")?;
    match firmware::build_board(&firmware_dir, &tutorial, &dir, firmware::STM32H743_BOARD) {
        Err(FirmwareError::Build { stderr, .. }) => {
            assert!(stderr.contains("does not fit stm32h743"), "{stderr}");
            assert!(stderr.contains("--weight-bits dense4"), "{stderr}");
            assert!(stderr.contains("--preset fashion"), "{stderr}");
        }
        Err(other) => panic!("expected a build error naming a preset that fits, got: {other}"),
        Ok(elf) => panic!(
            "the 2.1 MB tutorial model cannot fit 2 MiB of flash, yet {} was built",
            elf.display()
        ),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn frame_of_the_wrong_size_stops_the_firmware_with_exit_code_3() -> Result<()> {
    let dir = scratch_dir("bad-frame")?;
    let (_, model_path) = random_model_file(Arch::fashion(), 16, &dir, "model.tcnn")?;
    let elf = build_firmware(&model_path, &dir)?;
    // The list promises a 28x28 gray frame, the file holds 100 bytes: `Frame::new` rejects it.
    std::fs::write(dir.join("short.raw"), [0u8; 100])?;
    std::fs::write(dir.join("frames.txt"), "short.raw 28 28 gray8\n")?;
    let elf_bytes = std::fs::read(&elf)?;
    match firmware::run_qemu(QemuBoard::Mps2An386, &elf, &dir, QEMU_TIMEOUT, &elf_bytes) {
        Err(FirmwareError::FirmwareFailed {
            exit, meaning, log, ..
        }) => {
            assert_eq!(exit, Some(ExitCode::BadFrame));
            assert_eq!(meaning, "a frame could not be read or preprocessed");
            assert!(log.contains("frame 0"), "log: {log}");
        }
        Err(other) => panic!("expected the firmware to stop on the frame, got: {other}"),
        Ok(_) => panic!("a frame of the wrong size was accepted"),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
