//! The whole network: no floats, no allocation.
//!
//! Two plans compute the same logits bit for bit:
//! - [`forward`]: whole maps, layer after layer, in two ping-pong scratch regions.
//! - [`forward_rows`]: rows stream through the conv blocks' 4-row rings into fc1's int32
//!   accumulators; about 15 KB of activations for the tutorial net instead of 213 KB.
//!
//! Both call the same kernels, [`conv3x3_pool_row`] and [`dense_acc`], which dispatch on each
//! layer's weight width.

use crate::arch::{Arch, LayerKind, DENSE_LAYERS, MAX_BLOCKS};
use crate::blob::Model;
use crate::ops::{conv3x3_pool, conv3x3_pool_row, dense, dense_acc, ConvShape, PoolRows, Requant};
use core::convert::Infallible;

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
    check_buffer(
        "forward",
        "scratch",
        "bytes",
        scratch.len(),
        arch.scratch_len(),
    );
    check_logits("forward", arch, logits);
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
        let rq = Requant::for_layer(layer, zp, spec.relu);
        match spec.kind {
            LayerKind::ConvBlock(shape) => conv3x3_pool(x, shape, layer.weights(), &rq, out),
            LayerKind::Dense => dense(x, layer.weights(), &rq, out),
        }
        trace(spec.index, out);
        zp = layer.output().zero_point;
        core::mem::swap(&mut src, &mut dst);
    }
}

/// Panics unless a caller's `buffer` (`len` `unit`) holds the `needed` the plan of `pass` uses.
#[track_caller]
fn check_buffer(pass: &str, buffer: &str, unit: &str, len: usize, needed: usize) {
    assert!(
        len >= needed,
        "{pass}: {buffer} is {len} {unit}, the model needs {needed}"
    );
}

#[track_caller]
fn check_logits(pass: &str, arch: &Arch, logits: &[i8]) {
    assert_eq!(logits.len(), arch.classes as usize, "{pass}: logits length");
}

/// The zero point of layer `index`'s input: the model input's for layer 0, else the previous
/// layer's output zero point.
fn input_zero_point(model: &Model, index: usize) -> i8 {
    match index {
        0 => model.input.zero_point,
        i => model.layers[i - 1].output().zero_point,
    }
}

/// The model-input row source of [`forward_rows`]: `(y, row)` writes input row `y` into `row`.
pub type InputRow<'a, E> = dyn FnMut(usize, &mut [i8]) -> Result<(), E> + 'a;

// The streaming plan keeps one hidden vector, fc1's output, which the logits layer reads.
const _: () = assert!(DENSE_LAYERS == 2);

/// Runs the network with rows streaming through it, pulling each model-input row from
/// `input_row`, and writes the int8 logits to `logits`. The logits equal [`forward`]'s bit for
/// bit.
///
/// - `input_row(y, row)`: writes model-input row `y` (HWC, `width * channels` values, zero point
///   -128, as [`preprocess`](crate::preprocess::preprocess) makes) into `row`. It is called for
///   `y = 0, 1, .., height - 1` in that order, once each; its first error stops the pass and is
///   returned.
/// - `scratch`: at least `model.arch.stream_scratch_len()` bytes; `acc`: at least
///   `model.arch.stream_acc_len()` values. Their contents on entry do not matter.
/// - `logits`: `model.arch.classes` values.
///
/// Plan: conv block `b` keeps a ring of [`Arch::RING_ROWS`] of its input rows, the last block's
/// pooled row goes to a row buffer, and fc1 accumulates each such row into `acc` (fc1's
/// columns for pooled row `py` are the contiguous run `py * row_len ..` of the HWC flatten).
/// Rows are pulled: to make row `r` of ring `b` (pooled row `r` of block `b - 1`), ring `b - 1`
/// is first filled up to row `min(2r + 2, H_{b-1} - 1)`, then the row kernel reads rows
/// `2r-1 ..= 2r+2` of it. Integer sums do not depend on order under the validated accumulator
/// bound, so fc1's sums equal the whole-map ones.
///
/// Why 4 rows per ring suffice:
/// 1. Ring `b` receives its rows in increasing order; row `y` lives in slot `y % 4` and is
///    overwritten only by row `y + 4`.
/// 2. Ring `b` is filled only for pooled rows `q` of block `b`, in increasing `q`, each time up
///    to row `min(2q + 2, H_b - 1)`. So while pooled row `q` is computed, the newest row ring
///    `b` has received is at most `2q + 2`.
/// 3. Pooled row `q` reads rows `2q - 1 ..= 2q + 2` (those inside the map): all received, and
///    none overwritten, since that would take a row `>= 2q - 1 + 4 > 2q + 2`.
///
/// Every read also checks that the row it takes is in its slot (`next - 4 <= y < next`), so a
/// violation would panic rather than compute wrong logits.
///
/// # Panics
/// On a wrong buffer length (a programming error: every size is a `const fn` of the `Arch`).
pub fn forward_rows<E>(
    model: &Model,
    input_row: &mut InputRow<'_, E>,
    scratch: &mut [i8],
    acc: &mut [i32],
    logits: &mut [i8],
) -> Result<(), E> {
    let arch = &model.arch;
    let pass = "forward_rows";
    check_buffer(
        pass,
        "scratch",
        "bytes",
        scratch.len(),
        arch.stream_scratch_len(),
    );
    check_buffer(pass, "acc", "values", acc.len(), arch.stream_acc_len());
    check_logits(pass, arch, logits);
    let blocks = arch.blocks();
    let (rings, rest) = scratch.split_at_mut(arch.stream_rings_len());
    let (row, rest) = rest.split_at_mut(arch.stream_row_len());
    let hidden = &mut rest[..arch.fc_width as usize];
    let acc = &mut acc[..arch.stream_acc_len()];
    acc.fill(0);

    let mut stream = Stream {
        model,
        arch,
        rings,
        next: [0; MAX_BLOCKS],
        input_row,
    };
    let last = blocks - 1;
    let last_shape = arch.block_shape(last);
    let fc1_spec = arch.layer(blocks);
    let fc1 = &model.layers[blocks];
    let fc1_zp = input_zero_point(model, blocks) as i32;
    let (out_h, _) = last_shape.pooled_hw();
    for py in 0..out_h {
        stream.fill(last, (2 * py + 2).min(last_shape.height - 1))?;
        stream.pooled_row(last, py, row);
        let first = py * row.len();
        dense_acc(row, fc1.weights(), first, fc1_spec.fan_in, fc1_zp, acc);
    }

    let rq = Requant::for_layer(fc1, fc1_zp as i8, fc1_spec.relu);
    rq.debug_assert_bound(fc1_spec.fan_in, fc1_spec.outputs);
    for (o, (h, &a)) in hidden.iter_mut().zip(acc.iter()).enumerate() {
        *h = rq.apply(o, a);
    }
    let logits_spec = arch.logits_layer();
    let fc2 = &model.layers[logits_spec.index];
    let rq = Requant::for_layer(fc2, input_zero_point(model, logits_spec.index), false);
    dense(hidden, fc2.weights(), &rq, logits);
    Ok(())
}

/// [`forward_rows`] on a model input already in memory (`model.arch.input_len()` values, HWC):
/// the streaming plan the host checks against [`forward`] (parity) without a camera.
///
/// # Panics
/// On a wrong buffer length.
pub fn forward_rows_from(
    model: &Model,
    input: &[i8],
    scratch: &mut [i8],
    acc: &mut [i32],
    logits: &mut [i8],
) {
    let arch = &model.arch;
    assert_eq!(
        input.len(),
        arch.input_len(),
        "forward_rows_from: input length"
    );
    let row_len = arch.block_input_row_len(0);
    let mut source = |y: usize, row: &mut [i8]| -> Result<(), Infallible> {
        row.copy_from_slice(&input[y * row_len..][..row_len]);
        Ok(())
    };
    match forward_rows(model, &mut source, scratch, acc, logits) {
        Ok(()) => {}
        Err(never) => match never {},
    }
}

/// The rings of one streaming pass and how far each is filled.
struct Stream<'m, 's, 'f, E> {
    model: &'m Model<'m>,
    arch: &'m Arch,
    /// Every block's ring, back to back (see [`Arch::stream_ring_offset`]).
    rings: &'s mut [i8],
    /// `next[b]`: the next row ring `b` receives; rows `next[b] - 4 .. next[b]` are in it.
    next: [usize; MAX_BLOCKS],
    input_row: &'f mut InputRow<'f, E>,
}

impl<E> Stream<'_, '_, '_, E> {
    /// Fills ring `b` up to and including input row `upto` of block `b`.
    fn fill(&mut self, b: usize, upto: usize) -> Result<(), E> {
        let row_len = self.arch.block_input_row_len(b);
        while self.next[b] <= upto {
            let r = self.next[b];
            let slot = self.arch.stream_ring_offset(b) + (r % Arch::RING_ROWS) * row_len;
            if b == 0 {
                (self.input_row)(r, &mut self.rings[slot..][..row_len])?;
            } else {
                let prev = self.arch.block_shape(b - 1);
                self.fill(b - 1, (2 * r + 2).min(prev.height - 1))?;
                self.ring_row(b, r);
            }
            self.next[b] += 1;
        }
        Ok(())
    }

    /// Row `r` of ring `b` (`b >= 1`): pooled row `r` of block `b - 1` from ring `b - 1`, which
    /// holds the rows it reads.
    fn ring_row(&mut self, b: usize, r: usize) {
        let prev = self.arch.block_shape(b - 1);
        let row_len = self.arch.block_input_row_len(b);
        let (lower, upper) = self.rings.split_at_mut(self.arch.stream_ring_offset(b));
        let out = &mut upper[(r % Arch::RING_ROWS) * row_len..][..row_len];
        let lower = &lower[self.arch.stream_ring_offset(b - 1)..];
        let rows = ring_rows(lower, prev, self.next[b - 1], r);
        block_row(self.model, b - 1, prev, rows, out);
    }

    /// Pooled row `py` of block `b` from its (filled) ring into `out`.
    fn pooled_row(&self, b: usize, py: usize, out: &mut [i8]) {
        let shape = self.arch.block_shape(b);
        let ring = &self.rings[self.arch.stream_ring_offset(b)..];
        let rows = ring_rows(ring, shape, self.next[b], py);
        block_row(self.model, b, shape, rows, out);
    }
}

/// Pooled row of conv block `b` (of `shape`) from its input `rows` into `out`: the streaming
/// plan's one call of the row kernel.
///
/// Never inlined: [`Stream::fill`] recurses once per block, and the row kernel's patch buffer
/// (4.5 KiB) must sit on the stack once, at the leaf, not in every recursion frame.
#[inline(never)]
fn block_row(model: &Model, b: usize, shape: ConvShape, rows: PoolRows<'_>, out: &mut [i8]) {
    let (layer, zp) = (&model.layers[b], input_zero_point(model, b));
    let rq = Requant::for_layer(layer, zp, true);
    conv3x3_pool_row(rows, shape.row(), layer.weights(), &rq, out);
}

/// The [`PoolRows`] of pooled row `py` from a ring holding input rows `next - 4 .. next` of a
/// map of `shape`, row `y` in slot `y % 4`.
///
/// # Panics
/// If a row `py` reads is not in the ring (never filled, or already overwritten).
fn ring_rows(ring: &[i8], shape: ConvShape, next: usize, py: usize) -> PoolRows<'_> {
    let row_len = shape.row().input_row_len();
    let mut rows = [None; 4];
    for (i, r) in rows.iter_mut().enumerate() {
        let y = (2 * py + i).wrapping_sub(1);
        if y < shape.height {
            assert!(
                y < next && next - y <= Arch::RING_ROWS,
                "forward_rows: row {y} is not in the ring (rows {}..{next})",
                next.saturating_sub(Arch::RING_ROWS)
            );
            *r = Some(&ring[(y % Arch::RING_ROWS) * row_len..][..row_len]);
        }
    }
    rows
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
