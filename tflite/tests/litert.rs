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

use std::path::Path;
use std::process::Command;

use tinycnn::{argmax, Arch, Model};

const INPUTS: usize = 1000;
const RESOLVERS: [&str; 3] = ["BUILTIN_REF", "BUILTIN", "AUTO"];
const LAYERS: [&str; 5] = ["block1", "block2", "block3", "fc1", "logits"];

/// The model, the inputs and `tinycnn::forward_traced`'s outputs for them, with the model
/// exported by `to_tflite_traced` into a scratch folder.
struct Setup {
    blob: Vec<u8>,
    inputs: Vec<u8>,
    ours: Vec<Vec<Vec<i8>>>,
    dir: std::path::PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let arch = Arch::fashion();
        let blob = common::consistent_model(arch, 42).to_bytes().unwrap();
        let model = Model::from_bytes(&blob).unwrap();
        let dir = common::scratch_dir(name);
        let tflite = tinycnn_tflite::to_tflite_traced(&model).unwrap();
        std::fs::write(dir.join("model.tflite"), tflite).unwrap();
        // Random inputs, plus the two constant extremes.
        let n = arch.input_len();
        let mut inputs = common::random_bytes(7, n * INPUTS);
        inputs[..n].fill(0x80);
        inputs[n..2 * n].fill(0x7f);
        std::fs::write(dir.join("inputs.bin"), &inputs).unwrap();
        let ours = inputs
            .chunks_exact(n)
            .map(|x| common::traced(&model, bytemuck::cast_slice(x)))
            .collect();
        Setup {
            blob,
            inputs,
            ours,
            dir,
        }
    }

    fn model(&self) -> Model<'_> {
        Model::from_bytes(&self.blob).unwrap()
    }

    /// Runs `tflite/litert/run.py [flag] model inputs dir` with `python`.
    fn run(&self, python: &Path, flag: Option<&str>) {
        let script = common::workspace_root().join("tflite/litert/run.py");
        let status = Command::new(python)
            .arg(script)
            .args(flag)
            .arg(self.dir.join("model.tflite"))
            .arg(self.dir.join("inputs.bin"))
            .arg(&self.dir)
            .status()
            .expect("run tflite/litert/run.py");
        assert!(status.success(), "tflite/litert/run.py failed: {status}");
    }

    /// Reads `dir/<runtime>/<file>` for each layer.
    fn theirs(&self, runtime: &str, file: impl Fn(usize) -> String) -> Vec<Vec<i8>> {
        (0..LAYERS.len())
            .map(|l| {
                let path = self.dir.join(runtime).join(file(l));
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                bytes.into_iter().map(|b| b as i8).collect()
            })
            .collect()
    }

    /// Prints the differences per layer and checks: the first `exact` layers bit-identical,
    /// every layer within 1 LSB, argmax agreement >= 99.9%.
    fn compare(&self, runtime: &str, theirs: &[Vec<i8>], exact: usize) {
        for (layer, name) in LAYERS.iter().enumerate() {
            let len = self.ours[0][layer].len();
            assert_eq!(theirs[layer].len(), len * INPUTS, "{runtime} {name} length");
            let (mut values, mut inputs, mut max) = (0usize, 0usize, 0i32);
            for (i, o) in self.ours.iter().enumerate() {
                let t = &theirs[layer][i * len..(i + 1) * len];
                let (count, worst) = o[layer]
                    .iter()
                    .zip(t)
                    .map(|(&a, &b)| (a as i32 - b as i32).abs())
                    .filter(|&d| d > 0)
                    .fold((0, 0), |(c, m), d| (c + 1, m.max(d)));
                values += count;
                inputs += usize::from(count > 0);
                max = max.max(worst);
                if layer < exact {
                    assert_eq!(
                        count, 0,
                        "{runtime} {name} differs from tinycnn on input {i}"
                    );
                }
            }
            println!(
                "{runtime:>11} {name:>6}: {values} values on {inputs}/{INPUTS} inputs differ, \
                 max {max} LSB"
            );
            assert!(max <= 1, "{runtime} {name} differs by {max} LSB");
        }
        let classes = self.ours[0][4].len();
        let agree = self
            .ours
            .iter()
            .enumerate()
            .filter(|(i, o)| argmax(&o[4]) == argmax(&theirs[4][i * classes..(i + 1) * classes]))
            .count();
        println!("{runtime:>11} argmax agreement {agree}/{INPUTS}");
        assert!(
            agree * 1000 >= INPUTS * 999,
            "{runtime} argmax agrees on {agree}/{INPUTS}"
        );
    }
}

#[test]
fn litert_agrees_with_shared() {
    let python = common::workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup`, which installs ai-edge-litert into the project venv",
        python.display()
    );
    let setup = Setup::new("litert");
    setup.run(&python, None);
    let version = std::fs::read_to_string(setup.dir.join("version.txt")).unwrap();
    println!(
        "LiteRT {}, {INPUTS} inputs, random fashion model",
        version.trim()
    );
    let model = setup.model();
    let n = model.arch.input_len();
    for resolver in RESOLVERS {
        let theirs = setup.theirs(resolver, |l| format!("{}.bin", LAYERS[l]));
        // TFLite's optimized kernels requantize with one rounding instead of the reference's
        // two (see the diagnostic below), so only the reference kernels are bit-exact on the
        // conv blocks.
        let exact = if resolver == "BUILTIN_REF" { 3 } else { 0 };
        setup.compare(resolver, &theirs, exact);
        if resolver != "BUILTIN_REF" {
            // Diagnostic: how much of the optimized kernels' block 1 a single-rounding
            // requantization reproduces.
            let len = setup.ours[0][0].len();
            let mut unexplained = 0;
            for (i, x) in setup.inputs.chunks_exact(n).enumerate() {
                let single = block1_single_rounding(&model, bytemuck::cast_slice(x));
                let t = &theirs[0][i * len..(i + 1) * len];
                unexplained += single.iter().zip(t).filter(|(a, b)| a != b).count();
            }
            println!(
                "{resolver:>11} block1 with single rounding: {unexplained} of {} values differ",
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
    let setup = Setup::new("tflm");
    setup.run(Path::new(&python), Some("--tflm"));
    let version = std::fs::read_to_string(setup.dir.join("version.txt")).unwrap();
    println!(
        "tflite-micro {}, {INPUTS} inputs, random fashion model",
        version.trim()
    );
    let theirs = setup.theirs("TFLM", |l| format!("output{l}.bin"));
    // TFLite Micro's reference kernels requantize FULLY_CONNECTED in fixed point too: every
    // layer is bit-identical.
    setup.compare("TFLM", &theirs, LAYERS.len());
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
                    acc += v * layer.weights()[((c * 3 + ky) * 3 + kx) * cin + ci] as i32;
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
