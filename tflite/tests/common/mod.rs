//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use tinycnn::{Arch, Model, OwnedModel};

/// A random model whose multipliers follow from its scales by TFLite's rule.
pub fn consistent_model(arch: Arch, seed: u64) -> OwnedModel {
    let mut owned = OwnedModel::random(arch, seed);
    tinycnn_tflite::make_scales_consistent(&mut owned);
    owned
}

/// SplitMix64 bytes, for test inputs.
pub fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// Every layer output of `tinycnn::forward_traced` for one input, in layer order.
pub fn traced(model: &Model, input: &[i8]) -> Vec<Vec<i8>> {
    let mut scratch = vec![0i8; model.arch.scratch_len()];
    let mut logits = vec![0i8; model.arch.classes as usize];
    let mut out = Vec::new();
    tinycnn::forward_traced(model, input, &mut scratch, &mut logits, &mut |_, o| {
        out.push(o.to_vec())
    });
    out
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate is inside the workspace")
        .to_path_buf()
}

/// A fresh scratch directory under the target directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target")
        .join("tflite-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
