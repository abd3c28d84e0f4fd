//! Fast kernels against the naive reference, bit for bit, and the forward pass against a
//! layer-by-layer composition of reference kernels.

mod common;

use common::{
    arch_strategy, conv_case, dense_case, dense_runs_case, model_bytes, naive_dense_acc,
    pool_rows_of, ramp_input, reference_forward, row_copies, same_values, whole_map,
    with_seed_and_input, ConvCase, DenseCase, DenseRuns, Params,
};
use proptest::prelude::*;
use tinycnn::arch::MAX_PRODUCT;
use tinycnn::ops::{self, reference, Requant};
use tinycnn::quant::{multiply_by_quantized_multiplier, requantize, MAX_SHIFT, MIN_SHIFT};
use tinycnn::{argmax, forward, forward_traced, Arch, Model, Weights};

const CASES: u32 = 1024;

/// Parameters with shifts across the legal range (mostly the right shifts real layers use,
/// sometimes the extremes) and biases within the accumulator headroom of `fan_in`.
fn params(channels: usize, fan_in: usize) -> impl Strategy<Value = Params> {
    let shift = prop_oneof![8 => -20i8..=0, 1 => Just(MIN_SHIFT as i8), 1 => 1i8..=4];
    common::params(channels, fan_in, 1 << 20, shift)
}

fn weights(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(-127i8..=127, n)
}

fn small_conv_case() -> impl Strategy<Value = ConvCase> {
    conv_case(1..12, 1..9, 1..9, weights, params)
}

/// Conv cases with up to 5 blocks of 16 output channels (every channel tiling of the SIMD
/// kernels, full and partial blocks).
fn conv_case_channels() -> impl Strategy<Value = ConvCase> {
    conv_case(1..10, 1..40, 1..80, weights, params)
}

/// Conv cases with `C_in` on both sides of `PATCH_MAX_IN_CHANNELS` (patch path and row path).
fn conv_case_wide() -> impl Strategy<Value = ConvCase> {
    let edge = tinycnn::ops::conv::PATCH_MAX_IN_CHANNELS;
    conv_case(1..6, edge - 2..edge + 6, 1..9, weights, params)
}

fn check_conv(c: &ConvCase) -> Result<(), TestCaseError> {
    let mut fast = vec![0i8; c.shape.pooled_len()];
    let w = Weights::S8(&c.weights);
    ops::conv3x3_pool(&c.input, c.shape, w, &c.q.rq(), &mut fast);
    same_values(&fast, &c.reference_s8(), "fast")
}

/// The row kernel on each pooled row, its input rows given as separate slices (as a
/// streaming caller passes them), against the matching row of the reference.
fn check_conv_rows(c: &ConvCase) -> Result<(), TestCaseError> {
    let row = c.shape.row();
    let slow = c.reference_s8();
    let copies = row_copies(&c.input, row.input_row_len());
    for (py, expected) in slow.chunks(row.pooled_row_len()).enumerate() {
        let mut fast = vec![0x5Ai8; row.pooled_row_len()];
        ops::conv3x3_pool_row(
            pool_rows_of(&copies, py),
            row,
            Weights::S8(&c.weights),
            &c.q.rq(),
            &mut fast,
        );
        prop_assert_eq!(&fast[..], expected, "pooled row {}", py);
    }
    Ok(())
}

fn small_dense_case() -> impl Strategy<Value = DenseCase> {
    dense_case(1..12, weights, params)
}

fn check_dense(c: &DenseCase) -> Result<(), TestCaseError> {
    let mut fast = vec![0i8; c.outputs()];
    let mut slow = vec![0i8; c.outputs()];
    let w = Weights::S8(&c.weights);
    ops::dense(&c.input, w, &c.q.rq(), &mut fast);
    reference::dense(&c.input, w, &c.q.rq(), &mut slow);
    prop_assert_eq!(fast, slow);
    Ok(())
}

fn s8_dense_runs_case() -> impl Strategy<Value = DenseRuns> {
    dense_runs_case(weights)
}

/// Accumulating a dense layer in column runs (as the streaming fc1 does) gives the same sums
/// as one pass, and both equal the naive sums.
fn check_dense_runs((n, input, w, split, zp): &DenseRuns) -> Result<(), TestCaseError> {
    let (n, split, zp) = (*n, *split, *zp as i32);
    let out = w.len() / n;
    let expected = naive_dense_acc(input, w, n, zp);
    let w = Weights::S8(w);
    let mut one = vec![0i32; out];
    ops::dense_acc(input, w, 0, n, zp, &mut one);
    let mut runs = vec![0i32; out];
    ops::dense_acc(&input[..split], w, 0, n, zp, &mut runs);
    ops::dense_acc(&input[split..], w, split, n, zp, &mut runs);
    prop_assert_eq!(&one, &expected);
    prop_assert_eq!(&runs, &expected);
    Ok(())
}

/// Every kernel property, as `name: cases, strategy => check;`, passed to `$run`. The tests
/// below run each at the default kernel level; on x86_64 [`levels`] runs each at every level.
///
/// - `conv_map*`: fused conv+pool (pooling int32 accumulators, one requantization) equals the
///   reference conv at full resolution (requantizing every pixel) followed by max-pool: small
///   cases, `C_in` around the patch-path limit, `C_out` across several 16-channel blocks.
/// - `conv_rows*`: the row kernel, row by row, against the reference.
/// - `forward_random_arch`: the forward pass (fused kernels, ping-pong scratch) equals the
///   layer-by-layer reference on random architectures, weights, zero points, multipliers and
///   inputs, layer by layer.
/// - `conv_rows_pinned_random_arch`: the conv blocks row by row in a pinned scope, as a
///   streaming pass runs them.
macro_rules! kernel_properties {
    ($run:ident) => {
        $run! {
            conv_map: CASES, small_conv_case() => check_conv;
            conv_map_wide: CASES / 4, conv_case_wide() => check_conv;
            conv_map_channels: CASES / 2, conv_case_channels() => check_conv;
            conv_rows: CASES, small_conv_case() => check_conv_rows;
            conv_rows_channels: CASES / 2, conv_case_channels() => check_conv_rows;
            dense: CASES, small_dense_case() => check_dense;
            dense_runs: CASES, s8_dense_runs_case() => check_dense_runs;
            forward_random_arch: 256, model_case() => check_forward;
            conv_rows_pinned_random_arch: 128, model_case() => check_pinned_rows;
        }
    };
}

/// Runs `test` on `cases` cases of `strategy`; the shrunk failure, if any.
fn run_cases<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(&S::Value) -> Result<(), TestCaseError>,
) -> Result<(), String> {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    runner
        .run(&strategy, |v| test(&v))
        .map_err(|e| e.to_string())
}

macro_rules! default_level_tests {
    ($($name:ident: $cases:expr, $strategy:expr => $check:ident;)*) => {$(
        #[test]
        fn $name() {
            run_cases($cases, $strategy, $check).unwrap();
        }
    )*};
}

kernel_properties!(default_level_tests);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

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

/// Pinned conv cases:
/// - the SAME pool's bottom-right window of an odd size sees a single pixel, and the
///   accumulator there is smaller than any neighbour; a kernel that pooled over padding would
///   return a wrong (zero-point) value;
/// - multiplier 0 makes every output the zero point.
#[test]
fn pinned_conv_cases() {
    let cases = [
        ConvCase::pinned(
            [3, 3, 1, 1],
            vec![-128, -128, -128, -128, -128, -128, -128, -128, 127],
            vec![-127, -127, -127, -127, 127, -127, -127, -127, -127],
            &[(0, 1 << 30, -8)],
            (-128, 0, false),
        ),
        ConvCase::pinned(
            [2, 5, 2, 2],
            (0..20).map(|i| (i * 13 - 100) as i8).collect(),
            (0..36).map(|i| (i * 7 - 120) as i8).collect(),
            &[(5, 0, 0), (-5, 0, -31)],
            (3, -9, true),
        ),
    ];
    for c in &cases {
        check_conv(c).unwrap();
    }
}

/// A random architecture, a model seed and an input.
type ModelCase = (Arch, u64, Vec<i8>);

fn check_forward((arch, seed, input): &ModelCase) -> Result<(), TestCaseError> {
    let (arch, seed) = (*arch, *seed);
    let bytes = model_bytes(arch, seed);
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
    prop_assert_eq!(whole_map(&model, input, -1), logits);
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
        for (block, w) in weights.iter().enumerate() {
            let shape = arch.block_shape(block);
            let layer = &model.layers[block];
            let rq = Requant::for_layer(layer, zp, true);
            let row = shape.row();
            let copies = row_copies(&x, row.input_row_len());
            let mut out = vec![0i8; shape.pooled_len()];
            for (py, o) in out.chunks_mut(row.pooled_row_len()).enumerate() {
                ops::conv3x3_pool_row(pool_rows_of(&copies, py), row, Weights::S8(w), &rq, o);
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
fn check_pinned_rows((arch, seed, input): &ModelCase) -> Result<(), TestCaseError> {
    let (arch, seed) = (*arch, *seed);
    let bytes = model_bytes(arch, seed);
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

/// Random models: 1..=MAX_BLOCKS conv blocks, odd and even sizes, a seed and an input.
fn model_case() -> impl Strategy<Value = ModelCase> {
    with_seed_and_input(arch_strategy(1..=19, 1..=5, 1..=11, 2..=5))
}

#[test]
fn forward_fashion_matches_reference() {
    let arch = Arch::fashion();
    check_forward(&(arch, 1, ramp_input(&arch))).unwrap();
}

#[test]
fn forward_is_deterministic_and_uses_exact_scratch() {
    let arch = Arch::fashion();
    let bytes = model_bytes(arch, 3);
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
    let bytes = model_bytes(arch, 3);
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
    let headroom = (i32::MAX as i64 - MAX_PRODUCT * 9 * c_in as i64) as i32;
    let c = ConvCase::pinned(
        [3, 3, c_in, 1],
        vec![127; 9 * c_in],
        vec![127; 9 * c_in],
        &[(headroom, 1 << 30, -31)],
        (-128, 0, false),
    );
    check_conv(&c).unwrap();
    // At the centre pixel all 9 taps are in range: acc + bias = i32::MAX exactly, and
    // MAX * 2^-32 -> 0.5 rounds to 1. Only pooled (0, 0) contains the centre; the edge pixels
    // have at most 6 taps, ~0.33 -> 0.
    assert_eq!(c.reference_s8(), [1, 0, 0, 0]);
}

/// Every kernel level this CPU has, against the reference, with the strategies above. Levels
/// are process-wide, so each case sets its level while holding [`levels::LOCK`]; a level the
/// CPU lacks is skipped with a message.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod levels {
    use super::*;
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
        let result = run_cases(cases, strategy, |v| {
            let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
            set_kernel_level(level).expect("level is available");
            assert_eq!(kernel_level(), level);
            test(v)
        });
        if let Err(e) = result {
            panic!("kernel level `{level}`: {e}");
        }
    }

    /// One test per kernel property at `LEVEL`.
    macro_rules! at_level {
        ($($name:ident: $cases:expr, $strategy:expr => $check:ident;)*) => {$(
            #[test]
            fn $name() {
                run_at(LEVEL, $cases, $strategy, $check);
            }
        )*};
    }

    macro_rules! level_tests {
        ($($level:ident => $name:ident,)*) => {$(
            mod $name {
                use super::*;
                const LEVEL: KernelLevel = KernelLevel::$level;

                kernel_properties!(at_level);

                /// Weights changed in place between two pinned scopes are packed again.
                #[test]
                fn conv_weights_changed_between_pins() {
                    let arch = Arch::fashion();
                    let input = ramp_input(&arch);
                    let mut bytes = model_bytes(arch, 5);
                    let check = |bytes: &[u8]| run_at(LEVEL, 1, Just(()), |_| {
                        let model = Model::from_bytes(bytes).unwrap();
                        prop_assert_eq!(&conv_blocks_by_rows(&model, &input)[..], &reference_forward(&model, &input)[..3]);
                        Ok(())
                    });
                    check(&bytes);
                    // Change a weight of conv2 in place, at the same address (the CRC is recomputed).
                    let mut owned = Model::from_bytes(&bytes).unwrap().to_owned_model();
                    let w = &mut owned.layers[1].weights[7];
                    *w = if *w == 127 { -127 } else { 127 };
                    let changed = owned.to_bytes().unwrap();
                    assert_eq!(changed.len(), bytes.len());
                    bytes.copy_from_slice(&changed);
                    check(&bytes);
                }

                /// The packed-weight cache must notice weights that change in place (same
                /// address, same shape).
                #[test]
                fn conv_weights_changed_in_place() {
                    let mut c = ConvCase::pinned(
                        [6, 7, 5, 20],
                        (0..210).map(|i| (i * 29 % 256) as u8 as i8).collect(),
                        (0..900).map(|i| ((i * 53 % 255) as i32 - 127) as i8).collect(),
                        &[(1000, 1 << 30, -9); 20],
                        (-3, 4, false),
                    );
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
    let bytes = model_bytes(arch, 9);
    let model = Model::from_bytes(&bytes).unwrap();
    let pixels: Vec<u8> = (0..arch.input_len())
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    let input: Vec<i8> = pixels.iter().map(|&p| (p as i16 - 128) as i8).collect();
    let expected = whole_map(&model, &input, 0);
    let mut session = tinycnn::Session::new(model.clone());
    assert_eq!(session.run(&input), &expected[..]);
    assert_eq!(session.run_pixels(&pixels), &expected[..]);
    let frame = tinycnn::Frame::new(&pixels, 28, 28, tinycnn::PixelFormat::Gray8).unwrap();
    assert_eq!(session.run_frame(&frame).unwrap(), &expected[..]);
    assert_eq!(session.class(), argmax(&expected));
    let p: f32 = session.probabilities().iter().sum();
    assert!((p - 1.0).abs() < 1e-5);
}
