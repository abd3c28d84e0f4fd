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
    conv_case_in(1usize..12, 1usize..9, 1usize..9)
}

/// Conv cases with up to 5 blocks of 16 output channels (every channel tiling of the SIMD
/// kernels, full and partial blocks).
fn conv_case_channels() -> impl Strategy<Value = ConvCase> {
    conv_case_in(1usize..10, 1usize..40, 1usize..80)
}

/// Conv cases with `C_in` on both sides of `PATCH_MAX_IN_CHANNELS` (patch path and row path).
fn conv_case_wide() -> impl Strategy<Value = ConvCase> {
    let edge = tinycnn::ops::conv::PATCH_MAX_IN_CHANNELS;
    conv_case_in(1usize..6, edge - 2..edge + 6, 1usize..9)
}

fn conv_case_in(
    hw: std::ops::Range<usize>,
    in_channels: std::ops::Range<usize>,
    out_channels: std::ops::Range<usize>,
) -> impl Strategy<Value = ConvCase> {
    (hw.clone(), hw, in_channels, out_channels)
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

/// The row kernel on each pooled row, its input rows given as separate slices (as a
/// streaming caller passes them), against the matching row of the reference.
fn check_conv_rows(c: &ConvCase) -> Result<(), TestCaseError> {
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
    let s = c.shape;
    let row = s.row();
    let mut full = vec![0i8; s.height * s.width * s.out_channels];
    let mut slow = vec![0i8; s.pooled_len()];
    reference::conv3x3_pool_s8(&c.input, s, &c.weights, &rq, &mut full, &mut slow);
    let copies: Vec<Vec<i8>> = c
        .input
        .chunks(row.input_row_len())
        .map(<[i8]>::to_vec)
        .collect();
    for (py, expected) in slow.chunks(row.pooled_row_len()).enumerate() {
        let mut rows: ops::PoolRows<'_> = [None; 4];
        for (i, r) in rows.iter_mut().enumerate() {
            *r = copies.get((2 * py + i).wrapping_sub(1)).map(Vec::as_slice);
        }
        let mut fast = vec![0x5Ai8; row.pooled_row_len()];
        ops::conv3x3_pool_row_s8(rows, row, &c.weights, &rq, &mut fast);
        prop_assert_eq!(&fast[..], expected, "pooled row {}", py);
    }
    Ok(())
}

fn dense_case() -> impl Strategy<Value = (Vec<i8>, Vec<i8>, Params, i8, i8, bool)> {
    (0usize..300, 1usize..12).prop_flat_map(|(n, out)| {
        (
            activations(n),
            weights(n * out),
            params(out, n),
            any::<i8>(),
            any::<i8>(),
            any::<bool>(),
        )
    })
}

fn check_dense(
    (input, w, p, zp_in, zp_out, relu): &(Vec<i8>, Vec<i8>, Params, i8, i8, bool),
) -> Result<(), TestCaseError> {
    let out = p.bias.len();
    let ps = ChannelSlices {
        bias: &p.bias,
        multiplier: &p.multiplier,
        shift: &p.shift,
    };
    let rq = Requant {
        params: &ps,
        input_zero_point: *zp_in,
        output_zero_point: *zp_out,
        relu: *relu,
    };
    let mut fast = vec![0i8; out];
    let mut slow = vec![0i8; out];
    ops::dense_s8(input, w, &rq, &mut fast);
    reference::dense_s8(input, w, &rq, &mut slow);
    prop_assert_eq!(fast, slow);
    Ok(())
}

fn dense_runs_case() -> impl Strategy<Value = (usize, Vec<i8>, Vec<i8>, usize, i8)> {
    (1usize..200, 1usize..10).prop_flat_map(|(n, out)| {
        (
            Just(n),
            activations(n),
            weights(n * out),
            0..=n,
            any::<i8>(),
        )
    })
}

/// Accumulating a dense layer in column runs (as the streaming fc1 does) gives the same sums
/// as one pass, and both equal the naive sums.
fn check_dense_runs(
    (n, input, w, split, zp): &(usize, Vec<i8>, Vec<i8>, usize, i8),
) -> Result<(), TestCaseError> {
    let (n, split, zp) = (*n, *split, *zp as i32);
    let out = w.len() / n;
    let mut one = vec![0i32; out];
    ops::dense_acc_s8(input, w, n, zp, &mut one);
    let mut runs = vec![0i32; out];
    ops::dense_acc_s8(&input[..split], w, n, zp, &mut runs);
    ops::dense_acc_s8(&input[split..], &w[split..], n, zp, &mut runs);
    let expected: Vec<i32> = (0..out)
        .map(|o| {
            (0..n)
                .map(|i| (input[i] as i32 - zp) * w[o * n + i] as i32)
                .sum()
        })
        .collect();
    prop_assert_eq!(&one, &expected);
    prop_assert_eq!(&runs, &expected);
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

    /// Same, for output channel counts across several 16-channel blocks.
    #[test]
    fn conv3x3_pool_channels_matches_reference(c in conv_case_channels()) {
        check_conv(&c)?;
    }

    /// The row kernel, row by row, against the reference.
    #[test]
    fn conv3x3_pool_row_matches_reference(c in conv_case()) {
        check_conv_rows(&c)?;
    }

    #[test]
    fn dense_matches_reference(c in dense_case()) {
        check_dense(&c)?;
    }

    #[test]
    fn dense_acc_in_runs_matches_one_pass(c in dense_runs_case()) {
        check_dense_runs(&c)?;
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
                reference::conv3x3_pool_s8(
                    &x,
                    shape,
                    layer.weights().as_s8().unwrap(),
                    &rq,
                    &mut full,
                    &mut out,
                );
            }
            LayerKind::Dense => {
                reference::dense_s8(&x, layer.weights().as_s8().unwrap(), &rq, &mut out)
            }
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

/// The three conv blocks of `model` row by row through the row kernel (each input row its
/// own buffer, as a streaming pass holds them), all inside one [`ops::pin_weights`] scope.
fn conv_blocks_by_rows(model: &Model, input: &[i8]) -> Vec<Vec<i8>> {
    let arch = model.arch;
    let blocks = arch.blocks();
    let weights: Vec<&[i8]> = (0..blocks)
        .map(|b| model.layers[b].weights().as_s8().unwrap())
        .collect();
    ops::pin_weights(&weights, || {
        let mut outs = Vec::new();
        let mut x = input.to_vec();
        let mut zp = model.input.zero_point;
        for block in 0..blocks {
            let shape = arch.block_shape(block);
            let layer = &model.layers[block];
            let rq = Requant {
                params: layer,
                input_zero_point: zp,
                output_zero_point: layer.output().zero_point,
                relu: true,
            };
            let row = shape.row();
            let copies: Vec<Vec<i8>> = x.chunks(row.input_row_len()).map(<[i8]>::to_vec).collect();
            let mut out = vec![0i8; shape.pooled_len()];
            for (py, o) in out.chunks_mut(row.pooled_row_len()).enumerate() {
                let mut rows: ops::PoolRows<'_> = [None; 4];
                for (i, r) in rows.iter_mut().enumerate() {
                    *r = copies.get((2 * py + i).wrapping_sub(1)).map(Vec::as_slice);
                }
                ops::conv3x3_pool_row_s8(rows, row, layer.weights().as_s8().unwrap(), &rq, o);
            }
            zp = layer.output().zero_point;
            outs.push(out.clone());
            x = out;
        }
        outs
    })
}

/// Row by row in a pinned scope, twice (the second pass trusts the packed weights), equals
/// the reference.
fn check_pinned_rows(arch: Arch, seed: u64, input: &[i8]) -> Result<(), TestCaseError> {
    let bytes = OwnedModel::random(arch, seed).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let expected = reference_forward(&model, input);
    for _ in 0..2 {
        prop_assert_eq!(
            &conv_blocks_by_rows(&model, input)[..],
            &expected[..arch.blocks()]
        );
    }
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
    /// The conv blocks row by row in a pinned scope, as a streaming pass runs them.
    #[test]
    fn conv_rows_pinned_match_reference((arch, seed, input) in arch_strategy().prop_flat_map(|a| (Just(a), any::<u64>(), activations(a.input_len())))) {
        check_pinned_rows(arch, seed, &input)?;
    }

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

/// Every kernel level this CPU has, against the reference, with the strategies above. Levels
/// are process-wide, so each case sets its level while holding [`levels::LOCK`]; a level the
/// CPU lacks is skipped with a message.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod levels {
    use super::*;
    use proptest::test_runner::TestRunner;
    use std::sync::Mutex;
    use tinycnn::ops::{kernel_level, set_kernel_level, KernelLevel};

    static LOCK: Mutex<()> = Mutex::new(());

    fn run_at<S: Strategy>(
        level: KernelLevel,
        cases: u32,
        strategy: S,
        test: impl Fn(&S::Value) -> Result<(), TestCaseError>,
    ) {
        if !level.is_available() {
            println!("skipped: this CPU lacks kernel level `{level}`");
            return;
        }
        let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
        let result = runner.run(&strategy, |v| {
            let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
            set_kernel_level(level).expect("level is available");
            assert_eq!(kernel_level(), level);
            test(&v)
        });
        if let Err(e) = result {
            panic!("kernel level `{level}`: {e}");
        }
    }

    macro_rules! level_tests {
        ($($level:ident => $name:ident,)*) => {$(
            mod $name {
                use super::*;
                const LEVEL: KernelLevel = KernelLevel::$level;

                #[test]
                fn conv_map() {
                    run_at(LEVEL, CASES, conv_case(), check_conv);
                }

                #[test]
                fn conv_map_wide() {
                    run_at(LEVEL, CASES / 4, conv_case_wide(), check_conv);
                }

                #[test]
                fn conv_map_channels() {
                    run_at(LEVEL, CASES / 2, conv_case_channels(), check_conv);
                }

                #[test]
                fn conv_rows() {
                    run_at(LEVEL, CASES / 2, conv_case_channels(), check_conv_rows);
                }

                #[test]
                fn dense() {
                    run_at(LEVEL, CASES, dense_case(), check_dense);
                }

                #[test]
                fn dense_runs() {
                    run_at(LEVEL, CASES, dense_runs_case(), check_dense_runs);
                }

                #[test]
                fn forward_random_arch() {
                    let strategy = arch_strategy()
                        .prop_flat_map(|a| (Just(a), any::<u64>(), activations(a.input_len())));
                    run_at(LEVEL, 256, strategy, |(arch, seed, input)| {
                        check_forward(*arch, *seed, input)
                    });
                }

                #[test]
                fn conv_rows_pinned_random_arch() {
                    let strategy = arch_strategy()
                        .prop_flat_map(|a| (Just(a), any::<u64>(), activations(a.input_len())));
                    run_at(LEVEL, 128, strategy, |(arch, seed, input)| {
                        check_pinned_rows(*arch, *seed, input)
                    });
                }

                /// Weights changed in place between two pinned scopes are packed again.
                #[test]
                fn conv_weights_changed_between_pins() {
                    let arch = Arch::fashion();
                    let input: Vec<i8> = (0..arch.input_len()).map(|i| (i * 37 % 256) as u8 as i8).collect();
                    let mut bytes = OwnedModel::random(arch, 5).to_bytes().unwrap();
                    run_at(LEVEL, 1, Just(()), |_| {
                        let model = Model::from_bytes(&bytes).unwrap();
                        prop_assert_eq!(&conv_blocks_by_rows(&model, &input)[..], &reference_forward(&model, &input)[..3]);
                        Ok(())
                    });
                    // Change a weight of conv2 in place, at the same address (the CRC is recomputed).
                    let mut owned = Model::from_bytes(&bytes).unwrap().to_owned_model();
                    let w = &mut owned.layers[1].weights[7];
                    *w = if *w == 127 { -127 } else { 127 };
                    let changed = owned.to_bytes().unwrap();
                    assert_eq!(changed.len(), bytes.len());
                    bytes.copy_from_slice(&changed);
                    run_at(LEVEL, 1, Just(()), |_| {
                        let model = Model::from_bytes(&bytes).unwrap();
                        prop_assert_eq!(&conv_blocks_by_rows(&model, &input)[..], &reference_forward(&model, &input)[..3]);
                        Ok(())
                    });
                }

                /// The packed-weight cache must notice weights that change in place (same
                /// address, same shape).
                #[test]
                fn conv_weights_changed_in_place() {
                    let mut c = ConvCase {
                        shape: ConvShape { height: 6, width: 7, in_channels: 5, out_channels: 20 },
                        input: (0..210).map(|i| (i * 29 % 256) as u8 as i8).collect(),
                        weights: (0..900).map(|i| ((i * 53 % 255) as i32 - 127) as i8).collect(),
                        params: Params {
                            bias: vec![1000; 20],
                            multiplier: vec![1 << 30; 20],
                            shift: vec![-9; 20],
                        },
                        zp_in: -3,
                        zp_out: 4,
                        relu: false,
                    };
                    run_at(LEVEL, 1, Just(()), |_| check_conv(&c));
                    c.weights[899] = -c.weights[899];
                    c.weights[0] = 127;
                    run_at(LEVEL, 1, Just(()), |_| check_conv(&c));
                }
            }
        )*};
    }

    level_tests! {
        Portable => portable,
        Avx2 => avx2,
        Avx512Vnni => avx512vnni,
    }

    #[test]
    fn level_names_round_trip() {
        for level in KernelLevel::ALL {
            assert_eq!(KernelLevel::from_name(level.name()), Some(level));
        }
        assert_eq!(KernelLevel::from_name("sse2"), None);
        assert!(KernelLevel::Portable.is_available());
    }
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
