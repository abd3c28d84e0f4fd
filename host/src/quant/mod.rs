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

use crate::data::{Dataset, TensorBatches};
use crate::export::requant::activation_params;
use crate::export::{FloatLayer, FloatParams};
use crate::train::model::{Net, NetLayer};

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
        let (xs, _) = data.batch(chunk, device);
        let _ = fq.forward(&xs, ObserverMode::MinMax);
    }
    fq.observers
}

/// QAT settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QatOptions {
    pub epochs: usize,
    /// The last `freeze_epochs` epochs run with frozen observers.
    pub freeze_epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
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
/// PTQ calibration). Returns the final observers and per-epoch summaries.
pub fn train_qat(
    vs: &nn::VarStore,
    net: &Net,
    data: &Dataset,
    mut observers: Vec<Observer>,
    options: &QatOptions,
    mut on_epoch: impl FnMut(&QatEpoch, &[Observer]),
) -> Result<(Vec<Observer>, Vec<QatEpoch>), tch::TchError> {
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
        for chunk in order.chunks(options.batch.max(1)) {
            let (xs, ys) = data.batch(chunk, vs.device());
            let mut fq = FakeQuant {
                net,
                observers,
                fixed_params: None,
            };
            let logits = fq.forward(&xs, mode);
            observers = fq.observers;
            let loss = logits.cross_entropy_for_logits(&ys);
            opt.backward_step(&loss);
            loss_sum += f64::try_from(&loss).unwrap_or(f64::NAN) * chunk.len() as f64;
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
        on_epoch(&summary, &observers);
        epochs.push(summary);
    }
    Ok((observers, epochs))
}

/// Float logits of the plain net (no fake quantization), `[images][classes]`.
pub fn float_logits(net: &Net, data: &Dataset, device: Device) -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(data.len() * data.arch.classes as usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (xs, _) = data.batch(chunk, device);
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
    let mut out = Vec::with_capacity(data.len() * data.arch.classes as usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (xs, _) = data.batch(chunk, device);
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

/// `tinycnn quantize`: PTQ and QAT from a float checkpoint, export of the blob and both ONNX
/// models, and the quantization report.
#[derive(Clone, Debug, clap::Args)]
pub struct QuantizeArgs {
    /// Run folder of `tinycnn train`: shorthand for `--checkpoint RUN/best.ot --out RUN`.
    #[arg(long)]
    pub run: Option<std::path::PathBuf>,
    /// Float checkpoint to quantize (a file, or a run folder for its best.ot).
    #[arg(long)]
    pub checkpoint: Option<std::path::PathBuf>,
    /// Training image folder (one sub-folder per class): calibration and QAT data.
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Test image folder for the float, PTQ and int8 accuracies.
    #[arg(long)]
    pub test: std::path::PathBuf,
    /// Output folder for model.tcnn, model.float.onnx, model.qdq.onnx, qat.ot and model.report.{md,json}.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// QAT fine-tuning epochs (0: export the PTQ model).
    #[arg(long, default_value_t = 3)]
    pub qat_epochs: usize,
    /// Final QAT epochs with frozen observers.
    #[arg(long, default_value_t = 1)]
    pub freeze_epochs: usize,
    /// QAT learning rate (Adam). Small, because it fine-tunes an already trained net.
    #[arg(long, default_value_t = 1e-5)]
    pub qat_lr: f64,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Training images used to calibrate the activation ranges (PTQ, and QAT's starting point).
    #[arg(long, default_value_t = 2000)]
    pub calib_images: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight bit width per layer: `int8` (default), `dense4` (fc1 and fc2 int4), `all4`, or
    /// one 8 or 4 per layer in order, conv blocks then fc1, fc2 (e.g. `8,8,8,4,8`). int4
    /// weights halve the blob; the .tflite export takes int8 layers only.
    #[arg(long, default_value = "int8")]
    pub weight_bits: String,
    /// report.json to merge int8_test_accuracy, ptq_test_accuracy, blob_bytes and peak_ram_bytes
    /// into (default: OUT/report.json).
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

/// File names inside the output folder.
pub const BLOB_FILE: &str = "model.tcnn";
pub const PTQ_BLOB_FILE: &str = "model.ptq.tcnn";
pub const FLOAT_ONNX_FILE: &str = "model.float.onnx";
pub const QDQ_ONNX_FILE: &str = "model.qdq.onnx";
pub const QAT_CHECKPOINT_FILE: &str = "qat.ot";
pub const MODEL_REPORT_JSON: &str = "model.report.json";
pub const MODEL_REPORT_MD: &str = "model.report.md";

/// Everything `tinycnn quantize` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantizeReport {
    pub preset: String,
    pub arch: tinycnn::Arch,
    pub labels: Vec<String>,
    pub test_images: usize,
    pub float_test_accuracy: f64,
    pub ptq_test_accuracy: f64,
    /// Accuracy of the exported (QAT) int8 blob through `tinycnn::forward`.
    pub int8_test_accuracy: f64,
    /// The QAT net's own float accuracy (without fake quantization).
    pub qat_float_test_accuracy: f64,
    pub blob_bytes: usize,
    pub peak_ram_bytes: usize,
    pub macs: u64,
    pub calib_images: usize,
    /// The exported QAT epoch (best int8 accuracy on the validation split; 0 = the PTQ start).
    pub qat_selected_epoch: usize,
    pub qat: QatOptions,
    pub qat_epochs: Vec<QatEpoch>,
    pub layers: Vec<LayerReport>,
}

/// One layer's quantization parameters.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    pub name: &'static str,
    pub input_scale: f32,
    pub input_zero_point: i8,
    pub output_scale: f32,
    pub output_zero_point: i8,
    pub weight_scale_min: f32,
    pub weight_scale_max: f32,
    pub shift_min: i8,
    pub shift_max: i8,
    pub weights: usize,
    /// 8 or 4.
    pub weight_bits: u8,
    /// Bytes the weights take in the blob (int4: two per byte).
    pub weight_bytes: usize,
}

pub fn layer_reports(model: &tinycnn::blob::OwnedModel) -> Vec<LayerReport> {
    let mut input = model.input;
    model
        .layers
        .iter()
        .zip(model.arch.layers())
        .map(|(l, spec)| {
            let r = LayerReport {
                name: spec.name,
                input_scale: input.scale,
                input_zero_point: input.zero_point,
                output_scale: l.output.scale,
                output_zero_point: l.output.zero_point,
                weight_scale_min: l
                    .weight_scales
                    .iter()
                    .copied()
                    .fold(f32::INFINITY, f32::min),
                weight_scale_max: l.weight_scales.iter().copied().fold(0.0, f32::max),
                shift_min: l.shift.iter().copied().min().unwrap_or(0),
                shift_max: l.shift.iter().copied().max().unwrap_or(0),
                weights: l.weights.len(),
                weight_bits: l.weight_bits.bits(),
                weight_bytes: spec.weight_bytes(l.weight_bits),
            };
            input = l.output;
            r
        })
        .collect()
}

fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

impl QuantizeReport {
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let a = &self.arch;
        let _ = writeln!(s, "# tinycnn int8 model ({} preset)\n", self.preset);
        let _ = writeln!(
            s,
            "Input {}x{}x{}, filters {:?}, fc {}, {} classes: {}.\n",
            a.height,
            a.width,
            a.channels,
            a.filters,
            a.fc_width,
            a.classes,
            self.labels.join(", ")
        );
        let _ = writeln!(s, "| metric | value |\n|---|---|");
        let _ = writeln!(s, "| test images | {} |", self.test_images);
        let _ = writeln!(
            s,
            "| float test accuracy | {} |",
            percent(self.float_test_accuracy)
        );
        let _ = writeln!(
            s,
            "| PTQ int8 test accuracy ({} calibration images) | {} |",
            self.calib_images,
            percent(self.ptq_test_accuracy)
        );
        let _ = writeln!(
            s,
            "| QAT int8 test accuracy ({} epochs, exported epoch {} by validation accuracy; 0 = PTQ start) | {} |",
            self.qat.epochs,
            self.qat_selected_epoch,
            percent(self.int8_test_accuracy)
        );
        let _ = writeln!(
            s,
            "| QAT net, float | {} |",
            percent(self.qat_float_test_accuracy)
        );
        let _ = writeln!(s, "| blob bytes | {} |", self.blob_bytes);
        let _ = writeln!(s, "| peak activation RAM bytes | {} |", self.peak_ram_bytes);
        let _ = writeln!(s, "| MACs per image | {} |\n", self.macs);
        let _ = writeln!(s, "| layer | in scale | in zp | out scale | out zp | weight scales | shifts | weights | bits | weight bytes |\n|---|---|---|---|---|---|---|---|---|---|");
        for l in &self.layers {
            let _ = writeln!(
                s,
                "| {} | {:.6e} | {} | {:.6e} | {} | {:.3e} .. {:.3e} | {} .. {} | {} | {} | {} |",
                l.name,
                l.input_scale,
                l.input_zero_point,
                l.output_scale,
                l.output_zero_point,
                l.weight_scale_min,
                l.weight_scale_max,
                l.shift_min,
                l.shift_max,
                l.weights,
                l.weight_bits,
                l.weight_bytes
            );
        }
        s
    }
}

/// Runs `tinycnn quantize`.
pub fn quantize_command(args: &QuantizeArgs) -> anyhow::Result<QuantizeReport> {
    use anyhow::{bail, Context};
    let (checkpoint_path, out) = match (&args.run, &args.checkpoint, &args.out) {
        (_, Some(c), Some(o)) => (c.clone(), o.clone()),
        (Some(run), c, o) => (
            c.clone()
                .unwrap_or_else(|| run.join(crate::train::checkpoint::BEST)),
            o.clone().unwrap_or_else(|| run.clone()),
        ),
        _ => bail!(
            "say which model to quantize: pass --run RUN_DIR, or --checkpoint CKPT and --out DIR"
        ),
    };
    let device = Device::cuda_if_available();
    let mut ckpt = crate::train::checkpoint::load(&checkpoint_path, device)
        .with_context(|| format!("loading the float checkpoint {}", checkpoint_path.display()))?;
    let arch = ckpt.meta.arch;
    ckpt.net.weight_bits = tinycnn::parse_weight_bits(&arch, &args.weight_bits)
        .with_context(|| format!("--weight-bits {:?}", args.weight_bits))?
        .to_vec();
    let labels = ckpt.meta.labels.clone();
    let train = Dataset::load_for_model(&args.data, &arch, &labels)
        .with_context(|| format!("loading training images from {}", args.data.display()))?;
    train.warn_skipped();
    let test = Dataset::load_for_model(&args.test, &arch, &labels)
        .with_context(|| format!("loading test images from {}", args.test.display()))?;
    test.warn_skipped();
    if train.is_empty() || test.is_empty() {
        bail!("the training and test folders must both hold images");
    }
    let classes = arch.classes as usize;
    let float_test_accuracy = accuracy(
        &float_logits(&ckpt.net, &test, device),
        classes,
        &test.targets,
    );
    eprintln!("float test accuracy: {}", percent(float_test_accuracy));

    // QAT fine-tunes on the float run's training split and is judged on its validation split
    // (the same seeded split `tinycnn train` used), so the choice below never looks at the test set.
    let training = &ckpt.meta.options;
    let val_split = training
        .get("val_split")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.2);
    let split_seed = training
        .get("seed")
        .and_then(|v| v.as_u64())
        .unwrap_or(args.seed);
    let (fit_idx, holdout_idx) = crate::data::split_indices(train.len(), val_split, split_seed);
    let holdout = train.subset(&holdout_idx);
    let train = train.subset(&fit_idx);
    if train.is_empty() || holdout.is_empty() {
        bail!("too few training images to hold out a validation split for QAT; add images");
    }

    // PTQ: calibrate on a shuffled subset so every class is seen.
    let calib = {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(args.seed));
        order.truncate(args.calib_images.max(1));
        order
    };
    let calibrated = calibrate(&ckpt.net, &train, &calib, device);
    let float = float_params(&ckpt.net, &labels);
    let ptq_model = crate::export::export(&float, &params_of(&calibrated))?;
    let ptq_bytes = ptq_model
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("encoding the PTQ blob: {e:?}"))?;
    let int8_accuracy = |bytes: &[u8], data: &Dataset| -> anyhow::Result<f64> {
        let m = tinycnn::blob::Model::from_bytes(bytes)
            .map_err(|e| anyhow::anyhow!("decoding an exported blob: {e:?}"))?;
        Ok(accuracy(&shared_logits(&m, data), classes, &data.targets))
    };
    let ptq_test_accuracy = int8_accuracy(&ptq_bytes, &test)?;
    let ptq_holdout_accuracy = int8_accuracy(&ptq_bytes, &holdout)?;
    eprintln!(
        "PTQ int8 test accuracy: {} ({} calibration images); validation {}",
        percent(ptq_test_accuracy),
        calib.len(),
        percent(ptq_holdout_accuracy)
    );

    let qat = QatOptions {
        epochs: args.qat_epochs,
        freeze_epochs: args.freeze_epochs.min(args.qat_epochs),
        lr: args.qat_lr,
        batch: args.batch,
        seed: args.seed,
    };
    // The exported model is the QAT epoch with the best int8 validation accuracy, where the PTQ
    // starting point counts as epoch 0: fine-tuning never makes the int8 model worse on held-out data.
    let snapshot = |vs: &nn::VarStore| -> anyhow::Result<nn::VarStore> {
        let mut copy = nn::VarStore::new(device);
        let _ = Net::new(&copy.root(), &arch);
        copy.copy(vs)?;
        Ok(copy)
    };
    let mut best = (
        0usize,
        ptq_holdout_accuracy,
        calibrated.clone(),
        snapshot(&ckpt.vs)?,
    );
    let mut selection_error = None;
    let (_, qat_epochs) = train_qat(&ckpt.vs, &ckpt.net, &train, calibrated, &qat, |e, obs| {
        let accuracy = crate::export::export(&float_params(&ckpt.net, &labels), &params_of(obs))
            .map_err(anyhow::Error::from)
            .and_then(|m| {
                m.to_bytes()
                    .map_err(|e| anyhow::anyhow!("encoding the blob: {e:?}"))
            })
            .and_then(|bytes| int8_accuracy(&bytes, &holdout));
        let accuracy = match accuracy {
            Ok(a) => a,
            Err(err) => {
                selection_error.get_or_insert(err);
                return;
            }
        };
        eprintln!(
            "QAT epoch {}/{}: loss {:.4}, train accuracy {}, int8 validation {}{}",
            e.epoch,
            qat.epochs,
            e.loss,
            percent(e.train_accuracy),
            percent(accuracy),
            if e.observers_frozen {
                " (observers frozen)"
            } else {
                ""
            }
        );
        if accuracy >= best.1 {
            match snapshot(&ckpt.vs) {
                Ok(vs) => best = (e.epoch, accuracy, obs.to_vec(), vs),
                Err(err) => {
                    selection_error.get_or_insert(err);
                }
            }
        }
    })
    .context("QAT fine-tuning failed")?;
    if let Some(err) = selection_error {
        return Err(err.context("evaluating a QAT epoch on the validation split"));
    }
    let (selected_epoch, _, observers, best_vs) = best;
    ckpt.vs.copy(&best_vs)?;
    eprintln!(
        "exporting {} (best int8 validation accuracy)",
        if selected_epoch == 0 {
            "the PTQ starting point".to_string()
        } else {
            format!("QAT epoch {selected_epoch}")
        }
    );
    let params = params_of(&observers);
    let float = float_params(&ckpt.net, &labels);
    let model = crate::export::export(&float, &params)?;
    let blob = model
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("encoding the blob: {e:?}"))?;
    let int8_test_accuracy = int8_accuracy(&blob, &test)?;
    let qat_float_test_accuracy = accuracy(
        &float_logits(&ckpt.net, &test, device),
        classes,
        &test.targets,
    );
    eprintln!("QAT int8 test accuracy: {}", percent(int8_test_accuracy));

    let write =
        |name: &str, bytes: &[u8]| tinycnn_runtime::fsutil::write_atomic(&out.join(name), bytes);
    write(BLOB_FILE, &blob)?;
    write(PTQ_BLOB_FILE, &ptq_bytes)?;
    write(
        FLOAT_ONNX_FILE,
        &crate::export::onnx::to_bytes(&crate::export::onnx::float_model(&float)),
    )?;
    write(
        QDQ_ONNX_FILE,
        &crate::export::onnx::to_bytes(&crate::export::onnx::qdq_model(&model)),
    )?;
    let mut meta = ckpt.meta.clone();
    meta.options = serde_json::json!({
        "float_checkpoint": checkpoint_path.display().to_string(),
        "weight_bits": args.weight_bits,
        "qat": qat,
        "activation_observers": observers,
        "training_options": ckpt.meta.options,
    });
    crate::train::checkpoint::save(&out.join(QAT_CHECKPOINT_FILE), &ckpt.vs, &meta)?;

    let report = QuantizeReport {
        preset: ckpt.meta.preset.clone(),
        arch,
        labels,
        test_images: test.len(),
        float_test_accuracy,
        ptq_test_accuracy,
        int8_test_accuracy,
        qat_float_test_accuracy,
        blob_bytes: blob.len(),
        peak_ram_bytes: arch.peak_activation_bytes(),
        macs: arch.macs(),
        calib_images: calib.len(),
        qat_selected_epoch: selected_epoch,
        qat,
        qat_epochs,
        layers: layer_reports(&model),
    };
    write(
        MODEL_REPORT_JSON,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    write(MODEL_REPORT_MD, report.markdown().as_bytes())?;
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| out.join("report.json"));
    tinycnn_runtime::report::merge(
        &report_path,
        serde_json::json!({
            "int8_test_accuracy": report.int8_test_accuracy,
            "ptq_test_accuracy": report.ptq_test_accuracy,
            "qat_float_test_accuracy": report.qat_float_test_accuracy,
            "qat_selected_epoch": report.qat_selected_epoch,
            "blob_bytes": report.blob_bytes,
            "peak_ram_bytes": report.peak_ram_bytes,
        }),
    )?;
    println!("{}", report.markdown());
    println!(
        "wrote {} ({} bytes), {}, {}, {}",
        out.join(BLOB_FILE).display(),
        blob.len(),
        FLOAT_ONNX_FILE,
        QDQ_ONNX_FILE,
        MODEL_REPORT_MD
    );
    Ok(report)
}
