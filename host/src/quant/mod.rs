//! Quantization-aware training and post-training quantization in tch.
//!
//! The fake-quantized forward pass mirrors the int8 network exactly in its choices:
//! - input: fixed scale 1/255, zero point -128;
//! - weights: per output channel, symmetric at the layer's bit width (`Net::weight_bits`):
//!   int8 in [-127, 127] with `scale = max|w| / 127`, or int4 in [-7, 7] with `scale = max|w| / 7`,
//!   rounded half away from zero (shared's `quantize_weights_per_channel_bits`);
//! - biases: rounded to int32 at `s_in * s_w[c]` (straight-through gradient);
//! - activations: per tensor, asymmetric int8, after each pool+ReLU and after each dense layer,
//!   with (scale, zero point) from [`crate::export::requant::activation_params`] of an observed
//!   range, fake-quantized with `fake_quantize_per_tensor_affine`.
//!
//! Observers track min/max: PTQ calibration takes the global min/max over N images; QAT starts
//! from that range and follows an exponential moving average, then freezes for the final epochs.
//!
//! `tinycnn quantize` fine-tunes on the float run's training split and exports the epoch whose
//! int8 model is most accurate on that run's validation split, the PTQ start counting as epoch 0;
//! the test set never takes part in that choice.
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use tinycnn::blob::QuantParams;

use crate::data::{augmented_batch, batch, Dataset};
use crate::export::requant::activation_params;
use crate::export::{FloatLayer, FloatParams};
use crate::train::model::{Net, NetLayer};

mod command;
mod report;
pub use command::*;
pub use report::{layer_reports, LayerReport, QuantizeReport};

/// Weight of the newest batch in the EMA observers (PyTorch's default averaging constant).
pub const EMA_MOMENTUM: f32 = 0.01;

/// How an observer updates on a new batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserverMode {
    /// Keep the range (frozen, or evaluation).
    Frozen,
    /// Widen to the global min/max (PTQ calibration).
    MinMax,
    /// Exponential moving average of the batch min/max (QAT).
    Ema,
}

/// A per-tensor min/max observer.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Observer {
    pub min: f32,
    pub max: f32,
    pub initialized: bool,
}

impl Observer {
    fn observe(&mut self, t: &Tensor, mode: ObserverMode) {
        if mode == ObserverMode::Frozen && self.initialized {
            return;
        }
        let (lo, hi) = t.detach().aminmax(None, false);
        let (lo, hi) = (
            f32::try_from(lo).unwrap_or(0.0),
            f32::try_from(hi).unwrap_or(0.0),
        );
        if !self.initialized {
            *self = Observer {
                min: lo,
                max: hi,
                initialized: true,
            };
            return;
        }
        match mode {
            ObserverMode::Frozen => {}
            ObserverMode::MinMax => {
                self.min = self.min.min(lo);
                self.max = self.max.max(hi);
            }
            ObserverMode::Ema => {
                self.min += EMA_MOMENTUM * (lo - self.min);
                self.max += EMA_MOMENTUM * (hi - self.max);
            }
        }
    }

    /// The activation quantization this range gives.
    pub fn params(&self) -> QuantParams {
        activation_params(self.min, self.max)
    }
}

/// The fake-quantized view of a [`Net`]: the net's float weights plus one observer per layer
/// output (one per `arch.layers()`).
pub struct FakeQuant<'a> {
    pub net: &'a Net,
    pub observers: Vec<Observer>,
    /// When set, the activation parameters used instead of the observers' (e.g. a blob's).
    pub fixed_params: Option<Vec<QuantParams>>,
}

/// One default observer per layer of `net`.
pub fn new_observers(net: &Net) -> Vec<Observer> {
    vec![Observer::default(); net.arch.layer_count()]
}

/// Per-output-channel symmetric weight scales `max|w| / 127` (1.0 for an all-zero channel), as
/// shared's `quantize_weights_per_channel` computes them.
pub fn weight_scales(w: &Tensor) -> Tensor {
    weight_scales_at(w, tinycnn::WeightBits::S8)
}

/// [`weight_scales`] at bit width `bits`: `max|w| / qmax`, `qmax` 127 or 7.
pub fn weight_scales_at(w: &Tensor, bits: tinycnn::WeightBits) -> Tensor {
    let w = w.detach().to_kind(Kind::Float);
    let dims: Vec<i64> = (1..w.dim() as i64).collect();
    let max_abs = w.abs().amax(dims.as_slice(), false);
    let scale = &max_abs / bits.qmax() as f64;
    scale.where_self(&max_abs.gt(0.0), &Tensor::ones_like(&scale))
}

/// Weights fake-quantized to `clamp(round_half_away(w / s), -qmax, qmax) * s` per output channel
/// (`qmax` 127 for int8, 7 for int4), the exact rounding of shared's
/// `quantize_weights_per_channel_bits` (libtorch's `fake_quantize_per_channel_affine` rounds half
/// to even), with a straight-through gradient. With `s = max|w| / qmax` nothing clips, so the
/// straight-through mask is all ones.
fn fake_quant_weight(w: &Tensor, scales: &Tensor, bits: tinycnn::WeightBits) -> Tensor {
    let mut shape = vec![-1i64];
    shape.resize(w.dim(), 1);
    let s = scales.view(shape.as_slice());
    let ratio = w.detach() / &s;
    let q = (ratio.abs() + 0.5).floor().clamp(0.0, bits.qmax() as f64) * ratio.sign();
    w + (q * &s - w).detach()
}

/// Bias rounded to the int32 grid `input_scale * weight_scales`, with a straight-through gradient.
fn fake_quant_bias(b: &Tensor, input_scale: f32, scales: &Tensor) -> Tensor {
    let step = (scales.to_kind(Kind::Double) * input_scale as f64).detach();
    let b64 = b.to_kind(Kind::Double);
    // Half away from zero, like shared's quantize_bias.
    let rounded = (b64.abs() / &step + 0.5).floor() * b64.sign() * &step;
    b + (rounded.to_kind(Kind::Float) - b).detach()
}

fn fake_quant_activation(x: &Tensor, q: QuantParams) -> Tensor {
    x.fake_quantize_per_tensor_affine(q.scale as f64, q.zero_point as i64, -128, 127)
}

impl<'a> FakeQuant<'a> {
    pub fn new(net: &'a Net) -> FakeQuant<'a> {
        FakeQuant {
            net,
            observers: new_observers(net),
            fixed_params: None,
        }
    }

    /// The activation parameters in use (fixed ones, or the observers').
    pub fn params(&self) -> Vec<QuantParams> {
        match &self.fixed_params {
            Some(p) => p.clone(),
            None => self.observers.iter().map(Observer::params).collect(),
        }
    }

    fn layer_params(&self, layer: usize) -> QuantParams {
        match &self.fixed_params {
            Some(p) => p[layer],
            None => self.observers[layer].params(),
        }
    }

    /// Fake-quantized logits `[B, classes]` for `xs` `[B, C, H, W]` in `[0, 1]`. Each layer's
    /// observer is updated per `mode` before its output is fake-quantized.
    pub fn forward(&mut self, xs: &Tensor, mode: ObserverMode) -> Tensor {
        let net = self.net;
        let input = QuantParams {
            scale: tinycnn::quant::INPUT_SCALE,
            zero_point: tinycnn::quant::INPUT_ZERO_POINT,
        };
        let mut x = fake_quant_activation(xs, input);
        let mut in_scale = input.scale;
        for (spec, layer) in net.arch.layers().zip(&net.layers) {
            let bits = net.weight_bits[spec.index];
            let scales = weight_scales_at(layer.ws(), bits);
            let w = fake_quant_weight(layer.ws(), &scales, bits);
            let b = layer.bs().map(|b| fake_quant_bias(b, in_scale, &scales));
            let mut y = match layer {
                NetLayer::Conv(_) => x
                    .conv2d(&w, b.as_ref(), [1, 1], [1, 1], [1, 1], 1)
                    .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true),
                NetLayer::Dense(_) => {
                    if x.dim() > 2 {
                        x = x.contiguous().flatten(1, -1);
                    }
                    x.linear(&w, b.as_ref())
                }
            };
            if spec.relu {
                y = y.relu();
            }
            (x, in_scale) = self.quantize_output(spec.index, &y, mode);
        }
        x
    }

    fn quantize_output(&mut self, layer: usize, y: &Tensor, mode: ObserverMode) -> (Tensor, f32) {
        if self.fixed_params.is_none() {
            self.observers[layer].observe(y, mode);
        }
        let q = self.layer_params(layer);
        (fake_quant_activation(y, q), q.scale)
    }

    /// The int8 logits the fake-quantized output stands for: `round(y / s) + zp`.
    pub fn int8_logits(&self, logits: &Tensor) -> Vec<i8> {
        let q = self.layer_params(self.net.arch.logits_layer().index);
        let ints =
            (logits.detach().to_kind(Kind::Double) / q.scale as f64).round() + q.zero_point as f64;
        Vec::<f64>::try_from(ints.clamp(-128.0, 127.0).reshape([-1]))
            .expect("f64 tensor converts")
            .into_iter()
            .map(|v| v as i8)
            .collect()
    }
}

/// Copies a net's float weights (tch layout) into [`FloatParams`].
pub fn float_params(net: &Net, labels: &[String]) -> FloatParams {
    let layer = |ws: &Tensor, bs: Option<&Tensor>| FloatLayer {
        weight: Vec::<f32>::try_from(
            ws.detach()
                .to_device(Device::Cpu)
                .contiguous()
                .reshape([-1]),
        )
        .expect("f32 weights convert"),
        bias: bs
            .map(|b| {
                Vec::<f32>::try_from(b.detach().to_device(Device::Cpu).reshape([-1]))
                    .expect("f32 bias converts")
            })
            .unwrap_or_else(|| vec![0.0; ws.size()[0] as usize]),
    };
    FloatParams {
        arch: net.arch,
        labels: labels.to_vec(),
        layers: net.layers.iter().map(|l| layer(l.ws(), l.bs())).collect(),
        weight_bits: net.weight_bits.clone(),
    }
}

/// The activation quantization of each observer.
pub fn params_of(observers: &[Observer]) -> Vec<QuantParams> {
    observers.iter().map(Observer::params).collect()
}

/// Images per batch for calibration and evaluation.
pub const EVAL_BATCH: usize = 256;

/// PTQ: calibrates observers with the global min/max over the images `indices` of `data`
/// (weights fake-quantized, activations quantized layer by layer as they will be).
pub fn calibrate(net: &Net, data: &Dataset, indices: &[usize], device: Device) -> Vec<Observer> {
    let _guard = tch::no_grad_guard();
    let mut fq = FakeQuant::new(net);
    for chunk in indices.chunks(EVAL_BATCH) {
        let (xs, _) = batch(data, chunk, device);
        let _ = fq.forward(&xs, ObserverMode::MinMax);
    }
    fq.observers
}

/// QAT settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct QatOptions {
    pub epochs: usize,
    /// The last `freeze_epochs` epochs run with frozen observers.
    pub freeze_epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
    /// The float run's training augmentation and label smoothing: fine-tuning keeps the loss the
    /// net was trained on.
    pub augment: crate::data::augment::Augment,
    pub label_smoothing: f64,
}

/// One QAT epoch's summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QatEpoch {
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub observers_frozen: bool,
}

/// Fine-tunes the net in `vs` with fake quantization, starting from `observers` (typically the
/// PTQ calibration). Returns the final observers and per-epoch summaries; an error from
/// `on_epoch` stops the fine-tuning and is returned, and so does a non-finite loss. Ctrl-C
/// (once [`crate::train::install_interrupt_handler`] ran) ends it at the next batch: the
/// epochs completed so far are returned and the partial one is not reported to `on_epoch`.
pub fn train_qat(
    vs: &nn::VarStore,
    net: &Net,
    data: &Dataset,
    mut observers: Vec<Observer>,
    options: &QatOptions,
    mut on_epoch: impl FnMut(&QatEpoch, &[Observer]) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<Observer>, Vec<QatEpoch>)> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut opt = nn::Adam::default().build(vs, options.lr)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut epochs = Vec::new();
    for epoch in 0..options.epochs {
        let frozen = epoch + options.freeze_epochs >= options.epochs;
        let mode = if frozen {
            ObserverMode::Frozen
        } else {
            ObserverMode::Ema
        };
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
        let epoch_seed = crate::train::epoch_seed(options.seed, epoch);
        for (b, chunk) in order.chunks(options.batch.max(1)).enumerate() {
            if crate::train::interrupted() {
                eprintln!(
                    "interrupt: QAT stops in epoch {} of {}; the best completed epoch is exported",
                    epoch + 1,
                    options.epochs
                );
                return Ok((observers, epochs));
            }
            let (xs, ys) = augmented_batch(
                data,
                chunk,
                &options.augment,
                epoch_seed ^ b as u64,
                vs.device(),
            );
            let mut fq = FakeQuant {
                net,
                observers,
                fixed_params: None,
            };
            let logits = fq.forward(&xs, mode);
            observers = fq.observers;
            let loss = crate::train::training_loss(&logits, &ys, options.label_smoothing);
            let loss_value = f64::try_from(&loss)?;
            if !loss_value.is_finite() {
                anyhow::bail!(
                    "the QAT loss became {loss_value} in epoch {}: fine-tuning diverged; lower \
                     --qat-lr (now {}), or pass --qat-epochs 0 to export the PTQ model",
                    epoch + 1,
                    options.lr
                );
            }
            opt.backward_step(&loss);
            loss_sum += loss_value * chunk.len() as f64;
            correct += i64::try_from(logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64))
                .unwrap_or(0);
            seen += chunk.len();
        }
        let summary = QatEpoch {
            epoch: epoch + 1,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            observers_frozen: frozen,
        };
        on_epoch(&summary, &observers)?;
        epochs.push(summary);
    }
    Ok((observers, epochs))
}

/// Float logits of the plain net (no fake quantization), `[images][classes]`.
pub fn float_logits(net: &Net, data: &Dataset, device: Device) -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(data.len() * data.list.arch.classes as usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (xs, _) = batch(data, chunk, device);
        let logits = net
            .forward_t(&xs, false)
            .to_device(Device::Cpu)
            .to_kind(Kind::Float);
        out.extend(Vec::<f32>::try_from(logits.reshape([-1])).expect("f32 logits convert"));
    }
    out
}

/// Int8 logits the fake-quantized net stands for, `[images][classes]`, with fixed parameters.
pub fn fake_quant_int8_logits(
    net: &Net,
    params: Vec<QuantParams>,
    data: &Dataset,
    device: Device,
) -> Vec<i8> {
    let _guard = tch::no_grad_guard();
    let mut fq = FakeQuant {
        net,
        observers: new_observers(net),
        fixed_params: Some(params),
    };
    let mut out = Vec::with_capacity(data.len() * data.list.arch.classes as usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (xs, _) = batch(data, chunk, device);
        let logits = fq.forward(&xs, ObserverMode::Frozen);
        out.extend(fq.int8_logits(&logits));
    }
    out
}

/// Index of the first maximum of each `classes`-long row.
pub fn argmax_rows<T: PartialOrd + Copy>(values: &[T], classes: usize) -> Vec<usize> {
    values
        .chunks_exact(classes)
        .map(|row| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Fraction of rows whose argmax equals the target.
pub fn accuracy<T: PartialOrd + Copy>(values: &[T], classes: usize, targets: &[i64]) -> f64 {
    let predictions = argmax_rows(values, classes);
    let correct = predictions
        .iter()
        .zip(targets)
        .filter(|(p, t)| **p as i64 == **t)
        .count();
    correct as f64 / targets.len().max(1) as f64
}

/// int8 logits of `model` for every image of `data` through `tinycnn::forward`, `[images][classes]`,
/// on all cores.
pub fn shared_logits(model: &tinycnn::blob::Model, data: &Dataset) -> Vec<i8> {
    tinycnn_runtime::check::shared_logits(model, &int8_inputs(data))
}

/// `data`'s images as int8 model inputs (`p - 128`), image after image.
pub fn int8_inputs(data: &Dataset) -> Vec<i8> {
    data.pixels
        .iter()
        .map(|&p| tinycnn::preprocess::pixel_to_input(p))
        .collect()
}
