//! Runs a firmware ELF in QEMU and reads its defmt log.
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tinycnn::{ExitCode, ParsedFrame};

use super::{FirmwareError, FirmwareFrame, QemuBoard, Result};
use tinycnn::protocol::CountUnit;

/// The QEMU command line for `board`. With `target=native` semihosting, the firmware's
/// console (defmt) is QEMU's stdout; `-monitor none -serial none` keep anything else off it.
pub fn qemu_command(board: QemuBoard, elf: &Path) -> Command {
    let (cpu, machine) = board.cpu_and_machine();
    let mut command = Command::new("qemu-system-arm");
    command
        .args(["-cpu", cpu, "-machine", machine, "-nographic"])
        .args(["-monitor", "none"])
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
    board: QemuBoard,
    elf: &Path,
    work_dir: &Path,
    timeout: Duration,
    elf_bytes: &[u8],
) -> Result<Vec<u8>> {
    let elf = elf.canonicalize().map_err(|source| FirmwareError::Io {
        path: elf.to_path_buf(),
        error: source,
    })?;
    let mut child = qemu_command(board, &elf)
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
    let stdout_reader = read_to_end_on_thread(child.stdout.take());
    let stderr_reader = read_to_end_on_thread(child.stderr.take());
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
    let stderr = String::from_utf8_lossy(&stderr_reader.join().unwrap_or_default()).into_owned();
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
            exit: status.code().and_then(ExitCode::from_code),
            meaning: status
                .code()
                .and_then(ExitCode::from_code)
                .map_or("QEMU failed", ExitCode::meaning),
            log: log(),
            stderr: if stderr.trim().is_empty() {
                String::new()
            } else {
                format!("\nQEMU: {stderr}")
            },
        }),
    }
}

/// Reads `pipe` to its end on a thread of its own, so that a full pipe never blocks the child
/// while the caller waits for it to exit. A read error ends the bytes early.
fn read_to_end_on_thread(
    pipe: Option<impl Read + Send + 'static>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
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

/// Reads a QEMU board's per-frame line (`tinycnn::ParsedFrame`, counted in instructions);
/// other lines give `None`.
pub fn parse_frame_line(line: &str) -> Option<FirmwareFrame> {
    let parsed = ParsedFrame::parse(line)?;
    if parsed.unit != CountUnit::Instructions {
        return None;
    }
    Some(FirmwareFrame {
        frame: usize::try_from(parsed.frame).ok()?,
        class: parsed.class,
        label: parsed.label.as_str().to_owned(),
        confidence: parsed.confidence,
        logits: parsed.logits.to_vec(),
        instructions: parsed.count,
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
        // The STM32 board's line parses through the protocol too, but is not a QEMU count.
        let cycles = "frame=0 class=1 confidence=0.5000 logits=[1, 2] cycles=99 label=cat";
        assert_eq!(ParsedFrame::parse(cycles).unwrap().count, 99);
        assert_eq!(parse_frame_line(cycles), None);
    }
}
