//! Forward-pass latency and MAC throughput on the host, random weights, whole-map (`forward`)
//! and streaming (`forward_rows_from`, `<preset>_streaming`) side by side; and the
//! preprocessing of a QVGA RGB565 frame.
//!
//! `cargo bench -p tinycnn --bench forward`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tinycnn::{
    forward, forward_rows_from, preprocess, Arch, Frame, Model, OwnedModel, PixelFormat,
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
        group.bench_function(name, |b| {
            b.iter(|| {
                forward(&model, black_box(&input), &mut scratch, &mut logits);
                black_box(&logits);
            })
        });
        let mut stream = vec![0i8; arch.stream_scratch_len()];
        let mut acc = vec![0i32; arch.stream_acc_len()];
        group.bench_function(format!("{name}_streaming"), |b| {
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

criterion_group!(benches, bench_forward, bench_preprocess);
criterion_main!(benches);
