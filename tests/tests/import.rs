//! `tinycnn import` of float ONNX graphs in the layouts other exporters write, and its errors
//! on malformed or unsupported files (exit codes and messages, never a panic).
//!
//! The graphs are derived from tinycnn's own float ONNX export (PyTorch's layout: NCHW input,
//! Flatten, Gemm with transB) by rewriting it the way tf2onnx writes a Keras model: NHWC input
//! with a Transpose, a Transpose to NHWC before the Flatten (so fc1's columns are in HWC order),
//! MatMul + Add instead of Gemm, and a final Softmax. Both must import to the same blob.
use std::path::Path;

use prost::Message;
use tinycnn::Arch;
use tinycnn_host::export::onnx::{attr_ints, float_model, node};
use tinycnn_host::import::{import_command, ImportArgs};
use tinycnn_host::quant::{float_params, PtqArgs};
use tinycnn_tests::fixtures::{assert_fails_with, fashion_small, scratch_dir, tinycnn};
use tinycnn_tests::onnx_fixtures::random_net;
use tract_onnx::pb;

fn labels(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("train"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// tinycnn's float ONNX of a random fashion net.
fn pytorch_style(data: &Path) -> pb::ModelProto {
    let (_vs, net) = random_net(&Arch::fashion(), 3);
    let bytes =
        tinycnn_host::export::onnx::to_bytes(&float_model(&float_params(&net, &labels(data))));
    pb::ModelProto::decode(bytes.as_slice()).unwrap()
}

fn f32s(t: &pb::TensorProto) -> Vec<f32> {
    t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The same network as tf2onnx writes a Keras model: NHWC input, HWC flatten, MatMul + Add,
/// Softmax at the end.
fn keras_style(model: &pb::ModelProto) -> pb::ModelProto {
    let arch = Arch::fashion();
    let mut m = model.clone();
    let g = m.graph.as_mut().unwrap();
    let input = g.input[0].name.clone();
    // NHWC graph input.
    if let Some(pb::type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_mut().unwrap().value.as_mut()
    {
        let d = &mut t.shape.as_mut().unwrap().dim;
        d.swap(1, 2);
        d.swap(2, 3);
    }
    let mut nodes = vec![node(
        "Transpose",
        "to_nchw",
        &[&input],
        vec![attr_ints("perm", &[0, 3, 1, 2])],
    )];
    let fc_names: Vec<String> = g
        .node
        .iter()
        .filter(|n| n.op_type == "Gemm")
        .map(|n| n.name.clone())
        .collect();
    let (h, w) = arch.block_output_hw(arch.blocks() - 1);
    let c = arch.block_out_channels(arch.blocks() - 1);
    for n in &g.node {
        let mut n = n.clone();
        for i in n.input.iter_mut() {
            if *i == input {
                *i = "to_nchw".into();
            }
        }
        match n.op_type.as_str() {
            "Flatten" => {
                nodes.push(node(
                    "Transpose",
                    "to_nhwc",
                    &[&n.input[0]],
                    vec![attr_ints("perm", &[0, 2, 3, 1])],
                ));
                n.input[0] = "to_nhwc".into();
                nodes.push(n);
            }
            "Gemm" => {
                // B [out, in] with transB: write it as [in, out] for MatMul, fc1's rows in HWC order.
                let b = g
                    .initializer
                    .iter_mut()
                    .find(|t| t.name == n.input[1])
                    .unwrap();
                let (outs, ins) = (b.dims[0] as usize, b.dims[1] as usize);
                let values = f32s(b);
                let fc1 = n.name == fc_names[0];
                let mut t = vec![0f32; values.len()];
                for o in 0..outs {
                    for i in 0..ins {
                        // i indexes CHW; its HWC position:
                        let j = if fc1 {
                            let (ci, rest) = (i / (h * w), i % (h * w));
                            rest * c + ci
                        } else {
                            i
                        };
                        t[j * outs + o] = values[o * ins + i];
                    }
                }
                b.dims = vec![ins as i64, outs as i64];
                b.raw_data = t.iter().flat_map(|v| v.to_le_bytes()).collect();
                let matmul = format!("{}_matmul", n.name);
                nodes.push(node("MatMul", &matmul, &[&n.input[0], &n.input[1]], vec![]));
                let mut add = node("Add", &n.name, &[&matmul, &n.input[2]], vec![]);
                add.output = n.output.clone();
                nodes.push(add);
            }
            _ => nodes.push(n),
        }
    }
    let logits = g.output[0].name.clone();
    let mut softmax = node("Softmax", "probabilities", &[&logits], vec![]);
    softmax.output = vec!["probabilities".into()];
    nodes.push(softmax);
    g.output[0].name = "probabilities".into();
    g.node = nodes;
    m
}

fn write(dir: &Path, name: &str, model: &pb::ModelProto) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn import(path: &Path, out: &Path, data: &Path) -> anyhow::Result<Vec<u8>> {
    import_command(&ImportArgs {
        model: path.to_path_buf(),
        out: out.to_path_buf(),
        calibrate: Some(data.join("train")),
        ptq: PtqArgs {
            calib_images: 200,
            seed: 1,
            weight_bits: "int8".into(),
        },
    })
}

#[test]
fn keras_layout_onnx_imports_to_the_same_blob_as_pytorch_layout() {
    let data = fashion_small();
    let dir = scratch_dir("import-layouts").unwrap();
    let pytorch = pytorch_style(&data);
    let keras = keras_style(&pytorch);
    let a = import(
        &write(&dir, "pytorch.onnx", &pytorch),
        &dir.join("a.tcnn"),
        &data,
    )
    .unwrap();
    let b = import(
        &write(&dir, "keras.onnx", &keras),
        &dir.join("b.tcnn"),
        &data,
    )
    .unwrap();
    assert!(
        a == b,
        "NHWC/MatMul import differs from the NCHW/Gemm import"
    );
    let model = tinycnn::Model::from_bytes(&a).unwrap();
    assert_eq!(model.arch, Arch::fashion());
}

#[test]
fn import_refuses_bad_models_with_advice() {
    let data = fashion_small();
    let dir = scratch_dir("import-errors").unwrap();
    let train = data.join("train");
    let train = train.to_str().unwrap();
    let out = dir.join("out.tcnn");
    let out = out.to_str().unwrap();
    let run = |model: &Path, calibrate: bool| {
        let mut args = vec!["import", model.to_str().unwrap(), "--out", out];
        if calibrate {
            args.extend(["--calibrate", train]);
        }
        let output = tinycnn(&args);
        assert_ne!(output.status.code(), Some(101), "tinycnn panicked");
        output
    };
    let pytorch = pytorch_style(&data);

    // A float model without calibration data.
    let float = write(&dir, "float.onnx", &pytorch);
    assert_fails_with(
        &run(&float, false),
        &["the model is float", "--calibrate DIR"],
    );

    // An op the architecture does not have.
    let mut sigmoid = pytorch.clone();
    let g = sigmoid.graph.as_mut().unwrap();
    g.node
        .iter_mut()
        .find(|n| n.op_type == "Relu")
        .unwrap()
        .op_type = "Sigmoid".into();
    assert_fails_with(
        &run(&write(&dir, "sigmoid.onnx", &sigmoid), true),
        &["(Sigmoid)", "not supported", "MaxPool 2x2"],
    );

    // A 5x5 kernel.
    let mut k5 = pytorch.clone();
    let g = k5.graph.as_mut().unwrap();
    let conv = g.node.iter().find(|n| n.op_type == "Conv").unwrap().input[1].clone();
    let w = g.initializer.iter_mut().find(|t| t.name == conv).unwrap();
    w.dims[2] = 5;
    w.dims[3] = 5;
    w.raw_data = vec![0; (w.dims.iter().product::<i64>() * 4) as usize];
    assert_fails_with(
        &run(&write(&dir, "k5.onnx", &k5), true),
        &["only 3x3 kernels are supported"],
    );

    // Truncated files: ONNX and .tflite.
    let bytes = std::fs::read(&float).unwrap();
    let cut = dir.join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails_with(&run(&cut, true), &["importing", "cut.onnx"]);
    let mut owned = tinycnn::OwnedModel::random(Arch::fashion(), 2);
    tinycnn_tflite::make_scales_consistent(&mut owned);
    let blob = owned.to_bytes().unwrap();
    let tflite = tinycnn_tflite::to_tflite(&tinycnn::Model::from_bytes(&blob).unwrap()).unwrap();
    let cut = dir.join("cut.tflite");
    std::fs::write(&cut, &tflite[..tflite.len() / 3]).unwrap();
    assert_fails_with(&run(&cut, false), &["cut.tflite", "truncated or corrupt"]);

    // A missing file.
    assert_fails_with(
        &run(&dir.join("missing.tflite"), false),
        &["missing.tflite"],
    );
    assert!(!Path::new(out).exists(), "a failed import wrote {out}");
}

/// The ONNX reader on corrupted files: every result is a value or an error, never a panic.
/// Mutations: byte flips, truncations, and mutated initializer shapes and attributes through
/// the protobuf types, so that many cases decode and reach the graph checks.
#[test]
fn onnx_reader_never_panics_on_corrupt_files() {
    use tinycnn_host::import::onnx::read_float_onnx;
    let data = fashion_small();
    let model = pytorch_style(&data);
    let bytes = model.encode_to_vec();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let (mut ok, mut refused) = (0, 0);
    for case in 0..3000 {
        let candidate = if case % 2 == 0 {
            let mut b = bytes.clone();
            for _ in 0..1 + next(8) {
                let i = next(b.len());
                b[i] = next(256) as u8;
            }
            b.truncate(b.len() - next(b.len() / 4 + 1));
            b
        } else {
            let mut m = model.clone();
            let g = m.graph.as_mut().unwrap();
            let i = next(g.initializer.len());
            let t = &mut g.initializer[i];
            if !t.dims.is_empty() {
                let d = next(t.dims.len());
                t.dims[d] = next(9) as i64 - 2;
            }
            let n = next(g.node.len());
            if let Some(a) = g.node[n].attribute.first_mut() {
                for v in a.ints.iter_mut() {
                    *v = next(5) as i64 - 1;
                }
            }
            if next(4) == 0 {
                let n = next(g.node.len());
                g.node.remove(n);
            }
            m.encode_to_vec()
        };
        match read_float_onnx(&candidate) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    println!("ONNX reader fuzz: 3000 cases, {ok} read, {refused} refused");
    assert!(refused > 0);
}
