//! Runs the exported ONNX models in tract, an independent runtime, for parity checks and
//! `predict --onnx`; reads the tinycnn metadata of an ONNX file.
use prost::Message;
use tinycnn::blob::QuantParams;
use tinycnn::Arch;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// `metadata_props` keys: the architecture and the class labels, as JSON.
pub const METADATA_ARCH: &str = "tinycnn.arch";
pub const METADATA_LABELS: &str = "tinycnn.labels";

/// An ONNX file that is not a tinycnn export.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{0} is not a valid ONNX file ({1}); pass model.float.onnx or model.qdq.onnx written by `tinycnn quantize`")]
    Decode(String, String),
    #[error(
        "{0} lacks the tinycnn metadata `{1}`; pass an ONNX model written by `tinycnn quantize`"
    )]
    Metadata(String, &'static str),
}

/// The architecture and labels stored in a tinycnn ONNX file's metadata.
pub fn read_metadata(bytes: &[u8], origin: &str) -> Result<(Arch, Vec<String>), OnnxError> {
    let model = pb::ModelProto::decode(bytes)
        .map_err(|e| OnnxError::Decode(origin.into(), e.to_string()))?;
    let get = |key: &'static str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
            .ok_or_else(|| OnnxError::Metadata(origin.into(), key))
    };
    let arch: Arch = serde_json::from_str(&get(METADATA_ARCH)?)
        .map_err(|_| OnnxError::Metadata(origin.into(), METADATA_ARCH))?;
    let labels: Vec<String> = serde_json::from_str(&get(METADATA_LABELS)?)
        .map_err(|_| OnnxError::Metadata(origin.into(), METADATA_LABELS))?;
    if arch.validate().is_err() || labels.len() != arch.classes as usize {
        return Err(OnnxError::Metadata(origin.into(), METADATA_ARCH));
    }
    Ok((arch, labels))
}

/// Recovers int8 logits from the QDQ model's dequantized output.
pub fn requantize_logits(logits: &[f32], output: QuantParams) -> Vec<i8> {
    logits
        .iter()
        .map(|&v| {
            ((v / output.scale).round() + output.zero_point as f32).clamp(-128.0, 127.0) as i8
        })
        .collect()
}

/// Why tract could not load or run a model.
#[derive(Debug, thiserror::Error)]
pub enum TractError {
    #[error("tract could not load or optimize the ONNX model {path}: {source:#}; is it a model written by `tinycnn quantize`?")]
    Load { path: String, source: anyhow::Error },
    #[error("tract failed to run the model: {0:#}")]
    Run(anyhow::Error),
    #[error("{actual} input bytes are not a whole number of {expected}-byte images; preprocess images to the model's input size")]
    InputLen { expected: usize, actual: usize },
}

/// A loaded, optimized ONNX classifier with a fixed batch size.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    arch: Arch,
    batch: usize,
}

impl TractModel {
    /// Loads ONNX bytes for `arch` with input `[batch, C, H, W]`.
    pub fn from_bytes(
        bytes: &[u8],
        arch: Arch,
        batch: usize,
        origin: &str,
    ) -> Result<TractModel, TractError> {
        let load = || -> TractResult<Arc<TypedRunnableModel>> {
            let shape = [
                batch,
                arch.channels as usize,
                arch.height as usize,
                arch.width as usize,
            ];
            tract_onnx::onnx()
                .model_for_read(&mut std::io::Cursor::new(bytes))?
                .with_input_fact(0, f32::fact(shape).into())?
                .into_optimized()?
                .into_runnable()
        };
        let plan = load().map_err(|source| TractError::Load {
            path: origin.to_string(),
            source,
        })?;
        Ok(TractModel { plan, arch, batch })
    }

    /// Runs any number of images, each HWC u8 pixels (`tinycnn::preprocess_u8`'s output), and
    /// returns `[images][classes]` float logits. The last partial batch is padded with zeros.
    pub fn run_u8_hwc(&self, pixels: &[u8]) -> Result<Vec<f32>, TractError> {
        let (h, w, c) = (
            self.arch.height as usize,
            self.arch.width as usize,
            self.arch.channels as usize,
        );
        let image_len = h * w * c;
        if !pixels.len().is_multiple_of(image_len) {
            return Err(TractError::InputLen {
                expected: image_len,
                actual: pixels.len(),
            });
        }
        let classes = self.arch.classes as usize;
        let mut logits = Vec::with_capacity(pixels.len() / image_len * classes);
        for chunk in pixels.chunks(self.batch * image_len) {
            let n = chunk.len() / image_len;
            let input =
                tract_ndarray::Array4::from_shape_fn((self.batch, c, h, w), |(b, ch, y, x)| {
                    if b < n {
                        chunk[b * image_len + (y * w + x) * c + ch] as f32 / 255.0
                    } else {
                        0.0
                    }
                });
            let out = self
                .plan
                .run(tvec!(Tensor::from(input).into()))
                .map_err(TractError::Run)?;
            let out = out[0]
                .to_plain_array_view::<f32>()
                .map_err(TractError::Run)?;
            logits.extend(out.iter().take(n * classes).copied());
        }
        Ok(logits)
    }
}
