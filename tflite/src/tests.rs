//! Import of edited graphs: the layouts TensorFlow's converter emits, and files that must be
//! refused with a message naming the operator, the tensor and the problem.

use tinycnn::{Arch, Model, OwnedModel};

use crate::export::{build_graph, derived_multiplier, serialize, Graph, Options};
use crate::{fb, from_tflite, make_scales_consistent, ImportError};

/// An edit of an exported graph.
type Edit = Box<dyn Fn(&mut Graph)>;

fn model(seed: u64) -> OwnedModel {
    let mut owned = OwnedModel::random(Arch::fashion(), seed);
    make_scales_consistent(&mut owned);
    owned
}

fn graph(owned: &OwnedModel) -> Graph {
    let blob = owned.to_bytes().unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    build_graph(&model, false).unwrap()
}

fn tensor(g: &Graph, name: &str) -> usize {
    g.tensors.iter().position(|t| t.name == name).unwrap()
}

/// An operator of `code` from tensor `input` to tensor `output`.
fn op(code: u32, input: i32, output: i32, options: Options) -> crate::export::OpSpec {
    crate::export::OpSpec {
        code,
        inputs: vec![input],
        outputs: vec![output],
        options,
    }
}

fn import(g: &Graph) -> OwnedModel {
    from_tflite(&serialize(g)).unwrap()
}

fn import_err(g: &Graph) -> String {
    match from_tflite(&serialize(g)) {
        Ok(_) => panic!("the edited graph imported"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not mention {p:?}");
    }
}

/// Sets operator `op`'s fused activation (conv, pool or FC options).
fn set_act(g: &mut Graph, op: usize, relu: bool) {
    match &mut g.ops[op].options {
        Options::Conv { relu: r, .. }
        | Options::FullyConnected { relu: r }
        | Options::Pool { relu: r } => *r = relu,
        Options::Reshape { .. } | Options::None => panic!("no activation on op {op}"),
    }
}

fn code(g: &mut Graph, code: fb::BuiltinOperator) -> u32 {
    if let Some(i) = g.codes.iter().position(|&(c, _)| c == code) {
        return i as u32;
    }
    g.codes.push((code, 1));
    (g.codes.len() - 1) as u32
}

/// Inserts a RELU after the tensor `name` (same quantization), rewiring its readers.
fn insert_relu(g: &mut Graph, name: &str) {
    let t = tensor(g, name) as i32;
    let q = g.tensors[t as usize].quant.as_ref().unwrap();
    let q = tinycnn::QuantParams {
        scale: q.scale[0],
        zero_point: q.zero_point[0] as i8,
    };
    let shape: Vec<usize> = g.tensors[t as usize]
        .shape
        .iter()
        .map(|&d| d as usize)
        .collect();
    let relu = g.activation(format!("{name}/relu"), &shape, q);
    let writer = g.ops.iter().position(|o| o.outputs == [t]).unwrap();
    for op in &mut g.ops {
        for i in &mut op.inputs {
            if *i == t {
                *i = relu;
            }
        }
    }
    let c = code(g, fb::BuiltinOperator::RELU);
    g.ops.insert(writer + 1, op(c, t, relu, Options::None));
}

#[test]
fn converter_layouts_import_to_the_same_blob() {
    let owned = model(5);
    let blob = owned.to_bytes().unwrap();
    // conv ops are 0, 2, 4 and pools 1, 3, 5; fc1 is op 7.
    type Variant = (&'static str, fn(&mut Graph));
    let variants: [Variant; 4] = [
        (
            "CONV_2D without activation, MAX_POOL_2D with fused RELU",
            |g| {
                for b in 0..3 {
                    set_act(g, 2 * b, false);
                    set_act(g, 2 * b + 1, true);
                }
            },
        ),
        ("RELU as its own op after MAX_POOL_2D, and after fc1", |g| {
            for b in 0..3 {
                set_act(g, 2 * b, false);
            }
            set_act(g, 7, false);
            for name in ["block1", "block2", "block3", "fc1"] {
                insert_relu(g, name);
            }
        }),
        ("RELU as its own op between CONV_2D and MAX_POOL_2D", |g| {
            for b in 0..3 {
                set_act(g, 2 * b, false);
            }
            for name in ["conv1", "conv2", "conv3"] {
                insert_relu(g, name);
            }
        }),
        (
            "FULLY_CONNECTED reading the 4-D pool output, no RESHAPE",
            |g| {
                let flatten = tensor(g, "flatten") as i32;
                let block3 = tensor(g, "block3") as i32;
                g.ops.remove(6);
                g.ops[6].inputs[0] = block3;
                assert_ne!(flatten, block3);
            },
        ),
    ];
    for (what, edit) in variants {
        let mut g = graph(&owned);
        edit(&mut g);
        let imported = from_tflite(&serialize(&g)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(imported.to_bytes().unwrap(), blob, "{what}");
    }
}

#[test]
fn per_tensor_weights_import() {
    let mut owned = model(6);
    // One scale per layer, multipliers derived as TFLite does.
    let mut input_scale = owned.input.scale;
    for layer in &mut owned.layers {
        let s = layer.weight_scales[0];
        for c in 0..layer.weight_scales.len() {
            layer.weight_scales[c] = s;
            let (m, sh) = derived_multiplier(input_scale, s, layer.output.scale);
            layer.multiplier[c] = m;
            layer.shift[c] = sh as i8;
        }
        input_scale = layer.output.scale;
    }
    let mut g = graph(&owned);
    for t in &mut g.tensors {
        if t.name.ends_with("/weights") || t.name.ends_with("/bias") {
            let q = t.quant.as_mut().unwrap();
            q.scale.truncate(1);
            q.zero_point.truncate(1);
        }
    }
    assert_eq!(import(&g), owned);
}

#[test]
fn float_input_with_quantize_and_trailing_softmax_dequantize() {
    let owned = model(7);
    let mut g = graph(&owned);
    let input = g.tensor(
        "float_input".into(),
        &[1, 28, 28, 1],
        fb::TensorType::FLOAT32,
        None,
        None,
    );
    let logits = *g.outputs.first().unwrap();
    let probs_q = tinycnn::QuantParams {
        scale: 1.0 / 256.0,
        zero_point: -128,
    };
    let probs = g.activation("probs".into(), &[1, 10], probs_q);
    let out = g.tensor(
        "float_output".into(),
        &[1, 10],
        fb::TensorType::FLOAT32,
        None,
        None,
    );
    let (quantize, softmax, dequantize) = (
        code(&mut g, fb::BuiltinOperator::QUANTIZE),
        code(&mut g, fb::BuiltinOperator::SOFTMAX),
        code(&mut g, fb::BuiltinOperator::DEQUANTIZE),
    );
    let relu = Options::None;
    g.ops.insert(0, op(quantize, input, 0, relu));
    for (c, i, o) in [(softmax, logits, probs), (dequantize, probs, out)] {
        g.ops.push(op(c, i, o, Options::None));
    }
    g.inputs = vec![input];
    g.outputs = vec![out];
    assert_eq!(import(&g), owned);
}

#[test]
fn missing_labels_metadata_gives_numbered_labels() {
    let owned = model(8);
    let mut g = graph(&owned);
    g.labels_buffer = None;
    let mut imported = import(&g);
    assert_eq!(imported.labels[3], "class3");
    imported.labels = owned.labels.clone();
    assert_eq!(imported, owned);
}

#[test]
fn refused_files_name_the_problem() {
    let owned = model(9);
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "a wrong op",
            Box::new(|g| {
                g.ops[1].code = code(g, fb::BuiltinOperator::AVERAGE_POOL_2D);
            }),
            vec![
                "operator 1",
                "AVERAGE_POOL_2D",
                "block1",
                "expected MAX_POOL_2D",
            ],
        ),
        (
            "5x5 kernels",
            Box::new(|g| {
                let w = tensor(g, "conv1/weights");
                g.tensors[w].shape = vec![32, 5, 5, 1];
                let b = g.tensors[w].buffer as usize;
                g.buffers[b] = vec![1; 32 * 25];
            }),
            vec!["operator 0", "CONV_2D", "conv1/weights", "5x5", "3x3"],
        ),
        (
            "a float-only model",
            Box::new(|g| {
                for t in &mut g.tensors {
                    if t.ty == fb::TensorType::INT8
                        || t.ty == fb::TensorType::INT32 && t.name.ends_with("bias")
                    {
                        t.ty = fb::TensorType::FLOAT32;
                        t.quant = None;
                    }
                }
                for t in 0..g.tensors.len() {
                    let b = g.tensors[t].buffer as usize;
                    if b != 0 && g.tensors[t].ty == fb::TensorType::FLOAT32 {
                        let n = g.buffers[b].len()
                            / if g.tensors[t].name.ends_with("bias") {
                                4
                            } else {
                                1
                            };
                        g.buffers[b] = vec![0; 4 * n];
                    }
                }
            }),
            vec!["input", "FLOAT32", "full-integer quantization"],
        ),
        (
            "an input scale other than 1/255",
            Box::new(|g| g.tensors[0].quant.as_mut().unwrap().scale[0] = 1.0 / 128.0),
            vec!["input scale", "1/255", "preprocessing", "refused"],
        ),
        (
            "a pool with other quantization than its conv",
            Box::new(|g| {
                let t = tensor(g, "block2");
                g.tensors[t].quant.as_mut().unwrap().zero_point[0] += 1;
            }),
            vec![
                "operator 3",
                "MAX_POOL_2D",
                "block2",
                "zero point",
                "cannot express",
            ],
        ),
        (
            "a RELU that rescales",
            Box::new(|g| {
                set_act(g, 0, false);
                insert_relu(g, "conv1");
                let t = tensor(g, "conv1/relu");
                g.tensors[t].quant.as_mut().unwrap().scale[0] *= 2.0;
            }),
            vec!["RELU", "conv1/relu", "scale", "cannot express"],
        ),
        (
            "a block without ReLU",
            Box::new(|g| set_act(g, 2, false)),
            vec![
                "operator 3",
                "MAX_POOL_2D",
                "block2",
                "conv block 2 has no ReLU",
            ],
        ),
        (
            "stride 2",
            Box::new(|g| {
                g.ops[0].options = Options::Conv {
                    relu: true,
                    stride: 2,
                };
            }),
            vec!["operator 0", "stride (2, 2)", "stride 1"],
        ),
        (
            "weight zero point",
            Box::new(|g| {
                let t = tensor(g, "fc1/weights");
                g.tensors[t].quant.as_mut().unwrap().zero_point[5] = 3;
            }),
            vec!["FULLY_CONNECTED", "fc1/weights", "zero point 3"],
        ),
        (
            "weights -128",
            Box::new(|g| {
                let t = tensor(g, "conv2/weights");
                let b = g.tensors[t].buffer as usize;
                g.buffers[b][17] = 0x80;
            }),
            vec!["conv2/weights", "weight 17 is -128", "[-127, 127]"],
        ),
        (
            "an op after the logits",
            Box::new(|g| {
                let logits = g.outputs[0];
                let q = tinycnn::QuantParams {
                    scale: 0.1,
                    zero_point: 0,
                };
                let t = g.activation("extra".into(), &[1, 10], q);
                let c = code(g, fb::BuiltinOperator::TANH);
                g.ops.push(op(c, logits, t, Options::None));
                g.outputs = vec![t];
            }),
            vec!["operator 9", "TANH", "after fc2"],
        ),
        (
            "two subgraph outputs",
            Box::new(|g| g.outputs.push(1)),
            vec!["the subgraph has 2 outputs", "one output"],
        ),
        (
            "a missing fc2",
            Box::new(|g| {
                g.ops.pop();
                g.outputs = vec![tensor(g, "fc1") as i32];
            }),
            vec!["the graph ends", "FULLY_CONNECTED (fc2)"],
        ),
        (
            "wrong label count",
            Box::new(|g| {
                let b = g.labels_buffer.unwrap() as usize;
                g.buffers[b] = b"a\nb".to_vec();
            }),
            vec!["tinycnn_labels", "2 labels for 10 classes"],
        ),
        (
            "a weight tensor index out of range",
            Box::new(|g| g.ops[2].inputs[1] = 9999),
            vec!["tensor index 9999 is out of range"],
        ),
    ];
    for (what, edit, parts) in cases {
        let mut g = graph(&owned);
        edit(&mut g);
        let msg = import_err(&g);
        assert_mentions(&msg, &parts);
        println!("{what}: {msg}");
    }
}

#[test]
fn truncated_and_foreign_files() {
    let bytes = serialize(&graph(&model(10)));
    for len in [0, 3, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let msg = from_tflite(&bytes[..len]).unwrap_err().to_string();
        assert!(
            msg.contains("truncated") || msg.contains("TFL3"),
            "{len} bytes: {msg}"
        );
    }
    let blob = model(10).to_bytes().unwrap();
    assert!(matches!(from_tflite(&blob), Err(ImportError::NotTflite)));
}

#[test]
fn int4_layers_are_refused_by_name() {
    let arch = Arch::fashion();
    let bits = tinycnn::parse_weight_bits(&arch, "dense4").unwrap();
    let bytes = OwnedModel::random_bits(arch, &bits, 3).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let err = crate::to_tflite(&model).unwrap_err();
    assert_eq!(err, crate::ExportError::Int4Layer { layer: "fc1" });
    assert_mentions(&err.to_string(), &["fc1", "int4", "--weight-bits int8"]);
}
