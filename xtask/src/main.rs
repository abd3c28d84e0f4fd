//! Project automation for tinycnn: `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! Every command is idempotent: it checks what is already in place, says so, and only does the
//! missing work. Child processes inherit stdout and stderr, so their output streams as it comes.

mod args;
mod cmd;
mod data;
mod pipeline;
mod setup;

use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup                   install what the project needs, skipping what is already there:
                          the .venv with torch 2.13.0 (libtorch for tch), the .libtorch link,
                          the thumbv7em-none-eabihf target, qemu-system-arm and the raw
                          Fashion-MNIST files (Debian package dataset-fashion-mnist)
  data fashion-mnist      decode Fashion-MNIST into DIR/{train,test}/<class>/*.png
      --out DIR           output folder (default data/fashion-mnist, or
                          data/fashion-mnist-small with --per-class)
      --per-class N       keep only the first N training images of each class
      --test-per-class N  keep only the first N test images of each class
                          (default: N of --per-class, else all)
  demo                    the main job: setup, full data set, train, eval, quantize, parity,
                          firmware in QEMU; prints the path of runs/demo/report.json last
  test                    every check CI runs: setup, test data subset, fmt, clippy, the
                          thumbv7em build of shared, cargo test, the firmware's host tests
  help                    show this text
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nxtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = args::Args::from_env();
    let Some(command) = args.next_positional() else {
        eprint!("{USAGE}");
        bail!("no command given; pick one of the commands above");
    };
    match command.as_str() {
        "setup" => {
            args.finish()?;
            setup::run_all(&cmd::Context::new()?)
        }
        "data" => data::command(&cmd::Context::new()?, args),
        "demo" => {
            args.finish()?;
            pipeline::demo(&cmd::Context::new()?)
        }
        "test" => {
            args.finish()?;
            pipeline::test(&cmd::Context::new()?)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`; pick one of the commands above")
        }
    }
}
