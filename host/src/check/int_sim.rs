//! An integer simulation of the whole int8 network written with tch tensor ops, independent of
//! `shared`'s kernels: convolutions and matrix products run in float64 on `(q - zp)` values (exact:
//! every partial sum stays below 2^53), and the TFLite requantization (saturating rounding doubling
//! high multiply, rounding divide by a power of two, zero point, clamp) runs in int64 tensors.
//! Max-pool is SAME (ceil mode), applied after the clamp, with which it commutes.
//!
//! It must equal `tinycnn::forward` bit for bit on every layer; [`compare_with_shared`] reports
//! the first image, layer and index where they differ.
use tch::{Kind, Tensor};
use tinycnn::blob::OwnedModel;

use tinycnn::LayerKind;

use crate::export::conv;

/// Images per tensor batch, which bounds memory (conv1's float64 output dominates).
const BATCH: usize = 128;

struct SimLayer {
    kind: LayerKind,
    /// Whether the input is a map to flatten (NCHW -> HWC) before the matrix product.
    flatten: bool,
    /// float64, OIHW for the conv blocks, `[in, out]` (transposed) for the dense layers.
    weight: Tensor,
    /// int64 `[out]`
    bias: Tensor,
    multiplier: Tensor,
    shift: Tensor,
    input_zero_point: i64,
    output_zero_point: i64,
    relu: bool,
}

/// The int8 network of one blob as tch tensor ops (CPU).
pub struct IntSim {
    arch: tinycnn::Arch,
    layers: Vec<SimLayer>,
}

/// Per-layer outputs of a batch (one per `arch.layers()`), each `[images][layer output len]`
/// flattened in HWC order, the same layout `tinycnn::forward_traced` reports.
pub type LayerOutputs = Vec<Vec<i8>>;

impl IntSim {
    pub fn new(model: &OwnedModel) -> IntSim {
        let arch = model.arch;
        let mut input_zero_point = model.input.zero_point as i64;
        let layers = arch
            .layers()
            .zip(&model.layers)
            .map(|(spec, layer)| {
                let out = spec.outputs;
                let weight = match spec.kind {
                    LayerKind::ConvBlock(shape) => {
                        let cin = shape.in_channels;
                        let w = conv::weights_ohwi_to_oihw(&layer.weights, out, cin);
                        Tensor::from_slice(&w)
                            .to_kind(Kind::Double)
                            .reshape([out as i64, cin as i64, 3, 3])
                    }
                    LayerKind::Dense => Tensor::from_slice(&layer.weights)
                        .to_kind(Kind::Double)
                        .reshape([out as i64, spec.fan_in as i64])
                        .transpose(0, 1)
                        .contiguous(),
                };
                let shift: Vec<i64> = layer.shift.iter().map(|&s| s as i64).collect();
                let sim = SimLayer {
                    kind: spec.kind,
                    flatten: spec.kind == LayerKind::Dense && spec.input_hwc.is_some(),
                    weight,
                    bias: Tensor::from_slice(&layer.bias).to_kind(Kind::Int64),
                    multiplier: Tensor::from_slice(&layer.multiplier).to_kind(Kind::Int64),
                    shift: Tensor::from_slice(&shift),
                    input_zero_point,
                    output_zero_point: layer.output.zero_point as i64,
                    relu: spec.relu,
                };
                input_zero_point = layer.output.zero_point as i64;
                sim
            })
            .collect();
        IntSim { arch, layers }
    }

    /// Runs `images` (each `arch.input_len()` int8 values, HWC, as `tinycnn::preprocess` makes
    /// them) and returns every layer's output.
    pub fn forward_traced(&self, images: &[i8]) -> LayerOutputs {
        let input_len = self.arch.input_len();
        assert_eq!(
            images.len() % input_len,
            0,
            "images must be whole inputs of arch.input_len() values"
        );
        let mut outputs: LayerOutputs = vec![Vec::new(); self.layers.len()];
        for batch in images.chunks(BATCH * input_len) {
            let _guard = tch::no_grad_guard();
            let n = (batch.len() / input_len) as i64;
            let (h, w, c) = (
                self.arch.height as i64,
                self.arch.width as i64,
                self.arch.channels as i64,
            );
            let mut x = Tensor::from_slice(batch)
                .reshape([n, h, w, c])
                .permute([0, 3, 1, 2])
                .to_kind(Kind::Int64);
            for (i, layer) in self.layers.iter().enumerate() {
                let centered = (&x - layer.input_zero_point).to_kind(Kind::Double);
                let y = if let LayerKind::ConvBlock(_) = layer.kind {
                    let acc = centered
                        .conv2d(&layer.weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
                        .to_kind(Kind::Int64)
                        + layer.bias.view([1, -1, 1, 1]);
                    let q = requantize(&acc, layer, &[1, -1, 1, 1]);
                    // Pool in float64 (exact for int8 values); ceil mode is SAME pooling.
                    q.to_kind(Kind::Double)
                        .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
                        .to_kind(Kind::Int64)
                } else {
                    let flat = if layer.flatten {
                        centered.permute([0, 2, 3, 1]).reshape([n, -1])
                    } else {
                        centered
                    };
                    let acc =
                        flat.matmul(&layer.weight).to_kind(Kind::Int64) + layer.bias.view([1, -1]);
                    requantize(&acc, layer, &[1, -1])
                };
                let hwc = if y.dim() == 4 {
                    y.permute([0, 2, 3, 1])
                } else {
                    y.shallow_clone()
                };
                let values: Vec<i8> =
                    Vec::try_from(hwc.contiguous().to_kind(Kind::Int8).reshape([-1]))
                        .expect("int8 tensor converts to Vec<i8>");
                outputs[i].extend_from_slice(&values);
                x = y;
            }
        }
        outputs
    }
}

/// TFLite MultiplyByQuantizedMultiplier + zero point + clamp on int64 accumulators, with the
/// per-channel parameters broadcast by `view`.
fn requantize(acc: &Tensor, layer: &SimLayer, view: &[i64]) -> Tensor {
    let multiplier = layer.multiplier.view(view);
    let shift = layer.shift.view(view);
    let left = shift.clamp_min(0);
    let right = (-&shift).clamp_min(0);
    let pow2 = |e: &Tensor| Tensor::from(2i64).pow(e);
    // x * 2^left in i32, wrapping on overflow as `tinycnn::quant::multiply_by_quantized_multiplier` does.
    let x = (acc * pow2(&left) + (1i64 << 31)).remainder(1i64 << 32) - (1i64 << 31);
    // SaturatingRoundingDoublingHighMul: (x*m + nudge) / 2^31, C division (truncation).
    // The saturating case x == m == i32::MIN cannot occur: multipliers are positive.
    let ab = &x * &multiplier;
    let nudge = Tensor::from(1i64 << 30).where_self(&ab.ge(0), &Tensor::from(1 - (1i64 << 30)));
    let high = (ab + nudge).divide_scalar_mode(1i64 << 31, "trunc");
    // RoundingDivideByPOT: arithmetic shift plus one when the remainder exceeds half, ties away from zero.
    let divisor = pow2(&right);
    let floor = high.divide_tensor_mode(&divisor, "floor");
    let remainder = &high - &floor * &divisor;
    let mask = &divisor - 1;
    let threshold = mask.divide_scalar_mode(2, "floor") + high.lt(0).to_kind(Kind::Int64);
    let scaled = floor + remainder.gt_tensor(&threshold).to_kind(Kind::Int64);
    let low = if layer.relu {
        layer.output_zero_point
    } else {
        i8::MIN as i64
    };
    (scaled + layer.output_zero_point).clamp(low, i8::MAX as i64)
}

/// The first place where the simulation and `shared` disagree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    pub image: usize,
    pub layer: &'static str,
    pub index: usize,
    pub int_sim: i8,
    pub shared: i8,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "image {}: layer {} differs first at index {} (HWC): int sim {} vs shared {}",
            self.image, self.layer, self.index, self.int_sim, self.shared
        )
    }
}

/// Outcome of [`compare_with_shared`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IntSimComparison {
    pub images: usize,
    /// Logits (all images, all classes) where the simulation differs from `shared`.
    pub mismatched_logits: usize,
    /// The earliest differing layer output of the first image that differs anywhere.
    pub first_mismatch: Option<Mismatch>,
    /// `shared`'s int8 logits, `[images][classes]`.
    pub shared_logits: Vec<i8>,
}

/// Runs every image through the simulation and `tinycnn::forward_traced` and compares every
/// layer's output.
pub fn compare_with_shared(
    model: &OwnedModel,
    images: &[i8],
) -> Result<IntSimComparison, tinycnn::blob::EncodeError> {
    compare_outputs(&IntSim::new(model).forward_traced(images), model, images)
}

/// Compares precomputed simulation outputs `sim` (of `images`) with `tinycnn::forward_traced` on
/// `model`, layer by layer.
pub fn compare_outputs(
    sim: &LayerOutputs,
    model: &OwnedModel,
    images: &[i8],
) -> Result<IntSimComparison, tinycnn::blob::EncodeError> {
    let bytes = model.to_bytes()?;
    let shared_model =
        tinycnn::blob::Model::from_bytes(&bytes).expect("a freshly encoded blob decodes");
    let arch = model.arch;
    let input_len = arch.input_len();
    let classes = arch.classes as usize;
    let layer_lens: Vec<usize> = sim
        .iter()
        .map(|o| o.len() / (images.len() / input_len).max(1))
        .collect();
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut logits = vec![0i8; classes];
    let mut result = IntSimComparison {
        images: images.len() / input_len,
        ..Default::default()
    };
    for (image, input) in images.chunks_exact(input_len).enumerate() {
        let mut first: Option<Mismatch> = None;
        tinycnn::forward_traced(
            &shared_model,
            input,
            &mut scratch,
            &mut logits,
            &mut |layer, out| {
                if first.is_some() {
                    return;
                }
                let expected = &sim[layer][image * layer_lens[layer]..][..layer_lens[layer]];
                if let Some(index) =
                    (0..out.len().min(expected.len())).find(|&k| out[k] != expected[k])
                {
                    first = Some(Mismatch {
                        image,
                        layer: arch.layer(layer).name,
                        index,
                        int_sim: expected[index],
                        shared: out[index],
                    });
                } else if out.len() != expected.len() {
                    first = Some(Mismatch {
                        image,
                        layer: arch.layer(layer).name,
                        index: out.len().min(expected.len()),
                        int_sim: 0,
                        shared: 0,
                    });
                }
            },
        );
        let sim_logits = &sim[arch.logits_layer().index][image * classes..][..classes];
        result.mismatched_logits += logits
            .iter()
            .zip(sim_logits)
            .filter(|(a, b)| a != b)
            .count();
        result.shared_logits.extend_from_slice(&logits);
        if result.first_mismatch.is_none() {
            result.first_mismatch = first;
        }
    }
    Ok(result)
}
