//! `tinycnn-run`: run and check tinycnn models without libtorch. `tinycnn-run --help` lists the
//! subcommands; the training tool `tinycnn` offers the same ones.
#![forbid(unsafe_code)]
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tinycnn-run",
    version,
    about = "Run and check tinycnn models (int8 blob, ONNX, firmware in QEMU) without libtorch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Class probabilities for each image, most probable first.
    #[command(group(clap::ArgGroup::new("backend").required(true).args(["model", "onnx"])))]
    Predict {
        /// int8 model blob (model.tcnn): runs the integer network of `shared`.
        #[arg(long)]
        model: Option<PathBuf>,
        /// ONNX model (model.qdq.onnx or model.float.onnx): runs it in tract.
        #[arg(long)]
        onnx: Option<PathBuf>,
        /// Images to classify.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Build the firmware for a model, run it in QEMU on camera frames made from test images and
    /// check its logits against the host bit for bit.
    Firmware(tinycnn_runtime::firmware::FirmwareArgs),
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Predict {
            model: Some(model),
            images,
            ..
        } => tinycnn_runtime::predict::predict_blob(&model, &images),
        Command::Predict {
            onnx: Some(onnx),
            images,
            ..
        } => tinycnn_runtime::predict::predict_onnx(&onnx, &images),
        Command::Predict { .. } => anyhow::bail!("pass --model or --onnx"),
        Command::Firmware(args) => tinycnn_runtime::firmware::run_cli(&args),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
