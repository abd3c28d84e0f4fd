//! The whole network: no floats, no allocation.

use crate::arch::LayerKind;
use crate::blob::{Layer, Model};
use crate::ops::{conv3x3_pool_s8, dense_s8, Requant};

fn requant<'a>(layer: &'a Layer<'a>, input_zero_point: i8, relu: bool) -> Requant<'a, Layer<'a>> {
    Requant {
        params: layer,
        input_zero_point,
        output_zero_point: layer.output().zero_point,
        relu,
    }
}

/// Runs the network on `input` and writes the int8 logits (zero point and scale of the last
/// layer's output) to `logits`.
///
/// - `input`: HWC, `model.arch.input_len()` values, zero point -128 (see
///   [`preprocess`](crate::preprocess::preprocess)).
/// - `scratch`: at least `model.arch.scratch_len()` bytes; its contents on entry do not matter.
/// - `logits`: `model.arch.classes` values.
///
/// Memory plan: `scratch` is two ping-pong regions, A (outputs of even layers) and B (outputs of
/// odd layers): input -> A -> B -> A -> ... -> logits.
///
/// # Panics
/// On a wrong buffer length (a programming error: every size is a `const fn` of the `Arch`).
pub fn forward(model: &Model, input: &[i8], scratch: &mut [i8], logits: &mut [i8]) {
    forward_traced(model, input, scratch, logits, &mut |_, _| {});
}

/// [`forward`], calling `trace(layer, output)` after each layer (in [`Arch::layer`] order: the
/// conv blocks with their pooled HWC outputs, fc1, fc2) for parity checks and debugging.
///
/// [`Arch::layer`]: crate::Arch::layer
pub fn forward_traced(
    model: &Model,
    input: &[i8],
    scratch: &mut [i8],
    logits: &mut [i8],
    trace: &mut dyn FnMut(usize, &[i8]),
) {
    let arch = &model.arch;
    assert_eq!(input.len(), arch.input_len(), "forward: input length");
    assert!(
        scratch.len() >= arch.scratch_len(),
        "forward: scratch is {} bytes, the model needs {}",
        scratch.len(),
        arch.scratch_len()
    );
    assert_eq!(
        logits.len(),
        arch.classes as usize,
        "forward: logits length"
    );
    let (a, rest) = scratch.split_at_mut(arch.scratch_a_len());
    let b = &mut rest[..arch.scratch_b_len()];
    // Layer 0 reads `input`; every later layer reads `src`, the previous layer's output, and
    // writes `dst` (or `logits`), then the two swap. Even layers write A, odd layers B.
    let (mut src, mut dst): (&mut [i8], &mut [i8]) = (b, a);
    let mut zp = model.input.zero_point;
    for (spec, layer) in arch.layers().zip(model.layers.iter()) {
        let x: &[i8] = if spec.index == 0 { input } else { src };
        let x = &x[..spec.input_len()];
        let out: &mut [i8] = if spec.is_logits() {
            &mut *logits
        } else {
            &mut dst[..spec.output_len]
        };
        let rq = requant(layer, zp, spec.relu);
        match spec.kind {
            LayerKind::ConvBlock(shape) => conv3x3_pool_s8(x, shape, layer.weights(), &rq, out),
            LayerKind::Dense => dense_s8(x, layer.weights(), &rq, out),
        }
        trace(spec.index, out);
        zp = layer.output().zero_point;
        core::mem::swap(&mut src, &mut dst);
    }
}

/// Index of the first maximum of `logits` (0 for an empty slice).
pub fn argmax(logits: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// Softmax of the dequantized logits `(q - zp) * scale` (fc2's output quantization) into `out`.
/// Uses floats; runs after [`forward`], not inside it.
///
/// # Panics
/// If `logits` or `out` is not `model.arch.classes` long.
pub fn probabilities(model: &Model, logits: &[i8], out: &mut [f32]) {
    let classes = model.arch.classes as usize;
    assert_eq!(logits.len(), classes, "probabilities: logits length");
    assert_eq!(out.len(), classes, "probabilities: output length");
    let q = model.logits_layer().output();
    let real = |v: i8| (v as i32 - q.zero_point as i32) as f32 * q.scale;
    let max = logits
        .iter()
        .map(|&v| real(v))
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (o, &v) in out.iter_mut().zip(logits) {
        *o = libm::expf(real(v) - max);
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_on_ties() {
        assert_eq!(argmax(&[1, 5, 5, -3]), 1);
        assert_eq!(argmax(&[-128, -128]), 0);
        assert_eq!(argmax(&[3]), 0);
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[-1, 0, 127, 127]), 2);
    }
}
