//! int4 weights: the `_s4` kernels against the reference (unpack, then the int8 reference), bit
//! for bit, and both forward passes on models of mixed bit widths against a layer-by-layer
//! reference.

mod common;

use common::{
    activations, arch_strategy, conv_case, dense_case, dense_runs_case, naive_dense_acc,
    ramp_input, reference_forward, same_values, streamed, whole_map, ConvCase, DenseCase,
    DenseRuns, Params,
};
use proptest::prelude::*;
use tinycnn::ops::{self, reference};
use tinycnn::weights::{pack_s4, unpack_s4};
use tinycnn::{Arch, Model, OwnedModel, WeightBits, Weights};

const CASES: u32 = 1024;

fn params(channels: usize, fan_in: usize) -> impl Strategy<Value = Params> {
    // int4 sums are ~18x smaller than int8 ones: right shifts near 0 keep outputs spread.
    let shift = prop_oneof![8 => -12i8..=0, 1 => Just(-31i8), 1 => 1i8..=4];
    common::params(channels, fan_in, 1 << 16, shift)
}

/// int4 values in [-7, 7], mostly, with the extremes weighted up.
fn s4_values(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(
        prop_oneof![4 => -7i8..=7, 1 => Just(-7i8), 1 => Just(7i8)],
        n,
    )
}

/// The whole-map and row-by-row conv kernels on int4 weights against the reference on the same
/// packed weights; the int4 reference is also checked against the int8 reference and kernel on
/// the same values.
fn check_conv(c: &ConvCase) -> Result<(), TestCaseError> {
    let rq = c.q.rq();
    let s = c.shape;
    let packed = pack_s4(&c.weights).unwrap();
    let (s4, s8) = (Weights::S4(&packed), Weights::S8(&c.weights));
    let mut full = vec![0i8; s.height * s.width * s.out_channels];
    let mut slow = vec![0i8; s.pooled_len()];
    reference::conv3x3_pool(&c.input, s, s4, &rq, &mut full, &mut slow);
    let mut slow_s8 = vec![0i8; s.pooled_len()];
    reference::conv3x3_pool(&c.input, s, s8, &rq, &mut full, &mut slow_s8);
    prop_assert_eq!(&slow_s8, &slow);
    let mut fast = vec![0x5ai8; s.pooled_len()];
    ops::conv3x3_pool(&c.input, s, s4, &rq, &mut fast);
    same_values(&fast, &slow, "s4")?;
    let mut fast_s8 = vec![0i8; s.pooled_len()];
    ops::conv3x3_pool(&c.input, s, s8, &rq, &mut fast_s8);
    prop_assert_eq!(&fast_s8, &slow);
    let row = s.row();
    for (py, expected) in slow.chunks(row.pooled_row_len()).enumerate() {
        let rows = ops::pool_rows(&c.input, s.height, row.input_row_len(), py);
        let mut out = vec![0x5ai8; row.pooled_row_len()];
        ops::conv3x3_pool_row(rows, row, s4, &rq, &mut out);
        prop_assert_eq!(&out[..], expected, "pooled row {}", py);
    }
    Ok(())
}

fn check_dense(c: &DenseCase) -> Result<(), TestCaseError> {
    let (out, rq) = (c.outputs(), c.q.rq());
    let packed = pack_s4(&c.weights).unwrap();
    let (s4, s8) = (Weights::S4(&packed), Weights::S8(&c.weights));
    let mut slow = vec![0i8; out];
    reference::dense(&c.input, s4, &rq, &mut slow);
    let mut slow_s8 = vec![0i8; out];
    reference::dense(&c.input, s8, &rq, &mut slow_s8);
    prop_assert_eq!(&slow_s8, &slow);
    let mut fast = vec![0i8; out];
    ops::dense(&c.input, s4, &rq, &mut fast);
    prop_assert_eq!(&fast, &slow);
    let mut fast_s8 = vec![0i8; out];
    ops::dense(&c.input, s8, &rq, &mut fast_s8);
    prop_assert_eq!(&fast_s8, &slow);
    Ok(())
}

/// A dense layer accumulated in column runs that start at any element offset (mid-byte
/// included), through the dispatched and the portable `dense_acc` on int4 weights, against the
/// naive sums.
fn check_dense_runs((n, input, w, split, zp): &DenseRuns) -> Result<(), TestCaseError> {
    let (n, split, zp) = (*n, *split, *zp as i32);
    let out = w.len() / n;
    let packed = pack_s4(w).unwrap();
    let packed = Weights::S4(&packed);
    let expected = naive_dense_acc(input, w, n, zp);
    type Acc = fn(&[i8], Weights<'_>, usize, usize, i32, &mut [i32]);
    let kernels: [(&str, Acc); 2] = [
        ("dense_acc", ops::dense_acc),
        ("dense_acc_portable", ops::dense_acc_portable),
    ];
    for (name, kernel) in kernels {
        let mut one = vec![0i32; out];
        kernel(input, packed, 0, n, zp, &mut one);
        prop_assert_eq!(&one, &expected, "{} in one pass", name);
        let mut runs = vec![0i32; out];
        kernel(&input[..split], packed, 0, n, zp, &mut runs);
        kernel(&input[split..], packed, split, n, zp, &mut runs);
        prop_assert_eq!(&runs, &expected, "{} in runs split at {}", name, split);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn conv3x3_pool_on_s4_matches_reference(c in conv_case(1..12, 1..9, 1..9, s4_values, params)) {
        check_conv(&c)?;
    }

    /// `C_in` on both sides of `PATCH_MAX_IN_CHANNELS` (patch path and row path), odd `9 * C_in`.
    #[test]
    fn conv3x3_pool_on_s4_wide_matches_reference(c in {
        let edge = tinycnn::ops::conv::PATCH_MAX_IN_CHANNELS;
        conv_case(1..6, edge - 3..edge + 4, 1..6, s4_values, params)
    }) {
        check_conv(&c)?;
    }

    #[test]
    fn dense_on_s4_matches_reference(c in dense_case(1..40, s4_values, params)) {
        check_dense(&c)?;
    }

    #[test]
    fn dense_acc_on_s4_in_runs_matches_naive(c in dense_runs_case(s4_values)) {
        check_dense_runs(&c)?;
    }
}

fn bits_strategy() -> impl Strategy<Value = Vec<WeightBits>> {
    proptest::collection::vec(
        prop_oneof![Just(WeightBits::S8), Just(WeightBits::S4)],
        tinycnn::MAX_LAYERS,
    )
}

/// `forward` and `forward_rows_from` on a model of the given bit widths equal the reference.
fn check_forward(
    arch: Arch,
    bits: &[WeightBits],
    seed: u64,
    input: &[i8],
) -> Result<(), TestCaseError> {
    let bytes = OwnedModel::random_bits(arch, bits, seed)
        .to_bytes()
        .unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let expected = reference_forward(&model, input).pop().unwrap();
    prop_assert_eq!(&whole_map(&model, input, 0x55), &expected, "forward");
    let streamed = streamed(&model, input, -3);
    prop_assert_eq!(&streamed, &expected, "forward_rows");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn forward_mixed_bits_matches_reference(
        (arch, bits, seed, input) in arch_strategy(1..=23, 1..=6, 1..=11, 2..=5).prop_flat_map(|a| {
            (Just(a), bits_strategy(), any::<u64>(), activations(a.input_len()))
        })
    ) {
        check_forward(arch, &bits, seed, &input)?;
    }
}

#[test]
fn forward_fashion_int4_matches_reference() {
    let arch = Arch::fashion();
    let input = ramp_input(&arch);
    for policy in ["dense4", "all4", "8,4,8,4,8"] {
        let bits = tinycnn::parse_weight_bits(&arch, policy).unwrap();
        check_forward(arch, &bits, 7, &input).unwrap();
    }
    // The logits are not degenerate: random int4 models keep an output spread.
    let bits = tinycnn::parse_weight_bits(&arch, "all4").unwrap();
    let bytes = OwnedModel::random_bits(arch, &bits, 7).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let logits = reference_forward(&model, &input).pop().unwrap();
    assert!(logits.iter().any(|&v| v != logits[0]), "{logits:?}");
}

#[test]
fn unpack_matches_get_at_every_offset() {
    let values: Vec<i8> = (0..37).map(|i| (i % 15) as i8 - 7).collect();
    let packed = pack_s4(&values).unwrap();
    for first in 0..values.len() {
        for len in 0..=values.len() - first {
            let mut out = vec![0i8; len];
            unpack_s4(&packed, first, &mut out);
            assert_eq!(out, values[first..first + len], "first {first} len {len}");
        }
    }
}
