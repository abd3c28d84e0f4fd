//! Fast kernels against the naive reference, bit for bit, and the forward pass against a
//! layer-by-layer composition of reference kernels.

use proptest::prelude::*;
use tinycnn::arch::MAX_PRODUCT;
use tinycnn::ops::{self, reference, ChannelSlices, ConvShape, Requant};
use tinycnn::quant::{multiply_by_quantized_multiplier, requantize, MAX_SHIFT, MIN_SHIFT};
use tinycnn::{argmax, forward, forward_traced, Arch, Filters, LayerKind, Model, OwnedModel};

const CASES: u32 = 1024;

/// Per-channel parameters with multipliers >= 0 (as blobs guarantee), shifts across the legal
/// range and biases within the accumulator headroom of `fan_in`.
#[derive(Debug, Clone)]
struct Params {
    bias: Vec<i32>,
    multiplier: Vec<i32>,
    shift: Vec<i8>,
}

fn params(channels: usize, fan_in: usize) -> impl Strategy<Value = Params> {
    let headroom = (i32::MAX as i64 - MAX_PRODUCT * fan_in as i64).min(1 << 20) as i32;
    let multiplier = prop_oneof![
        1 => Just(0i32),
        1 => Just(i32::MAX),
        8 => (1i32 << 30)..=i32::MAX,
    ];
    // Mostly the right shifts real layers use, sometimes the extremes.
    let shift = prop_oneof![8 => -20i8..=0, 1 => Just(MIN_SHIFT as i8), 1 => 1i8..=4];
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

fn weights(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(-127i8..=127, n)
}

fn activations(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(any::<i8>(), n)
}

#[derive(Debug, Clone)]
struct ConvCase {
    shape: ConvShape,
    input: Vec<i8>,
    weights: Vec<i8>,
    params: Params,
    zp_in: i8,
    zp_out: i8,
    relu: bool,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    conv_case_in(1usize..12, 1usize..9)
}

/// Conv cases with `C_in` on both sides of `PATCH_MAX_IN_CHANNELS` (patch path and row path).
fn conv_case_wide() -> impl Strategy<Value = ConvCase> {
    let edge = tinycnn::ops::conv::PATCH_MAX_IN_CHANNELS;
    conv_case_in(1usize..6, edge - 2..edge + 6)
}

fn conv_case_in(
    hw: std::ops::Range<usize>,
    in_channels: std::ops::Range<usize>,
) -> impl Strategy<Value = ConvCase> {
    (hw.clone(), hw, in_channels, 1usize..9)
        .prop_flat_map(|(height, width, in_channels, out_channels)| {
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
                params(out_channels, 9 * in_channels),
                any::<i8>(),
                any::<i8>(),
                any::<bool>(),
            )
        })
        .prop_map(
            |(shape, input, weights, params, zp_in, zp_out, relu)| ConvCase {
                shape,
                input,
                weights,
                params,
                zp_in,
                zp_out,
                relu,
            },
        )
}

fn check_conv(c: &ConvCase) -> Result<(), TestCaseError> {
    let p = ChannelSlices {
        bias: &c.params.bias,
        multiplier: &c.params.multiplier,
        shift: &c.params.shift,
    };
    let rq = Requant {
        params: &p,
        input_zero_point: c.zp_in,
        output_zero_point: c.zp_out,
        relu: c.relu,
    };
    let mut fast = vec![0i8; c.shape.pooled_len()];
    ops::conv3x3_pool_s8(&c.input, c.shape, &c.weights, &rq, &mut fast);
    let mut full = vec![0i8; c.shape.height * c.shape.width * c.shape.out_channels];
    let mut slow = vec![0i8; c.shape.pooled_len()];
    reference::conv3x3_pool_s8(&c.input, c.shape, &c.weights, &rq, &mut full, &mut slow);
    if let Some(i) = fast.iter().zip(&slow).position(|(a, b)| a != b) {
        return Err(TestCaseError::fail(format!(
            "first difference at index {i}: fast {} reference {}",
            fast[i], slow[i]
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Fused conv+pool (pooling int32 accumulators, one requantization) equals the reference
    /// conv at full resolution (requantizing every pixel) followed by max-pool.
    #[test]
    fn conv3x3_pool_matches_reference(c in conv_case()) {
        check_conv(&c)?;
    }

    /// Same, for input channel counts around the patch-path limit.
    #[test]
    fn conv3x3_pool_wide_matches_reference(c in conv_case_wide()) {
        check_conv(&c)?;
    }

    #[test]
    fn dense_matches_reference((_n, input, w, p, zp_in, zp_out, relu) in (0usize..300, 1usize..12).prop_flat_map(|(n, out)| (
        Just(n), activations(n), weights(n * out), params(out, n), any::<i8>(), any::<i8>(), any::<bool>()))) {
        let out = p.bias.len();
        let ps = ChannelSlices { bias: &p.bias, multiplier: &p.multiplier, shift: &p.shift };
        let rq = Requant { params: &ps, input_zero_point: zp_in, output_zero_point: zp_out, relu };
        let mut fast = vec![0i8; out];
        let mut slow = vec![0i8; out];
        ops::dense_s8(&input, &w, &rq, &mut fast);
        reference::dense_s8(&input, &w, &rq, &mut slow);
        prop_assert_eq!(fast, slow);
    }

    /// Accumulating a dense layer in column runs (as the streaming fc1 does) gives the same
    /// sums as one pass.
    #[test]
    fn dense_acc_in_runs_matches_one_pass((n, input, w, split, zp) in (1usize..200, 1usize..10).prop_flat_map(|(n, out)| (
        Just(n), activations(n), weights(n * out), 0..=n, any::<i8>()))) {
        let out = w.len() / n;
        let mut one = vec![0i32; out];
        ops::dense_acc_s8(&input, &w, n, zp as i32, &mut one);
        let mut runs = vec![0i32; out];
        ops::dense_acc_s8(&input[..split], &w, n, zp as i32, &mut runs);
        ops::dense_acc_s8(&input[split..], &w[split..], n, zp as i32, &mut runs);
        let expected: Vec<i32> = (0..out)
            .map(|o| (0..n).map(|i| (input[i] as i32 - zp as i32) * w[o * n + i] as i32).sum())
            .collect();
        prop_assert_eq!(&one, &expected);
        prop_assert_eq!(&runs, &expected);
    }

    #[test]
    fn argmax_matches_reference(v in proptest::collection::vec(any::<i8>(), 1..70)) {
        prop_assert_eq!(argmax(&v), reference::argmax(&v));
        let m = *v.iter().max().unwrap();
        prop_assert_eq!(argmax(&v), v.iter().position(|&x| x == m).unwrap());
    }

    /// MultiplyByQuantizedMultiplier against an i128 model of the two gemmlowp steps.
    #[test]
    fn mbqm_matches_i128(x in any::<i32>(), m in any::<i32>(), shift in MIN_SHIFT..=MAX_SHIFT) {
        prop_assert_eq!(multiply_by_quantized_multiplier(x, m, shift), mbqm_i128(x, m, shift));
    }

    /// Requantization is monotonic in the accumulator for multipliers >= 0: the premise of
    /// pooling accumulators before requantizing.
    #[test]
    fn requantize_is_monotonic(a in any::<i32>(), b in any::<i32>(), m in 0..=i32::MAX,
                               shift in MIN_SHIFT..=0, zp in any::<i8>(), relu in any::<bool>()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(requantize(lo, m, shift, zp, relu) <= requantize(hi, m, shift, zp, relu));
    }
}

/// `x * 2^left` (wrapping, as documented), SaturatingRoundingDoublingHighMul, then
/// RoundingDivideByPOT, all in i128 with explicit rounding rules.
fn mbqm_i128(x: i32, m: i32, shift: i32) -> i32 {
    let left = shift.max(0) as u32;
    let right = (-shift).max(0) as u32;
    let xs = ((x as i128) << left) as i32 as i128;
    let high: i128 = if xs == i32::MIN as i128 && m == i32::MIN {
        i32::MAX as i128
    } else {
        // round(xs * m / 2^31), ties toward +infinity
        let p = xs * m as i128;
        (p + (1 << 30)).div_euclid(1 << 31)
    };
    let d = 1i128 << right;
    let q = high.div_euclid(d);
    let r2 = 2 * high.rem_euclid(d);
    // nearest, ties away from zero
    (if r2 > d || (r2 == d && high >= 0) {
        q + 1
    } else {
        q
    }) as i32
}

/// Pinned: the SAME pool's bottom-right window of an odd size sees a single pixel, and the
/// accumulator there is smaller than any neighbour; a kernel that pooled over padding would
/// return a wrong (zero-point) value.
#[test]
fn pinned_odd_edge_pool() {
    let shape = ConvShape {
        height: 3,
        width: 3,
        in_channels: 1,
        out_channels: 1,
    };
    let c = ConvCase {
        shape,
        input: vec![-128, -128, -128, -128, -128, -128, -128, -128, 127],
        weights: vec![-127, -127, -127, -127, 127, -127, -127, -127, -127],
        params: Params {
            bias: vec![0],
            multiplier: vec![1 << 30],
            shift: vec![-8],
        },
        zp_in: -128,
        zp_out: 0,
        relu: false,
    };
    check_conv(&c).unwrap();
}

/// Pinned: multiplier 0 makes every output the zero point.
#[test]
fn pinned_zero_multiplier() {
    let shape = ConvShape {
        height: 2,
        width: 5,
        in_channels: 2,
        out_channels: 2,
    };
    let c = ConvCase {
        shape,
        input: (0..20).map(|i| (i * 13 - 100) as i8).collect(),
        weights: (0..36).map(|i| (i * 7 - 120) as i8).collect(),
        params: Params {
            bias: vec![5, -5],
            multiplier: vec![0, 0],
            shift: vec![0, -31],
        },
        zp_in: 3,
        zp_out: -9,
        relu: true,
    };
    check_conv(&c).unwrap();
}

/// Runs the network layer by layer with the reference kernels and full-resolution buffers.
fn reference_forward(model: &Model, input: &[i8]) -> Vec<Vec<i8>> {
    let arch = model.arch;
    let mut outs = Vec::new();
    let mut x = input.to_vec();
    let mut zp = model.input.zero_point;
    for (spec, layer) in arch.layers().zip(model.layers.iter()) {
        let rq = Requant {
            params: layer,
            input_zero_point: zp,
            output_zero_point: layer.output().zero_point,
            relu: spec.relu,
        };
        let mut out = vec![0i8; spec.output_len];
        match spec.kind {
            LayerKind::ConvBlock(shape) => {
                let mut full = vec![0i8; shape.height * shape.width * shape.out_channels];
                reference::conv3x3_pool_s8(&x, shape, layer.weights(), &rq, &mut full, &mut out);
            }
            LayerKind::Dense => reference::dense_s8(&x, layer.weights(), &rq, &mut out),
        }
        zp = layer.output().zero_point;
        outs.push(out.clone());
        x = out;
    }
    outs
}

fn check_forward(arch: Arch, seed: u64, input: &[i8]) -> Result<(), TestCaseError> {
    let bytes = OwnedModel::random(arch, seed).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let expected = reference_forward(&model, input);
    let mut traced: Vec<Vec<i8>> = Vec::new();
    let mut scratch = vec![0x55i8; arch.scratch_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    forward_traced(
        &model,
        input,
        &mut scratch,
        &mut logits,
        &mut |layer, out| {
            assert_eq!(layer, traced.len());
            traced.push(out.to_vec());
        },
    );
    prop_assert_eq!(&traced, &expected);
    prop_assert_eq!(&logits, expected.last().unwrap());
    // Untraced forward, dirty scratch: same logits.
    scratch.fill(-1);
    let mut again = vec![0i8; arch.classes as usize];
    forward(&model, input, &mut scratch, &mut again);
    prop_assert_eq!(again, logits);
    Ok(())
}

/// Random architectures with 1..=MAX_BLOCKS conv blocks, odd and even sizes.
fn arch_strategy() -> impl Strategy<Value = Arch> {
    (
        1u16..20,
        1u16..20,
        any::<bool>(),
        proptest::collection::vec(1u16..6, 1..=tinycnn::MAX_BLOCKS),
        1u16..12,
        2u16..6,
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The forward pass (fused kernels, ping-pong scratch) equals the layer-by-layer reference
    /// on random architectures, weights, zero points, multipliers and inputs, layer by layer.
    #[test]
    fn forward_matches_reference((arch, seed, input) in arch_strategy().prop_flat_map(|a| (Just(a), any::<u64>(), activations(a.input_len())))) {
        check_forward(arch, seed, &input)?;
    }
}

#[test]
fn forward_fashion_matches_reference() {
    let arch = Arch::fashion();
    let input: Vec<i8> = (0..arch.input_len())
        .map(|i| ((i * 37) % 256) as u8 as i8)
        .collect();
    check_forward(arch, 1, &input).unwrap();
}

#[test]
fn forward_is_deterministic_and_uses_exact_scratch() {
    let arch = Arch::fashion();
    let bytes = OwnedModel::random(arch, 3).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let input = vec![0i8; arch.input_len()];
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut a = vec![0i8; 10];
    forward(&model, &input, &mut scratch, &mut a);
    let mut b = vec![0i8; 10];
    forward(&model, &input, &mut scratch, &mut b);
    assert_eq!(a, b);
}

#[test]
#[should_panic(expected = "scratch")]
fn forward_panics_on_short_scratch() {
    let arch = Arch::fashion();
    let bytes = OwnedModel::random(arch, 3).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let mut scratch = vec![0i8; arch.scratch_len() - 1];
    forward(
        &model,
        &vec![0; arch.input_len()],
        &mut scratch,
        &mut [0; 10],
    );
}

/// The largest accumulator a valid architecture allows does not overflow: all-extreme inputs
/// and weights through a conv layer at its fan-in limit.
#[test]
fn accumulator_bound_extreme_values() {
    // 9 * C_in * 255 * 127 <= i32::MAX  =>  C_in <= 7367
    let c_in = 7367;
    assert!(MAX_PRODUCT * 9 * c_in as i64 <= i32::MAX as i64);
    let shape = ConvShape {
        height: 3,
        width: 3,
        in_channels: c_in,
        out_channels: 1,
    };
    let input = vec![127i8; shape.input_len()];
    let weights = vec![127i8; shape.weight_len()];
    let headroom = (i32::MAX as i64 - MAX_PRODUCT * 9 * c_in as i64) as i32;
    let p = ChannelSlices {
        bias: &[headroom],
        multiplier: &[1 << 30],
        shift: &[-31],
    };
    let rq = Requant {
        params: &p,
        input_zero_point: -128,
        output_zero_point: 0,
        relu: false,
    };
    let mut out = [0i8; 4];
    ops::conv3x3_pool_s8(&input, shape, &weights, &rq, &mut out);
    // At the centre pixel all 9 taps are in range: acc + bias = i32::MAX exactly, and
    // MAX * 2^-32 -> 0.5 rounds to 1. Only pooled (0, 0) contains the centre; the edge pixels
    // have at most 6 taps, ~0.33 -> 0.
    let mut full = vec![0i8; 9];
    let mut slow = [0i8; 4];
    reference::conv3x3_pool_s8(&input, shape, &weights, &rq, &mut full, &mut slow);
    assert_eq!(out, slow);
    assert_eq!(out, [1, 0, 0, 0]);
}

/// A session gives the same logits as `forward` with caller-owned buffers, from int8 input,
/// from u8 pixels and from a camera frame.
#[test]
fn session_matches_forward() {
    let arch = Arch::fashion();
    let bytes = OwnedModel::random(arch, 9).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let pixels: Vec<u8> = (0..arch.input_len())
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    let input: Vec<i8> = pixels.iter().map(|&p| (p as i16 - 128) as i8).collect();
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut expected = vec![0i8; arch.classes as usize];
    forward(&model, &input, &mut scratch, &mut expected);
    let mut session = tinycnn::Session::new(model.clone());
    assert_eq!(session.run(&input), &expected[..]);
    assert_eq!(session.run_pixels(&pixels), &expected[..]);
    let frame = tinycnn::Frame::new(&pixels, 28, 28, tinycnn::PixelFormat::Gray8).unwrap();
    assert_eq!(session.run_frame(&frame).unwrap(), &expected[..]);
    assert_eq!(session.class(), argmax(&expected));
    let p: f32 = session.probabilities().iter().sum();
    assert!((p - 1.0).abs() < 1e-5);
}
