//! Links the firmware for the selected board and embeds the model.
//!
//! - Copies `boards/<board>/memory.x` where `cortex-m-rt`'s `link.x` finds it.
//! - Reads the model blob named by `TINYCNN_MODEL` (default `../runs/demo/model.tcnn`, relative
//!   to this folder), validates it with `tinycnn::Model::from_bytes` and writes `model.rs` into
//!   `OUT_DIR`: the blob (`include_bytes!`) and its `Arch` as a `const`, so every buffer is a
//!   `static` of exact size.
//! - Refuses, with the reason and a fix, a model that does not fit the board's flash or RAM.
use std::fmt::Write as _;
use std::path::PathBuf;

/// Flash the firmware needs besides the model: code, vector table, defmt strings, constants.
/// The measured code size is about 44 KiB (BENCHMARKS.md); this leaves head room.
const CODE_FLASH_RESERVE: u64 = 96 * 1024;
/// RAM besides the streaming buffers: stack, board buffers (the STM32 DCMI frame buffer),
/// small statics.
const OTHER_RAM_RESERVE: u64 = 48 * 1024;
/// The widest source row the frame loop accepts: QVGA at 3 bytes per pixel
/// (`classify::MAX_ROW_BYTES`, or the model's width if wider).
const QVGA_ROW_BYTES: u64 = 320 * 3;

fn main() {
    if let Err(message) = run() {
        println!("cargo::error={message}");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);

    let boards = [
        (
            "qemu-mps2-an386",
            std::env::var_os("CARGO_FEATURE_BOARD_QEMU_MPS2_AN386").is_some(),
        ),
        (
            "qemu-mps2-an500",
            std::env::var_os("CARGO_FEATURE_BOARD_QEMU_MPS2_AN500").is_some(),
        ),
        (
            "stm32h743",
            std::env::var_os("CARGO_FEATURE_BOARD_STM32H743").is_some(),
        ),
    ];
    let selected: Vec<&str> = boards
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    let board = match selected.as_slice() {
        [board] => *board,
        _ => {
            return Err(format!(
                "select exactly one board feature (got {selected:?}): the default is \
                 board-qemu-mps2-an386; for the STM32H743 build with \
                 `--no-default-features --features board-stm32h743 --bin stm32h743`, for the \
                 QEMU Cortex-M7 board with `--no-default-features --features \
                 board-qemu-mps2-an500 --bin qemu-mps2-an500`"
            ))
        }
    };

    let memory_x = manifest_dir.join("boards").join(board).join("memory.x");
    println!("cargo:rerun-if-changed={}", memory_x.display());
    let memory = std::fs::read_to_string(&memory_x)
        .map_err(|e| format!("reading {}: {e}", memory_x.display()))?;
    std::fs::write(out_dir.join("memory.x"), &memory)
        .map_err(|e| format!("writing memory.x into {}: {e}", out_dir.display()))?;
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");

    println!("cargo:rerun-if-env-changed=TINYCNN_MODEL");
    let model_path = match std::env::var_os("TINYCNN_MODEL") {
        Some(path) => manifest_dir.join(path),
        None => manifest_dir.join("../runs/demo/model.tcnn"),
    };
    println!("cargo:rerun-if-changed={}", model_path.display());
    let blob = std::fs::read(&model_path).map_err(|e| {
        format!(
            "cannot read the model to embed, {} ({e}). Make one with `cargo xtask demo` (writes \
             runs/demo/model.tcnn) or `tinycnn quantize`, or point TINYCNN_MODEL at a model.tcnn \
             (relative paths are relative to firmware/)",
            model_path.display()
        )
    })?;
    let model = tinycnn::Model::from_bytes(&blob).map_err(|e| {
        format!(
            "{} is not a valid tinycnn model ({e}); re-export it with `tinycnn quantize`",
            model_path.display()
        )
    })?;
    let arch = model.arch;
    check_fits(board, &memory, &model, blob.len() as u64)?;

    let canonical = model_path.canonicalize().unwrap_or(model_path);
    let mut code = String::new();
    let _ = writeln!(
        code,
        "/// The embedded model's architecture, read from the blob at build time."
    );
    let _ = writeln!(
        code,
        "pub const ARCH: tinycnn::Arch = tinycnn::Arch {{ height: {}, width: {}, channels: {}, \
         filters: tinycnn::Filters::of({:?}), fc_width: {}, classes: {} }};",
        arch.height,
        arch.width,
        arch.channels,
        arch.filters.as_slice(),
        arch.fc_width,
        arch.classes
    );
    let _ = writeln!(
        code,
        "/// Where the embedded model came from, for the boot log."
    );
    let _ = writeln!(
        code,
        "pub const MODEL_PATH: &str = {:?};",
        canonical.display().to_string()
    );
    let _ = writeln!(
        code,
        "/// The model blob, validated again at boot by `Model::from_bytes`."
    );
    let _ = writeln!(
        code,
        "pub static MODEL_BLOB: &[u8] = include_bytes!({:?});",
        canonical
    );
    let _ = writeln!(code, "/// The board this image is linked for.");
    let _ = writeln!(code, "pub const BOARD: &str = {board:?};");
    std::fs::write(out_dir.join("model.rs"), code)
        .map_err(|e| format!("writing model.rs into {}: {e}", out_dir.display()))?;
    Ok(())
}

/// Checks the model against the board's `memory.x` before the linker does, so the error names
/// the cause and a preset that fits instead of "region FLASH overflowed".
fn check_fits(
    board: &str,
    memory: &str,
    model: &tinycnn::Model,
    blob_bytes: u64,
) -> Result<(), String> {
    let arch = &model.arch;
    let flash = region_length(memory, "FLASH")?;
    let ram = region_length(memory, "RAM")?;
    let describe = |a: &tinycnn::Arch| {
        format!(
            "{}x{}x{}, fc1 {} x {}",
            a.height,
            a.width,
            a.channels,
            a.flatten_len(),
            a.fc_width
        )
    };
    let fashion = tinycnn::Arch::fashion();
    // The blob with int4 dense layers: each int8 dense layer's weights shrink to half.
    let dense4_bytes = blob_bytes
        - arch
            .layers()
            .zip(model.layers.iter())
            .filter(|(spec, layer)| {
                spec.kind == tinycnn::LayerKind::Dense
                    && layer.weight_bits() == tinycnn::WeightBits::S8
            })
            .map(|(spec, _)| {
                (spec.weight_len() - spec.weight_bytes(tinycnn::WeightBits::S4)) as u64
            })
            .sum::<u64>();
    if blob_bytes + CODE_FLASH_RESERVE > flash
        && dense4_bytes < blob_bytes
        && dense4_bytes + CODE_FLASH_RESERVE <= flash
    {
        return Err(format!(
            "the model ({}, {blob_bytes} bytes) does not fit {board}'s {} KiB of flash with \
             about {} KiB of code. With int4 dense layers it would be {dense4_bytes} bytes and \
             fit: quantize it again with `tinycnn quantize --weight-bits dense4`, or use a \
             smaller preset such as `--preset fashion`",
            describe(arch),
            flash / 1024,
            CODE_FLASH_RESERVE / 1024,
        ));
    }
    if blob_bytes + CODE_FLASH_RESERVE > flash {
        return Err(format!(
            "the model ({}, {blob_bytes} bytes) does not fit {board}'s {} KiB of flash with about \
             {} KiB of code. Use a smaller preset: `--preset fashion` ({}, about {} KiB) fits, as \
             does any input size whose weights stay under {} KiB",
            describe(arch),
            flash / 1024,
            CODE_FLASH_RESERVE / 1024,
            describe(&fashion),
            fashion.param_count() / 1024 + 1,
            (flash - CODE_FLASH_RESERVE) / 1024
        ));
    }
    let window = 2 * QVGA_ROW_BYTES.max(3 * arch.width as u64);
    let buffers = window + arch.peak_activation_bytes() as u64;
    if buffers + OTHER_RAM_RESERVE > ram {
        return Err(format!(
            "the model ({}) needs {} KiB of row window and streaming buffers, more than {board}'s \
             {} KiB of RAM leaves. Use a smaller preset such as `--preset fashion` ({})",
            describe(arch),
            buffers / 1024,
            ram / 1024,
            describe(&fashion)
        ));
    }
    Ok(())
}

/// Reads `LENGTH = <n>[K|M]` of the named region in a `memory.x`.
fn region_length(memory: &str, region: &str) -> Result<u64, String> {
    let line = memory
        .lines()
        .map(str::trim)
        .find(|l| l.split([' ', ':']).next() == Some(region))
        .ok_or_else(|| format!("memory.x has no {region} region"))?;
    let length = line
        .split("LENGTH")
        .nth(1)
        .and_then(|rest| rest.split('=').nth(1))
        .map(str::trim)
        .ok_or_else(|| format!("memory.x: no LENGTH in `{line}`"))?;
    let (digits, unit) = match length.strip_suffix('K') {
        Some(d) => (d, 1024),
        None => match length.strip_suffix('M') {
            Some(d) => (d, 1024 * 1024),
            None => (length, 1),
        },
    };
    let value = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    };
    value
        .map(|v| v * unit)
        .map_err(|e| format!("memory.x: bad LENGTH in `{line}`: {e}"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("cargo did not set {name}"))
}
