//! `tinycnn-run`: run and check tinycnn models without libtorch. `tinycnn-run --help` lists the
//! subcommands; the training tool `tinycnn` offers the same ones.
#![forbid(unsafe_code)]
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "tinycnn-run",
    version,
    about = "Run and check tinycnn models (int8 blob, ONNX, firmware in QEMU) without libtorch"
)]
enum Command {
    /// Class probabilities for each image, most probable first.
    #[command(group(clap::ArgGroup::new("backend").required(true).args(["model", "onnx"])))]
    Predict(tinycnn_runtime::predict::PredictArgs),
    /// Build the firmware for a model, run it in QEMU on camera frames made from test images and
    /// check its logits against the host bit for bit.
    Firmware(tinycnn_runtime::firmware::FirmwareArgs),
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Predict(args) => args
            .run()
            .unwrap_or_else(|| Err(anyhow::anyhow!("pass --model or --onnx"))),
        Command::Firmware(args) => tinycnn_runtime::firmware::run_cli(&args),
    }
}

fn main() -> ExitCode {
    match run(Command::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
