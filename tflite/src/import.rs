//! `.tflite` to blob.
//!
//! The reader first copies the flatbuffer (after the verifier accepted it) into plain structs,
//! checking every index it follows, then walks the operator list as one chain from the
//! subgraph input to its output.

use tinycnn::{ArchError, EncodeError, OwnedLayer, QuantParams};

use crate::export::derived_multiplier;
use crate::{build_model, fb, Network, KERNEL, LABELS_METADATA};

/// What [`from_tflite`] reads, for error messages.
pub const SUPPORTED: &str = "tinycnn imports int8 models of the tutorial family: an int8 input \
    with scale 1/255 and zero point -128 (or a float input and QUANTIZE), conv blocks of CONV_2D \
    3x3 stride 1 SAME with bias, MAX_POOL_2D 2x2 stride 2 SAME and ReLU (fused into CONV_2D or \
    MAX_POOL_2D, or a RELU op), then RESHAPE, FULLY_CONNECTED with ReLU and FULLY_CONNECTED, \
    optionally followed by SOFTMAX and DEQUANTIZE; int8 weights with zero point 0, per channel or \
    per tensor";

/// Why a `.tflite` file could not be imported. Every message names what was found and what is
/// supported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The flatbuffer verifier refused the bytes, or an index in them points nowhere.
    #[error("not a valid .tflite file ({0}); the file is truncated or corrupt")]
    Malformed(String),
    /// The bytes lack TFLite's file identifier.
    #[error(
        "not a .tflite file: bytes 4..8 are not the TFLite identifier \"TFL3\"; \
         give a model written by the TFLite converter or `tinycnn quantize`"
    )]
    NotTflite,
    /// Not exactly one subgraph.
    #[error("the model has {0} subgraphs; {SUPPORTED}, in one subgraph")]
    Subgraphs(usize),
    /// The subgraph does not have one input and one output.
    #[error("{0}; {SUPPORTED}, with one input and one output")]
    Subgraph(String),
    /// An operator, tensor or option outside the supported family.
    #[error("operator {index} ({op}, tensor `{tensor}`): {problem}. {SUPPORTED}")]
    Unsupported {
        /// Operator index in the subgraph (the operator count for the end of the graph).
        index: usize,
        /// Operator name.
        op: String,
        /// Tensor the problem is about.
        tensor: String,
        /// What was found.
        problem: String,
    },
    /// A quantization the blob cannot reproduce exactly.
    #[error(
        "operator {index} ({op}, tensor `{tensor}`): {problem}; the blob's int8 scheme cannot \
         express this exactly, so the model is refused"
    )]
    Inexact {
        /// Operator index in the subgraph.
        index: usize,
        /// Operator name.
        op: String,
        /// Tensor the problem is about.
        tensor: String,
        /// What was found.
        problem: String,
    },
    /// The labels metadata does not match the class count.
    #[error("metadata `{LABELS_METADATA}`: {0}; write one UTF-8 label per class, one per line")]
    Labels(String),
    /// The architecture has a different number of conv blocks than tinycnn supports.
    #[error("the model has {found} conv blocks; tinycnn supports 1 to {supported}")]
    BlockCount {
        /// Conv blocks found.
        found: usize,
        /// Conv blocks supported.
        supported: usize,
    },
    /// A size does not fit the architecture's fields.
    #[error("{what} is {value}, too large for a tinycnn architecture")]
    TooLarge {
        /// Which size.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// The sizes read do not form a valid architecture.
    #[error("the imported architecture is not usable: {0}")]
    Arch(#[from] ArchError),
    /// The imported model fails the blob's checks (for example a bias too large for the
    /// accumulator bound).
    #[error("the imported model fails the blob checks: {0}")]
    Blob(EncodeError),
}

/// A tensor copied out of the flatbuffer.
struct Tensor<'a> {
    name: String,
    shape: Vec<i64>,
    ty: fb::TensorType,
    /// Constant data; `None` for activations.
    data: Option<&'a [u8]>,
    scale: Vec<f32>,
    zero_point: Vec<i64>,
    quantized_dimension: i32,
}

#[derive(Clone, Copy)]
enum Options {
    None,
    Conv {
        padding: fb::Padding,
        stride: (i32, i32),
        dilation: (i32, i32),
        act: fb::ActivationFunctionType,
    },
    Pool {
        padding: fb::Padding,
        stride: (i32, i32),
        filter: (i32, i32),
        act: fb::ActivationFunctionType,
    },
    FullyConnected {
        act: fb::ActivationFunctionType,
        shuffled: bool,
    },
}

/// An operator copied out of the flatbuffer; tensor indices are checked, `-1` = absent.
struct Op {
    code: fb::BuiltinOperator,
    name: String,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    options: Options,
}

struct Graph<'a> {
    tensors: Vec<Tensor<'a>>,
    ops: Vec<Op>,
    input: usize,
    output: usize,
    labels: Option<&'a [u8]>,
}

fn malformed(what: impl Into<String>) -> ImportError {
    ImportError::Malformed(what.into())
}

fn buffer_data<'a>(
    bytes: &'a [u8],
    buffers: &flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<fb::Buffer<'a>>>,
    index: u32,
) -> Result<Option<&'a [u8]>, ImportError> {
    let index = index as usize;
    if index >= buffers.len() {
        return Err(malformed(format!(
            "buffer index {index} is out of range ({} buffers)",
            buffers.len()
        )));
    }
    let buffer = buffers.get(index);
    if buffer.offset() > 1 {
        // Data stored after the flatbuffer (models over 2 GB).
        let start = usize::try_from(buffer.offset()).ok();
        let end = start.and_then(|s| s.checked_add(usize::try_from(buffer.size()).ok()?));
        return match (start, end) {
            (Some(s), Some(e)) if e <= bytes.len() => Ok(Some(&bytes[s..e])),
            _ => Err(malformed(format!(
                "buffer {index} points past the end of the file"
            ))),
        };
    }
    Ok(buffer.data().map(|d| d.bytes()).filter(|d| !d.is_empty()))
}

fn op_name(code: fb::BuiltinOperator, custom: Option<&str>) -> String {
    match (code, custom) {
        (fb::BuiltinOperator::CUSTOM, Some(c)) => format!("CUSTOM {c:?}"),
        _ => code
            .variant_name()
            .map_or_else(|| format!("operator code {}", code.0), str::to_owned),
    }
}

fn read_graph(bytes: &[u8]) -> Result<Graph<'_>, ImportError> {
    if bytes.len() < 8 {
        return Err(malformed(format!(
            "{} bytes; a .tflite file has at least 8",
            bytes.len()
        )));
    }
    if !fb::model_buffer_has_identifier(bytes) {
        return Err(ImportError::NotTflite);
    }
    let model = fb::root_as_model(bytes).map_err(|e| malformed(e.to_string()))?;
    let subgraphs = model.subgraphs().ok_or_else(|| malformed("no subgraphs"))?;
    if subgraphs.len() != 1 {
        return Err(ImportError::Subgraphs(subgraphs.len()));
    }
    let sg = subgraphs.get(0);
    let buffers = model.buffers().ok_or_else(|| malformed("no buffers"))?;
    let fb_tensors = sg.tensors().ok_or_else(|| malformed("no tensors"))?;
    let mut tensors = Vec::with_capacity(fb_tensors.len());
    for (i, t) in fb_tensors.iter().enumerate() {
        let q = t.quantization();
        let f32s = |v: Option<flatbuffers::Vector<'_, f32>>| v.map(|v| v.iter().collect());
        let i64s = |v: Option<flatbuffers::Vector<'_, i64>>| v.map(|v| v.iter().collect());
        tensors.push(Tensor {
            name: t.name().map_or_else(|| format!("#{i}"), str::to_owned),
            shape: t
                .shape()
                .map(|s| s.iter().map(i64::from).collect())
                .unwrap_or_default(),
            ty: t.type_(),
            data: buffer_data(bytes, &buffers, t.buffer())?,
            scale: q.and_then(|q| f32s(q.scale())).unwrap_or_default(),
            zero_point: q.and_then(|q| i64s(q.zero_point())).unwrap_or_default(),
            quantized_dimension: q.map_or(0, |q| q.quantized_dimension()),
        });
    }
    let check_index = |i: i32, optional: bool| -> Result<i32, ImportError> {
        if (i == -1 && optional) || (i >= 0 && (i as usize) < tensors.len()) {
            Ok(i)
        } else {
            Err(malformed(format!(
                "tensor index {i} is out of range ({} tensors)",
                tensors.len()
            )))
        }
    };
    let codes = model
        .operator_codes()
        .ok_or_else(|| malformed("no operator codes"))?;
    let mut ops = Vec::new();
    for op in sg.operators().iter().flatten() {
        let ci = op.opcode_index() as usize;
        if ci >= codes.len() {
            return Err(malformed(format!(
                "operator code index {ci} is out of range ({} codes)",
                codes.len()
            )));
        }
        let oc = codes.get(ci);
        // TFLite's rule: the larger of the two fields (the old one saturates at 127).
        let code = fb::BuiltinOperator(
            oc.builtin_code()
                .0
                .max(i32::from(oc.deprecated_builtin_code())),
        );
        let indices = |v: Option<flatbuffers::Vector<'_, i32>>| -> Result<Vec<i32>, ImportError> {
            v.map(|v| v.iter().map(|i| check_index(i, true)).collect())
                .unwrap_or(Ok(Vec::new()))
        };
        let options = options_of(&op);
        ops.push(Op {
            code,
            name: op_name(code, oc.custom_code()),
            inputs: indices(op.inputs())?,
            outputs: indices(op.outputs())?,
            options,
        });
    }
    let one = |v: Option<flatbuffers::Vector<'_, i32>>, what: &str| -> Result<usize, ImportError> {
        let v: Vec<i32> = v.map(|v| v.iter().collect()).unwrap_or_default();
        match v[..] {
            [i] => Ok(check_index(i, false)? as usize),
            _ => Err(ImportError::Subgraph(format!(
                "the subgraph has {} {what}s",
                v.len()
            ))),
        }
    };
    let input = one(sg.inputs(), "input")?;
    let output = one(sg.outputs(), "output")?;
    let mut labels = None;
    for m in model.metadata().iter().flatten() {
        if m.name() == Some(LABELS_METADATA) {
            labels = Some(buffer_data(bytes, &buffers, m.buffer())?.unwrap_or(&[]));
        }
    }
    Ok(Graph {
        tensors,
        ops,
        input,
        output,
        labels,
    })
}

/// The builtin options the walk checks, of the three operators that have them.
fn options_of(op: &fb::Operator<'_>) -> Options {
    if let Some(o) = op.builtin_options_as_conv_2_doptions() {
        Options::Conv {
            padding: o.padding(),
            stride: (o.stride_h(), o.stride_w()),
            dilation: (o.dilation_h_factor(), o.dilation_w_factor()),
            act: o.fused_activation_function(),
        }
    } else if let Some(o) = op.builtin_options_as_pool_2_doptions() {
        Options::Pool {
            padding: o.padding(),
            stride: (o.stride_h(), o.stride_w()),
            filter: (o.filter_height(), o.filter_width()),
            act: o.fused_activation_function(),
        }
    } else if let Some(o) = op.builtin_options_as_fully_connected_options() {
        Options::FullyConnected {
            act: o.fused_activation_function(),
            shuffled: o.weights_format() != fb::FullyConnectedOptionsWeightsFormat::DEFAULT,
        }
    } else {
        Options::None
    }
}

/// A per-tensor int8 activation's quantization, checked.
fn activation_q(t: &Tensor) -> Result<QuantParams, String> {
    if t.ty != fb::TensorType::INT8 {
        return Err(format!(
            "the tensor is {}, not INT8",
            t.ty.variant_name().unwrap_or("of an unknown type")
        ));
    }
    match (&t.scale[..], &t.zero_point[..]) {
        ([scale], [zp]) if scale.is_finite() && *scale > 0.0 => {
            let zero_point =
                i8::try_from(*zp).map_err(|_| format!("zero point {zp} is not int8"))?;
            Ok(QuantParams {
                scale: *scale,
                zero_point,
            })
        }
        ([], _) => Err("the tensor has no quantization parameters".into()),
        (s, z) => Err(format!(
            "quantization has {} scales and {} zero points (scale {:?}); activations need one \
             positive scale and one zero point",
            s.len(),
            z.len(),
            s.first()
        )),
    }
}

/// Walks the operator chain.
struct Walker<'g, 'a> {
    g: &'g Graph<'a>,
    next: usize,
    /// The tensor the chain has reached.
    x: usize,
    /// Layers read with per-tensor weight scales.
    per_tensor: std::cell::Cell<usize>,
}

impl<'g, 'a> Walker<'g, 'a> {
    fn tensor(&self, i: i32) -> Option<&'g Tensor<'a>> {
        usize::try_from(i).ok().map(|i| &self.g.tensors[i])
    }

    fn unsupported(&self, index: usize, tensor: &str, problem: impl Into<String>) -> ImportError {
        let op = self
            .g
            .ops
            .get(index)
            .map_or_else(|| "end of graph".to_owned(), |o| o.name.clone());
        ImportError::Unsupported {
            index,
            op,
            tensor: tensor.to_owned(),
            problem: problem.into(),
        }
    }

    fn inexact(&self, index: usize, tensor: &str, problem: impl Into<String>) -> ImportError {
        ImportError::Inexact {
            index,
            op: self.g.ops[index].name.clone(),
            tensor: tensor.to_owned(),
            problem: problem.into(),
        }
    }

    /// Skips the operators that only compute a shape for RESHAPE (what the converter emits for
    /// Keras' `Flatten` with a dynamic batch: SHAPE, STRIDED_SLICE, PACK): every output is an
    /// INT32 tensor, so they cannot change an activation, and RESHAPE's output shape is checked
    /// on its own.
    fn skip_shape_ops(&mut self) {
        use fb::BuiltinOperator as B;
        while let Some(op) = self.g.ops.get(self.next) {
            let shape_op = matches!(op.code, B::SHAPE | B::STRIDED_SLICE | B::PACK)
                && !op.outputs.is_empty()
                && op.outputs.iter().all(|&o| {
                    self.tensor(o)
                        .is_some_and(|t| t.ty == fb::TensorType::INT32)
                });
            if !shape_op {
                break;
            }
            self.next += 1;
        }
    }

    fn peek(&mut self) -> Option<fb::BuiltinOperator> {
        self.skip_shape_ops();
        self.g.ops.get(self.next).map(|o| o.code)
    }

    /// Takes the next operator, which must be `code` with the chain tensor as its first input
    /// and one output; moves the chain to that output.
    fn take(
        &mut self,
        code: fb::BuiltinOperator,
        what: &str,
    ) -> Result<(usize, &'g Op), ImportError> {
        self.skip_shape_ops();
        let index = self.next;
        let x_name = self.g.tensors[self.x].name.clone();
        let Some(op) = self.g.ops.get(index) else {
            return Err(self.unsupported(
                index,
                &x_name,
                format!("the graph ends at `{x_name}`; expected {what}"),
            ));
        };
        if op.code != code {
            let out = op
                .outputs
                .first()
                .and_then(|&o| self.tensor(o))
                .map_or("?", |t| t.name.as_str());
            return Err(self.unsupported(
                index,
                out,
                format!("found {}, expected {what}", op.name),
            ));
        }
        if op.inputs.first().copied() != Some(self.x as i32) {
            return Err(self.unsupported(
                index,
                &x_name,
                format!(
                    "{} does not read `{x_name}` as its first input; the graph must be one chain",
                    op.name
                ),
            ));
        }
        let [out] = op.outputs[..] else {
            return Err(self.unsupported(
                index,
                &x_name,
                format!("{} has {} outputs, expected 1", op.name, op.outputs.len()),
            ));
        };
        if out < 0 {
            return Err(self.unsupported(index, &x_name, "the operator has no output tensor"));
        }
        self.next += 1;
        self.x = out as usize;
        Ok((index, op))
    }

    fn x_tensor(&self) -> &'g Tensor<'a> {
        &self.g.tensors[self.x]
    }

    /// The chain tensor's quantization, which must equal `q` (ops that keep the scale).
    fn same_q(&self, index: usize, q: QuantParams, what: &str) -> Result<(), ImportError> {
        let t = self.x_tensor();
        let tq = activation_q(t).map_err(|p| self.unsupported(index, &t.name, p))?;
        if tq != q {
            return Err(self.inexact(
                index,
                &t.name,
                format!(
                    "{what} output has scale {:e} zero point {}, its input scale {:e} zero point \
                     {}; they must be equal",
                    tq.scale, tq.zero_point, q.scale, q.zero_point
                ),
            ));
        }
        Ok(())
    }

    /// An optional standalone RELU with unchanged quantization.
    fn optional_relu(&mut self, q: QuantParams) -> Result<bool, ImportError> {
        if self.peek() != Some(fb::BuiltinOperator::RELU) {
            return Ok(false);
        }
        let (index, _) = self.take(fb::BuiltinOperator::RELU, "RELU")?;
        self.same_q(index, q, "RELU")?;
        Ok(true)
    }

    /// Reads weights `[out, (3, 3,) in]` and the optional bias of the operator at `index` into
    /// a layer; `input_scale` is the layer input's scale, `out_q` its output quantization.
    fn layer(
        &self,
        index: usize,
        shape: &[i64],
        input_scale: f32,
        out_q: QuantParams,
    ) -> Result<OwnedLayer, ImportError> {
        let op = &self.g.ops[index];
        let (Some(&wi), bi) = (op.inputs.get(1), op.inputs.get(2).copied()) else {
            return Err(self.unsupported(index, "?", "the operator has no weights input"));
        };
        let Some(w) = self.tensor(wi) else {
            return Err(self.unsupported(index, "?", "the operator has no weights tensor"));
        };
        if w.ty != fb::TensorType::INT8 {
            let ty = w.ty.variant_name().unwrap_or("an unknown type");
            let hint = if w.ty == fb::TensorType::FLOAT32 {
                "; this is a float model: convert it with full-integer quantization (a \
                 representative dataset), or import the float ONNX with --calibrate"
            } else {
                ""
            };
            return Err(self.unsupported(
                index,
                &w.name,
                format!("weights are {ty}, expected INT8{hint}"),
            ));
        }
        if w.shape != shape {
            return Err(self.unsupported(
                index,
                &w.name,
                format!("weights have shape {:?}, expected {shape:?}", w.shape),
            ));
        }
        let out = shape[0] as usize;
        let Some(data) = w.data else {
            return Err(self.unsupported(index, &w.name, "weights are not a constant tensor"));
        };
        let len: i64 = shape.iter().product();
        if data.len() as i64 != len {
            return Err(malformed(format!(
                "tensor `{}` has {} bytes of data for shape {shape:?}",
                w.name,
                data.len()
            )));
        }
        let weights: Vec<i8> = data.iter().map(|&b| b as i8).collect();
        if let Some(i) = weights.iter().position(|&v| v == -128) {
            return Err(self.inexact(
                index,
                &w.name,
                format!("weight {i} is -128; tinycnn's weights are symmetric in [-127, 127]"),
            ));
        }
        let weight_scales = self.weight_scales(index, w, out)?;
        let bias = self.bias(index, bi, out)?;
        let (multiplier, shift) = weight_scales
            .iter()
            .map(|&sw| {
                let (m, s) = derived_multiplier(input_scale, sw, out_q.scale);
                (m, s as i8)
            })
            .unzip();
        Ok(OwnedLayer {
            weight_bits: tinycnn::WeightBits::S8,
            weights,
            bias,
            multiplier,
            shift,
            output: out_q,
            weight_scales,
        })
    }

    /// The weight scales of weights tensor `w` of the operator at `index`, one per output
    /// channel (`out` of them; a per-tensor scale is repeated and counted), checked positive
    /// and finite, with zero points 0.
    fn weight_scales(
        &self,
        index: usize,
        w: &Tensor<'_>,
        out: usize,
    ) -> Result<Vec<f32>, ImportError> {
        let weight_scales: Vec<f32> = match w.scale.len() {
            1 => {
                self.per_tensor.set(self.per_tensor.get() + 1);
                vec![w.scale[0]; out]
            }
            n if n == out && w.quantized_dimension == 0 => w.scale.clone(),
            n => {
                return Err(self.unsupported(
                    index,
                    &w.name,
                    format!(
                        "weights have {n} scales on dimension {}; expected 1 (per tensor) or \
                         {out} on dimension 0 (per output channel)",
                        w.quantized_dimension
                    ),
                ))
            }
        };
        if let Some(s) = weight_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(self.unsupported(
                index,
                &w.name,
                format!("weight scale {s} is not positive and finite"),
            ));
        }
        if let Some(z) = w.zero_point.iter().find(|&&z| z != 0) {
            return Err(self.inexact(
                index,
                &w.name,
                format!("weight zero point {z}; tinycnn's weights are symmetric (zero point 0)"),
            ));
        }
        Ok(weight_scales)
    }

    /// The int32 bias (input `bi`) of the operator at `index`, `out` values; zeros without one.
    fn bias(&self, index: usize, bi: Option<i32>, out: usize) -> Result<Vec<i32>, ImportError> {
        let bias = match bi.and_then(|b| self.tensor(b)) {
            None => vec![0; out],
            Some(b) => {
                if b.ty != fb::TensorType::INT32 || b.shape != [out as i64] {
                    return Err(self.unsupported(
                        index,
                        &b.name,
                        format!(
                            "bias is {} with shape {:?}, expected INT32 [{out}]",
                            b.ty.variant_name().unwrap_or("an unknown type"),
                            b.shape
                        ),
                    ));
                }
                match b.data {
                    Some(d) if d.len() == out * 4 => d
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    _ => {
                        return Err(self.unsupported(
                            index,
                            &b.name,
                            "bias is not a constant tensor of the right size",
                        ))
                    }
                }
            }
        };
        Ok(bias)
    }

    /// The chain tensor's quantization and shape, which must be `[1, ...dims]`.
    fn activation(&self, index: usize, dims: &[i64]) -> Result<QuantParams, ImportError> {
        let t = self.x_tensor();
        let expected: Vec<i64> = std::iter::once(1).chain(dims.iter().copied()).collect();
        if t.shape != expected {
            return Err(self.unsupported(
                index,
                &t.name,
                format!("the output has shape {:?}, expected {expected:?}", t.shape),
            ));
        }
        activation_q(t).map_err(|p| self.unsupported(index, &t.name, p))
    }
}

fn act_name(a: fb::ActivationFunctionType) -> &'static str {
    a.variant_name().unwrap_or("an unknown activation")
}

/// Reads an int8 `.tflite` of the tutorial family (see [`SUPPORTED`]) into an
/// [`OwnedModel`](tinycnn::OwnedModel) whose blob runs on `tinycnn` and the firmware unchanged.
///
/// Each multiplier and shift is `quantize_multiplier(s_in * s_w[c] / s_out)` as in TFLite, so a
/// file written by [`to_tflite`](crate::to_tflite) comes back as the blob it was made from, byte
/// for byte. Labels come from metadata [`LABELS_METADATA`]; without it they are `class0`,
/// `class1`, ... A trailing SOFTMAX is dropped: the blob's logits are its input, and
/// [`tinycnn::probabilities`] computes the softmax.
///
/// Never panics: malformed bytes give [`ImportError::Malformed`] (the flatbuffer verifier runs
/// first), anything outside the family gives an error naming the operator and the tensor.
pub fn from_tflite(bytes: &[u8]) -> Result<tinycnn::OwnedModel, ImportError> {
    import_tflite(bytes).map(|i| i.model)
}

/// A model [`import_tflite`] read, and what the import changed or assumed.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The model.
    pub model: tinycnn::OwnedModel,
    /// One sentence per thing a user may want to know: a dropped SOFTMAX, a float input that
    /// the blob takes as int8, labels that were not in the file, per-tensor weights.
    pub notes: Vec<String>,
}

/// [`from_tflite`], also returning notes for the user (for `tinycnn import` to print).
pub fn import_tflite(bytes: &[u8]) -> Result<Imported, ImportError> {
    use fb::BuiltinOperator as B;
    let g = read_graph(bytes)?;
    let mut w = Walker {
        g: &g,
        next: 0,
        x: g.input,
        per_tensor: std::cell::Cell::new(0),
    };
    let mut notes = Vec::new();
    let (input_dims, input) = w.input(&mut notes)?;
    let mut layers = Vec::new();
    let mut filters = Vec::new();
    let (mut map, mut q) = (input_dims, input);
    while w.peek() == Some(B::CONV_2D) {
        let block = filters.len() + 1;
        let (layer, pooled, block_q) = w.conv_block(block, map, q)?;
        filters.push(pooled[2] as usize);
        layers.push(layer);
        (map, q) = (pooled, block_q);
    }
    if filters.is_empty() {
        let name = w.x_tensor().name.clone();
        let found = w.peek().map_or("the end of the graph".into(), |c| {
            c.variant_name().unwrap_or("an unknown operator").to_owned()
        });
        return Err(w.unsupported(w.next, &name, format!("found {found}, expected CONV_2D")));
    }
    let flatten = map.iter().product();
    if w.peek() == Some(B::RESHAPE) {
        let (ri, _) = w.take(B::RESHAPE, "RESHAPE")?;
        w.activation(ri, &[flatten])?;
        w.same_q(ri, q, "RESHAPE")?;
    }
    let mut fc_width = 0;
    let mut fan_in = flatten;
    for (l, relu_wanted) in [("fc1", true), ("fc2", false)] {
        let (layer, out, out_q) = w.dense(l, relu_wanted, fan_in, q)?;
        layers.push(layer);
        q = out_q;
        fan_in = out;
        if l == "fc1" {
            fc_width = out;
        }
    }
    let classes = fan_in as usize;
    if w.per_tensor.get() > 0 {
        notes.push(format!(
            "{} layers have per-tensor weight scales; the blob stores them per channel",
            w.per_tensor.get()
        ));
    }
    w.end_of_graph(&mut notes)?;
    let labels = labels(g.labels, classes, &mut notes)?;
    let [h, wd, ch] = input_dims.map(|d| d as usize);
    let model = build_model(Network {
        height: h,
        width: wd,
        channels: ch,
        filters,
        fc_width: fc_width as usize,
        classes,
        labels,
        input,
        layers,
    })?;
    Ok(Imported { model, notes })
}

/// The chain's steps, in graph order.
impl Walker<'_, '_> {
    /// The graph input `[1, H, W, C]` and its quantization, after the QUANTIZE of a float input:
    /// `([H, W, C], q)`, where `q` must be the blob's `p - 128`.
    fn input(&mut self, notes: &mut Vec<String>) -> Result<([i64; 3], QuantParams), ImportError> {
        use fb::BuiltinOperator as B;
        let input_t = &self.g.tensors[self.g.input];
        let [1, h, wd, ch] = input_t.shape[..] else {
            return Err(self.unsupported(
                0,
                &input_t.name,
                format!(
                    "the input has shape {:?}, expected [1, H, W, C]",
                    input_t.shape
                ),
            ));
        };
        if ![h, wd, ch].iter().all(|&d| d > 0 && d <= u16::MAX as i64) {
            let problem = format!("input shape {:?}", input_t.shape);
            return Err(self.unsupported(0, &input_t.name, problem));
        }
        let mut index = 0;
        if input_t.ty == fb::TensorType::FLOAT32 {
            if self.peek() != Some(B::QUANTIZE) {
                return Err(self.unsupported(
                    0,
                    &input_t.name,
                    "the input is FLOAT32 and no QUANTIZE follows it: this is a float model; \
                     convert it with full-integer quantization (a representative dataset), or \
                     import the float ONNX with --calibrate",
                ));
            }
            index = self.take(B::QUANTIZE, "QUANTIZE of the float input")?.0;
            notes.push(
                "the file takes float pixels p / 255 and quantizes them; the blob takes int8 p - \
                 128, the same values"
                    .to_owned(),
            );
        }
        let input = self.activation(index, &[h, wd, ch])?;
        let name = self.x_tensor().name.clone();
        // Within 1e-6 of 1/255, round(p / 255 / scale) = p for every pixel p in 0..=255, so the
        // file's input quantization is exactly the blob's q = p - 128.
        if input.zero_point != tinycnn::INPUT_ZERO_POINT
            || (input.scale as f64 * 255.0 - 1.0).abs() > 1e-6
        {
            return Err(self.inexact(
                index,
                &name,
                format!(
                    "input scale {:e} zero point {}; the blob's input is pixel p as p / 255 \
                     (scale 1/255, zero point -128), so other input quantizations need a \
                     different preprocessing",
                    input.scale, input.zero_point
                ),
            ));
        }
        Ok(([h, wd, ch], input))
    }

    /// Conv block `block` (1-based) on a `map = [H, W, C]` input quantized as `q`: CONV_2D,
    /// MAX_POOL_2D and a ReLU (fused into either, or a separate RELU). Returns the layer, the
    /// pooled map's `[H, W, C]` and its quantization.
    fn conv_block(
        &mut self,
        block: usize,
        map: [i64; 3],
        q: QuantParams,
    ) -> Result<(OwnedLayer, [i64; 3], QuantParams), ImportError> {
        let (layer, out_ch, conv_q, relu) = self.conv(block, map, q)?;
        let pooled = [(map[0] + 1) / 2, (map[1] + 1) / 2, out_ch];
        self.pool(block, pooled, conv_q, relu)?;
        Ok((layer, pooled, conv_q))
    }

    /// The CONV_2D of conv block `block`: the layer, its filters, its output quantization and
    /// whether a ReLU is fused into it or follows it.
    fn conv(
        &mut self,
        block: usize,
        [hh, ww, cc]: [i64; 3],
        q: QuantParams,
    ) -> Result<(OwnedLayer, i64, QuantParams, bool), ImportError> {
        use fb::ActivationFunctionType as Act;
        use fb::BuiltinOperator as B;
        let in_name = self.x_tensor().name.clone();
        let (ci, op) = self.take(B::CONV_2D, "CONV_2D")?;
        let Options::Conv {
            padding,
            stride,
            dilation,
            act,
        } = op.options
        else {
            return Err(self.unsupported(ci, &in_name, "CONV_2D without Conv2DOptions"));
        };
        let weights_t = op.inputs.get(1).and_then(|&i| self.tensor(i));
        let out_ch = match weights_t.map(|t| &t.shape[..]) {
            Some(&[o, kh, kw, i]) => {
                let weights_name = &weights_t.unwrap().name;
                if (kh, kw) != (KERNEL as i64, KERNEL as i64) {
                    let problem =
                        format!("conv block {block} has a {kh}x{kw} kernel; tinycnn supports 3x3");
                    return Err(self.unsupported(ci, weights_name, problem));
                }
                if i != cc {
                    let problem = format!("weights have {i} input channels, the input has {cc}");
                    return Err(self.unsupported(ci, weights_name, problem));
                }
                o
            }
            _ => {
                let problem = "CONV_2D weights are not [O, KH, KW, I]";
                return Err(self.unsupported(ci, &in_name, problem));
            }
        };
        if padding != fb::Padding::SAME || stride != (1, 1) || dilation != (1, 1) {
            return Err(self.unsupported(
                ci,
                &in_name,
                format!(
                    "conv block {block} has padding {}, stride {stride:?}, dilation {dilation:?}; \
                     supported: SAME, stride 1, dilation 1",
                    padding.variant_name().unwrap_or("?")
                ),
            ));
        }
        if act != Act::NONE && act != Act::RELU {
            let problem = format!("CONV_2D fused activation {}", act_name(act));
            return Err(self.unsupported(ci, &in_name, problem));
        }
        if out_ch <= 0 || out_ch > u16::MAX as i64 {
            return Err(self.unsupported(ci, &in_name, format!("{out_ch} filters")));
        }
        let conv_q = self.activation(ci, &[hh, ww, out_ch])?;
        let layer = self.layer(ci, &[out_ch, 3, 3, cc], q.scale, conv_q)?;
        let relu = act == Act::RELU || self.optional_relu(conv_q)?;
        Ok((layer, out_ch, conv_q, relu))
    }

    /// The MAX_POOL_2D of conv block `block` onto a `pooled = [H, W, C]` map, which keeps the
    /// conv's quantization `conv_q`; the block's ReLU comes before it (`relu`), is fused into
    /// it, or follows it.
    fn pool(
        &mut self,
        block: usize,
        pooled: [i64; 3],
        conv_q: QuantParams,
        mut relu: bool,
    ) -> Result<(), ImportError> {
        use fb::ActivationFunctionType as Act;
        use fb::BuiltinOperator as B;
        let pool_in = self.x_tensor().name.clone();
        let (pi, op) = self.take(B::MAX_POOL_2D, "MAX_POOL_2D after CONV_2D")?;
        let Options::Pool {
            padding,
            stride,
            filter,
            act,
        } = op.options
        else {
            return Err(self.unsupported(pi, &pool_in, "MAX_POOL_2D without Pool2DOptions"));
        };
        // SAME only pads odd sizes; VALID is the same there on even sizes but not on odd ones.
        if padding != fb::Padding::SAME || stride != (2, 2) || filter != (2, 2) {
            return Err(self.unsupported(
                pi,
                &pool_in,
                format!(
                    "max-pool {filter:?} stride {stride:?} padding {}; supported: 2x2, stride 2, SAME",
                    padding.variant_name().unwrap_or("?")
                ),
            ));
        }
        match act {
            Act::NONE => {}
            Act::RELU => relu = true,
            a => {
                let problem = format!("MAX_POOL_2D fused activation {}", act_name(a));
                return Err(self.unsupported(pi, &pool_in, problem));
            }
        }
        self.activation(pi, &pooled)?;
        self.same_q(pi, conv_q, "MAX_POOL_2D")?;
        if !relu && !self.optional_relu(conv_q)? {
            let name = self.x_tensor().name.clone();
            return Err(self.unsupported(pi, &name, format!("conv block {block} has no ReLU")));
        }
        Ok(())
    }

    /// Dense layer `l` (`fc1` with a ReLU, `fc2` without) of `fan_in` inputs quantized as `q`:
    /// the layer, its outputs and their quantization.
    fn dense(
        &mut self,
        l: &str,
        relu_wanted: bool,
        fan_in: i64,
        q: QuantParams,
    ) -> Result<(OwnedLayer, i64, QuantParams), ImportError> {
        use fb::ActivationFunctionType as Act;
        use fb::BuiltinOperator as B;
        let in_name = self.x_tensor().name.clone();
        let (fi, op) = self.take(B::FULLY_CONNECTED, &format!("FULLY_CONNECTED ({l})"))?;
        let Options::FullyConnected { act, shuffled } = op.options else {
            return Err(self.unsupported(fi, &in_name, "FULLY_CONNECTED without options"));
        };
        if shuffled {
            let problem = "shuffled FULLY_CONNECTED weights; supported: DEFAULT";
            return Err(self.unsupported(fi, &in_name, problem));
        }
        let weights_t = op.inputs.get(1).and_then(|&i| self.tensor(i));
        let out = match weights_t.map(|t| &t.shape[..]) {
            Some(&[o, i]) if i == fan_in && o > 0 && o <= u16::MAX as i64 => o,
            _ => {
                return Err(self.unsupported(
                    fi,
                    weights_t.map_or("?", |t| t.name.as_str()),
                    format!(
                        "{l} weights have shape {:?}, expected [outputs, {fan_in}]",
                        weights_t.map(|t| &t.shape)
                    ),
                ))
            }
        };
        let out_t = self.x_tensor();
        let out_q = activation_q(out_t).map_err(|p| self.unsupported(fi, &out_t.name, p))?;
        let elements = out_t
            .shape
            .iter()
            .try_fold(1i64, |acc, &d| acc.checked_mul(d));
        if elements != Some(out) || out_t.shape.first() != Some(&1) {
            let problem = format!("output shape {:?}, expected [1, {out}]", out_t.shape);
            return Err(self.unsupported(fi, &out_t.name, problem));
        }
        let layer = self.layer(fi, &[out, fan_in], q.scale, out_q)?;
        let mut relu = match act {
            Act::NONE => false,
            Act::RELU => true,
            a => {
                let problem = format!("{l} fused activation {}", act_name(a));
                return Err(self.unsupported(fi, &in_name, problem));
            }
        };
        if relu_wanted && !relu {
            relu = self.optional_relu(out_q)?;
        }
        if relu != relu_wanted {
            let problem = if relu_wanted {
                "fc1 has no ReLU"
            } else {
                "fc2 (the logits) has a ReLU"
            };
            return Err(self.unsupported(fi, &out_t.name, problem));
        }
        Ok((layer, out, out_q))
    }

    /// After fc2: an optional SOFTMAX (dropped, with a note) and DEQUANTIZE, shape operators,
    /// then the end of the graph, whose output must be the logits or what follows them.
    fn end_of_graph(&mut self, notes: &mut Vec<String>) -> Result<(), ImportError> {
        use fb::BuiltinOperator as B;
        let logits = self.x;
        if self.peek() == Some(B::SOFTMAX) {
            self.take(B::SOFTMAX, "SOFTMAX")?;
            notes.push(
                "dropped the trailing SOFTMAX: the blob's logits are its input \
                 (tinycnn::probabilities computes the softmax)"
                    .to_owned(),
            );
        }
        if self.peek() == Some(B::DEQUANTIZE) {
            self.take(B::DEQUANTIZE, "DEQUANTIZE")?;
        }
        self.skip_shape_ops();
        let g = self.g;
        if self.next != g.ops.len() {
            let name = g.tensors[self.x].name.clone();
            return Err(self.unsupported(
                self.next,
                &name,
                "an operator after fc2; expected the end of the graph",
            ));
        }
        if self.x != g.output && logits != g.output {
            return Err(self.unsupported(
                g.ops.len(),
                &g.tensors[g.output].name,
                "the subgraph output is not the end of the conv/dense chain",
            ));
        }
        Ok(())
    }
}

/// The class labels: the `LABELS_METADATA` text, one per line, or `class0 ..` (with a note)
/// when the file has none.
fn labels(
    metadata: Option<&[u8]>,
    classes: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<String>, ImportError> {
    let Some(bytes) = metadata else {
        notes.push(format!(
            "the file has no `{LABELS_METADATA}` metadata: the labels are class0 .. class{}",
            classes - 1
        ));
        return Ok((0..classes).map(|i| format!("class{i}")).collect());
    };
    let text =
        std::str::from_utf8(bytes).map_err(|e| ImportError::Labels(format!("not UTF-8 ({e})")))?;
    let labels: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if labels.len() != classes {
        return Err(ImportError::Labels(format!(
            "{} labels for {classes} classes",
            labels.len()
        )));
    }
    Ok(labels)
}
