//! `tinycnn`: train, evaluate and run the tutorial CNN. `tinycnn --help` lists the subcommands.
#![forbid(unsafe_code)]
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use tinycnn_host::train::{checkpoint, eval};
use tinycnn_host::train::{ArchOverrides, Preset, TrainOptions};
use tinycnn_host::{predict, train};
use tinycnn_runtime::report;

#[derive(Parser)]
#[command(
    name = "tinycnn",
    version,
    about = "Train, evaluate and run the tutorial CNN on image folders"
)]
enum Command {
    /// Train on ROOT/<class>/*.{jpg,jpeg,png,webp,bmp}; writes checkpoints, metrics and plots to --out.
    Train(Box<TrainOptions>),
    /// Accuracy and confusion matrix of a checkpoint on a test folder.
    Eval {
        /// Checkpoint file, or a run folder (its best.ot is used).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Test images, with the model's class folders.
        #[arg(long)]
        data: PathBuf,
        /// Report file to merge float_test_accuracy into.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Where to save the confusion matrix PNG [default: next to the checkpoint, confusion.png].
        #[arg(long)]
        confusion_png: Option<PathBuf>,
    },
    /// Class probabilities for each image, most probable first.
    #[command(group(clap::ArgGroup::new("backend").required(true).args(["checkpoint", "model", "onnx"])))]
    Predict {
        /// Float checkpoint file, or a run folder (its best.ot is used).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        args: tinycnn_runtime::predict::PredictArgs,
    },
    /// Training throughput on synthetic images (whole steps: batch, forward, backward, Adam).
    BenchTrain {
        #[arg(long, value_enum, default_value = "tutorial")]
        preset: Preset,
        #[command(flatten)]
        arch: ArchOverrides,
        /// Number of classes of the synthetic task.
        #[arg(long, default_value_t = 10)]
        classes: u16,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// libtorch CPU threads [default: libtorch's choice].
        #[arg(long)]
        threads: Option<i32>,
    },
    /// PTQ and QAT from a float checkpoint; writes model.tcnn, model.float.onnx, model.qdq.onnx,
    /// model.tflite, qat.ot and model.report.{md,json}, and merges the int8 figures into report.json.
    Quantize(Box<tinycnn_host::quant::QuantizeArgs>),
    /// An int8 `.tflite` or a float ONNX model (with --calibrate) to a tinycnn blob.
    Import(tinycnn_host::import::ImportArgs),
    /// Checks the int sim, the fake-quant QAT net and tract (float and QDQ ONNX) against `shared`;
    /// prints a table, writes parity.json and merges `parity` into report.json.
    Parity(tinycnn_host::check::parity::ParityArgs),
    /// Build the firmware for a model, run it in QEMU on camera frames made from test images and
    /// check its logits against the host bit for bit.
    Firmware(tinycnn_runtime::firmware::FirmwareArgs),
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(opts) => {
            train::train(&opts)?;
        }
        Command::Eval {
            checkpoint: ck,
            data,
            report: report_path,
            confusion_png,
        } => {
            let png = confusion_png.unwrap_or_else(|| {
                let resolved = checkpoint::resolve(&ck);
                resolved
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("confusion.png")
            });
            let result = eval::run(&ck, &data, Some(&png))?;
            if let Some(path) = report_path {
                report::merge(
                    &path,
                    json!({"float_test_accuracy": result.accuracy, "test_skipped_files": result.skipped_files}),
                )?;
            }
        }
        Command::Predict { checkpoint, args } => {
            if let Some(result) = args.run() {
                return result;
            }
            let images = args.images;
            let ck = checkpoint.context("pass --checkpoint, --model or --onnx")?;
            let device = tch::Device::cuda_if_available();
            let ck = checkpoint::load(&ck, device)?;
            let mut failures = 0;
            for path in &images {
                match predict::predict_float(&ck, path, device) {
                    Ok(probs) => {
                        tinycnn_runtime::predict::print_probabilities(path, &ck.meta.labels, &probs)
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failures += 1;
                    }
                }
            }
            if failures > 0 {
                anyhow::bail!(
                    "{failures} of {} images could not be classified (see above)",
                    images.len()
                );
            }
        }
        Command::Firmware(args) => tinycnn_runtime::firmware::run_cli(&args)?,
        Command::Quantize(args) => {
            tinycnn_host::quant::quantize_command(&args)?;
        }
        Command::Import(args) => {
            tinycnn_host::import::import_command(&args)?;
        }
        Command::Parity(args) => {
            tinycnn_host::check::parity::parity_command(&args)?;
        }
        Command::BenchTrain {
            preset,
            arch,
            classes,
            batch,
            warmup,
            steps,
            threads,
        } => {
            if let Some(threads) = threads {
                tch::set_num_threads(threads.max(1));
            }
            let arch = arch.apply(preset, classes)?;
            let device = tch::Device::cuda_if_available();
            let rate = train::bench_train(&arch, batch, warmup, steps, device)
                .with_context(|| format!("benchmarking {} training", preset.name()))?;
            println!(
                "bench-train preset={} {}x{}x{} batch={batch} threads={} device={device:?}: {rate:.1} img/s",
                preset.name(),
                arch.height,
                arch.width,
                arch.channels,
                tch::get_num_threads()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tinycnn_host::train::alloc::use_malloc_tunables();
    match run(Command::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<train::Interrupted>().is_some() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
