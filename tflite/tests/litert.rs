//! TFLite's runtimes run our exported `.tflite` and must agree with `tinycnn`.
//!
//! - LiteRT (TFLite's interpreter, `ai-edge-litert` in the project venv, `cargo xtask setup`):
//!   with the reference kernels (BUILTIN_REF) the conv blocks are bit-identical; with every
//!   resolver (also the optimized BUILTIN and the default AUTO, XNNPACK) every layer is within
//!   1 LSB and argmax agrees on >= 99.9% of inputs.
//! - TFLite Micro (`tflite-micro`'s Python interpreter, reference kernels), when
//!   `TINYCNN_TFLM_PYTHON` names a python that has it (an ignored test otherwise): every layer
//!   bit-identical.
//!
//! Both print the count of the runtimes' rounding differences per layer.

mod common;

use std::process::Command;

use tinycnn::{Arch, Model};
use tinycnn_tflite::litert::{compare_outputs, compare_with_litert, RuntimeReport};

const INPUTS: usize = 1000;

/// A random `fashion` blob and 1000 inputs: random, plus the two constant extremes.
fn setup() -> (Vec<u8>, Vec<i8>) {
    let arch = Arch::fashion();
    let blob = common::consistent_model(arch, 42).to_bytes().unwrap();
    let n = arch.input_len();
    let mut inputs: Vec<i8> = common::random_bytes(7, n * INPUTS)
        .into_iter()
        .map(|b| b as i8)
        .collect();
    inputs[..n].fill(-128);
    inputs[n..2 * n].fill(127);
    (blob, inputs)
}

/// Prints `r` and checks: the first `exact` layers bit-identical, every layer within 1 LSB,
/// argmax agreement >= 99.9%.
fn check(r: &RuntimeReport, exact: usize) {
    for (l, d) in r.layers.iter().enumerate() {
        println!(
            "{:>11} {:>6}: {} values on {}/{} inputs differ, max {} LSB",
            r.runtime, d.layer, d.values, d.inputs, r.inputs, d.max_lsb
        );
        if l < exact {
            assert_eq!(
                d.values, 0,
                "{} {} differs from tinycnn",
                r.runtime, d.layer
            );
        }
        assert!(
            d.max_lsb <= 1,
            "{} {} differs by {} LSB",
            r.runtime,
            d.layer,
            d.max_lsb
        );
    }
    println!(
        "{:>11} argmax agreement {}/{}",
        r.runtime, r.argmax_agree, r.inputs
    );
    assert!(
        r.argmax_agree * 1000 >= r.inputs * 999,
        "{} argmax agrees on {}/{}",
        r.runtime,
        r.argmax_agree,
        r.inputs
    );
}

#[test]
fn litert_agrees_with_shared() {
    let python = common::workspace_root().join(".venv/bin/python");
    let (blob, inputs) = setup();
    let model = Model::from_bytes(&blob).unwrap();
    let dir = common::scratch_dir("litert");
    let report =
        compare_with_litert(&python, &model, &inputs, &dir).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "LiteRT {}, {INPUTS} inputs, random fashion model",
        report.version
    );
    let n = model.arch.input_len();
    for r in &report.runtimes {
        // TFLite's optimized kernels requantize with one rounding instead of the reference's
        // two (see the diagnostic below), so only the reference kernels are bit-exact on the
        // conv blocks.
        let reference = r.runtime == "BUILTIN_REF";
        check(r, if reference { 3 } else { 0 });
        assert_eq!(reference, r.conv_blocks_exact());
        if !reference {
            // Diagnostic: how much of the optimized kernels' block 1 a single-rounding
            // requantization reproduces.
            let theirs = std::fs::read(dir.join(r.runtime).join("block1.bin")).unwrap();
            let len = theirs.len() / INPUTS;
            let mut unexplained = 0;
            for (x, t) in inputs.chunks_exact(n).zip(theirs.chunks_exact(len)) {
                let single = block1_single_rounding(&model, x);
                unexplained += single.iter().zip(t).filter(|(&a, &b)| a as u8 != b).count();
            }
            println!(
                "{:>11} block1 with single rounding: {unexplained} of {} values differ",
                r.runtime,
                len * INPUTS
            );
        }
    }
}

#[test]
#[ignore = "needs TINYCNN_TFLM_PYTHON: a python with `pip install tflite-micro`"]
fn tflite_micro_agrees_with_shared() {
    let python = std::env::var_os("TINYCNN_TFLM_PYTHON")
        .expect("set TINYCNN_TFLM_PYTHON to a python that has `pip install tflite-micro`");
    let (blob, inputs) = setup();
    let model = Model::from_bytes(&blob).unwrap();
    let dir = common::scratch_dir("tflm");
    let tflite = dir.join("model.tflite");
    let inputs_path = dir.join("inputs.bin");
    std::fs::write(&tflite, tinycnn_tflite::to_tflite_traced(&model).unwrap()).unwrap();
    std::fs::write(&inputs_path, bytemuck::cast_slice::<i8, u8>(&inputs)).unwrap();
    let status = Command::new(&python)
        .arg(common::workspace_root().join("tflite/litert/run.py"))
        .arg("--tflm")
        .args([&tflite, &inputs_path, &dir])
        .status()
        .expect("run tflite/litert/run.py");
    assert!(
        status.success(),
        "tflite/litert/run.py --tflm failed: {status}"
    );
    let version = std::fs::read_to_string(dir.join("version.txt")).unwrap();
    println!(
        "tflite-micro {}, {INPUTS} inputs, random fashion model",
        version.trim()
    );
    let theirs: Vec<Vec<i8>> = (0..5)
        .map(|l| {
            let bytes = std::fs::read(dir.join("TFLM").join(format!("output{l}.bin"))).unwrap();
            bytes.into_iter().map(|b| b as i8).collect()
        })
        .collect();
    // TFLite Micro's reference kernels requantize FULLY_CONNECTED in fixed point too: every
    // layer is bit-identical.
    let r = compare_outputs(&model, &inputs, "TFLM", &theirs).unwrap();
    check(&r, r.layers.len());
}

/// Requantization with one rounding, ties toward +infinity:
/// `(x * 2^left * m + 2^(s - 1)) >> s` with `s = 31 + right`.
fn requant_single_rounding(x: i32, m: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let total = 31 + (-shift).max(0);
    ((((x as i64) << left) * m as i64 + (1i64 << (total - 1))) >> total) as i32
}

/// Block 1 computed with [`requant_single_rounding`] instead of TFLite's reference
/// double rounding: conv 3x3 SAME, bias, requantize, ReLU clamp, max-pool 2x2 SAME.
fn block1_single_rounding(model: &Model, input: &[i8]) -> Vec<i8> {
    let arch = model.arch;
    let (h, w, cin) = (
        arch.height as usize,
        arch.width as usize,
        arch.channels as usize,
    );
    let layer = &model.layers[0];
    let cout = layer.out_channels();
    let zp_in = model.input.zero_point as i32;
    let zp_out = layer.output().zero_point as i32;
    let conv = |y: usize, x: usize, c: usize| -> i32 {
        let mut acc = layer.bias(c);
        for ky in 0..3 {
            for kx in 0..3 {
                let (iy, ix) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                    continue;
                }
                for ci in 0..cin {
                    let v = input[(iy as usize * w + ix as usize) * cin + ci] as i32 - zp_in;
                    acc += v * layer.weights().get(((c * 3 + ky) * 3 + kx) * cin + ci) as i32;
                }
            }
        }
        let q = requant_single_rounding(acc, layer.multiplier(c), layer.shift(c)) + zp_out;
        q.clamp(zp_out, 127)
    };
    let (ph, pw) = (h.div_ceil(2), w.div_ceil(2));
    let mut out = Vec::with_capacity(ph * pw * cout);
    for py in 0..ph {
        for px in 0..pw {
            for c in 0..cout {
                let mut best = i32::MIN;
                for y in 2 * py..(2 * py + 2).min(h) {
                    for x in 2 * px..(2 * px + 2).min(w) {
                        best = best.max(conv(y, x, c));
                    }
                }
                out.push(best as i8);
            }
        }
    }
    out
}
