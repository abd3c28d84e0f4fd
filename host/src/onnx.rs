//! ONNX export, written from Rust with `tract_onnx::pb`'s prost types (opset 13).
//!
//! - [`float_model`]: the float network as tch computes it: NCHW input `p/255`, Conv (SAME) ->
//!   MaxPool 2x2/2 -> Relu per block, NCHW Flatten, Gemm -> Relu -> Gemm, float logits.
//! - [`qdq_model`]: the int8 blob as a QDQ graph: the input and every layer output go through
//!   QuantizeLinear/DequantizeLinear with the blob's scales and zero points; weights are int8 with
//!   per-output-channel DequantizeLinear, biases int32 with scale `s_in * s_w[c]`. Its output
//!   `logits` is dequantized; `round(logits / s) + zp` recovers the int8 logits.
//!
//! SAME max-pooling of an odd size pads one element at the end (`pads`), which ONNX MaxPool
//! ignores in the maximum, like TensorFlow's SAME and tch's `ceil_mode`.
use prost::Message;
use tinycnn::blob::{OwnedModel, QuantParams};
use tinycnn::Arch;
use tract_onnx::pb;

use crate::export::{conv, dense, layer_dims, FloatParams, LAYER_NAMES};

/// ONNX opset the graphs target (per-axis DequantizeLinear needs 13).
pub const OPSET: i64 = 13;
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "logits";
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

#[derive(Default)]
struct Graph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
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

impl Graph {
    fn tensor(
        &mut self,
        name: String,
        data_type: pb::tensor_proto::DataType,
        dims: &[usize],
        raw: Vec<u8>,
    ) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            data_type: data_type as i32,
            dims: dims.iter().map(|&d| d as i64).collect(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    fn f32s(&mut self, name: String, dims: &[usize], v: &[f32]) -> String {
        self.tensor(
            name,
            pb::tensor_proto::DataType::Float,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    fn i8s(&mut self, name: String, dims: &[usize], v: &[i8]) -> String {
        self.tensor(
            name,
            pb::tensor_proto::DataType::Int8,
            dims,
            v.iter().map(|&x| x as u8).collect(),
        )
    }

    fn i32s(&mut self, name: String, dims: &[usize], v: &[i32]) -> String {
        self.tensor(
            name,
            pb::tensor_proto::DataType::Int32,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    fn node(
        &mut self,
        op: &str,
        name: String,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) -> String {
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name: name.clone(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.clone()],
            attribute: attrs,
            ..Default::default()
        });
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
        let p = self.node(
            "MaxPool",
            format!("{name}.pool"),
            &[&c],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[0, 0, (h % 2) as i64, (w % 2) as i64]),
            ],
        );
        self.node("Relu", format!("{name}.relu"), &[&p], vec![])
    }

    fn gemm(&mut self, name: &str, x: &str, weight: &str, bias: &str) -> String {
        self.node(
            "Gemm",
            format!("{name}.gemm"),
            &[x, weight, bias],
            vec![attr_int("transB", 1)],
        )
    }

    /// QuantizeLinear then DequantizeLinear with per-tensor parameters `q`.
    fn qdq(&mut self, name: &str, x: &str, q: QuantParams) -> String {
        let s = self.f32s(format!("{name}.scale"), &[], &[q.scale]);
        let z = self.i8s(format!("{name}.zero_point"), &[], &[q.zero_point]);
        let quantized = self.node("QuantizeLinear", format!("{name}.q"), &[x, &s, &z], vec![]);
        self.node(
            "DequantizeLinear",
            format!("{name}.dq"),
            &[&quantized, &s, &z],
            vec![],
        )
    }

    /// Per-output-channel DequantizeLinear of a constant (axis 0).
    fn dequantize_per_channel(
        &mut self,
        name: &str,
        q: String,
        scales: &[f32],
        zero_point: String,
    ) -> String {
        let s = self.f32s(format!("{name}.scale"), &[scales.len()], scales);
        self.node(
            "DequantizeLinear",
            format!("{name}.dq"),
            &[&q, &s, &zero_point],
            vec![attr_int("axis", 0)],
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
    let dims = layer_dims(&arch);
    let mut g = Graph::default();
    let mut x = INPUT_NAME.to_string();
    for (b, layer) in float.layers.iter().enumerate().take(3) {
        let (cin, out, _) = dims[b];
        let w = g.f32s(
            format!("{}.weight", LAYER_NAMES[b]),
            &[out, cin, 3, 3],
            &layer.weight,
        );
        let bias = g.f32s(format!("{}.bias", LAYER_NAMES[b]), &[out], &layer.bias);
        x = g.conv_block(LAYER_NAMES[b], &x, &w, &bias, arch.block_input_hw(b));
    }
    x = g.node(
        "Flatten",
        "flatten".into(),
        &[&x],
        vec![attr_int("axis", 1)],
    );
    for i in 3..5 {
        let (cin, out, _) = dims[i];
        let w = g.f32s(
            format!("{}.weight", LAYER_NAMES[i]),
            &[out, cin],
            &float.layers[i].weight,
        );
        let bias = g.f32s(
            format!("{}.bias", LAYER_NAMES[i]),
            &[out],
            &float.layers[i].bias,
        );
        x = g.gemm(LAYER_NAMES[i], &x, &w, &bias);
        if i == 3 {
            x = g.node("Relu", "fc1.relu".into(), &[&x], vec![]);
        }
    }
    g.finish(&arch, &float.labels, "tinycnn float model", &x)
}

/// The int8 blob as a QDQ graph (same input and output as [`float_model`]).
pub fn qdq_model(model: &OwnedModel) -> pb::ModelProto {
    let arch = model.arch;
    let dims = layer_dims(&arch);
    let (ph, pw) = arch.block_output_hw(2);
    let mut g = Graph::default();
    let mut x = g.qdq("input", INPUT_NAME, model.input);
    let mut input_scale = model.input.scale;
    for (i, layer) in model.layers.iter().enumerate() {
        let name = LAYER_NAMES[i];
        let (cin, out, per_out) = dims[i];
        let (weights, wdims): (Vec<i8>, Vec<usize>) = match i {
            0..=2 => (
                conv::weights_ohwi_to_oihw(&layer.weights, out, cin),
                vec![out, cin, 3, 3],
            ),
            3 => (
                dense::fc1_columns_hwc_to_nchw(
                    &layer.weights,
                    out,
                    arch.filters[2] as usize,
                    ph,
                    pw,
                ),
                vec![out, per_out],
            ),
            _ => (layer.weights.clone(), vec![out, per_out]),
        };
        let wq = g.i8s(format!("{name}.weight_q"), &wdims, &weights);
        let wz = g.i8s(format!("{name}.weight_zero_point"), &[out], &vec![0; out]);
        let w = g.dequantize_per_channel(&format!("{name}.weight"), wq, &layer.weight_scales, wz);
        let bias_scales: Vec<f32> = layer
            .weight_scales
            .iter()
            .map(|&s| (input_scale as f64 * s as f64) as f32)
            .collect();
        let bq = g.i32s(format!("{name}.bias_q"), &[out], &layer.bias);
        let bz = g.i32s(format!("{name}.bias_zero_point"), &[out], &vec![0; out]);
        let bias = g.dequantize_per_channel(&format!("{name}.bias"), bq, &bias_scales, bz);
        x = match i {
            0..=2 => g.conv_block(name, &x, &w, &bias, arch.block_input_hw(i)),
            3 => {
                let flat = g.node(
                    "Flatten",
                    "flatten".into(),
                    &[&x],
                    vec![attr_int("axis", 1)],
                );
                let y = g.gemm(name, &flat, &w, &bias);
                g.node("Relu", "fc1.relu".into(), &[&y], vec![])
            }
            _ => g.gemm(name, &x, &w, &bias),
        };
        x = g.qdq(&format!("{name}.out"), &x, layer.output);
        input_scale = layer.output.scale;
    }
    g.finish(
        &arch,
        &model.labels,
        "tinycnn int8 model as QuantizeLinear/DequantizeLinear",
        &x,
    )
}

/// Serializes an ONNX model to protobuf bytes.
pub fn to_bytes(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
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
