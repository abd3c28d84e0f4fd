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
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use object::{Object as _, ObjectSection as _, SectionFlags, SectionKind};
use serde::Serialize;
use tinycnn::preprocess::{Frame, PixelFormat};
use tinycnn::{argmax, forward, Arch, Model};

/// The board the QEMU binary is built for (binary `qemu-mps2-an386` of `firmware/`).
pub const QEMU_BOARD: &str = "qemu-mps2-an386";
/// QVGA, the camera frame size.
pub const QVGA: (u16, u16) = (320, 240);

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
}

impl FirmwareOptions {
    /// The repository's `firmware/` folder, as seen from this crate's sources.
    pub fn default_firmware_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("firmware")
    }
}

/// One camera frame sent to the firmware.
#[derive(Clone, Debug)]
pub struct CameraFrame {
    /// Short description, e.g. `qvga-rgb565le` or `native-gray8`.
    pub kind: String,
    /// The test image it came from.
    pub source: PathBuf,
    pub width: u16,
    pub height: u16,
    pub format: PixelFormat,
    pub bytes: Vec<u8>,
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

/// Flash and static RAM of the ELF, from its allocated sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ElfMemory {
    /// Everything loaded into flash: vector table, code, read-only data (incl. the model) and
    /// the initial values of `.data`.
    pub flash_bytes: u64,
    /// `flash_bytes` minus the model blob.
    pub code_bytes: u64,
    /// `.data` + `.bss` + `.uninit`: static RAM, without the stack.
    pub ram_bytes: u64,
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
        reason: format!("{e:?}"),
    })?;
    let frames = camera_frames(&options.data, &model.arch, options.frames)?;
    let elf = build(&options.firmware_dir, &options.model, &options.work_dir)?;
    run_frames(
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
    let raw = run_qemu(elf, work_dir, timeout, &elf_bytes)?;
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
        board: QEMU_BOARD.to_owned(),
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
    let arch = &model.arch;
    let frame_error = |e: &dyn std::fmt::Debug| FirmwareError::Image {
        path: frame.source.clone(),
        reason: format!("{} frame rejected by tinycnn: {e:?}", frame.kind),
    };
    let view = Frame::new(&frame.bytes, frame.width, frame.height, frame.format)
        .map_err(|e| frame_error(&e))?;
    let mut input = vec![0i8; arch.input_len()];
    tinycnn::preprocess(&view, arch, &mut input).map_err(|e| frame_error(&e))?;
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut logits = vec![0i8; usize::from(arch.classes)];
    forward(model, &input, &mut scratch, &mut logits);
    Ok(logits)
}

/// `count` camera frames from test images in `data`, alternating a QVGA RGB565 frame and a
/// native one per image (fewer if `data` has fewer images).
pub fn camera_frames(data: &Path, arch: &Arch, count: usize) -> Result<Vec<CameraFrame>> {
    let images = pick_images(data, count.div_ceil(2))?;
    let mut frames = Vec::with_capacity(count);
    for path in &images {
        let image = crate::images::decode_image(path).map_err(|reason| FirmwareError::Image {
            path: path.clone(),
            reason,
        })?;
        frames.push(qvga_rgb565_frame(&image, path));
        frames.push(native_frame(&image, path, arch)?);
    }
    frames.truncate(count);
    Ok(frames)
}

/// Up to `count` test images, taken round-robin over the class folders (sorted), so that a few
/// frames cover several classes. Without class folders the images in `root` itself are used.
pub fn pick_images(root: &Path, count: usize) -> Result<Vec<PathBuf>> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        let io = |source| FirmwareError::Io {
            path: dir.to_path_buf(),
            error: source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_file() && crate::dataset::has_image_extension(&path) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    };
    let per_class: Vec<Vec<PathBuf>> = match crate::dataset::class_folders(root) {
        Ok(classes) => classes
            .iter()
            .map(|(_, dir)| list(dir))
            .collect::<Result<_>>()?,
        Err(crate::dataset::DataError::TooFewClasses { .. }) => vec![list(root)?],
        Err(e) => return Err(e.into()),
    };
    let mut picked = Vec::with_capacity(count);
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    'outer: for i in 0..longest {
        for files in &per_class {
            if picked.len() == count {
                break 'outer;
            }
            if let Some(path) = files.get(i) {
                picked.push(path.clone());
            }
        }
    }
    if picked.is_empty() {
        return Err(FirmwareError::NoImages(root.to_path_buf()));
    }
    Ok(picked)
}

/// A QVGA RGB565 (little-endian) camera frame showing `image`: the image is scaled
/// (nearest neighbour) into the centred 240 x 240 square, and its edge pixels repeat outwards.
pub fn qvga_rgb565_frame(image: &image::DynamicImage, source: &Path) -> CameraFrame {
    let rgb = image.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let (frame_w, frame_h) = (usize::from(QVGA.0), usize::from(QVGA.1));
    let side = frame_w.min(frame_h);
    let (left, top) = ((frame_w - side) / 2, (frame_h - side) / 2);
    let mut bytes = Vec::with_capacity(frame_w * frame_h * 2);
    for y in 0..frame_h {
        let sy = ((y.saturating_sub(top)) * h / side).min(h - 1);
        for x in 0..frame_w {
            let sx = ((x.saturating_sub(left)) * w / side).min(w - 1);
            let [r, g, b] = rgb.get_pixel(sx as u32, sy as u32).0;
            let v = (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3);
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    CameraFrame {
        kind: "qvga-rgb565le".to_owned(),
        source: source.to_path_buf(),
        width: QVGA.0,
        height: QVGA.1,
        format: PixelFormat::Rgb565Le,
        bytes,
    }
}

/// `image` in the model's native format: H x W, gray (1 channel) or RGB888 (3), produced by
/// the shared preprocessing. The firmware passes such a frame through unchanged.
pub fn native_frame(
    image: &image::DynamicImage,
    source: &Path,
    arch: &Arch,
) -> Result<CameraFrame> {
    let bytes = crate::images::preprocess_image(image, arch).map_err(|e| FirmwareError::Image {
        path: source.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (kind, format) = if arch.channels == 1 {
        ("native-gray8", PixelFormat::Gray8)
    } else {
        ("native-rgb888", PixelFormat::Rgb888)
    };
    Ok(CameraFrame {
        kind: kind.to_owned(),
        source: source.to_path_buf(),
        width: arch.width,
        height: arch.height,
        format,
        bytes,
    })
}

fn format_name(format: PixelFormat) -> &'static str {
    match format {
        PixelFormat::Gray8 => "gray8",
        PixelFormat::Rgb888 => "rgb888",
        PixelFormat::Rgb565Le => "rgb565le",
        PixelFormat::Rgb565Be => "rgb565be",
        PixelFormat::Yuyv => "yuyv",
    }
}

/// Writes each frame to `work_dir/frame-NNN.<kind>.raw` and the list `work_dir/frames.txt`
/// the firmware reads (`<file> <width> <height> <format>` per line).
pub fn write_frames(frames: &[CameraFrame], work_dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FirmwareError::Io {
            path,
            error: source,
        }
    };
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    let mut list = String::from("# <file> <width> <height> <format>, one camera frame per line\n");
    for (i, frame) in frames.iter().enumerate() {
        let name = format!("frame-{i:03}.{}.raw", frame.kind);
        let path = work_dir.join(&name);
        std::fs::write(&path, &frame.bytes).map_err(io(&path))?;
        list.push_str(&format!(
            "{name} {} {} {}\n",
            frame.width,
            frame.height,
            format_name(frame.format)
        ));
    }
    let path = work_dir.join("frames.txt");
    std::fs::write(&path, list).map_err(io(&path))
}

/// Serializes firmware builds in this process: the ELF is copied out of the shared target folder
/// before another model's build overwrites it.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The STM32H743 board profile (binary `stm32h743`, feature `board-stm32h743`).
pub const STM32H743_BOARD: &str = "stm32h743";

/// Builds the QEMU firmware with `model` embedded and copies the ELF to `work_dir`.
pub fn build(firmware_dir: &Path, model: &Path, work_dir: &Path) -> Result<PathBuf> {
    build_board(firmware_dir, model, work_dir, QEMU_BOARD)
}

/// Builds the firmware of `board` ([`QEMU_BOARD`] or [`STM32H743_BOARD`]: the binary and its
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

/// The QEMU command line for the board. With `target=native` semihosting, the firmware's
/// console (defmt) is QEMU's stdout; `-monitor none -serial none` keep anything else off it.
pub fn qemu_command(elf: &Path) -> Command {
    let mut command = Command::new("qemu-system-arm");
    command
        .args([
            "-cpu",
            "cortex-m4",
            "-machine",
            "mps2-an386",
            "-nographic",
            "-monitor",
            "none",
        ])
        .args(["-serial", "none", "-icount", "shift=0"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-kernel")
        .arg(elf);
    command
}

/// Runs `elf` in QEMU with `work_dir` as the working folder (where `frames.txt` is) and returns
/// the raw defmt bytes (also saved as `work_dir/defmt.out`). A run past `timeout` is killed and
/// reported, so a hang never blocks.
pub fn run_qemu(
    elf: &Path,
    work_dir: &Path,
    timeout: Duration,
    elf_bytes: &[u8],
) -> Result<Vec<u8>> {
    let elf = elf.canonicalize().map_err(|source| FirmwareError::Io {
        path: elf.to_path_buf(),
        error: source,
    })?;
    let mut child = qemu_command(&elf)
        .current_dir(work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FirmwareError::Spawn {
            program: "qemu-system-arm".to_owned(),
            error: source,
            hint: "install QEMU (Debian/Ubuntu: apt-get install qemu-system-arm)",
        })?;
    let mut stdout_pipe = child.stdout.take();
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(pipe) = stdout_pipe.as_mut() {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    });
    let mut stderr_pipe = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(source) => {
                return Err(FirmwareError::Io {
                    path: elf.clone(),
                    error: source,
                })
            }
        }
    };
    let stderr = stderr_reader.join().unwrap_or_default();
    let raw = stdout_reader.join().unwrap_or_default();
    let defmt_out = work_dir.join("defmt.out");
    std::fs::write(&defmt_out, &raw).map_err(|source| FirmwareError::Io {
        path: defmt_out,
        error: source,
    })?;
    let log = || {
        decode_defmt(elf_bytes, &raw)
            .map(|l| l.join("\n"))
            .unwrap_or_default()
    };
    match status {
        None => Err(FirmwareError::Timeout {
            seconds: timeout.as_secs(),
            log: log(),
        }),
        Some(status) if status.success() => Ok(raw),
        Some(status) => Err(FirmwareError::FirmwareFailed {
            status: status.to_string(),
            meaning: match status.code() {
                Some(1) => "panic or HardFault",
                Some(2) => "the embedded model is invalid",
                Some(3) => "a frame could not be read or preprocessed",
                _ => "QEMU failed",
            },
            log: log(),
            stderr: if stderr.trim().is_empty() {
                String::new()
            } else {
                format!("\nQEMU: {stderr}")
            },
        }),
    }
}

/// Decodes a defmt stream into its messages (one per log call), using the ELF's defmt table.
pub fn decode_defmt(elf_bytes: &[u8], raw: &[u8]) -> Result<Vec<String>> {
    let table = defmt_decoder::Table::parse(elf_bytes)
        .map_err(|e| FirmwareError::Defmt(e.to_string()))?
        .ok_or_else(|| FirmwareError::Defmt("the ELF has no .defmt section".to_owned()))?;
    let mut decoder = table.new_stream_decoder();
    decoder.received(raw);
    let mut lines = Vec::new();
    loop {
        match decoder.decode() {
            Ok(frame) => lines.push(frame.display_message().to_string()),
            Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
            Err(defmt_decoder::DecodeError::Malformed) => {
                return Err(FirmwareError::Defmt(format!(
                    "malformed frame after {} messages",
                    lines.len()
                )))
            }
        }
    }
    Ok(lines)
}

/// Parses `frame=<n> class=<i> confidence=<f> logits=[a, b, ..] instructions=<n> label=<rest>`;
/// other lines give `None`.
pub fn parse_frame_line(line: &str) -> Option<FirmwareFrame> {
    let rest = line.strip_prefix("frame=")?;
    let (frame, rest) = rest.split_once(" class=")?;
    let (class, rest) = rest.split_once(" confidence=")?;
    let (confidence, rest) = rest.split_once(" logits=[")?;
    let (logits, rest) = rest.split_once("] instructions=")?;
    let (instructions, label) = rest.split_once(" label=")?;
    let logits = if logits.trim().is_empty() {
        Vec::new()
    } else {
        logits
            .split(',')
            .map(|v| v.trim().parse().ok())
            .collect::<Option<Vec<i8>>>()?
    };
    Some(FirmwareFrame {
        frame: frame.parse().ok()?,
        class: class.parse().ok()?,
        label: label.to_owned(),
        confidence: confidence.parse().ok()?,
        logits,
        instructions: instructions.parse().ok()?,
    })
}

/// Flash and static RAM of `elf` from its allocated sections: sections with contents are in
/// flash (`.data` too, as its initial values), `.data` and sections without contents (`.bss`,
/// `.uninit`) are RAM.
pub fn elf_memory(path: &Path, elf_bytes: &[u8], blob_bytes: u64) -> Result<ElfMemory> {
    let file = object::File::parse(elf_bytes).map_err(|e| FirmwareError::Elf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (mut flash, mut ram) = (0u64, 0u64);
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            continue;
        };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 || section.size() == 0 {
            continue;
        }
        match section.kind() {
            SectionKind::UninitializedData | SectionKind::UninitializedTls => ram += section.size(),
            SectionKind::Data | SectionKind::Tls => {
                flash += section.size();
                ram += section.size();
            }
            _ => flash += section.size(),
        }
    }
    Ok(ElfMemory {
        flash_bytes: flash,
        code_bytes: flash.saturating_sub(blob_bytes),
        ram_bytes: ram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_firmware_frame_line() {
        let line = "frame=3 class=7 confidence=0.8125 logits=[-128, 5, 127] instructions=1240 label=Ankle boot";
        let parsed = parse_frame_line(line).unwrap();
        assert_eq!(
            parsed,
            FirmwareFrame {
                frame: 3,
                class: 7,
                label: "Ankle boot".to_owned(),
                confidence: 0.8125,
                logits: vec![-128, 5, 127],
                instructions: 1240,
            }
        );
        assert_eq!(parse_frame_line("boot board=qemu-mps2-an386"), None);
        assert_eq!(
            parse_frame_line("frame=1 class=2 confidence=1 logits=[300] instructions=1 label=x"),
            None
        );
    }

    #[test]
    fn qvga_frame_puts_the_image_in_the_centre_square() {
        let mut img = image::RgbImage::new(2, 2);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(1, 1, image::Rgb([0, 0, 255]));
        let frame = qvga_rgb565_frame(&image::DynamicImage::ImageRgb8(img), Path::new("x.png"));
        assert_eq!(frame.bytes.len(), 320 * 240 * 2);
        let at = |x: usize, y: usize| {
            u16::from_le_bytes([
                frame.bytes[(y * 320 + x) * 2],
                frame.bytes[(y * 320 + x) * 2 + 1],
            ])
        };
        // The centre square spans x 40..280; its top-left quarter is the red pixel.
        assert_eq!(at(40, 0), 0xf800);
        assert_eq!(at(0, 0), 0xf800, "edges repeat outwards");
        assert_eq!(at(279, 239), 0x001f);
        assert_eq!(at(160, 0), 0x0000);
    }
}
