//! What the test binaries share: proptest strategies for kernel and model cases, the
//! layer-by-layer reference network, the two forward plans with fresh buffers, and seeded data.
//! Each binary uses a part of it.
#![allow(dead_code)]

use proptest::prelude::*;
use std::ops::{Range, RangeInclusive};
use tinycnn::arch::MAX_PRODUCT;
use tinycnn::ops::{reference, ChannelParams, ConvShape, PoolRows, Requant};
use tinycnn::{
    forward, forward_rows_from, Arch, Filters, LayerKind, Model, OwnedModel, PixelFormat, Weights,
};

/// Per-channel parameters with multipliers >= 0 (as blobs guarantee).
#[derive(Debug, Clone)]
pub struct Params {
    pub bias: Vec<i32>,
    pub multiplier: Vec<i32>,
    pub shift: Vec<i8>,
}

impl ChannelParams for Params {
    fn bias(&self, c: usize) -> i32 {
        self.bias[c]
    }
    fn multiplier(&self, c: usize) -> i32 {
        self.multiplier[c]
    }
    fn shift(&self, c: usize) -> i32 {
        self.shift[c] as i32
    }
}

/// [`Params`] for `channels` outputs: biases within the accumulator headroom of `fan_in` (and
/// within `±bias_cap`), multipliers 0, `i32::MAX` or in `[2^30, i32::MAX]`, shifts from `shift`.
pub fn params(
    channels: usize,
    fan_in: usize,
    bias_cap: i32,
    shift: impl Strategy<Value = i8>,
) -> impl Strategy<Value = Params> {
    let headroom = (i32::MAX as i64 - MAX_PRODUCT * fan_in as i64).min(bias_cap as i64) as i32;
    let multiplier = prop_oneof![
        1 => Just(0i32),
        1 => Just(i32::MAX),
        8 => (1i32 << 30)..=i32::MAX,
    ];
    (
        proptest::collection::vec(-headroom..=headroom, channels),
        proptest::collection::vec(multiplier, channels),
        proptest::collection::vec(shift, channels),
    )
        .prop_map(|(bias, multiplier, shift)| Params {
            bias,
            multiplier,
            shift,
        })
}

/// Any int8 activations.
pub fn activations(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(any::<i8>(), n)
}

/// A layer's quantization: its parameters, zero points and ReLU flag.
#[derive(Debug, Clone)]
pub struct Quant {
    pub params: Params,
    pub zp_in: i8,
    pub zp_out: i8,
    pub relu: bool,
}

impl Quant {
    pub fn rq(&self) -> Requant<'_, Params> {
        Requant {
            params: &self.params,
            input_zero_point: self.zp_in,
            output_zero_point: self.zp_out,
            relu: self.relu,
        }
    }
}

fn quant(params: impl Strategy<Value = Params>) -> impl Strategy<Value = Quant> {
    (params, any::<i8>(), any::<i8>(), any::<bool>()).prop_map(|(params, zp_in, zp_out, relu)| {
        Quant {
            params,
            zp_in,
            zp_out,
            relu,
        }
    })
}

#[derive(Debug, Clone)]
pub struct ConvCase {
    pub shape: ConvShape,
    pub input: Vec<i8>,
    pub weights: Vec<i8>,
    pub q: Quant,
}

/// Conv cases of the given height and width, `C_in` and `C_out`: weights from `weights(len)`,
/// parameters from `params(C_out, fan_in)`.
pub fn conv_case<W, P>(
    hw: Range<usize>,
    in_channels: Range<usize>,
    out_channels: Range<usize>,
    weights: fn(usize) -> W,
    params: fn(usize, usize) -> P,
) -> impl Strategy<Value = ConvCase>
where
    W: Strategy<Value = Vec<i8>>,
    P: Strategy<Value = Params>,
{
    (hw.clone(), hw, in_channels, out_channels)
        .prop_flat_map(move |(height, width, in_channels, out_channels)| {
            let shape = ConvShape {
                height,
                width,
                in_channels,
                out_channels,
            };
            (
                Just(shape),
                activations(shape.input_len()),
                weights(shape.weight_len()),
                quant(params(out_channels, 9 * in_channels)),
            )
        })
        .prop_map(|(shape, input, weights, q)| ConvCase {
            shape,
            input,
            weights,
            q,
        })
}

impl ConvCase {
    /// A pinned case: `[height, width, C_in, C_out]`, data, and per-channel
    /// `(bias, multiplier, shift)` with `(zp_in, zp_out, relu)`.
    pub fn pinned(
        [height, width, in_channels, out_channels]: [usize; 4],
        input: Vec<i8>,
        weights: Vec<i8>,
        channels: &[(i32, i32, i8)],
        (zp_in, zp_out, relu): (i8, i8, bool),
    ) -> ConvCase {
        ConvCase {
            shape: ConvShape {
                height,
                width,
                in_channels,
                out_channels,
            },
            input,
            weights,
            q: Quant {
                params: Params {
                    bias: channels.iter().map(|c| c.0).collect(),
                    multiplier: channels.iter().map(|c| c.1).collect(),
                    shift: channels.iter().map(|c| c.2).collect(),
                },
                zp_in,
                zp_out,
                relu,
            },
        }
    }

    /// The reference conv block on int8 weights (full-resolution conv, then max-pool).
    pub fn reference_s8(&self) -> Vec<i8> {
        let s = self.shape;
        let mut full = vec![0i8; s.height * s.width * s.out_channels];
        let mut pooled = vec![0i8; s.pooled_len()];
        reference::conv3x3_pool(
            &self.input,
            s,
            Weights::S8(&self.weights),
            &self.q.rq(),
            &mut full,
            &mut pooled,
        );
        pooled
    }
}

#[derive(Debug, Clone)]
pub struct DenseCase {
    pub input: Vec<i8>,
    pub weights: Vec<i8>,
    pub q: Quant,
}

impl DenseCase {
    pub fn outputs(&self) -> usize {
        self.q.params.bias.len()
    }
}

/// Dense cases of 0..300 inputs and `outputs` outputs.
pub fn dense_case<W, P>(
    outputs: Range<usize>,
    weights: fn(usize) -> W,
    params: fn(usize, usize) -> P,
) -> impl Strategy<Value = DenseCase>
where
    W: Strategy<Value = Vec<i8>>,
    P: Strategy<Value = Params>,
{
    (0usize..300, outputs)
        .prop_flat_map(move |(n, out)| (activations(n), weights(n * out), quant(params(out, n))))
        .prop_map(|(input, weights, q)| DenseCase { input, weights, q })
}

/// A dense layer accumulated in two column runs: `n` inputs, weights, the split point, the
/// input zero point.
pub type DenseRuns = (usize, Vec<i8>, Vec<i8>, usize, i8);

pub fn dense_runs_case<W: Strategy<Value = Vec<i8>>>(
    weights: fn(usize) -> W,
) -> impl Strategy<Value = DenseRuns> {
    (1usize..200, 1usize..10).prop_flat_map(move |(n, out)| {
        (
            Just(n),
            activations(n),
            weights(n * out),
            0..=n,
            any::<i8>(),
        )
    })
}

/// `Σ_i (input[i] - zp) * w[o * n + i]` for every row `o` of `w`.
pub fn naive_dense_acc(input: &[i8], w: &[i8], n: usize, zp: i32) -> Vec<i32> {
    w.chunks_exact(n)
        .map(|row| {
            input
                .iter()
                .zip(row)
                .map(|(&x, &w)| (x as i32 - zp) * w as i32)
                .sum()
        })
        .collect()
}

/// Fails with the first index where `actual` and `expected` differ.
pub fn same_values(actual: &[i8], expected: &[i8], what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(actual.len(), expected.len(), "{} length", what);
    if let Some(i) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        return Err(TestCaseError::fail(format!(
            "first difference at index {i}: {what} {} reference {}",
            actual[i], expected[i]
        )));
    }
    Ok(())
}

/// Each row of `input` (`row_len` values) in its own buffer, as a streaming pass holds them.
pub fn row_copies(input: &[i8], row_len: usize) -> Vec<Vec<i8>> {
    input.chunks(row_len).map(<[i8]>::to_vec).collect()
}

/// The four input rows of pooled row `py`, taken from separate row buffers.
pub fn pool_rows_of(copies: &[Vec<i8>], py: usize) -> PoolRows<'_> {
    let mut rows: PoolRows<'_> = [None; 4];
    for (i, r) in rows.iter_mut().enumerate() {
        *r = copies.get((2 * py + i).wrapping_sub(1)).map(Vec::as_slice);
    }
    rows
}

/// Random architectures: height and width in `hw`, gray or RGB, 1..=MAX_BLOCKS conv blocks of
/// `filters` filters each, fc1 of `fc_width`, `classes` classes.
pub fn arch_strategy(
    hw: RangeInclusive<u16>,
    filters: RangeInclusive<u16>,
    fc_width: RangeInclusive<u16>,
    classes: RangeInclusive<u16>,
) -> impl Strategy<Value = Arch> {
    (
        hw.clone(),
        hw,
        any::<bool>(),
        proptest::collection::vec(filters, 1..=tinycnn::MAX_BLOCKS),
        fc_width,
        classes,
    )
        .prop_map(|(height, width, rgb, filters, fc_width, classes)| Arch {
            height,
            width,
            channels: if rgb { 3 } else { 1 },
            filters: Filters::new(&filters).unwrap(),
            fc_width,
            classes,
        })
}

/// An architecture with a model seed and an input of its size.
pub fn with_seed_and_input(
    arch: impl Strategy<Value = Arch>,
) -> impl Strategy<Value = (Arch, u64, Vec<i8>)> {
    arch.prop_flat_map(|a| (Just(a), any::<u64>(), activations(a.input_len())))
}

/// The blob of a random model.
pub fn model_bytes(arch: Arch, seed: u64) -> Vec<u8> {
    OwnedModel::random(arch, seed).to_bytes().unwrap()
}

/// The outputs of every layer, layer by layer with the reference kernels (each layer at its
/// bit width) and full-resolution buffers.
pub fn reference_forward(model: &Model, input: &[i8]) -> Vec<Vec<i8>> {
    let mut outs = Vec::new();
    let mut x = input.to_vec();
    let mut zp = model.input.zero_point;
    for (spec, layer) in model.arch.layers().zip(model.layers.iter()) {
        let rq = Requant::for_layer(layer, zp, spec.relu);
        let mut out = vec![0i8; spec.output_len];
        match spec.kind {
            LayerKind::ConvBlock(shape) => {
                let mut full = vec![0i8; shape.height * shape.width * shape.out_channels];
                reference::conv3x3_pool(&x, shape, layer.weights(), &rq, &mut full, &mut out)
            }
            LayerKind::Dense => reference::dense(&x, layer.weights(), &rq, &mut out),
        }
        zp = layer.output().zero_point;
        outs.push(out.clone());
        x = out;
    }
    outs
}

/// The logits of [`forward`] with a scratch of exactly `scratch_len()` bytes, all `dirt`.
pub fn whole_map(model: &Model, input: &[i8], dirt: i8) -> Vec<i8> {
    let arch = model.arch;
    let mut scratch = vec![dirt; arch.scratch_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    forward(model, input, &mut scratch, &mut logits);
    logits
}

/// The logits of [`forward_rows_from`] with buffers of exactly the planned sizes, filled with
/// values derived from `dirt`.
pub fn streamed(model: &Model, input: &[i8], dirt: i8) -> Vec<i8> {
    let arch = model.arch;
    let mut scratch = vec![dirt; arch.stream_scratch_len()];
    let mut acc = vec![i32::from(dirt) * 1_000_003; arch.stream_acc_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    forward_rows_from(model, input, &mut scratch, &mut acc, &mut logits);
    logits
}

/// A deterministic input: `(i * 37) % 256` as int8.
pub fn ramp_input(arch: &Arch) -> Vec<i8> {
    (0..arch.input_len())
        .map(|i| ((i * 37) % 256) as u8 as i8)
        .collect()
}

/// `n` bytes from a 64-bit LCG seeded with `seed` (the top byte of each state).
pub fn lcg_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

/// A synthetic QVGA RGB565 frame: byte `i` is `i * mul + i / div`.
pub fn qvga_rgb565(mul: usize, div: usize) -> Vec<u8> {
    (0..320 * 240 * 2)
        .map(|i| (i * mul + i / div) as u8)
        .collect()
}

/// Every pixel format.
pub fn pixel_format() -> impl Strategy<Value = PixelFormat> {
    prop_oneof![
        Just(PixelFormat::Gray8),
        Just(PixelFormat::Rgb888),
        Just(PixelFormat::Rgb565Le),
        Just(PixelFormat::Rgb565Be),
        Just(PixelFormat::Yuyv),
    ]
}
