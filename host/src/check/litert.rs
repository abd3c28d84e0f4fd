//! The TFLite line of `tinycnn parity`: the blob's `.tflite` export run in LiteRT (TFLite's
//! interpreter) with each op resolver, compared with `shared` layer by layer.
//!
//! Contract, measured on every parity run:
//! - with TFLite's reference kernels (`BUILTIN_REF`) the conv blocks are bit-identical and every
//!   layer is within [`LITERT_REF_MAX_LSB`];
//! - with every resolver the logits are within [`LITERT_LOGITS_MAX_LSB`], and the argmax agrees on
//!   at least [`LITERT_MIN_ARGMAX_AGREEMENT`] of the decisive images (those whose `shared` logits
//!   lead the runner-up by more than [`NEAR_TIE_LSB`]).
//!
//! TFLite's own kernels round differently from its fixed-point definition, which `shared` follows
//! bit for bit: the reference FULLY_CONNECTED rescales in double, and the optimized kernels
//! (`BUILTIN`, XNNPACK) requantize with one rounding (ties upward) instead of two. Each
//! requantization then differs by at most 1 LSB, but the differences feed the next layer, so they
//! compound: on the demo model block 3 differs by up to 3 LSB and the logits by up to 2. On a
//! near tie (about 2% of Fashion-MNIST test images have a top-2 gap of 0 or 1 LSB) such a
//! difference decides the argmax, so raw agreement is reported but not bounded.
use std::path::{Path, PathBuf};

use tinycnn_tflite::litert::{compare_with_litert, RuntimeReport, NEAR_TIE_LSB};

pub const LITERT_REF_MAX_LSB: i32 = 1;
pub const LITERT_LOGITS_MAX_LSB: i32 = 2;
pub const LITERT_MIN_ARGMAX_AGREEMENT: f64 = 0.999;
/// The resolver whose conv blocks must be bit-identical.
pub const REFERENCE_RESOLVER: &str = "BUILTIN_REF";

/// One layer output of one resolver.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LiteRtLayer {
    pub layer: String,
    /// Values that differ from `shared`, over all images.
    pub differing_values: usize,
    /// Images with at least one differing value.
    pub differing_images: usize,
    pub max_lsb: i32,
}

/// One LiteRT op resolver against `shared`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LiteRtResolver {
    /// `BUILTIN_REF` (reference kernels), `BUILTIN` (optimized) or `AUTO` (XNNPACK).
    pub resolver: String,
    pub conv_blocks_bit_exact: bool,
    /// The largest difference of any layer.
    pub max_lsb: i32,
    /// The largest difference of the logits (the last layer).
    pub logits_max_lsb: i32,
    pub argmax_agreement: f64,
    /// Images whose `shared` logits lead the runner-up by more than `NEAR_TIE_LSB`.
    pub decisive_images: usize,
    /// Argmax agreement on the decisive images.
    pub decisive_argmax_agreement: f64,
    pub layers: Vec<LiteRtLayer>,
}

/// The `parity.litert` object of report.json.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LiteRtParity {
    /// The `ai-edge-litert` version.
    pub version: String,
    pub images: usize,
    pub resolvers: Vec<LiteRtResolver>,
}

impl LiteRtParity {
    fn from_reports(version: String, runtimes: &[RuntimeReport]) -> LiteRtParity {
        let resolvers = runtimes
            .iter()
            .map(|r| LiteRtResolver {
                resolver: r.runtime.to_string(),
                conv_blocks_bit_exact: r.conv_blocks_exact(),
                max_lsb: r.layers.iter().map(|l| l.max_lsb).max().unwrap_or(0),
                logits_max_lsb: r.layers.last().map_or(0, |l| l.max_lsb),
                argmax_agreement: r.argmax_agree as f64 / r.inputs.max(1) as f64,
                decisive_images: r.decisive_inputs,
                decisive_argmax_agreement: r.decisive_argmax_agree as f64
                    / r.decisive_inputs.max(1) as f64,
                layers: r
                    .layers
                    .iter()
                    .map(|l| LiteRtLayer {
                        layer: l.layer.clone(),
                        differing_values: l.values,
                        differing_images: l.inputs,
                        max_lsb: l.max_lsb,
                    })
                    .collect(),
            })
            .collect();
        LiteRtParity {
            version,
            images: runtimes.first().map_or(0, |r| r.inputs),
            resolvers,
        }
    }

    /// Whether the reference kernels' conv blocks are bit-identical.
    pub fn reference_conv_blocks_exact(&self) -> bool {
        self.resolvers
            .iter()
            .any(|r| r.resolver == REFERENCE_RESOLVER && r.conv_blocks_bit_exact)
    }

    /// The largest difference of any layer with the reference kernels; `None` when they did
    /// not run.
    pub fn reference_max_lsb(&self) -> Option<i32> {
        self.resolvers
            .iter()
            .find(|r| r.resolver == REFERENCE_RESOLVER)
            .map(|r| r.max_lsb)
    }

    /// The largest logit difference of any resolver.
    pub fn logits_max_lsb(&self) -> i32 {
        self.resolvers
            .iter()
            .map(|r| r.logits_max_lsb)
            .max()
            .unwrap_or(0)
    }

    /// The lowest argmax agreement of any resolver, over all images.
    pub fn min_argmax_agreement(&self) -> f64 {
        self.resolvers
            .iter()
            .map(|r| r.argmax_agreement)
            .fold(1.0, f64::min)
    }

    /// The lowest argmax agreement of any resolver, over the decisive images.
    pub fn min_decisive_argmax_agreement(&self) -> f64 {
        self.resolvers
            .iter()
            .map(|r| r.decisive_argmax_agreement)
            .fold(1.0, f64::min)
    }

    /// One line per resolver and layer, for the parity table.
    pub fn details(&self) -> String {
        let mut s = format!("LiteRT {} on {} images:\n", self.version, self.images);
        for r in &self.resolvers {
            let layers: Vec<String> = r
                .layers
                .iter()
                .map(|l| {
                    format!(
                        "{} {} values on {} images (max {})",
                        l.layer, l.differing_values, l.differing_images, l.max_lsb
                    )
                })
                .collect();
            s += &format!(
                "  {:<11} argmax agreement {:.3}% (all), {:.3}% ({} decisive images, top-2 gap > \
                 {NEAR_TIE_LSB} LSB); {}\n",
                r.resolver,
                100.0 * r.argmax_agreement,
                100.0 * r.decisive_argmax_agreement,
                r.decisive_images,
                layers.join(", ")
            );
        }
        s
    }
}

/// The python that has `ai-edge-litert`: `explicit`, else `$TINYCNN_PYTHON`, else the project
/// venv's `.venv/bin/python` in the current folder, the executable's folder or one above them.
pub fn find_python(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("TINYCNN_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf)),
    ];
    starts
        .into_iter()
        .flatten()
        .flat_map(|start| {
            start
                .ancestors()
                .map(|d| d.join(".venv/bin/python"))
                .collect::<Vec<_>>()
        })
        .find(|p| p.exists())
}

/// Runs LiteRT on `inputs` (int8 model inputs back to back). `Err` carries why it did not run.
pub fn run(
    blob: &[u8],
    inputs: &[i8],
    python: Option<&Path>,
    work_dir: &Path,
) -> Result<LiteRtParity, String> {
    let model = tinycnn::Model::from_bytes(blob).map_err(|e| e.to_string())?;
    if model
        .layers
        .iter()
        .any(|l| l.weight_bits() != tinycnn::WeightBits::S8)
    {
        return Err("the model has int4 layers, which the .tflite export does not take".into());
    }
    let python = find_python(python).ok_or(
        "no python with ai-edge-litert found: run `cargo xtask setup` (it installs it into .venv), or pass --python",
    )?;
    let report =
        compare_with_litert(&python, &model, inputs, work_dir).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(work_dir);
    Ok(LiteRtParity::from_reports(report.version, &report.runtimes))
}
