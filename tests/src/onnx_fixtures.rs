//! Fixtures for the parity tests: float-consistent random nets and synthetic image sets.
use std::path::PathBuf;

use tch::nn;
use tinycnn::Arch;
use tinycnn_host::data::Dataset;
use tinycnn_host::train::model::Net;

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
        arch: *arch,
        labels: (0..arch.classes).map(|i| format!("class{i}")).collect(),
        pixels,
        targets: (0..count)
            .map(|i| (i % arch.classes as usize) as i64)
            .collect(),
        paths: (0..count)
            .map(|i| PathBuf::from(format!("synthetic-{i}")))
            .collect(),
        skipped: Vec::new(),
    }
}
