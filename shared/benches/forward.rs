//! Forward-pass latency and MAC throughput on the host, random weights, whole-map (`forward`)
//! and streaming (`forward_rows_from`, `<preset>_streaming`) side by side; and the
//! preprocessing of a QVGA RGB565 frame.
//!
//! `cargo bench -p tinycnn --bench forward` runs every kernel level this CPU has
//! (`forward/<preset>/<level>`, `conv_rows_fashion/<level>/{unpinned,pinned}`,
//! `dense_acc_fc1/<level>`; x86_64: portable, avx2, avx512vnni), side by side in one run.
//! `TINYCNN_BENCH_MODEL=run/model.tcnn` adds `forward_model/<level>`: that blob's weights (the
//! model `bench/litert_bench.py --model run/model.tflite` times in LiteRT).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tinycnn::ops::{conv3x3_pool_row, dense_acc, pin_weights, pool_rows, ConvShape, Requant};
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
use tinycnn::ops::{set_kernel_level, KernelLevel};
use tinycnn::{
    forward, forward_rows_from, preprocess, Arch, Frame, Model, OwnedModel, PixelFormat, Weights,
};

fn bench_forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    for (name, arch) in [
        ("fashion", Arch::fashion()),
        ("tutorial", Arch::tutorial(2)),
    ] {
        let bytes = OwnedModel::random(arch, 42)
            .to_bytes()
            .expect("random model encodes");
        let model = Model::from_bytes(&bytes).expect("random model loads");
        let input: Vec<i8> = (0..arch.input_len())
            .map(|i| (i * 31 % 256) as u8 as i8)
            .collect();
        let mut scratch = vec![0i8; arch.scratch_len()];
        let mut logits = vec![0i8; arch.classes as usize];
        // Elements = MACs, so criterion's throughput line reads as MAC/s.
        group.throughput(Throughput::Elements(arch.macs()));
        for level in levels() {
            set_level(level);
            group.bench_function(format!("{name}/{level}"), |b| {
                b.iter(|| {
                    forward(&model, black_box(&input), &mut scratch, &mut logits);
                    black_box(&logits);
                })
            });
            let mut stream = vec![0i8; arch.stream_scratch_len()];
            let mut acc = vec![0i32; arch.stream_acc_len()];
            group.bench_function(format!("{name}_streaming/{level}"), |b| {
                b.iter(|| {
                    forward_rows_from(
                        &model,
                        black_box(&input),
                        &mut stream,
                        &mut acc,
                        &mut logits,
                    );
                    black_box(&logits);
                })
            });
        }
    }
    group.finish();
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
fn levels() -> Vec<&'static str> {
    let available: Vec<_> = KernelLevel::ALL
        .into_iter()
        .filter(|l| l.is_available())
        .collect();
    for l in KernelLevel::ALL {
        if !available.contains(&l) {
            eprintln!("skipping kernel level `{l}`: this CPU lacks it");
        }
    }
    available.into_iter().map(KernelLevel::name).collect()
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
fn set_level(name: &str) {
    let level = KernelLevel::from_name(name).expect("a level name");
    set_kernel_level(level).expect("an available level");
}

#[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
fn levels() -> Vec<&'static str> {
    vec!["portable"]
}

#[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
fn set_level(_: &str) {}

/// The conv blocks of `fashion` row by row through the row kernel (as a streaming
/// forward pass runs them), with and without [`pin_weights`] around the pass.
fn bench_conv_rows(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv_rows_fashion");
    let arch = Arch::fashion();
    let bytes = OwnedModel::random(arch, 42)
        .to_bytes()
        .expect("random model encodes");
    let model = Model::from_bytes(&bytes).expect("random model loads");
    let shapes: Vec<ConvShape> = (0..arch.blocks()).map(|b| arch.block_shape(b)).collect();
    let mut maps: Vec<Vec<i8>> = vec![(0..arch.input_len())
        .map(|i| (i * 31 % 256) as u8 as i8)
        .collect()];
    maps.extend(shapes.iter().map(|s| vec![0i8; s.pooled_len()]));
    let weights: Vec<&[i8]> = (0..arch.blocks())
        .map(|b| model.layers[b].weights().as_s8().unwrap())
        .collect();
    let run = |maps: &mut Vec<Vec<i8>>| {
        let mut zp = model.input.zero_point;
        for (b, s) in shapes.iter().enumerate() {
            let layer = &model.layers[b];
            let rq = Requant::for_layer(layer, zp, true);
            let (done, rest) = maps.split_at_mut(b + 1);
            let row = s.row();
            let out_rows = rest[0].chunks_exact_mut(row.pooled_row_len());
            for (py, out) in out_rows.enumerate() {
                let rows = pool_rows(&done[b], s.height, row.input_row_len(), py);
                conv3x3_pool_row(rows, row, layer.weights(), &rq, out);
            }
            zp = layer.output().zero_point;
        }
    };
    for level in levels() {
        set_level(level);
        group.bench_function(format!("{level}/unpinned"), |b| {
            b.iter(|| run(black_box(&mut maps)))
        });
        group.bench_function(format!("{level}/pinned"), |b| {
            b.iter(|| pin_weights(&weights, || run(black_box(&mut maps))))
        });
    }
    group.finish();
}

/// fc1 of `tutorial` alone (16384 inputs x 128 outputs, 2 MiB of weights) at each level.
fn bench_dense(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_acc_fc1");
    let (n, out) = (16384, 128);
    let input: Vec<i8> = (0..n).map(|i| (i * 31 % 256) as u8 as i8).collect();
    let weights: Vec<i8> = (0..n * out)
        .map(|i| ((i * 17 % 255) as i32 - 127) as i8)
        .collect();
    group.throughput(Throughput::Bytes(weights.len() as u64));
    for level in levels() {
        set_level(level);
        group.bench_function(level, |b| {
            b.iter(|| {
                let mut acc = [0i32; 128];
                dense_acc(black_box(&input), Weights::S8(&weights), 0, n, -7, &mut acc);
                black_box(acc)
            })
        });
    }
    group.finish();
}

/// A QVGA RGB565 camera frame (what the firmware sees) to each preset's input.
fn bench_preprocess(c: &mut Criterion) {
    let mut group = c.benchmark_group("preprocess_qvga_rgb565");
    let data: Vec<u8> = (0..320 * 240 * 2).map(|i| (i * 7 % 251) as u8).collect();
    let frame = Frame::new(&data, 320, 240, PixelFormat::Rgb565Le).expect("QVGA frame");
    for (name, arch) in [
        ("fashion", Arch::fashion()),
        ("tutorial", Arch::tutorial(2)),
    ] {
        let mut out = vec![0i8; arch.input_len()];
        group.throughput(Throughput::Elements(arch.input_len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                preprocess(black_box(&frame), &arch, &mut out).expect("preprocess");
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// `forward` on the blob named by `$TINYCNN_BENCH_MODEL`, if set, at every kernel level.
fn bench_model_file(c: &mut Criterion) {
    let Some(path) = std::env::var_os("TINYCNN_BENCH_MODEL") else {
        return;
    };
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("TINYCNN_BENCH_MODEL={}: {e}", path.to_string_lossy()));
    let model = Model::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("TINYCNN_BENCH_MODEL={}: {e}", path.to_string_lossy()));
    let arch = model.arch;
    let input: Vec<i8> = (0..arch.input_len())
        .map(|i| (i * 31 % 256) as u8 as i8)
        .collect();
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    let mut group = c.benchmark_group("forward_model");
    group.throughput(Throughput::Elements(arch.macs()));
    for level in levels() {
        set_level(level);
        group.bench_function(level, |b| {
            b.iter(|| {
                forward(&model, black_box(&input), &mut scratch, &mut logits);
                black_box(&logits);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_forward,
    bench_model_file,
    bench_conv_rows,
    bench_dense,
    bench_preprocess
);
criterion_main!(benches);
