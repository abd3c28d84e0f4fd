//! Blob to `.tflite`.

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use tinycnn::{quantize_multiplier, Model, OwnedModel};

use crate::{conv_blocks, fb, KERNEL, LABELS_METADATA};

/// Why a model could not be written as `.tflite`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExportError {
    /// TFLite re-derives each multiplier from the `f32` scales; for this channel it would get a
    /// different one than the blob stores, so the file would not compute what the blob does.
    #[error(
        "{layer} channel {channel}: TFLite derives multiplier {derived_multiplier} shift \
         {derived_shift} from the scales (input {input_scale:e} * weight {weight_scale:e} / \
         output {output_scale:e}), but the blob stores multiplier {multiplier} shift {shift}; \
         export the blob again with `tinycnn quantize`, which derives them the same way"
    )]
    MultiplierMismatch {
        /// Layer name (`conv1` ... `fc2`).
        layer: &'static str,
        /// Output channel.
        channel: usize,
        /// Stored Q0.31 multiplier.
        multiplier: i32,
        /// Stored shift.
        shift: i32,
        /// Multiplier TFLite derives.
        derived_multiplier: i32,
        /// Shift TFLite derives.
        derived_shift: i32,
        /// Scale of the layer input.
        input_scale: f32,
        /// Scale of the channel's weights.
        weight_scale: f32,
        /// Scale of the layer output.
        output_scale: f32,
    },
    /// The layer has int4 weights. TFLite's int4 weights are a different (experimental) path
    /// that this exporter does not write; it exports int8 layers only.
    #[error(
        "{layer} has int4 weights, and the .tflite export writes int8 layers only; quantize \
         with `--weight-bits int8` for a .tflite, or run the int4 blob with tinycnn's runtimes"
    )]
    Int4Layer {
        /// Layer name (`conv1` ... `fc2`).
        layer: &'static str,
    },
    /// Labels are stored one per line, so a label may not contain a line break.
    #[error("class label {index} ({label:?}) contains a line break; rename the class")]
    LabelLineBreak {
        /// Label index.
        index: usize,
        /// The label.
        label: String,
    },
}

/// TFLite's derivation of a layer's multiplier: `f64` arithmetic on the `f32` scales, then
/// `QuantizeMultiplier`.
pub(crate) fn derived_multiplier(input: f32, weight: f32, output: f32) -> (i32, i32) {
    quantize_multiplier(input as f64 * weight as f64 / output as f64)
}

/// Rewrites each channel's weight scale so that its multiplier follows from the scales by
/// TFLite's rule, then re-derives the multiplier and shift from them (a change of at most a few
/// parts in 10^7).
///
/// For models whose scales are for reporting only, such as [`OwnedModel::random`]; a model that
/// `tinycnn quantize` wrote already satisfies the rule. Channels with multiplier 0 keep their
/// scale.
pub fn make_scales_consistent(model: &mut OwnedModel) {
    let mut input_scale = model.input.scale;
    for layer in &mut model.layers {
        let output_scale = layer.output.scale;
        for c in 0..layer.multiplier.len() {
            let real = layer.multiplier[c] as f64 * 2f64.powi(layer.shift[c] as i32 - 31);
            if real > 0.0 {
                layer.weight_scales[c] = (real * output_scale as f64 / input_scale as f64) as f32;
            }
            let (m, s) = derived_multiplier(input_scale, layer.weight_scales[c], output_scale);
            layer.multiplier[c] = m;
            layer.shift[c] = s as i8;
        }
        input_scale = output_scale;
    }
}

/// Checks that TFLite's derivation reproduces every stored multiplier and shift.
fn check_multipliers(model: &Model) -> Result<(), ExportError> {
    let mut input_scale = model.input.scale;
    for (l, layer) in model.layers.iter().enumerate() {
        let output_scale = layer.output().scale;
        for c in 0..layer.out_channels() {
            let weight_scale = layer.weight_scale(c);
            let (dm, ds) = derived_multiplier(input_scale, weight_scale, output_scale);
            if (dm, ds) != (layer.multiplier(c), layer.shift(c)) {
                return Err(ExportError::MultiplierMismatch {
                    layer: model.arch.layer(l).name,
                    channel: c,
                    multiplier: layer.multiplier(c),
                    shift: layer.shift(c),
                    derived_multiplier: dm,
                    derived_shift: ds,
                    input_scale,
                    weight_scale,
                    output_scale,
                });
            }
        }
        input_scale = output_scale;
    }
    Ok(())
}

pub(crate) struct Quant {
    pub(crate) scale: Vec<f32>,
    pub(crate) zero_point: Vec<i64>,
}

pub(crate) struct TensorSpec {
    pub(crate) name: String,
    pub(crate) shape: Vec<i32>,
    pub(crate) ty: fb::TensorType,
    pub(crate) buffer: u32,
    pub(crate) quant: Option<Quant>,
}

pub(crate) enum Options {
    Conv {
        relu: bool,
        stride: i32,
    },
    Pool {
        relu: bool,
    },
    Reshape {
        new_shape: Vec<i32>,
    },
    FullyConnected {
        relu: bool,
    },
    /// An operator without options (tests build such graphs).
    #[cfg_attr(not(test), allow(dead_code))]
    None,
}

/// Operator codes in the file, with the lowest version that has int8 (per-channel) kernels.
const OP_CODES: [(fb::BuiltinOperator, i32); 4] = [
    (fb::BuiltinOperator::CONV_2D, 3),
    (fb::BuiltinOperator::MAX_POOL_2D, 2),
    (fb::BuiltinOperator::RESHAPE, 1),
    (fb::BuiltinOperator::FULLY_CONNECTED, 4),
];

pub(crate) struct OpSpec {
    /// Index into [`Graph::codes`].
    pub(crate) code: u32,
    pub(crate) inputs: Vec<i32>,
    pub(crate) outputs: Vec<i32>,
    pub(crate) options: Options,
}

/// The graph before serialization. Buffer 0 is TFLite's empty sentinel.
pub(crate) struct Graph {
    pub(crate) tensors: Vec<TensorSpec>,
    pub(crate) buffers: Vec<Vec<u8>>,
    pub(crate) ops: Vec<OpSpec>,
    /// Operator codes and versions.
    pub(crate) codes: Vec<(fb::BuiltinOperator, i32)>,
    pub(crate) inputs: Vec<i32>,
    pub(crate) outputs: Vec<i32>,
    /// Buffer of the labels metadata (none: no metadata).
    pub(crate) labels_buffer: Option<u32>,
}

fn dim(n: usize) -> i32 {
    // Every dimension of a validated Arch is < 2^31.
    n as i32
}

impl Graph {
    pub(crate) fn tensor(
        &mut self,
        name: String,
        shape: &[usize],
        ty: fb::TensorType,
        data: Option<Vec<u8>>,
        quant: Option<Quant>,
    ) -> i32 {
        let buffer = match data {
            Some(d) => {
                self.buffers.push(d);
                (self.buffers.len() - 1) as u32
            }
            None => 0,
        };
        self.tensors.push(TensorSpec {
            name,
            shape: shape.iter().map(|&n| dim(n)).collect(),
            ty,
            buffer,
            quant,
        });
        (self.tensors.len() - 1) as i32
    }

    /// An int8 activation tensor with per-tensor quantization.
    pub(crate) fn activation(
        &mut self,
        name: String,
        shape: &[usize],
        q: tinycnn::QuantParams,
    ) -> i32 {
        let quant = Quant {
            scale: vec![q.scale],
            zero_point: vec![q.zero_point as i64],
        };
        self.tensor(name, shape, fb::TensorType::INT8, None, Some(quant))
    }

    /// Weights (per output channel, dimension 0) and int32 bias (scale `s_in * s_w[c]`) of
    /// layer `l`.
    fn weights_and_bias(
        &mut self,
        model: &Model,
        l: usize,
        shape: &[usize],
        input_scale: f32,
    ) -> (i32, i32) {
        let layer = &model.layers[l];
        let n = layer.out_channels();
        let name = model.arch.layer(l).name;
        let weight_scales: Vec<f32> = (0..n).map(|c| layer.weight_scale(c)).collect();
        // `build_graph` refused int4 layers.
        let weights = layer.weights().as_bytes().to_vec();
        let w = self.tensor(
            format!("{name}/weights"),
            shape,
            fb::TensorType::INT8,
            Some(weights),
            Some(Quant {
                scale: weight_scales.clone(),
                zero_point: vec![0; n],
            }),
        );
        let bias = (0..n).flat_map(|c| layer.bias(c).to_le_bytes()).collect();
        let b = self.tensor(
            format!("{name}/bias"),
            &[n],
            fb::TensorType::INT32,
            Some(bias),
            Some(Quant {
                scale: weight_scales
                    .iter()
                    .map(|&s| (input_scale as f64 * s as f64) as f32)
                    .collect(),
                zero_point: vec![0; n],
            }),
        );
        (w, b)
    }

    fn op(&mut self, code: u32, inputs: Vec<i32>, output: i32, options: Options) {
        self.ops.push(OpSpec {
            code,
            inputs,
            outputs: vec![output],
            options,
        });
    }
}

/// Writes `model` as a TFLite flatbuffer (file identifier `TFL3`, schema version 3).
///
/// The graph: input `[1, H, W, C]` int8 (the blob's input scale, zero point -128); per conv
/// block `CONV_2D` (3x3, SAME, stride 1, fused RELU; output tensor `convN`) then `MAX_POOL_2D`
/// (2x2, stride 2, SAME; output `blockN`, with the conv output's quantization); `RESHAPE` to
/// `[1, flatten]` (HWC order, as the blob's fc1 columns); `FULLY_CONNECTED` fc1 with fused
/// RELU (`fc1`) and fc2 (`logits`). Weights are int8 per output channel (dimension 0, zero
/// point 0), biases int32 with scale `s_in * s_w[c]`, activations per-tensor int8 with the
/// blob's scales and zero points. Labels are in metadata [`LABELS_METADATA`].
///
/// The blob computes conv, requantize with the ReLU clamp, then max-pool; TFLite computes the
/// same, since the fused RELU is the same clamp and max-pool keeps the quantization.
///
/// Refuses a model whose multipliers TFLite would not re-derive exactly from its scales, or
/// whose labels contain a line break.
pub fn to_tflite(model: &Model) -> Result<Vec<u8>, ExportError> {
    Ok(serialize(&build_graph(model, false)?))
}

/// [`to_tflite`] with every layer output as a subgraph output, in the order of
/// [`tinycnn::forward_traced`]: `block1` ... (pooled conv blocks), `fc1`, `logits`. For parity
/// checks: a runtime that fuses or delegates operators (XNNPACK) still materializes subgraph
/// outputs.
pub fn to_tflite_traced(model: &Model) -> Result<Vec<u8>, ExportError> {
    Ok(serialize(&build_graph(model, true)?))
}

/// The graph [`to_tflite`] (or, `traced`, [`to_tflite_traced`]) writes.
pub(crate) fn build_graph(model: &Model, traced: bool) -> Result<Graph, ExportError> {
    for (spec, layer) in model.arch.layers().zip(model.layers.iter()) {
        if layer.weights().as_s8().is_none() {
            return Err(ExportError::Int4Layer { layer: spec.name });
        }
    }
    check_multipliers(model)?;
    for (index, label) in model.labels.iter().enumerate() {
        if label.contains(['\n', '\r']) {
            return Err(ExportError::LabelLineBreak {
                index,
                label: label.as_str().to_owned(),
            });
        }
    }
    let arch = &model.arch;
    let mut g = Graph {
        tensors: Vec::new(),
        buffers: vec![Vec::new()],
        ops: Vec::new(),
        codes: OP_CODES.to_vec(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        labels_buffer: None,
    };
    let (h, w, ch) = (
        arch.height as usize,
        arch.width as usize,
        arch.channels as usize,
    );
    let mut x = g.activation("input".into(), &[1, h, w, ch], model.input);
    let mut input_scale = model.input.scale;
    let blocks = conv_blocks(arch);
    let mut traces = Vec::new();
    for (b, block) in blocks.iter().enumerate() {
        let out_q = model.layers[b].output();
        let (wt, bias) = g.weights_and_bias(
            model,
            b,
            &[block.out_channels, KERNEL, KERNEL, block.in_channels],
            input_scale,
        );
        let conv = g.activation(
            format!("conv{}", b + 1),
            &[1, block.height, block.width, block.out_channels],
            out_q,
        );
        g.op(
            0,
            vec![x, wt, bias],
            conv,
            Options::Conv {
                relu: true,
                stride: 1,
            },
        );
        let (ph, pw) = block.pooled_hw();
        let pooled = g.activation(
            format!("block{}", b + 1),
            &[1, ph, pw, block.out_channels],
            out_q,
        );
        g.op(1, vec![conv], pooled, Options::Pool { relu: false });
        traces.push(pooled);
        x = pooled;
        input_scale = out_q.scale;
    }
    let flatten = arch.flatten_len();
    let new_shape = vec![1, dim(flatten)];
    let shape_data = new_shape.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = g.tensor(
        "flatten/shape".into(),
        &[2],
        fb::TensorType::INT32,
        Some(shape_data),
        None,
    );
    let last_q = model.layers[blocks.len() - 1].output();
    let flat = g.activation("flatten".into(), &[1, flatten], last_q);
    g.op(2, vec![x, shape], flat, Options::Reshape { new_shape });
    x = flat;
    let dense = [
        (blocks.len(), "fc1", true),
        (blocks.len() + 1, "logits", false),
    ];
    for (l, out_name, relu) in dense {
        let spec = arch.layer(l);
        let (fan_in, out) = (spec.fan_in, spec.outputs);
        let (wt, bias) = g.weights_and_bias(model, l, &[out, fan_in], input_scale);
        let q = model.layers[l].output();
        let y = g.activation(out_name.into(), &[1, out], q);
        g.op(3, vec![x, wt, bias], y, Options::FullyConnected { relu });
        traces.push(y);
        x = y;
        input_scale = q.scale;
    }
    let labels: Vec<&str> = model.labels.iter().map(|l| l.as_str()).collect();
    g.buffers.push(labels.join("\n").into_bytes());
    g.labels_buffer = Some((g.buffers.len() - 1) as u32);
    g.inputs = vec![0];
    g.outputs = if traced { traces } else { vec![x] };
    Ok(g)
}

/// Pushes unreferenced zero bytes so that the next `n` bytes written end 16-byte aligned,
/// counted from the end of the buffer (the builder writes back to front).
fn pad_to_16(fbb: &mut FlatBufferBuilder<'_>, n: usize) {
    let used = fbb.unfinished_data().len();
    for _ in 0..(16 - (used + n) % 16) % 16 {
        fbb.push(0u8);
    }
}

/// A byte vector whose data starts 16-byte aligned in the finished file, as TFLite's
/// `Buffer.data` (`force_align: 16`) asks, so int32 biases and SIMD loads are aligned in place.
/// Needs [`pad_to_16`] before `finish` as well, so that the file length is a multiple of 16.
fn aligned_bytes<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    data: &[u8],
) -> WIPOffset<flatbuffers::Vector<'a, u8>> {
    pad_to_16(fbb, data.len());
    fbb.create_vector(data)
}

/// Writes `g` as a finished `.tflite` flatbuffer.
pub(crate) fn serialize(g: &Graph) -> Vec<u8> {
    let capacity = g.buffers.iter().map(|b| b.len() + 32).sum::<usize>() + 16 * 1024;
    let mut fbb = FlatBufferBuilder::with_capacity(capacity);
    let buffers: Vec<_> = g
        .buffers
        .iter()
        .map(|d| {
            let data = (!d.is_empty()).then(|| aligned_bytes(&mut fbb, d));
            fb::Buffer::create(
                &mut fbb,
                &fb::BufferArgs {
                    data,
                    ..Default::default()
                },
            )
        })
        .collect();
    let tensors: Vec<_> = g
        .tensors
        .iter()
        .map(|t| write_tensor(&mut fbb, t))
        .collect();
    let operators: Vec<_> = g
        .ops
        .iter()
        .map(|op| write_operator(&mut fbb, op))
        .collect();
    let tensors = fbb.create_vector(&tensors);
    let operators = fbb.create_vector(&operators);
    let sg_inputs = fbb.create_vector(&g.inputs);
    let sg_outputs = fbb.create_vector(&g.outputs);
    let sg_name = fbb.create_string("main");
    let subgraph = fb::SubGraph::create(
        &mut fbb,
        &fb::SubGraphArgs {
            tensors: Some(tensors),
            inputs: Some(sg_inputs),
            outputs: Some(sg_outputs),
            operators: Some(operators),
            name: Some(sg_name),
            ..Default::default()
        },
    );
    let codes: Vec<_> = g
        .codes
        .iter()
        .map(|&(code, version)| {
            fb::OperatorCode::create(
                &mut fbb,
                &fb::OperatorCodeArgs {
                    // The old field saturates at 127 (PLACEHOLDER_FOR_GREATER_OP_CODES).
                    deprecated_builtin_code: code.0.min(127) as i8,
                    custom_code: None,
                    version,
                    builtin_code: code,
                },
            )
        })
        .collect();
    let codes = fbb.create_vector(&codes);
    let subgraphs = fbb.create_vector(&[subgraph]);
    let buffers = fbb.create_vector(&buffers);
    let metadata = g.labels_buffer.map(|buffer| {
        let name = fbb.create_string(LABELS_METADATA);
        let meta = fb::Metadata::create(
            &mut fbb,
            &fb::MetadataArgs {
                name: Some(name),
                buffer,
            },
        );
        fbb.create_vector(&[meta])
    });
    let description = fbb.create_string("tinycnn");
    let root = fb::Model::create(
        &mut fbb,
        &fb::ModelArgs {
            version: 3,
            operator_codes: Some(codes),
            subgraphs: Some(subgraphs),
            description: Some(description),
            buffers: Some(buffers),
            metadata,
            ..Default::default()
        },
    );
    // finish adds the root offset and the identifier, 8 bytes.
    pad_to_16(&mut fbb, 8);
    fb::finish_model_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// One tensor of the subgraph.
fn write_tensor<'f>(fbb: &mut FlatBufferBuilder<'f>, t: &TensorSpec) -> WIPOffset<fb::Tensor<'f>> {
    let quantization = t.quant.as_ref().map(|q| {
        let scale = fbb.create_vector(&q.scale);
        let zero_point = fbb.create_vector(&q.zero_point);
        fb::QuantizationParameters::create(
            fbb,
            &fb::QuantizationParametersArgs {
                scale: Some(scale),
                zero_point: Some(zero_point),
                quantized_dimension: 0,
                ..Default::default()
            },
        )
    });
    let shape = fbb.create_vector(&t.shape);
    let name = fbb.create_string(&t.name);
    fb::Tensor::create(
        fbb,
        &fb::TensorArgs {
            shape: Some(shape),
            type_: t.ty,
            buffer: t.buffer,
            name: Some(name),
            quantization,
            has_rank: true,
            ..Default::default()
        },
    )
}

/// An operator's builtin options: their union type and value.
fn write_options<'f>(
    fbb: &mut FlatBufferBuilder<'f>,
    options: &Options,
) -> (
    fb::BuiltinOptions,
    Option<WIPOffset<flatbuffers::UnionWIPOffset>>,
) {
    let act = |relu: bool| {
        if relu {
            fb::ActivationFunctionType::RELU
        } else {
            fb::ActivationFunctionType::NONE
        }
    };
    match options {
        Options::Conv { relu, stride } => (
            fb::BuiltinOptions::Conv2DOptions,
            fb::Conv2DOptions::create(
                fbb,
                &fb::Conv2DOptionsArgs {
                    padding: fb::Padding::SAME,
                    stride_w: *stride,
                    stride_h: *stride,
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                    fused_activation_function: act(*relu),
                    ..Default::default()
                },
            )
            .as_union_value()
            .into(),
        ),
        Options::Pool { relu } => (
            fb::BuiltinOptions::Pool2DOptions,
            fb::Pool2DOptions::create(
                fbb,
                &fb::Pool2DOptionsArgs {
                    padding: fb::Padding::SAME,
                    stride_w: 2,
                    stride_h: 2,
                    filter_width: 2,
                    filter_height: 2,
                    fused_activation_function: act(*relu),
                },
            )
            .as_union_value()
            .into(),
        ),
        Options::Reshape { new_shape } => {
            let new_shape = fbb.create_vector(new_shape);
            (
                fb::BuiltinOptions::ReshapeOptions,
                fb::ReshapeOptions::create(
                    fbb,
                    &fb::ReshapeOptionsArgs {
                        new_shape: Some(new_shape),
                    },
                )
                .as_union_value()
                .into(),
            )
        }
        Options::FullyConnected { relu } => (
            fb::BuiltinOptions::FullyConnectedOptions,
            fb::FullyConnectedOptions::create(
                fbb,
                &fb::FullyConnectedOptionsArgs {
                    fused_activation_function: act(*relu),
                    ..Default::default()
                },
            )
            .as_union_value()
            .into(),
        ),
        Options::None => (fb::BuiltinOptions::NONE, None),
    }
}

/// One operator of the subgraph.
fn write_operator<'f>(fbb: &mut FlatBufferBuilder<'f>, op: &OpSpec) -> WIPOffset<fb::Operator<'f>> {
    let (options_type, options) = write_options(fbb, &op.options);
    let inputs = fbb.create_vector(&op.inputs);
    let outputs = fbb.create_vector(&op.outputs);
    fb::Operator::create(
        fbb,
        &fb::OperatorArgs {
            opcode_index: op.code,
            inputs: Some(inputs),
            outputs: Some(outputs),
            builtin_options_type: options_type,
            builtin_options: options,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_data_is_16_byte_aligned() {
        let mut owned = OwnedModel::random(tinycnn::Arch::fashion(), 3);
        make_scales_consistent(&mut owned);
        let blob = owned.to_bytes().unwrap();
        let bytes = to_tflite(&Model::from_bytes(&blob).unwrap()).unwrap();
        assert_eq!(bytes.len() % 16, 0);
        let model = fb::root_as_model(&bytes).unwrap();
        let mut checked = 0;
        for b in model.buffers().unwrap().iter() {
            if let Some(d) = b.data() {
                let offset = d.bytes().as_ptr() as usize - bytes.as_ptr() as usize;
                assert_eq!(offset % 16, 0, "buffer data at offset {offset}");
                checked += 1;
            }
        }
        // 5 weights, 5 biases, the reshape shape, the labels.
        assert_eq!(checked, 12);
    }
}
