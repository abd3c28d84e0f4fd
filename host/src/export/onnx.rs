//! ONNX export, written from Rust with `tract_onnx::pb`'s prost types (opset 13).
//!
//! - [`float_model`]: the float network as tch computes it: NCHW input `p/255`, Conv (SAME) ->
//!   MaxPool 2x2/2 -> Relu per block, NCHW Flatten, Gemm -> Relu -> Gemm, float logits.
//! - [`qdq_model`]: the int8 blob as a quantized graph: QuantizeLinear of the input (1/255, -128),
//!   then per layer ConvInteger / MatMulInteger on int8 activations and int8 weights (input zero
//!   point, weight zero point 0) plus the int32 bias, DequantizeLinear of the int32 accumulator
//!   with the per-channel scale `s_in * s_w[c]` (axis 1), MaxPool and Relu in float, and
//!   QuantizeLinear with the layer's output scale and zero point. The accumulators are exact
//!   integers as in `shared`; only the requantization is float (round half to even) where
//!   `shared` uses TFLite's fixed point, hence the +-1 LSB tolerance. The output `logits` is
//!   dequantized; `round(logits / s) + zp` recovers the int8 logits.
//!
//! SAME max-pooling of an odd size pads one element at the end (`pads`), which ONNX MaxPool
//! ignores in the maximum, like TensorFlow's SAME and tch's `ceil_mode`.
use prost::Message;
use tinycnn::blob::{OwnedLayer, OwnedModel, QuantParams};
use tinycnn::{Arch, LayerKind, LayerSpec};
use tinycnn_runtime::tract::{METADATA_ARCH, METADATA_LABELS};
use tract_onnx::pb;

use crate::export::{conv, dense, FloatParams};

/// ONNX opset the graphs target (per-axis DequantizeLinear needs 13).
pub const OPSET: i64 = 13;
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "logits";
#[derive(Default)]
struct Graph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

/// The attribute `name` holding the integer list `ints`.
pub fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// The node `name` running `op` on `inputs`; its one output is named like the node.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![name.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn value_info(
    name: &str,
    elem_type: pb::tensor_proto::DataType,
    dims: &[Option<i64>],
) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => Value::DimValue(*v),
                None => Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An element type of ONNX initializers: its tensor data type and its little-endian bytes.
trait Element: Copy {
    const DATA_TYPE: pb::tensor_proto::DataType;
    fn push_le_bytes(self, raw: &mut Vec<u8>);
}

macro_rules! element {
    ($($t:ty => $data_type:ident),*) => {$(
        impl Element for $t {
            const DATA_TYPE: pb::tensor_proto::DataType = pb::tensor_proto::DataType::$data_type;
            fn push_le_bytes(self, raw: &mut Vec<u8>) {
                raw.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

element!(f32 => Float, i8 => Int8, i32 => Int32);

impl Graph {
    /// Adds the initializer `name` of shape `dims` holding `v`; returns its name.
    fn initializer<T: Element>(&mut self, name: String, dims: &[usize], v: &[T]) -> String {
        let mut raw = Vec::with_capacity(std::mem::size_of_val(v));
        for &x in v {
            x.push_le_bytes(&mut raw);
        }
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            data_type: T::DATA_TYPE as i32,
            dims: dims.iter().map(|&d| d as i64).collect(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    fn node(
        &mut self,
        op: &str,
        name: String,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) -> String {
        self.nodes.push(node(op, &name, inputs, attrs));
        name
    }

    /// Conv 3x3 SAME -> MaxPool 2x2/2 SAME -> Relu on NCHW input of spatial size `(h, w)`.
    fn conv_block(
        &mut self,
        name: &str,
        x: &str,
        weight: &str,
        bias: &str,
        (h, w): (usize, usize),
    ) -> String {
        let c = self.node(
            "Conv",
            format!("{name}.conv"),
            &[x, weight, bias],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("strides", &[1, 1]),
            ],
        );
        let p = self.max_pool(name, &c, (h, w));
        self.node("Relu", format!("{name}.relu"), &[&p], vec![])
    }

    /// MaxPool 2x2/2 SAME on an NCHW map of spatial size `(h, w)`: an odd edge gets an end pad.
    fn max_pool(&mut self, name: &str, x: &str, (h, w): (usize, usize)) -> String {
        self.node(
            "MaxPool",
            format!("{name}.pool"),
            &[x],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[0, 0, (h % 2) as i64, (w % 2) as i64]),
            ],
        )
    }

    /// Flatten to `[batch, features]` (NCHW order).
    fn flatten(&mut self, x: &str) -> String {
        self.node("Flatten", "flatten".into(), &[x], vec![attr_int("axis", 1)])
    }

    fn gemm(&mut self, name: &str, x: &str, weight: &str, bias: &str) -> String {
        self.node(
            "Gemm",
            format!("{name}.gemm"),
            &[x, weight, bias],
            vec![attr_int("transB", 1)],
        )
    }

    fn finish(mut self, arch: &Arch, labels: &[String], doc: &str, output: &str) -> pb::ModelProto {
        // Name the last node's output `logits`.
        let last = self.nodes.last_mut().expect("a graph has nodes");
        debug_assert_eq!(last.output[0], output);
        last.output[0] = OUTPUT_NAME.into();
        let input = value_info(
            INPUT_NAME,
            pb::tensor_proto::DataType::Float,
            &[
                None,
                Some(arch.channels as i64),
                Some(arch.height as i64),
                Some(arch.width as i64),
            ],
        );
        let output = value_info(
            OUTPUT_NAME,
            pb::tensor_proto::DataType::Float,
            &[None, Some(arch.classes as i64)],
        );
        pb::ModelProto {
            ir_version: 7,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "tinycnn".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            metadata_props: vec![
                pb::StringStringEntryProto {
                    key: METADATA_ARCH.into(),
                    value: serde_json::to_string(arch).expect("Arch serializes"),
                },
                pb::StringStringEntryProto {
                    key: METADATA_LABELS.into(),
                    value: serde_json::to_string(labels).expect("labels serialize"),
                },
            ],
            graph: Some(pb::GraphProto {
                name: "tinycnn".into(),
                node: self.nodes,
                initializer: self.initializers,
                input: vec![input],
                output: vec![output],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The float model. Input `input` is `[batch, C, H, W]` float pixels / 255, output `logits` `[batch, classes]`.
pub fn float_model(float: &FloatParams) -> pb::ModelProto {
    let arch = float.arch;
    let mut g = Graph::default();
    let mut x = INPUT_NAME.to_string();
    for (spec, layer) in arch.layers().zip(&float.layers) {
        let name = spec.name;
        let out = spec.outputs;
        let bias = g.initializer(format!("{name}.bias"), &[out], &layer.bias);
        match spec.kind {
            LayerKind::ConvBlock(s) => {
                let dims = [out, s.in_channels, 3, 3];
                let w = g.initializer(format!("{name}.weight"), &dims, &layer.weight);
                x = g.conv_block(name, &x, &w, &bias, (s.height, s.width));
            }
            LayerKind::Dense => {
                if spec.input_hwc.is_some() {
                    x = g.flatten(&x);
                }
                let dims = [out, spec.fan_in];
                let w = g.initializer(format!("{name}.weight"), &dims, &layer.weight);
                x = g.gemm(name, &x, &w, &bias);
                if spec.relu {
                    x = g.node("Relu", format!("{name}.relu"), &[&x], vec![]);
                }
            }
        }
    }
    g.finish(&arch, &float.labels, "tinycnn float model", &x)
}

/// A blob layer's int8 weights in ONNX layout with their dims: conv OIHW, dense `[in, out]`
/// (what MatMulInteger takes), fc1's rows in NCHW flatten order. An int4 layer's values, in
/// [-7, 7], go into the same int8 tensors: exact, and every ONNX runtime reads them (the QDQ
/// graph does not use ONNX's INT4 type).
fn onnx_weights(spec: &LayerSpec, weights: &[i8]) -> (Vec<i8>, Vec<usize>) {
    let out = spec.outputs;
    match (spec.kind, spec.input_hwc) {
        (LayerKind::ConvBlock(s), _) => (
            conv::weights_ohwi_to_oihw(weights, out, s.in_channels),
            vec![out, s.in_channels, 3, 3],
        ),
        (LayerKind::Dense, map) => {
            let n = spec.fan_in;
            let rows = match map {
                Some(hwc) => dense::fc1_columns(weights, out, hwc, dense::FlattenOrder::Hwc),
                None => weights.to_vec(),
            };
            let transposed = (0..n)
                .flat_map(|k| (0..out).map(move |o| (o, k)))
                .map(|(o, k)| rows[o * n + k])
                .collect();
            (transposed, vec![n, out])
        }
    }
}

/// The int8 blob as a QDQ graph (same input and output as [`float_model`]).
pub fn qdq_model(model: &OwnedModel) -> pb::ModelProto {
    let arch = model.arch;
    let mut g = Graph::default();
    let s_in = g.initializer("input.scale".into(), &[], &[model.input.scale]);
    let z_in = g.initializer("input.zero_point".into(), &[], &[model.input.zero_point]);
    let mut x = g.node(
        "QuantizeLinear",
        "input.q".into(),
        &[INPUT_NAME, &s_in, &z_in],
        vec![],
    );
    let mut input = model.input;
    for (spec, layer) in arch.layers().zip(&model.layers) {
        x = g.qdq_layer(&spec, layer, input, &x);
        input = layer.output;
    }
    g.finish(
        &arch,
        &model.labels,
        "tinycnn int8 model as QuantizeLinear/DequantizeLinear",
        &x,
    )
}

impl Graph {
    /// One blob layer on the int8 tensor `x` (zero point `input.zero_point`): integer conv or
    /// matmul into int32 accumulators plus the int32 bias (exact, as in `shared`), dequantized
    /// per channel, then pool and ReLU as the layer has them, then quantized to the layer's
    /// output (and dequantized again for the logits, the graph's float output).
    fn qdq_layer(
        &mut self,
        spec: &LayerSpec,
        layer: &OwnedLayer,
        input: QuantParams,
        x: &str,
    ) -> String {
        let g = self;
        let name = spec.name;
        let out = spec.outputs;
        let (weights, wdims) = onnx_weights(spec, &layer.weights);
        let xz = g.initializer(format!("{name}.x_zero_point"), &[], &[input.zero_point]);
        let wz = g.initializer(format!("{name}.weight_zero_point"), &[], &[0i8]);
        let wq = g.initializer(format!("{name}.weight_q"), &wdims, &weights);
        let acc = match spec.kind {
            LayerKind::ConvBlock(_) => {
                let acc = g.node(
                    "ConvInteger",
                    format!("{name}.conv"),
                    &[x, &wq, &xz, &wz],
                    vec![
                        attr_ints("kernel_shape", &[3, 3]),
                        attr_ints("pads", &[1, 1, 1, 1]),
                    ],
                );
                let bq = g.initializer(format!("{name}.bias_q"), &[out, 1, 1], &layer.bias);
                g.node("Add", format!("{name}.bias_add"), &[&acc, &bq], vec![])
            }
            LayerKind::Dense => {
                let flat = if spec.input_hwc.is_some() {
                    g.flatten(x)
                } else {
                    x.to_string()
                };
                let acc = g.node(
                    "MatMulInteger",
                    format!("{name}.matmul"),
                    &[&flat, &wq, &xz, &wz],
                    vec![],
                );
                let bq = g.initializer(format!("{name}.bias_q"), &[out], &layer.bias);
                g.node("Add", format!("{name}.bias_add"), &[&acc, &bq], vec![])
            }
        };
        // Real values: accumulator times s_in * s_w[c] (per channel, axis 1).
        let acc_scales: Vec<f32> = layer
            .weight_scales
            .iter()
            .map(|&s| (input.scale as f64 * s as f64) as f32)
            .collect();
        let acc_zero_points =
            g.initializer(format!("{name}.acc_zero_point"), &[out], &vec![0i32; out]);
        let acc_scale = g.initializer(format!("{name}.acc_scale"), &[out], &acc_scales);
        let mut y = g.node(
            "DequantizeLinear",
            format!("{name}.dequantize"),
            &[&acc, &acc_scale, &acc_zero_points],
            vec![attr_int("axis", 1)],
        );
        if let LayerKind::ConvBlock(s) = spec.kind {
            y = g.max_pool(name, &y, (s.height, s.width));
        }
        if spec.relu {
            y = g.node("Relu", format!("{name}.relu"), &[&y], vec![]);
        }
        let q = layer.output;
        let s_out = g.initializer(format!("{name}.out.scale"), &[], &[q.scale]);
        let z_out = g.initializer(format!("{name}.out.zero_point"), &[], &[q.zero_point]);
        let mut x = g.node(
            "QuantizeLinear",
            format!("{name}.out.q"),
            &[&y, &s_out, &z_out],
            vec![],
        );
        if spec.is_logits() {
            x = g.node(
                "DequantizeLinear",
                format!("{name}.out.dq"),
                &[&x, &s_out, &z_out],
                vec![],
            );
        }
        x
    }
}

/// Serializes an ONNX model to protobuf bytes.
pub fn to_bytes(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
