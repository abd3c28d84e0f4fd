//! Runs an exported model in LiteRT (TFLite's interpreter) and compares it with `tinycnn`, layer
//! by layer: the TFLite line of a parity check.
//!
//! LiteRT is Python (`pip install ai-edge-litert`); [`compare_with_litert`] runs the embedded
//! `litert/run.py` with the given interpreter, so the caller needs no repository checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

use tinycnn::{argmax, forward_traced, Model};

use crate::{to_tflite_traced, ExportError};

/// The runner script (`tflite/litert/run.py`).
pub const RUN_PY: &str = include_str!("../litert/run.py");

/// LiteRT's op resolvers that `run.py` runs, in order: the reference kernels, the optimized
/// kernels, and the default (optimized kernels with the XNNPACK delegate).
pub const RESOLVERS: [&str; 3] = ["BUILTIN_REF", "BUILTIN", "AUTO"];

/// How one layer's outputs differ between a runtime and `tinycnn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDiff {
    /// Layer output name: `block1` ... (pooled conv blocks), `fc1`, `logits`.
    pub layer: String,
    /// Output values that differ, over all inputs.
    pub values: usize,
    /// Inputs with at least one differing value.
    pub inputs: usize,
    /// Largest difference in LSB.
    pub max_lsb: i32,
}

/// The top-2 logit gap (in LSB) at or below which an input is a near tie: there the argmax is
/// decided by the runtime's rounding, not by the model.
pub const NEAR_TIE_LSB: i32 = 1;

/// How far the largest logit leads the runner-up, in LSB (`i32::MAX` for one class).
pub fn top2_gap(logits: &[i8]) -> i32 {
    let (mut first, mut second) = (i32::MIN, i32::MIN);
    for &v in logits {
        let v = i32::from(v);
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    if second == i32::MIN {
        i32::MAX
    } else {
        first - second
    }
}

/// One runtime (a LiteRT resolver, or another interpreter) against `tinycnn` over all inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeReport {
    /// The runtime: one of [`RESOLVERS`] for LiteRT.
    pub runtime: &'static str,
    /// Every layer output, in network order.
    pub layers: Vec<LayerDiff>,
    /// Inputs where the logits' argmax agrees.
    pub argmax_agree: usize,
    /// Inputs whose `tinycnn` logits are decisive: the top logit leads the runner-up by more
    /// than [`NEAR_TIE_LSB`], so no 1-LSB rounding difference can change the argmax.
    pub decisive_inputs: usize,
    /// Decisive inputs where the argmax agrees.
    pub decisive_argmax_agree: usize,
    /// Number of inputs.
    pub inputs: usize,
}

impl RuntimeReport {
    /// Whether the conv blocks (every layer but fc1 and the logits) are bit-identical.
    pub fn conv_blocks_exact(&self) -> bool {
        let blocks = self.layers.len().saturating_sub(2);
        self.layers[..blocks].iter().all(|l| l.values == 0)
    }
}

/// What [`compare_with_litert`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiteRtReport {
    /// The `ai-edge-litert` version.
    pub version: String,
    /// One report per resolver, in the order of [`RESOLVERS`].
    pub runtimes: Vec<RuntimeReport>,
}

/// Why the LiteRT comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum LiteRtError {
    /// The model cannot be exported.
    #[error("cannot export the model as .tflite: {0}")]
    Export(#[from] ExportError),
    /// The python interpreter is missing.
    #[error(
        "{0} is missing: run `cargo xtask setup`, which installs ai-edge-litert into the \
         project venv (or `pip install ai-edge-litert` into the python you pass)"
    )]
    NoPython(PathBuf),
    /// The inputs are not a whole number of model inputs.
    #[error("{len} input values are not a whole number of {per}-value model inputs")]
    Inputs {
        /// Values given.
        len: usize,
        /// Values per input.
        per: usize,
    },
    /// Writing or reading the scratch files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `run.py` failed (LiteRT not installed, or it refused the model).
    #[error("LiteRT (run.py with {python}) failed with {status}: {stderr}")]
    Runner {
        /// The interpreter.
        python: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// An output has the wrong length.
    #[error("the {runtime} {layer} output has {found} values, expected {expected}")]
    OutputLength {
        /// Runtime.
        runtime: &'static str,
        /// Layer output name.
        layer: String,
        /// Values found.
        found: usize,
        /// Values expected.
        expected: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LiteRtError + '_ {
    move |source| LiteRtError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Names of the traced outputs: one per conv block, then `fc1` and `logits`.
fn layer_names(model: &Model) -> Vec<String> {
    let blocks = crate::conv_blocks(&model.arch).len();
    (1..=blocks)
        .map(|b| format!("block{b}"))
        .chain(["fc1".to_owned(), "logits".to_owned()])
        .collect()
}

/// The length of one model input, after checking that `inputs` is one or more of them.
fn input_len(model: &Model, inputs: &[i8]) -> Result<usize, LiteRtError> {
    let per = model.arch.input_len();
    if inputs.is_empty() || inputs.len() % per != 0 {
        return Err(LiteRtError::Inputs {
            len: inputs.len(),
            per,
        });
    }
    Ok(per)
}

/// Exports `model` with every layer as an output ([`to_tflite_traced`]), runs it in LiteRT with
/// each of [`RESOLVERS`] over `inputs` (model inputs back to back, HWC int8 as
/// [`tinycnn::forward`] takes them), and compares every layer with
/// [`tinycnn::forward_traced`]. Scratch files go to `work_dir` (created if missing).
pub fn compare_with_litert(
    python: &Path,
    model: &Model,
    inputs: &[i8],
    work_dir: &Path,
) -> Result<LiteRtReport, LiteRtError> {
    input_len(model, inputs)?;
    if !python.exists() {
        return Err(LiteRtError::NoPython(python.to_owned()));
    }
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    let files = [
        ("model.tflite", to_tflite_traced(model)?),
        ("inputs.bin", inputs.iter().map(|&v| v as u8).collect()),
        ("run.py", RUN_PY.as_bytes().to_vec()),
    ];
    for (name, bytes) in &files {
        let path = work_dir.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    let out = Command::new(python)
        .arg(work_dir.join("run.py"))
        .arg(work_dir.join("model.tflite"))
        .arg(work_dir.join("inputs.bin"))
        .arg(work_dir)
        .output()
        .map_err(io(python))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr.lines().rev().take(8).collect::<Vec<_>>().join("\n");
        return Err(LiteRtError::Runner {
            python: python.to_owned(),
            status: out.status,
            stderr: tail,
        });
    }
    let version_path = work_dir.join("version.txt");
    let version = std::fs::read_to_string(&version_path)
        .map_err(io(&version_path))?
        .trim()
        .to_owned();

    let names = layer_names(model);
    let mut runtimes = Vec::new();
    for resolver in RESOLVERS {
        let mut theirs = Vec::new();
        for name in &names {
            let path = work_dir.join(resolver).join(format!("{name}.bin"));
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            theirs.push(bytes.into_iter().map(|b| b as i8).collect());
        }
        runtimes.push(compare_outputs(model, inputs, resolver, &theirs)?);
    }
    Ok(LiteRtReport { version, runtimes })
}

/// Compares another runtime's layer outputs with [`tinycnn::forward_traced`] on the same
/// `inputs` (model inputs back to back). `theirs[l]` holds layer `l`'s outputs for all inputs
/// back to back, in [`to_tflite_traced`]'s output order: each conv block, `fc1`, `logits`.
pub fn compare_outputs(
    model: &Model,
    inputs: &[i8],
    runtime: &'static str,
    theirs: &[Vec<i8>],
) -> Result<RuntimeReport, LiteRtError> {
    let per = input_len(model, inputs)?;
    let names = layer_names(model);
    let n = inputs.len() / per;
    let mut scratch = vec![0i8; model.arch.scratch_len()];
    let mut logits = vec![0i8; model.arch.classes as usize];
    let ours: Vec<Vec<Vec<i8>>> = inputs
        .chunks_exact(per)
        .map(|x| {
            let mut layers = Vec::new();
            forward_traced(model, x, &mut scratch, &mut logits, &mut |_, o| {
                layers.push(o.to_vec())
            });
            layers
        })
        .collect();
    let mut layers = Vec::new();
    for (l, name) in names.iter().enumerate() {
        let len = ours[0][l].len();
        let found = theirs.get(l).map_or(0, Vec::len);
        if found != len * n {
            return Err(LiteRtError::OutputLength {
                runtime,
                layer: name.clone(),
                found,
                expected: len * n,
            });
        }
        let mut diff = LayerDiff {
            layer: name.clone(),
            values: 0,
            inputs: 0,
            max_lsb: 0,
        };
        for (o, t) in ours.iter().zip(theirs[l].chunks_exact(len)) {
            let mut any = false;
            for (&a, &b) in o[l].iter().zip(t) {
                let d = (a as i32 - b as i32).abs();
                if d > 0 {
                    diff.values += 1;
                    diff.max_lsb = diff.max_lsb.max(d);
                    any = true;
                }
            }
            diff.inputs += usize::from(any);
        }
        layers.push(diff);
    }
    let last = names.len() - 1;
    let classes = model.arch.classes as usize;
    let (mut argmax_agree, mut decisive_inputs, mut decisive_argmax_agree) = (0, 0, 0);
    for (o, t) in ours.iter().zip(theirs[last].chunks_exact(classes)) {
        let agree = argmax(&o[last]) == argmax(t);
        argmax_agree += usize::from(agree);
        if top2_gap(&o[last]) > NEAR_TIE_LSB {
            decisive_inputs += 1;
            decisive_argmax_agree += usize::from(agree);
        }
    }
    Ok(RuntimeReport {
        runtime,
        layers,
        argmax_agree,
        decisive_inputs,
        decisive_argmax_agree,
        inputs: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top2_gap_counts_ties_and_single_classes() {
        assert_eq!(top2_gap(&[3, 9, 9]), 0);
        assert_eq!(top2_gap(&[-128, 5, 4]), 1);
        assert_eq!(top2_gap(&[127, -128]), 255);
        assert_eq!(top2_gap(&[7]), i32::MAX);
    }

    #[test]
    fn errors_say_what_to_do() {
        let mut owned = tinycnn::OwnedModel::random(tinycnn::Arch::fashion(), 1);
        crate::make_scales_consistent(&mut owned);
        let blob = owned.to_bytes().unwrap();
        let model = Model::from_bytes(&blob).unwrap();
        let dir = std::env::temp_dir();
        let input = vec![0i8; model.arch.input_len()];
        let e = compare_with_litert(Path::new("/nonexistent/python"), &model, &input, &dir)
            .unwrap_err();
        assert!(e.to_string().contains("cargo xtask setup"), "{e}");
        let e = compare_with_litert(Path::new("/bin/sh"), &model, &input[1..], &dir).unwrap_err();
        assert!(e.to_string().contains("784-value model inputs"), "{e}");
    }
}
