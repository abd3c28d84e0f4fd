//! Converts between the blob and `.tflite` by file extension:
//!
//! ```sh
//! cargo run --release -p tinycnn-tflite --example convert -- model.tcnn model.tflite
//! cargo run --release -p tinycnn-tflite --example convert -- model.tflite model.tcnn
//! ```
//!
//! (`tinycnn quantize` and `tinycnn import` call the same two functions.)

use std::path::Path;
use std::process::ExitCode;

fn convert(input: &Path, output: &Path) -> Result<(), String> {
    let bytes = std::fs::read(input).map_err(|e| format!("reading {}: {e}", input.display()))?;
    let out = match output.extension().and_then(|e| e.to_str()) {
        Some("tflite") => {
            let model = tinycnn::Model::from_bytes(&bytes)
                .map_err(|e| format!("{}: {e}", input.display()))?;
            tinycnn_tflite::to_tflite(&model).map_err(|e| format!("{}: {e}", input.display()))?
        }
        Some("tcnn") => tinycnn_tflite::from_tflite(&bytes)
            .and_then(|m| m.to_bytes().map_err(tinycnn_tflite::ImportError::Blob))
            .map_err(|e| format!("{}: {e}", input.display()))?,
        _ => {
            return Err(format!(
                "{}: the output must end in .tflite or .tcnn",
                output.display()
            ))
        }
    };
    std::fs::write(output, out).map_err(|e| format!("writing {}: {e}", output.display()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        eprintln!("usage: convert IN OUT (a .tcnn and a .tflite, either way round)");
        return ExitCode::from(2);
    };
    match convert(Path::new(input), Path::new(output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
