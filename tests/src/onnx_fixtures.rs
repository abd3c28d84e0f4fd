//! Fixtures for the parity tests: float-consistent random nets, synthetic image sets, and the
//! int sim and tract QDQ checks against `shared`.
use std::path::PathBuf;

use tch::nn;
use tinycnn::{Arch, OwnedModel};
use tinycnn_host::check::int_sim;
use tinycnn_host::data::{Dataset, ImageList};
use tinycnn_host::quant::int8_inputs;
use tinycnn_host::train::model::Net;
use tinycnn_runtime::tract::{requantize_logits, TractModel};

/// A net with the trainer's random init (deterministic in `seed`).
pub fn random_net(arch: &Arch, seed: i64) -> (nn::VarStore, Net) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let net = Net::new(&vs.root(), arch);
    (vs, net)
}

/// `count` deterministic images with smooth structure (gradients and blobs) rather than pure
/// noise, so activations spread like real ones. Targets cycle through the classes.
pub fn synthetic_dataset(arch: &Arch, count: usize, seed: u64) -> Dataset {
    let (h, w, c) = (
        arch.height as usize,
        arch.width as usize,
        arch.channels as usize,
    );
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let mut pixels = Vec::with_capacity(count * h * w * c);
    for _ in 0..count {
        let (cx, cy, r) = (
            next() * w as f32,
            next() * h as f32,
            2.0 + next() * h as f32 / 2.0,
        );
        let (gx, gy) = (next() - 0.5, next() - 0.5);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                    let blob = if d < r { 0.6 } else { 0.0 };
                    let v = 0.3
                        + gx * x as f32 / w as f32
                        + gy * y as f32 / h as f32
                        + blob
                        + 0.15 * next()
                        + 0.05 * ch as f32;
                    pixels.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
    }
    Dataset {
        list: ImageList {
            arch: *arch,
            labels: (0..arch.classes).map(|i| format!("class{i}")).collect(),
            targets: (0..count)
                .map(|i| (i % arch.classes as usize) as i64)
                .collect(),
            paths: (0..count)
                .map(|i| PathBuf::from(format!("synthetic-{i}")))
                .collect(),
            skipped: Vec::new(),
        },
        pixels,
    }
}

/// Asserts that the int sim of `model` matches `shared` bit for bit on `data`; `what` names the
/// case in the failure message.
pub fn assert_int_sim_bit_exact(model: &OwnedModel, data: &Dataset, what: &str) {
    let sim = int_sim::compare_with_shared(model, &int8_inputs(data)).unwrap();
    assert!(
        sim.first_mismatch.is_none(),
        "{what}: {}",
        sim.first_mismatch.unwrap()
    );
    assert_eq!(sim.mismatched_logits, 0, "{what}");
}

/// The int8 logits of the QDQ ONNX `qdq` (exported from `model`) in tract on `data`, `batch`
/// images per run: tract's float logits requantized with the logits layer's output parameters.
pub fn tract_qdq_logits(model: &OwnedModel, qdq: &[u8], data: &Dataset, batch: usize) -> Vec<i8> {
    let logits = TractModel::from_bytes(qdq, model.arch, batch, "qdq")
        .unwrap()
        .run_u8_hwc(&data.pixels)
        .unwrap();
    requantize_logits(
        &logits,
        model.layers[model.arch.logits_layer().index].output,
    )
}

/// Asserts that every int8 logit of tract on the QDQ model is within `lsb` of `shared`'s
/// (`classes` logits per image); `what` names the case in the failure message.
pub fn assert_qdq_logits_within(tract: &[i8], shared: &[i8], classes: usize, lsb: i32, what: &str) {
    for (i, (a, b)) in tract.iter().zip(shared).enumerate() {
        assert!(
            (*a as i32 - *b as i32).abs() <= lsb,
            "{what}: image {}, index {}: tract QDQ {a} vs shared {b}",
            i / classes,
            i % classes
        );
    }
}
