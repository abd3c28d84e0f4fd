//! `tinycnn firmware`: runs the real firmware ELF in QEMU on camera frames made from real test
//! images and checks it against the host bit for bit.
//!
//! 1. Build `firmware/` for a model (`cargo build --release`, `TINYCNN_MODEL` = the blob).
//! 2. Turn test images into camera frames: a QVGA RGB565 frame (the image scaled into the centre
//!    square, the part the firmware's crop keeps, edges repeated outwards) and a frame in the
//!    model's native format (H x W, gray or RGB888), written with a `frames.txt` list.
//! 3. Run the ELF in `qemu-system-arm -M mps2-an386 -icount shift=0` under a time limit; it reads
//!    the frames over semihosting and logs one defmt line per frame.
//! 4. Decode the defmt stream with `defmt-decoder` and compare each frame's int8 logits with
//!    `tinycnn::forward` on the host, given the same frame bytes.
mod cargo_build;
mod elf;
mod frames;
mod qemu;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tinycnn::{argmax, Model};

pub use cargo_build::{build, build_board, STM32H743_BOARD};
pub use elf::{elf_memory, ElfMemory};
pub use frames::{
    camera_frames, native_frame, pick_images, qvga_rgb565_frame, write_frames, CameraFrame,
};
pub use qemu::{decode_defmt, parse_frame_line, qemu_command, run_qemu};

/// A QEMU board of `firmware/`: its binary and `board-*` feature share the name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum QemuBoard {
    /// `mps2-an386`, Cortex-M4: the CI board.
    #[default]
    #[value(name = "qemu-mps2-an386")]
    #[serde(rename = "qemu-mps2-an386")]
    Mps2An386,
    /// `mps2-an500`, Cortex-M7: the same memory map and timer.
    #[value(name = "qemu-mps2-an500")]
    #[serde(rename = "qemu-mps2-an500")]
    Mps2An500,
}

impl QemuBoard {
    /// The firmware binary (and `board-` feature suffix).
    pub const fn name(self) -> &'static str {
        match self {
            QemuBoard::Mps2An386 => "qemu-mps2-an386",
            QemuBoard::Mps2An500 => "qemu-mps2-an500",
        }
    }

    /// QEMU's `-cpu` and `-machine`.
    pub const fn cpu_and_machine(self) -> (&'static str, &'static str) {
        match self {
            QemuBoard::Mps2An386 => ("cortex-m4", "mps2-an386"),
            QemuBoard::Mps2An500 => ("cortex-m7", "mps2-an500"),
        }
    }
}

/// Failures of the firmware check, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("cannot read the model {path}: {error}; pass a model.tcnn from `tinycnn quantize`")]
    ReadModel {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a valid tinycnn model: {reason}; re-export it with `tinycnn quantize`")]
    BadModel { path: PathBuf, reason: String },
    #[error("firmware folder {0} has no Cargo.toml; pass --firmware-dir with the repository's firmware/ folder")]
    NoFirmwareDir(PathBuf),
    #[error("could not start `{program}`: {error}; {hint}")]
    Spawn {
        program: String,
        error: std::io::Error,
        hint: &'static str,
    },
    #[error("{elf} does not embed {model} although cargo built it for that model: another firmware build probably ran at the same time; run again")]
    StaleBuild { elf: PathBuf, model: PathBuf },
    #[error("building the firmware failed (exit status {status}); cargo said:\n{stderr}")]
    Build { status: String, stderr: String },
    #[error(transparent)]
    Data(#[from] crate::dataset::DataError),
    #[error("no usable test images in {0}; pass a folder of class folders with images (for Fashion-MNIST `cargo xtask data fashion-mnist`)")]
    NoImages(PathBuf),
    #[error("cannot use image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("I/O on {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("QEMU ran past the {seconds} s limit and was stopped; raise --timeout-s or use fewer --frames (log so far:\n{log})")]
    Timeout { seconds: u64, log: String },
    #[error("the firmware exited with status {status} ({meaning}); its log:\n{log}{stderr}")]
    FirmwareFailed {
        status: String,
        /// The firmware's exit code, when it is one of [`tinycnn::ExitCode`]'s.
        exit: Option<tinycnn::ExitCode>,
        meaning: &'static str,
        log: String,
        stderr: String,
    },
    #[error("cannot decode the firmware's defmt output: {0}; rebuild the firmware and run again")]
    Defmt(String),
    #[error("the ELF {path} is unreadable: {reason}")]
    Elf { path: PathBuf, reason: String },
    #[error("the firmware reported {reported} frames but {expected} were sent; its log:\n{log}")]
    FrameCount {
        reported: usize,
        expected: usize,
        log: String,
    },
}

type Result<T> = std::result::Result<T, FirmwareError>;

/// `tinycnn firmware`: build the firmware for a model, run it in QEMU on frames made from test
/// images and check every frame's logits against the host bit for bit.
#[derive(Clone, Debug, clap::Args)]
pub struct FirmwareArgs {
    /// A run folder: shorthand for --model RUN/model.tcnn --report RUN/report.json.
    #[arg(long, required_unless_present = "model")]
    pub run: Option<PathBuf>,
    /// The int8 model (model.tcnn from `tinycnn quantize`) to embed and check.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Test images, DIR/<class>/*.png; they become camera frames.
    #[arg(long)]
    pub data: PathBuf,
    /// Number of frames; they alternate QVGA RGB565 and the model's native format.
    #[arg(long, default_value_t = 4)]
    pub frames: usize,
    /// Report file to merge the `firmware` object into.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where the frames, the ELF and the raw defmt log go [default: MODEL's folder/firmware].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// The repository's firmware/ folder [default: the one this binary was built from].
    #[arg(long)]
    pub firmware_dir: Option<PathBuf>,
    /// Wall-clock limit for the QEMU run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// The QEMU board to run on.
    #[arg(long, value_enum, default_value = "qemu-mps2-an386")]
    pub board: QemuBoard,
}

/// Runs `tinycnn firmware`: prints one line per frame and the instructions per inference,
/// merges the `firmware` object into `--report`, and fails unless every frame is bit-exact.
pub fn run_cli(args: &FirmwareArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if args.frames == 0 {
        anyhow::bail!("--frames must be at least 1");
    }
    let model = match (&args.model, &args.run) {
        (Some(model), _) => model.clone(),
        (None, Some(run)) => run.join("model.tcnn"),
        (None, None) => anyhow::bail!("pass --model MODEL.tcnn or --run RUN_DIR"),
    };
    let report_path = args
        .report
        .clone()
        .or_else(|| args.run.as_ref().map(|r| r.join("report.json")));
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| model.parent().unwrap_or(Path::new(".")).join("firmware"));
    let options = FirmwareOptions {
        model: model.clone(),
        data: args.data.clone(),
        frames: args.frames,
        work_dir,
        firmware_dir: args
            .firmware_dir
            .clone()
            .unwrap_or_else(FirmwareOptions::default_firmware_dir),
        timeout: Duration::from_secs(args.timeout_s),
        board: args.board,
    };
    let report = run(&options)
        .with_context(|| format!("running the firmware for {} in QEMU", model.display()))?;
    for check in &report.per_frame {
        let f = &check.firmware;
        let verdict = if check.bit_exact {
            "bit-exact".to_owned()
        } else {
            format!(
                "DIFFERS: firmware {:?}, host {:?}",
                f.logits, check.host_logits
            )
        };
        println!(
            "frame {:>3} {:<14} {:<24} -> {} ({:.1}%), {} instructions, {verdict}",
            f.frame,
            check.kind,
            check
                .source
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            f.label,
            100.0 * f.confidence,
            f.instructions,
        );
    }
    println!("{}", report.summary_line());
    if let Some(path) = &report_path {
        crate::report::merge(
            path,
            serde_json::json!({ "firmware": report.summary_json() }),
        )?;
    }
    if report.frames_bit_exact != report.frames {
        anyhow::bail!(
            "{} of {} frames differ between the firmware and the host; the device and host \
             forward passes disagree (see the frames above)",
            report.frames - report.frames_bit_exact,
            report.frames
        );
    }
    Ok(())
}

/// What to build and run.
#[derive(Clone, Debug)]
pub struct FirmwareOptions {
    /// The model blob to embed and compare against.
    pub model: PathBuf,
    /// Test images, `DIR/<class>/*.png` (or images directly in `DIR`).
    pub data: PathBuf,
    /// Number of frames, alternating QVGA RGB565 and native, from as many test images as needed.
    pub frames: usize,
    /// Where frames, the ELF copy and the raw defmt output go.
    pub work_dir: PathBuf,
    /// The `firmware/` folder of the repository.
    pub firmware_dir: PathBuf,
    /// Wall-clock limit for the QEMU run.
    pub timeout: Duration,
    /// The QEMU board.
    pub board: QemuBoard,
}

impl FirmwareOptions {
    /// The repository's `firmware/` folder, as seen from this crate's sources.
    pub fn default_firmware_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("firmware")
    }
}

/// One line of the firmware's per-frame output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FirmwareFrame {
    pub frame: usize,
    pub class: usize,
    pub label: String,
    pub confidence: f32,
    pub logits: Vec<i8>,
    pub instructions: u64,
}

/// The outcome for one frame: the firmware's result next to the host's.
#[derive(Clone, Debug, Serialize)]
pub struct FrameCheck {
    pub kind: String,
    pub source: PathBuf,
    pub firmware: FirmwareFrame,
    pub host_logits: Vec<i8>,
    pub host_class: usize,
    pub bit_exact: bool,
}

/// The whole check.
#[derive(Clone, Debug, Serialize)]
pub struct FirmwareReport {
    pub board: String,
    pub frames: usize,
    pub frames_bit_exact: usize,
    pub instructions_per_inference: u64,
    pub instructions_per_mac: f64,
    pub macs: u64,
    pub model_bytes: u64,
    #[serde(flatten)]
    pub memory: ElfMemory,
    pub elf: PathBuf,
    pub per_frame: Vec<FrameCheck>,
}

impl FirmwareReport {
    /// One line with the figures: board, bit-exact frames, instructions, flash and RAM.
    pub fn summary_line(&self) -> String {
        format!(
            "firmware on {}: {}/{} frames bit-exact; {} instructions per inference ({:.2} per MAC, \
             {} MACs); flash {} bytes ({} code + {} model), static RAM {} bytes",
            self.board,
            self.frames_bit_exact,
            self.frames,
            self.instructions_per_inference,
            self.instructions_per_mac,
            self.macs,
            self.memory.flash_bytes,
            self.memory.code_bytes,
            self.model_bytes,
            self.memory.ram_bytes
        )
    }

    /// The `firmware` object of report.json.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "board": self.board,
            "frames": self.frames,
            "frames_bit_exact": self.frames_bit_exact,
            "instructions_per_inference": self.instructions_per_inference,
            "instructions_per_mac": self.instructions_per_mac,
            "macs": self.macs,
            "flash_bytes": self.memory.flash_bytes,
            "code_bytes": self.memory.code_bytes,
            "model_bytes": self.model_bytes,
            "ram_bytes": self.memory.ram_bytes,
        })
    }
}

/// Builds the firmware, runs it on frames made from `options.images` test images and compares.
pub fn run(options: &FirmwareOptions) -> Result<FirmwareReport> {
    let blob = std::fs::read(&options.model).map_err(|source| FirmwareError::ReadModel {
        path: options.model.clone(),
        error: source,
    })?;
    let model = Model::from_bytes(&blob).map_err(|e| FirmwareError::BadModel {
        path: options.model.clone(),
        reason: e.to_string(),
    })?;
    let frames = camera_frames(&options.data, &model.arch, options.frames)?;
    let elf = build_board(
        &options.firmware_dir,
        &options.model,
        &options.work_dir,
        options.board.name(),
    )?;
    run_frames(
        options.board,
        &elf,
        &model,
        blob.len() as u64,
        &frames,
        &options.work_dir,
        options.timeout,
    )
}

/// Runs a built ELF on `frames` and compares with the host. `blob_bytes` is the model's size.
pub fn run_frames(
    board: QemuBoard,
    elf: &Path,
    model: &Model,
    blob_bytes: u64,
    frames: &[CameraFrame],
    work_dir: &Path,
    timeout: Duration,
) -> Result<FirmwareReport> {
    write_frames(frames, work_dir)?;
    let elf_bytes = std::fs::read(elf).map_err(|source| FirmwareError::Io {
        path: elf.to_path_buf(),
        error: source,
    })?;
    let raw = run_qemu(board, elf, work_dir, timeout, &elf_bytes)?;
    let lines = decode_defmt(&elf_bytes, &raw)?;
    let results: Vec<FirmwareFrame> = lines.iter().filter_map(|l| parse_frame_line(l)).collect();
    if results.len() != frames.len() {
        return Err(FirmwareError::FrameCount {
            reported: results.len(),
            expected: frames.len(),
            log: lines.join("\n"),
        });
    }
    let mut checks = Vec::with_capacity(frames.len());
    for (frame, result) in frames.iter().zip(results) {
        let host_logits = host_logits(model, frame)?;
        checks.push(FrameCheck {
            kind: frame.kind.clone(),
            source: frame.source.clone(),
            bit_exact: host_logits == result.logits,
            host_class: argmax(&host_logits),
            host_logits,
            firmware: result,
        });
    }
    let memory = elf_memory(elf, &elf_bytes, blob_bytes)?;
    let macs = model.arch.macs();
    let total: u64 = checks.iter().map(|c| c.firmware.instructions).sum();
    let instructions_per_inference = total / checks.len().max(1) as u64;
    Ok(FirmwareReport {
        board: board.name().to_owned(),
        frames: checks.len(),
        frames_bit_exact: checks.iter().filter(|c| c.bit_exact).count(),
        instructions_per_inference,
        instructions_per_mac: instructions_per_inference as f64 / macs as f64,
        macs,
        model_bytes: blob_bytes,
        memory,
        elf: elf.to_path_buf(),
        per_frame: checks,
    })
}

/// The host's logits for a frame: `tinycnn::preprocess` then `tinycnn::forward`, as on the device.
pub fn host_logits(model: &Model, frame: &CameraFrame) -> Result<Vec<i8>> {
    let frame_error = |e: &dyn std::fmt::Display| FirmwareError::Image {
        path: frame.source.clone(),
        reason: format!("{} frame rejected by tinycnn: {e}", frame.kind),
    };
    let view = tinycnn::Frame::new(&frame.bytes, frame.width, frame.height, frame.format)
        .map_err(|e| frame_error(&e))?;
    let mut session = tinycnn::Session::new(model.clone());
    let logits = session.run_frame(&view).map_err(|e| frame_error(&e))?;
    Ok(logits.to_vec())
}
