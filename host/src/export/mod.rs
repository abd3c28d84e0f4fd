//! Conversion of a trained float model and its activation quantization parameters into the
//! `shared` blob (`tinycnn::blob::OwnedModel`), following the quantization scheme of docs/ARCHITECTURE.md.
//!
//! The submodules mirror `shared/src/ops`: [`conv`] and [`dense`] own the weight layouts,
//! [`requant`] owns every float-to-fixed decision (activation parameters, biases, multipliers).
pub mod conv;
pub mod dense;
pub mod onnx;
pub mod requant;

use tinycnn::blob::{OwnedLayer, OwnedModel, QuantParams};
use tinycnn::{Arch, LayerKind, LayerSpec};

/// Transposes each of the `blocks` consecutive row-major `rows x cols` matrices in `w` to
/// `cols x rows`: the one reordering behind every weight layout change (OIHW <-> OHWI per output
/// channel, fc1's NCHW <-> HWC columns per output row).
///
/// Panics with `length_message` unless `w.len() == blocks * rows * cols`.
pub(crate) fn transpose_blocks<T: Copy>(
    w: &[T],
    blocks: usize,
    rows: usize,
    cols: usize,
    length_message: &str,
) -> Vec<T> {
    assert_eq!(w.len(), blocks * rows * cols, "{length_message}");
    let mut r = Vec::with_capacity(w.len());
    for block in w.chunks_exact((rows * cols).max(1)) {
        for col in 0..cols {
            for row in 0..rows {
                r.push(block[row * cols + col]);
            }
        }
    }
    r
}

/// Why a float model could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "the architecture is invalid ({0:?}); check the preset the checkpoint was trained with"
    )]
    Arch(tinycnn::arch::ArchError),
    #[error("{layer} has {actual} {what} values but the architecture needs {expected}; the checkpoint does not match the preset")]
    Shape {
        layer: &'static str,
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{layer} has a non-finite {what} value; the checkpoint is corrupt or training diverged, retrain with a lower learning rate")]
    NonFinite {
        layer: &'static str,
        what: &'static str,
    },
    #[error("the model has {actual} layers but the architecture has {expected}; the checkpoint does not match the preset")]
    LayerCount { expected: usize, actual: usize },
    #[error("the model has {labels} labels but {classes} classes; give one label per class")]
    Labels { labels: usize, classes: usize },
    #[error("label {0:?} is longer than {max} bytes; rename the class folder", max = tinycnn::arch::MAX_LABEL_LEN)]
    LabelTooLong(String),
    #[error("{layer}: activation scale {scale} is not a positive finite number; calibrate on more images")]
    ActivationScale { layer: &'static str, scale: f32 },
    #[error("{layer} channel {channel}: the bias {bias} is too large for an int32 at scale {scale:e}; the model is badly conditioned, retrain it")]
    BiasRange {
        layer: &'static str,
        channel: usize,
        bias: f32,
        scale: f64,
    },
}

/// One layer's float parameters in tch layout.
///
/// Conv weights are `[out, in, 3, 3]`; dense weights are `[out, in]`, where fc1's `in` index is
/// tch's NCHW flatten order `(c, h, w)` of the last block's pooled output.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatLayer {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A whole float model in tch layout, with its class labels.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatParams {
    pub arch: Arch,
    pub labels: Vec<String>,
    /// One per `arch.layers()`, in order.
    pub layers: Vec<FloatLayer>,
    /// The bit width each layer's weights are exported at, one per `arch.layers()`.
    pub weight_bits: Vec<tinycnn::WeightBits>,
}

impl FloatParams {
    /// Checks the parameter counts against the architecture and that every value is finite.
    pub fn validate(&self) -> Result<(), ExportError> {
        self.arch.validate().map_err(ExportError::Arch)?;
        if self.labels.len() != self.arch.classes as usize {
            return Err(ExportError::Labels {
                labels: self.labels.len(),
                classes: self.arch.classes as usize,
            });
        }
        if let Some(label) = self
            .labels
            .iter()
            .find(|l| l.len() > tinycnn::arch::MAX_LABEL_LEN)
        {
            return Err(ExportError::LabelTooLong(label.clone()));
        }
        if self.layers.len() != self.arch.layer_count() {
            return Err(ExportError::LayerCount {
                expected: self.arch.layer_count(),
                actual: self.layers.len(),
            });
        }
        for (spec, layer) in self.arch.layers().zip(&self.layers) {
            let name = spec.name;
            for (what, values, expected) in [
                ("weight", &layer.weight, spec.weight_len()),
                ("bias", &layer.bias, spec.outputs),
            ] {
                if values.len() != expected {
                    return Err(ExportError::Shape {
                        layer: name,
                        what,
                        expected,
                        actual: values.len(),
                    });
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(ExportError::NonFinite { layer: name, what });
                }
            }
        }
        Ok(())
    }
}

/// A layer's weights from tch layout to blob layout: conv `[out, in, 3, 3]` to `[out][3][3][in]`,
/// fc1's columns from the NCHW flatten to the HWC flatten, other dense layers unchanged.
pub fn tch_to_blob_weights(spec: &LayerSpec, weight: &[f32]) -> Vec<f32> {
    match (spec.kind, spec.input_hwc) {
        (LayerKind::ConvBlock(s), _) => {
            conv::weights_oihw_to_ohwi(weight, s.out_channels, s.in_channels)
        }
        (LayerKind::Dense, Some(hwc)) => {
            dense::fc1_columns(weight, spec.outputs, hwc, dense::FlattenOrder::Nchw)
        }
        (LayerKind::Dense, None) => weight.to_vec(),
    }
}

/// The input's quantization: pixel p in 0..=255 is the real value p/255, stored as p - 128.
pub fn input_params() -> QuantParams {
    QuantParams {
        scale: tinycnn::quant::INPUT_SCALE,
        zero_point: tinycnn::quant::INPUT_ZERO_POINT,
    }
}

/// Converts `float` into the blob model, given the output quantization of each layer
/// (`activations[i]` is layer i's output: after pool+ReLU for the conv blocks, after ReLU for fc1,
/// the logits for fc2; one per `arch.layers()`).
///
/// Weights are quantized per output channel at the layer's bit width, symmetric in [-127, 127]
/// or [-7, 7] (shared's `quantize_weights_per_channel_bits`), biases to int32 at scale `s_in * s_w[c]`, and each channel's
/// `s_in * s_w[c] / s_out` becomes a TFLite (multiplier, shift) pair. Conv weights are reordered
/// to `[out][3][3][in]` and fc1's columns from NCHW to HWC flatten order.
pub fn export(float: &FloatParams, activations: &[QuantParams]) -> Result<OwnedModel, ExportError> {
    float.validate()?;
    let arch = float.arch;
    if activations.len() != arch.layer_count() {
        return Err(ExportError::LayerCount {
            expected: arch.layer_count(),
            actual: activations.len(),
        });
    }
    if float.weight_bits.len() != arch.layer_count() {
        return Err(ExportError::LayerCount {
            expected: arch.layer_count(),
            actual: float.weight_bits.len(),
        });
    }
    let mut input = input_params();
    let mut layers = Vec::with_capacity(arch.layer_count());
    for ((spec, layer), &output) in arch.layers().zip(&float.layers).zip(activations) {
        let name = spec.name;
        let out = spec.outputs;
        if !(output.scale.is_finite() && output.scale > 0.0) {
            return Err(ExportError::ActivationScale {
                layer: name,
                scale: output.scale,
            });
        }
        let weight = tch_to_blob_weights(&spec, &layer.weight);
        debug_assert_eq!(weight.len(), spec.weight_len());
        let mut weights = vec![0i8; weight.len()];
        let mut weight_scales = vec![0f32; out];
        let weight_bits = float.weight_bits[spec.index];
        tinycnn::quant::quantize_weights_per_channel_bits(
            &weight,
            out,
            weight_bits,
            &mut weights,
            &mut weight_scales,
        );
        let bias = requant::quantize_bias(name, &layer.bias, input.scale, &weight_scales)?;
        let (multiplier, shift) =
            requant::channel_multipliers(input.scale, &weight_scales, output.scale);
        layers.push(OwnedLayer {
            weight_bits,
            weights,
            bias,
            multiplier,
            shift,
            output,
            weight_scales,
        });
        input = output;
    }
    Ok(OwnedModel {
        arch,
        labels: float.labels.clone(),
        input: input_params(),
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinycnn::Filters;

    fn tiny_arch() -> Arch {
        Arch {
            height: 7,
            width: 5,
            channels: 1,
            filters: Filters::of([2, 3, 4]),
            fc_width: 6,
            classes: 3,
        }
    }

    pub(crate) fn float_params(arch: Arch, seed: u64) -> FloatParams {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let layers = arch
            .layers()
            .map(|spec| FloatLayer {
                weight: (0..spec.weight_len()).map(|_| next() * 0.4).collect(),
                bias: (0..spec.outputs).map(|_| next() * 0.1).collect(),
            })
            .collect();
        let labels = (0..arch.classes).map(|c| format!("class{c}")).collect();
        FloatParams {
            arch,
            labels,
            layers,
            weight_bits: vec![tinycnn::WeightBits::S8; arch.layer_count()],
        }
    }

    fn activations() -> Vec<QuantParams> {
        [0.02, 0.03, 0.04, 0.05, 0.1]
            .map(|scale| QuantParams {
                scale,
                zero_point: -128,
            })
            .to_vec()
    }

    #[test]
    fn export_produces_a_blob_that_loads() {
        let arch = tiny_arch();
        let model = export(&float_params(arch, 1), &activations()).unwrap();
        let bytes = model.to_bytes().unwrap();
        let loaded = tinycnn::blob::Model::from_bytes(&bytes).unwrap();
        assert_eq!(loaded.arch, arch);
        for (i, layer) in model.layers.iter().enumerate() {
            assert_eq!(loaded.layers[i].weights().as_s8(), Some(&layer.weights[..]));
            assert!(layer.weights.iter().all(|&w| w >= -127));
        }
    }

    #[test]
    fn int4_layers_export_at_scale_max_over_7() {
        let arch = tiny_arch();
        let mut float = float_params(arch, 1);
        float.weight_bits = tinycnn::parse_weight_bits(&arch, "all4").unwrap().to_vec();
        let model = export(&float, &activations()).unwrap();
        let bytes = model.to_bytes().unwrap();
        let loaded = tinycnn::blob::Model::from_bytes(&bytes).unwrap();
        for (spec, (layer, f)) in arch.layers().zip(model.layers.iter().zip(&float.layers)) {
            assert_eq!(layer.weight_bits, tinycnn::WeightBits::S4);
            assert_eq!(
                loaded.layers[spec.index].weight_bits(),
                tinycnn::WeightBits::S4
            );
            assert!(layer.weights.iter().all(|w| w.abs() <= 7));
            // Each channel's largest |w| maps to +-7.
            let max_abs = f.weight.iter().fold(0f32, |m, w| m.max(w.abs()));
            let max_scale = layer.weight_scales.iter().copied().fold(0f32, f32::max);
            assert!(
                (max_scale - max_abs / 7.0).abs() <= 1e-6 * max_abs,
                "{}",
                spec.name
            );
            assert!(layer.weights.contains(&7) || layer.weights.contains(&-7));
        }
        float.weight_bits.pop();
        assert!(matches!(
            export(&float, &activations()),
            Err(ExportError::LayerCount { .. })
        ));
    }

    #[test]
    fn export_rejects_mismatched_shapes_and_bad_scales() {
        let arch = tiny_arch();
        let mut float = float_params(arch, 2);
        float.layers[3].weight.pop();
        assert!(matches!(
            export(&float, &activations()),
            Err(ExportError::Shape { layer: "fc1", .. })
        ));
        let float = float_params(arch, 2);
        let mut acts = activations();
        acts[1].scale = 0.0;
        assert!(matches!(
            export(&float, &acts),
            Err(ExportError::ActivationScale { layer: "conv2", .. })
        ));
        let mut float = float_params(arch, 2);
        float.layers[0].bias[0] = f32::NAN;
        assert!(matches!(
            export(&float, &activations()),
            Err(ExportError::NonFinite { layer: "conv1", .. })
        ));
    }

    #[test]
    fn bias_uses_input_times_weight_scale() {
        let arch = tiny_arch();
        let float = float_params(arch, 3);
        let model = export(&float, &activations()).unwrap();
        // conv2's input is conv1's output (scale 0.02).
        for c in 0..arch.block_out_channels(1) {
            let s = 0.02f64 * model.layers[1].weight_scales[c] as f64;
            let expected = (float.layers[1].bias[c] as f64 / s).round() as i32;
            assert_eq!(model.layers[1].bias[c], expected);
        }
    }
}
