//! The whole network: no floats, no allocation.

use crate::arch::{BLOCKS, LAYERS};
use crate::blob::{Layer, Model};
use crate::ops::{conv3x3_pool_s8, dense_s8, ConvShape, Requant};

fn requant<'a>(layer: &'a Layer<'a>, input_zero_point: i8, relu: bool) -> Requant<'a, Layer<'a>> {
    Requant {
        params: layer,
        input_zero_point,
        output_zero_point: layer.output().zero_point,
        relu,
    }
}

/// Runs the network on `input` and writes the int8 logits (zero point and scale of fc2's
/// output) to `logits`.
///
/// - `input`: HWC, `model.arch.input_len()` values, zero point -128 (see
///   [`preprocess`](crate::preprocess::preprocess)).
/// - `scratch`: at least `model.arch.scratch_len()` bytes; its contents on entry do not matter.
/// - `logits`: `model.arch.classes` values.
///
/// Memory plan: `scratch` is two ping-pong regions, A (`max(block 0, block 2 output)`) and B
/// (`max(block 1 output, fc_width)`): input -> A -> B -> A -> B -> logits.
///
/// # Panics
/// On a wrong buffer length (a programming error: every size is a `const fn` of the `Arch`).
pub fn forward(model: &Model, input: &[i8], scratch: &mut [i8], logits: &mut [i8]) {
    forward_traced(model, input, scratch, logits, &mut |_, _| {});
}

/// [`forward`], calling `trace(layer, output)` after each layer (0..5: conv1..conv3 blocks
/// with their pooled HWC outputs, fc1, fc2) for parity checks and debugging.
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

    let mut zp = model.input.zero_point;
    for block in 0..BLOCKS {
        let (height, width) = arch.block_input_hw(block);
        let shape = ConvShape {
            height,
            width,
            in_channels: arch.block_in_channels(block),
            out_channels: arch.block_out_channels(block),
        };
        let layer = &model.layers[block];
        let rq = requant(layer, zp, true);
        let out_len = shape.pooled_len();
        // Block 0 reads the input, then blocks ping-pong between A and B.
        let out: &[i8] = match block {
            0 => {
                conv3x3_pool_s8(input, shape, layer.weights(), &rq, &mut a[..out_len]);
                &a[..out_len]
            }
            1 => {
                conv3x3_pool_s8(
                    &a[..shape.input_len()],
                    shape,
                    layer.weights(),
                    &rq,
                    &mut b[..out_len],
                );
                &b[..out_len]
            }
            _ => {
                conv3x3_pool_s8(
                    &b[..shape.input_len()],
                    shape,
                    layer.weights(),
                    &rq,
                    &mut a[..out_len],
                );
                &a[..out_len]
            }
        };
        trace(block, out);
        zp = layer.output().zero_point;
    }

    let fc1 = &model.layers[3];
    let fc_width = arch.fc_width as usize;
    dense_s8(
        &a[..arch.flatten_len()],
        fc1.weights(),
        &requant(fc1, zp, true),
        &mut b[..fc_width],
    );
    trace(3, &b[..fc_width]);
    zp = fc1.output().zero_point;

    let fc2 = &model.layers[LAYERS - 1];
    dense_s8(
        &b[..fc_width],
        fc2.weights(),
        &requant(fc2, zp, false),
        logits,
    );
    trace(4, logits);
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
    let q = model.layers[LAYERS - 1].output();
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
