//! Reads a float ONNX model of the tutorial family into [`FloatParams`] (tch layout).
//!
//! Accepted graphs, as PyTorch's exporter and tf2onnx write them:
//! - input NCHW or NHWC (a `Transpose` before the first `Conv`), float, pixels `/255` either in
//!   the caller (tinycnn's preprocessing) or in the graph (`Div` by 255 or `Mul` by 1/255 before
//!   the first `Conv`);
//! - per block: `Conv` 3x3, stride 1, SAME (pads 1 or `auto_pad` SAME), with its bias or an `Add`
//!   of a per-channel constant, then `MaxPool` 2x2 stride 2 SAME and `Relu` in either order;
//! - `Flatten` or `Reshape` to `[N, K]` in any axis order (a `Transpose` before it), whose
//!   order decides how fc1's columns are permuted to tch's CHW order;
//! - `Gemm` (either `transB`), or `MatMul` + `Add`, with `Relu` after fc1 only; then an
//!   optional `Softmax`, which is dropped (tinycnn's logits are pre-softmax).
//!
//! `Identity` and `Dropout` are passed through. Anything else is refused with the node's name
//! and op, and what is supported.
use std::collections::HashMap;

use prost::Message;
use tinycnn::{Arch, Filters};
use tinycnn_runtime::tract::METADATA_LABELS;
use tract_onnx::pb;

use crate::export::{FloatLayer, FloatParams};

/// What the reader supports, for error messages.
pub const SUPPORTED: &str = "tinycnn imports float ONNX models of the tutorial family: 1 to 6 blocks of Conv 3x3 stride 1 SAME (+ bias) -> MaxPool 2x2 stride 2 SAME -> Relu, then Flatten/Reshape, Gemm or MatMul+Add (fc1, Relu), Gemm or MatMul+Add (logits), optional Softmax; NCHW or NHWC input";

/// Why a float ONNX model cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxImportError {
    #[error("not a valid ONNX file ({0}); the file is truncated or corrupt")]
    Decode(String),
    #[error("node `{node}` ({op}): {problem}. {SUPPORTED}")]
    Node {
        node: String,
        op: String,
        problem: String,
    },
    #[error("{0}. {SUPPORTED}")]
    Graph(String),
    #[error("the imported architecture is not usable: {0}")]
    Arch(#[from] tinycnn::arch::ArchError),
}

/// A float model read from ONNX.
#[derive(Debug)]
pub struct FloatOnnx {
    /// Weights in tch layout; `labels` are the ONNX metadata's, or empty.
    pub params: FloatParams,
    /// What each stored axis of the graph input is: a permutation of `"NCHW"`.
    pub input_order: [char; 4],
    /// Factor the caller multiplies pixels 0..255 by before feeding the graph: 1/255, or 1 when
    /// the graph divides by 255 itself.
    pub pixel_scale: f32,
    /// The graph applies a final Softmax.
    pub softmax: bool,
    /// What the user should know about the mapping.
    pub notes: Vec<String>,
}

/// A value flowing through the graph.
#[derive(Clone, Debug)]
enum Value {
    /// The graph input or a tensor derived from it before the first Conv: `positions[i]` is the
    /// graph input axis stored at axis `i`.
    Input { positions: [usize; 4] },
    /// A feature map after the first Conv: `order[i]` is the logical axis (N, C, H, W) of axis `i`.
    Map { order: [char; 4] },
    /// Flattened features: the logical order of the three feature axes.
    Flat { order: [char; 3] },
    /// A dense layer's output.
    Vector,
}

/// A float constant.
#[derive(Clone, Debug)]
struct Constant {
    dims: Vec<i64>,
    values: Vec<f32>,
}

fn tensor_values(t: &pb::TensorProto) -> Option<Vec<f32>> {
    use pb::tensor_proto::DataType;
    let dt = DataType::try_from(t.data_type).ok()?;
    let raw = &t.raw_data;
    match dt {
        DataType::Float if !raw.is_empty() => raw.len().is_multiple_of(4).then(|| {
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        }),
        DataType::Float => Some(t.float_data.clone()),
        DataType::Int64 if !raw.is_empty() => raw.len().is_multiple_of(8).then(|| {
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect()
        }),
        DataType::Int64 => Some(t.int64_data.iter().map(|&v| v as f32).collect()),
        _ => None,
    }
}

/// The element count of a tensor of shape `dims`, or `None` for a negative or huge shape.
fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

/// One layer as read, before the checks that need the whole network.
#[derive(Debug)]
enum Layer {
    Conv {
        node: String,
        weight: Constant,
        bias: Option<Vec<f32>>,
        pooled: bool,
        relu: bool,
    },
    Dense {
        node: String,
        /// `[out, in]`, columns in the order of `flatten` (fc1) or plain (fc2).
        weight: Vec<f32>,
        outputs: usize,
        inputs: usize,
        bias: Option<Vec<f32>>,
        relu: bool,
        flatten: Option<[char; 3]>,
    },
}

struct Reader {
    constants: HashMap<String, Constant>,
    values: HashMap<String, Value>,
    layers: Vec<Layer>,
    input_dims: [Option<i64>; 4],
    pixel_scale: f32,
    softmax: bool,
    input_order: Option<[char; 4]>,
    /// Height and width of the current feature map, known from the first Conv on.
    map_hw: Option<(usize, usize)>,
    /// Input channels, known from the first Conv on.
    channels: usize,
    notes: Vec<String>,
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(node: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn int(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn float_attr(node: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn auto_pad(node: &pb::NodeProto) -> String {
    attr(node, "auto_pad")
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
        .unwrap_or_else(|| "NOTSET".into())
}

impl Reader {
    fn problem(node: &pb::NodeProto, problem: impl Into<String>) -> OnnxImportError {
        OnnxImportError::Node {
            node: node.name.clone(),
            op: node.op_type.clone(),
            problem: problem.into(),
        }
    }

    /// Input `index` of `node`, looked up in `map` (the feature path or the constants);
    /// `wrong` completes "input `NAME` ..." when it is not there.
    fn input<T: Clone>(
        map: &HashMap<String, T>,
        node: &pb::NodeProto,
        index: usize,
        wrong: &str,
    ) -> Result<T, OnnxImportError> {
        let name = node
            .input
            .get(index)
            .ok_or_else(|| Self::problem(node, format!("input {index} is missing")))?;
        map.get(name)
            .cloned()
            .ok_or_else(|| Self::problem(node, format!("input `{name}` {wrong}")))
    }

    fn value(&self, node: &pb::NodeProto, index: usize) -> Result<Value, OnnxImportError> {
        Self::input(
            &self.values,
            node,
            index,
            "is not the feature path (a constant where an activation was expected)",
        )
    }

    fn constant(&self, node: &pb::NodeProto, index: usize) -> Result<Constant, OnnxImportError> {
        Self::input(
            &self.constants,
            node,
            index,
            "must be a float constant (an initializer)",
        )
    }

    fn set(&mut self, node: &pb::NodeProto, value: Value) -> Result<(), OnnxImportError> {
        let out = node
            .output
            .first()
            .ok_or_else(|| Self::problem(node, "it has no output"))?;
        self.values.insert(out.clone(), value);
        Ok(())
    }

    /// The value of a binary op's activation input and its constant operand.
    fn binary(&self, node: &pb::NodeProto) -> Result<(Value, Constant), OnnxImportError> {
        match (self.value(node, 0), self.constant(node, 1)) {
            (Ok(v), Ok(c)) => Ok((v, c)),
            _ => match (self.value(node, 1), self.constant(node, 0)) {
                (Ok(v), Ok(c)) => Ok((v, c)),
                _ => Err(Self::problem(
                    node,
                    "it must combine the feature path with a constant",
                )),
            },
        }
    }

    fn node(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        match node.op_type.as_str() {
            "Constant" => {
                let t = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| Self::problem(node, "only tensor constants are supported"))?;
                let values = tensor_values(t)
                    .filter(|v| element_count(&t.dims) == Some(v.len()))
                    .ok_or_else(|| {
                        Self::problem(node, "only float and int64 constants are supported")
                    })?;
                let out = node.output.first().cloned().unwrap_or_default();
                self.constants.insert(
                    out,
                    Constant {
                        dims: t.dims.clone(),
                        values,
                    },
                );
                Ok(())
            }
            "Identity" | "Dropout" => {
                let v = self.value(node, 0)?;
                self.set(node, v)
            }
            "Transpose" => self.transpose(node),
            "Div" | "Mul" => self.scale(node),
            "Conv" => self.conv(node),
            "Add" => self.add(node),
            "MaxPool" => self.max_pool(node),
            "Relu" => self.relu(node),
            "Flatten" | "Reshape" => self.flatten(node),
            "Gemm" | "MatMul" => self.dense(node),
            "Softmax" => {
                if !matches!(self.value(node, 0)?, Value::Vector) {
                    return Err(Self::problem(
                        node,
                        "Softmax is supported only on the logits",
                    ));
                }
                self.softmax = true;
                self.set(node, Value::Vector)
            }
            op => Err(Self::problem(node, format!("the op {op} is not supported"))),
        }
    }

    fn transpose(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let perm = ints(node, "perm").unwrap_or_default();
        let value = self.value(node, 0)?;
        let valid = perm.len() == 4 && (0..4).all(|i| perm.contains(&i));
        let permuted = match value {
            Value::Input { positions } if valid => Value::Input {
                positions: std::array::from_fn(|i| positions[perm[i] as usize]),
            },
            Value::Map { order } if valid => Value::Map {
                order: std::array::from_fn(|i| order[perm[i] as usize]),
            },
            _ => {
                return Err(Self::problem(
                    node,
                    format!("only 4-D feature maps can be transposed (perm {perm:?})"),
                ))
            }
        };
        self.set(node, permuted)
    }

    /// `Div` by 255 or `Mul` by 1/255 of the input: the graph scales pixels itself.
    fn scale(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let (value, c) = self.binary(node)?;
        let factor = match (node.op_type.as_str(), c.values.as_slice()) {
            ("Div", [d]) if *d != 0.0 => 1.0 / d,
            ("Mul", [m]) => *m,
            _ => {
                return Err(Self::problem(
                    node,
                    "only a scalar scaling of the input is supported",
                ))
            }
        };
        if !matches!(value, Value::Input { .. }) {
            return Err(Self::problem(
                node,
                "scaling is supported only on the graph input",
            ));
        }
        if (factor * 255.0 - 1.0).abs() > 1e-6 {
            return Err(Self::problem(
                node,
                format!("the graph scales its input by {factor}, but tinycnn's input is exactly pixels/255 (a normalization would need another preprocessing); retrain without it or fold it into the first Conv"),
            ));
        }
        self.pixel_scale = 1.0;
        self.notes.push(
            "the graph divides its input by 255 itself; tinycnn's preprocessing does the same"
                .into(),
        );
        self.set(node, value)
    }

    fn conv(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let value = self.value(node, 0)?;
        let order = match value {
            Value::Input { positions } => {
                if positions[0] != 0 {
                    return Err(Self::problem(node, "the batch axis must stay first"));
                }
                let mut input_order = ['?'; 4];
                for (axis, &p) in ['N', 'C', 'H', 'W'].iter().zip(&positions) {
                    input_order[p] = *axis;
                }
                self.input_order = Some(input_order);
                let dim = |axis: char| {
                    let stored = input_order
                        .iter()
                        .position(|&a| a == axis)
                        .expect("a permutation");
                    self.input_dims[stored]
                        .filter(|&d| d > 0)
                        .map(|d| d as usize)
                        .ok_or_else(|| {
                            Self::problem(
                                node,
                                format!("the graph input's {axis} size must be fixed"),
                            )
                        })
                };
                self.map_hw = Some((dim('H')?, dim('W')?));
                self.channels = dim('C')?;
                ['N', 'C', 'H', 'W']
            }
            Value::Map { order } => order,
            _ => return Err(Self::problem(node, "Conv must read a feature map")),
        };
        if order != ['N', 'C', 'H', 'W'] {
            return Err(Self::problem(
                node,
                format!("its input is in {order:?} order, not NCHW"),
            ));
        }
        if let Some(Layer::Conv {
            pooled,
            relu,
            node: prev,
            ..
        }) = self.layers.last()
        {
            if !(*pooled && *relu) {
                return Err(Self::problem(
                    node,
                    format!("the block of `{prev}` lacks its MaxPool or Relu"),
                ));
            }
        }
        let weight = self.constant(node, 1)?;
        let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
            Some(_) => Some(self.constant(node, 2)?.values),
            None => None,
        };
        let k = &weight.dims;
        if k.len() != 4 || k[2] != 3 || k[3] != 3 {
            return Err(Self::problem(
                node,
                format!("the kernel has shape {k:?}; only 3x3 kernels are supported"),
            ));
        }
        let ones = |name: &str| ints(node, name).is_none_or(|v| v.iter().all(|&x| x == 1));
        if !ones("strides") || !ones("dilations") || int(node, "group", 1) != 1 {
            return Err(Self::problem(
                node,
                "only stride 1, dilation 1 and group 1 are supported",
            ));
        }
        let same = match auto_pad(node).as_str() {
            "SAME_UPPER" | "SAME_LOWER" => true,
            "NOTSET" => ints(node, "pads").is_some_and(|p| p == [1, 1, 1, 1]),
            _ => false,
        };
        if !same {
            return Err(Self::problem(
                node,
                "only SAME padding (pads 1,1,1,1) is supported",
            ));
        }
        self.layers.push(Layer::Conv {
            node: node.name.clone(),
            weight,
            bias,
            pooled: false,
            relu: false,
        });
        self.set(node, Value::Map { order })
    }

    /// A bias `Add` after a Conv or MatMul without one.
    fn add(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let (value, c) = self.binary(node)?;
        let problem = || {
            Self::problem(
                node,
                "Add is supported only as the bias of a Conv or MatMul",
            )
        };
        match (self.layers.last_mut(), &value) {
            (
                Some(Layer::Conv {
                    bias: b @ None,
                    pooled: false,
                    relu: false,
                    weight,
                    ..
                }),
                Value::Map { .. },
            ) => {
                let channels = weight.dims[0] as usize;
                // Broadcast from the right over NCHW: the channel axis is third from the end.
                let non_unit: Vec<usize> = (0..c.dims.len()).filter(|&d| c.dims[d] != 1).collect();
                let per_channel = c.values.len() == channels
                    && match non_unit.as_slice() {
                        [d] => c.dims.len() - d == 3,
                        [] => channels == 1 && c.dims.len() >= 3,
                        _ => false,
                    };
                if !per_channel {
                    return Err(problem());
                }
                *b = Some(c.values);
            }
            (
                Some(Layer::Dense {
                    bias: b @ None,
                    relu: false,
                    outputs,
                    ..
                }),
                Value::Vector,
            ) => {
                if c.values.len() != *outputs {
                    return Err(problem());
                }
                *b = Some(c.values);
            }
            _ => return Err(problem()),
        }
        self.set(node, value)
    }

    fn max_pool(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let Value::Map { order } = self.value(node, 0)? else {
            return Err(Self::problem(node, "MaxPool must follow a Conv"));
        };
        if order != ['N', 'C', 'H', 'W'] {
            return Err(Self::problem(node, "its input is not NCHW"));
        }
        let twos = |name: &str| ints(node, name).is_some_and(|v| v == [2, 2]);
        if !twos("kernel_shape") || !twos("strides") {
            return Err(Self::problem(
                node,
                "only a 2x2 window with stride 2 is supported",
            ));
        }
        if ints(node, "dilations").is_some_and(|v| v.iter().any(|&d| d != 1)) {
            return Err(Self::problem(node, "dilated pooling is not supported"));
        }
        let pads = match auto_pad(node).as_str() {
            "NOTSET" | "SAME_UPPER" => ints(node, "pads").unwrap_or_else(|| vec![0; 4]),
            other => {
                return Err(Self::problem(
                    node,
                    format!("auto_pad {other} is not supported (SAME pooling pads at the end)"),
                ))
            }
        };
        let same_upper = auto_pad(node) == "SAME_UPPER";
        let ceil = int(node, "ceil_mode", 0) == 1;
        if pads.len() != 4 || pads[0] != 0 || pads[1] != 0 || pads[2] > 1 || pads[3] > 1 {
            return Err(Self::problem(
                node,
                format!("pads {pads:?}: only end padding of at most 1 is supported"),
            ));
        }
        match self.layers.last_mut() {
            Some(Layer::Conv {
                pooled: p @ false, ..
            }) => {
                *p = true;
            }
            _ => {
                return Err(Self::problem(
                    node,
                    "MaxPool must follow a Conv, once per block",
                ))
            }
        }
        let (h, w) = self
            .map_hw
            .ok_or_else(|| Self::problem(node, "MaxPool before any Conv"))?;
        for (n, pad) in [(h, pads[2]), (w, pads[3])] {
            // Windows of 2, stride 2, over n + pad values: (n + pad - 2) / 2 rounded, plus 1.
            let span = (n as i64 + pad - 2).max(0) as usize;
            let out = if same_upper || ceil {
                span.div_ceil(2) + 1
            } else {
                span / 2 + 1
            };
            if out != n.div_ceil(2) {
                return Err(Self::problem(
                    node,
                    format!("pooling {n} values gives {out}, not {} as SAME pooling does (pad the end by 1 or set ceil_mode for odd sizes)", n.div_ceil(2)),
                ));
            }
        }
        self.map_hw = Some((h.div_ceil(2), w.div_ceil(2)));
        self.set(node, Value::Map { order })
    }

    fn relu(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let value = self.value(node, 0)?;
        match (self.layers.last_mut(), &value) {
            (
                Some(Layer::Conv {
                    relu: r @ false, ..
                }),
                Value::Map { .. },
            ) => *r = true,
            (
                Some(Layer::Dense {
                    relu: r @ false, ..
                }),
                Value::Vector,
            ) => *r = true,
            _ => {
                return Err(Self::problem(
                    node,
                    "Relu is supported once per conv block and after fc1",
                ))
            }
        }
        self.set(node, value)
    }

    fn flatten(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let Value::Map { order } = self.value(node, 0)? else {
            return Err(Self::problem(
                node,
                "only the last block's feature map can be flattened",
            ));
        };
        let to_2d = match node.op_type.as_str() {
            "Flatten" => int(node, "axis", 1) == 1,
            _ => {
                let shape = self.constant(node, 1)?.values;
                shape.len() == 2 && (shape[0] == -1.0 || shape[0] == 0.0 || shape[0] == 1.0)
            }
        };
        if !to_2d || order[0] != 'N' {
            return Err(Self::problem(
                node,
                "only a flatten to [batch, features] is supported",
            ));
        }
        match self.layers.last() {
            Some(Layer::Conv {
                pooled: true,
                relu: true,
                ..
            }) => {}
            _ => {
                return Err(Self::problem(
                    node,
                    "the last conv block lacks its MaxPool or Relu",
                ))
            }
        }
        self.set(
            node,
            Value::Flat {
                order: [order[1], order[2], order[3]],
            },
        )
    }

    fn dense(&mut self, node: &pb::NodeProto) -> Result<(), OnnxImportError> {
        let value = self.value(node, 0)?;
        let flatten = match value {
            Value::Flat { order } => Some(order),
            Value::Vector => None,
            _ => {
                return Err(Self::problem(
                    node,
                    "a dense layer must read flattened features",
                ))
            }
        };
        if let Some(Layer::Dense {
            relu: false,
            node: prev,
            ..
        }) = self.layers.last()
        {
            return Err(Self::problem(
                node,
                format!("fc1 (`{prev}`) must be followed by Relu"),
            ));
        }
        let b = self.constant(node, 1)?;
        if b.dims.len() != 2 {
            return Err(Self::problem(
                node,
                format!("the weight has shape {:?}, not 2-D", b.dims),
            ));
        }
        let gemm = node.op_type == "Gemm";
        let trans_b = gemm && int(node, "transB", 0) == 1;
        if gemm
            && (int(node, "transA", 0) != 0
                || float_attr(node, "alpha", 1.0) != 1.0
                || float_attr(node, "beta", 1.0) != 1.0)
        {
            return Err(Self::problem(
                node,
                "only Gemm with transA 0, alpha 1 and beta 1 is supported",
            ));
        }
        let (rows, cols) = (b.dims[0] as usize, b.dims[1] as usize);
        let (outputs, inputs) = if trans_b { (rows, cols) } else { (cols, rows) };
        let weight = if trans_b {
            b.values
        } else {
            let mut t = vec![0f32; b.values.len()];
            for i in 0..rows {
                for o in 0..cols {
                    t[o * rows + i] = b.values[i * cols + o];
                }
            }
            t
        };
        let bias = match node.input.get(2).filter(|n| gemm && !n.is_empty()) {
            Some(_) => Some(self.constant(node, 2)?.values),
            None => None,
        };
        self.layers.push(Layer::Dense {
            node: node.name.clone(),
            weight,
            outputs,
            inputs,
            bias,
            relu: false,
            flatten,
        });
        self.set(node, Value::Vector)
    }
}

/// Reads a float ONNX model of the tutorial family.
pub fn read_float_onnx(bytes: &[u8]) -> Result<FloatOnnx, OnnxImportError> {
    let model =
        pb::ModelProto::decode(bytes).map_err(|e| OnnxImportError::Decode(e.to_string()))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxImportError::Graph("the file has no graph".into()))?;
    let mut constants = HashMap::new();
    for t in &graph.initializer {
        if let Some(values) = tensor_values(t).filter(|v| element_count(&t.dims) == Some(v.len())) {
            constants.insert(
                t.name.clone(),
                Constant {
                    dims: t.dims.clone(),
                    values,
                },
            );
        }
    }
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !constants.contains_key(&i.name))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(OnnxImportError::Graph(format!(
            "the graph has {} inputs; one image input is supported",
            inputs.len()
        )));
    };
    let dims = input_dims(input).ok_or_else(|| {
        OnnxImportError::Graph(format!(
            "the graph input `{}` is not a 4-D float tensor",
            input.name
        ))
    })?;
    let [output] = graph.output.as_slice() else {
        return Err(OnnxImportError::Graph(format!(
            "the graph has {} outputs; one (the logits) is supported",
            graph.output.len()
        )));
    };
    let mut reader = Reader {
        constants,
        values: HashMap::from([(
            input.name.clone(),
            Value::Input {
                positions: [0, 1, 2, 3],
            },
        )]),
        layers: Vec::new(),
        input_dims: dims,
        pixel_scale: 1.0 / 255.0,
        softmax: false,
        input_order: None,
        map_hw: None,
        channels: 0,
        notes: Vec::new(),
    };
    for node in &graph.node {
        reader.node(node)?;
    }
    match reader.values.get(&output.name) {
        Some(Value::Vector) => {}
        _ => {
            return Err(OnnxImportError::Graph(format!(
                "the graph output `{}` is not the last dense layer's output",
                output.name
            )))
        }
    }
    let labels = model
        .metadata_props
        .iter()
        .find(|p| p.key == METADATA_LABELS)
        .and_then(|p| serde_json::from_str::<Vec<String>>(&p.value).ok())
        .unwrap_or_default();
    reader.finish(labels)
}

fn input_dims(input: &pb::ValueInfoProto) -> Option<[Option<i64>; 4]> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    if t.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return None;
    }
    let dims: Vec<Option<i64>> = t
        .shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Dim::DimValue(v)) => Some(v),
            _ => None,
        })
        .collect();
    dims.try_into().ok()
}

impl Reader {
    /// Checks the layer sequence and builds the float parameters in tch layout.
    fn finish(mut self, labels: Vec<String>) -> Result<FloatOnnx, OnnxImportError> {
        let graph = |m: String| OnnxImportError::Graph(m);
        let input_order = self
            .input_order
            .ok_or_else(|| graph("the graph has no Conv".into()))?;
        let (convs, dense): (Vec<&Layer>, Vec<&Layer>) = self
            .layers
            .iter()
            .partition(|l| matches!(l, Layer::Conv { .. }));
        if dense.len() != tinycnn::arch::DENSE_LAYERS {
            return Err(graph(format!(
                "the graph has {} dense layers; tinycnn has exactly {} (fc1 with Relu, then the logits)",
                dense.len(),
                tinycnn::arch::DENSE_LAYERS
            )));
        }
        let (filters, mut layers) = self.conv_layers(&convs)?;
        let (
            Layer::Dense {
                outputs: fc_width,
                relu: true,
                ..
            },
            Layer::Dense {
                outputs: classes,
                relu: false,
                inputs: fc2_in,
                node: fc2,
                ..
            },
        ) = (dense[0], dense[1])
        else {
            return Err(graph(
                "fc1 must have a Relu and the logits layer none".into(),
            ));
        };
        if fc2_in != fc_width {
            return Err(graph(format!(
                "`{fc2}` reads {fc2_in} values but fc1 gives {fc_width}"
            )));
        }
        let (height, width) = {
            let stored = |axis: char| {
                input_order
                    .iter()
                    .position(|&a| a == axis)
                    .expect("a permutation")
            };
            let d = |axis| self.input_dims[stored(axis)].unwrap_or(0) as usize;
            (d('H'), d('W'))
        };
        let narrow = |what: &str, v: usize| {
            u16::try_from(v).map_err(|_| graph(format!("{what} {v} is too large")))
        };
        let arch = Arch {
            height: narrow("input height", height)?,
            width: narrow("input width", width)?,
            channels: u8::try_from(self.channels)
                .map_err(|_| graph("too many input channels".into()))?,
            filters,
            fc_width: narrow("fc1 width", *fc_width)?,
            classes: narrow("class count", *classes)?,
        };
        arch.validate()?;
        let notes = dense_layers(&arch, &dense, &input_order, &mut layers)?;
        self.notes.extend(notes);
        if self.softmax {
            self.notes.push("the final Softmax is dropped: tinycnn's logits come before it, and argmax is the same".into());
        }
        let params = FloatParams {
            arch,
            labels,
            layers,
            weight_bits: vec![tinycnn::WeightBits::S8; arch.layer_count()],
        };
        Ok(FloatOnnx {
            params,
            input_order,
            pixel_scale: self.pixel_scale,
            softmax: self.softmax,
            notes: self.notes,
        })
    }
    /// The conv layers' float parameters, in graph order, and their filters; each must read
    /// the channels the one before gives.
    fn conv_layers(&self, convs: &[&Layer]) -> Result<(Filters, Vec<FloatLayer>), OnnxImportError> {
        let graph = |m: String| OnnxImportError::Graph(m);
        let mut filters = Vec::new();
        let mut in_channels = self.channels;
        let mut layers = Vec::new();
        for l in convs {
            let Layer::Conv {
                node, weight, bias, ..
            } = l
            else {
                unreachable!()
            };
            let (out, inp) = (weight.dims[0] as usize, weight.dims[1] as usize);
            if inp != in_channels {
                return Err(graph(format!(
                    "Conv `{node}` reads {inp} channels but its input has {in_channels}"
                )));
            }
            filters.push(
                u16::try_from(out)
                    .map_err(|_| graph(format!("Conv `{node}` has {out} filters, too many")))?,
            );
            layers.push(FloatLayer {
                weight: weight.values.clone(),
                bias: bias.clone().unwrap_or_else(|| vec![0.0; out]),
            });
            in_channels = out;
        }
        let filters = Filters::new(&filters).ok_or_else(|| {
            graph(format!(
                "the graph has {} conv blocks; tinycnn supports 1 to {}",
                filters.len(),
                tinycnn::MAX_BLOCKS
            ))
        })?;
        Ok((filters, layers))
    }
}

/// The dense layers' float parameters, appended to `layers`, checked against `arch`: fc1's
/// columns come in tch's CHW order whatever the graph's flatten order. Returns the notes on
/// the flatten order.
fn dense_layers(
    arch: &Arch,
    dense: &[&Layer],
    input_order: &[char],
    layers: &mut Vec<FloatLayer>,
) -> Result<Vec<String>, OnnxImportError> {
    let graph = |m: String| OnnxImportError::Graph(m);
    let mut notes = Vec::new();
    for (i, l) in dense.iter().enumerate() {
        let Layer::Dense {
            node,
            weight,
            outputs,
            inputs,
            bias,
            flatten,
            ..
        } = l
        else {
            unreachable!()
        };
        let spec = arch.layer(arch.blocks() + i);
        if *inputs != spec.fan_in {
            return Err(graph(format!(
                "`{node}` reads {inputs} values; the conv blocks give {}",
                spec.fan_in
            )));
        }
        let weight = match flatten {
            Some(order) => {
                let flatten: String = order.iter().collect();
                notes.push(format!(
                    "input layout {}, flatten order {flatten}{}",
                    input_order.iter().collect::<String>(),
                    if flatten == "CHW" {
                        ""
                    } else {
                        ": fc1's columns are permuted to CHW"
                    }
                ));
                to_chw_columns(arch, weight, *outputs, *order)
            }
            None if i == 0 => {
                return Err(graph(format!(
                    "`{node}` does not read a Flatten or Reshape"
                )))
            }
            None => weight.clone(),
        };
        layers.push(FloatLayer {
            weight,
            bias: bias.clone().unwrap_or_else(|| vec![0.0; *outputs]),
        });
    }
    Ok(notes)
}

/// fc1's `[out, in]` weight with its columns in the flatten `order` (a permutation of C, H, W)
/// rearranged to tch's CHW order.
fn to_chw_columns(arch: &Arch, weight: &[f32], outputs: usize, order: [char; 3]) -> Vec<f32> {
    let last = arch.blocks() - 1;
    let (h, w) = arch.block_output_hw(last);
    let c = arch.block_out_channels(last);
    let size = |axis: char| match axis {
        'C' => c,
        'H' => h,
        _ => w,
    };
    let inputs = c * h * w;
    let mut out = vec![0f32; weight.len()];
    for ci in 0..c {
        for hi in 0..h {
            for wi in 0..w {
                let index = |axis: char| match axis {
                    'C' => ci,
                    'H' => hi,
                    _ => wi,
                };
                let src = (index(order[0]) * size(order[1]) + index(order[1])) * size(order[2])
                    + index(order[2]);
                let dst = (ci * h + hi) * w + wi;
                for o in 0..outputs {
                    out[o * inputs + dst] = weight[o * inputs + src];
                }
            }
        }
    }
    out
}
