//! int4 weights: the `_s4` kernels against the reference (unpack, then the int8 reference), bit
//! for bit, and both forward passes on models of mixed bit widths against a layer-by-layer
//! reference.

use proptest::prelude::*;
use tinycnn::arch::MAX_PRODUCT;
use tinycnn::ops::{self, reference, ChannelSlices, ConvShape, Requant};
use tinycnn::weights::{pack_s4, unpack_s4};
use tinycnn::{
    forward, forward_rows_from, Arch, Filters, LayerKind, Model, OwnedModel, WeightBits, Weights,
};

const CASES: u32 = 1024;

#[derive(Debug, Clone)]
struct Params {
    bias: Vec<i32>,
    multiplier: Vec<i32>,
    shift: Vec<i8>,
}

fn params(channels: usize, fan_in: usize) -> impl Strategy<Value = Params> {
    let headroom = (i32::MAX as i64 - MAX_PRODUCT * fan_in as i64).min(1 << 16) as i32;
    let multiplier =
        prop_oneof![1 => Just(0i32), 1 => Just(i32::MAX), 8 => (1i32 << 30)..=i32::MAX];
    // int4 sums are ~18x smaller than int8 ones: right shifts near 0 keep outputs spread.
    let shift = prop_oneof![8 => -12i8..=0, 1 => Just(-31i8), 1 => 1i8..=4];
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

/// int4 values in [-7, 7], mostly, with the extremes weighted up.
fn s4_values(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(
        prop_oneof![4 => -7i8..=7, 1 => Just(-7i8), 1 => Just(7i8)],
        n,
    )
}

fn activations(n: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(any::<i8>(), n)
}

fn slices(p: &Params) -> ChannelSlices<'_> {
    ChannelSlices {
        bias: &p.bias,
        multiplier: &p.multiplier,
        shift: &p.shift,
    }
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

fn conv_case(
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
                s4_values(shape.weight_len()),
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

/// The whole-map and row-by-row `_s4` conv kernels against the reference on the same packed
/// weights; the reference is also checked against the int8 kernel on the unpacked values.
fn check_conv(c: &ConvCase) -> Result<(), TestCaseError> {
    let p = slices(&c.params);
    let rq = Requant {
        params: &p,
        input_zero_point: c.zp_in,
        output_zero_point: c.zp_out,
        relu: c.relu,
    };
    let s = c.shape;
    let packed = pack_s4(&c.weights).unwrap();
    let mut unpacked = vec![0i8; s.weight_len()];
    let mut full = vec![0i8; s.height * s.width * s.out_channels];
    let mut slow = vec![0i8; s.pooled_len()];
    reference::conv3x3_pool_s4(
        &c.input,
        s,
        &packed,
        &rq,
        &mut unpacked,
        &mut full,
        &mut slow,
    );
    prop_assert_eq!(&unpacked, &c.weights);
    let mut fast = vec![0x5ai8; s.pooled_len()];
    ops::conv3x3_pool_s4(&c.input, s, &packed, &rq, &mut fast);
    if let Some(i) = fast.iter().zip(&slow).position(|(a, b)| a != b) {
        return Err(TestCaseError::fail(format!(
            "first difference at index {i}: s4 {} reference {}",
            fast[i], slow[i]
        )));
    }
    let mut s8 = vec![0i8; s.pooled_len()];
    ops::conv3x3_pool_s8(&c.input, s, &c.weights, &rq, &mut s8);
    prop_assert_eq!(&s8, &slow);
    let row = s.row();
    for (py, expected) in slow.chunks(row.pooled_row_len()).enumerate() {
        let rows = ops::pool_rows(&c.input, s.height, row.input_row_len(), py);
        let mut out = vec![0x5ai8; row.pooled_row_len()];
        ops::conv3x3_pool_row_s4(rows, row, &packed, &rq, &mut out);
        prop_assert_eq!(&out[..], expected, "pooled row {}", py);
    }
    Ok(())
}

type DenseCase = (Vec<i8>, Vec<i8>, Params, i8, i8, bool);

fn dense_case() -> impl Strategy<Value = DenseCase> {
    (0usize..300, 1usize..40).prop_flat_map(|(n, out)| {
        (
            activations(n),
            s4_values(n * out),
            params(out, n),
            any::<i8>(),
            any::<i8>(),
            any::<bool>(),
        )
    })
}

fn check_dense((input, w, p, zp_in, zp_out, relu): &DenseCase) -> Result<(), TestCaseError> {
    let out = p.bias.len();
    let ps = slices(p);
    let rq = Requant {
        params: &ps,
        input_zero_point: *zp_in,
        output_zero_point: *zp_out,
        relu: *relu,
    };
    let packed = pack_s4(w).unwrap();
    let mut unpacked = vec![0i8; w.len()];
    let mut slow = vec![0i8; out];
    reference::dense_s4(input, &packed, &rq, &mut unpacked, &mut slow);
    let mut fast = vec![0i8; out];
    ops::dense_s4(input, &packed, &rq, &mut fast);
    prop_assert_eq!(&fast, &slow);
    let mut s8 = vec![0i8; out];
    ops::dense_s8(input, w, &rq, &mut s8);
    prop_assert_eq!(&s8, &slow);
    Ok(())
}

/// A dense layer accumulated in column runs that start at any element offset (mid-byte
/// included), through the dispatched and the portable `dense_acc_s4`, against the naive sums.
fn check_dense_runs(
    (n, input, w, split, zp): &(usize, Vec<i8>, Vec<i8>, usize, i8),
) -> Result<(), TestCaseError> {
    let (n, split, zp) = (*n, *split, *zp as i32);
    let out = w.len() / n;
    let packed = pack_s4(w).unwrap();
    let expected: Vec<i32> = (0..out)
        .map(|o| {
            (0..n)
                .map(|i| (input[i] as i32 - zp) * w[o * n + i] as i32)
                .sum()
        })
        .collect();
    type Acc = fn(&[i8], &[u8], usize, usize, i32, &mut [i32]);
    let kernels: [(&str, Acc); 2] = [
        ("dense_acc_s4", ops::dense_acc_s4),
        ("dense_acc_s4_portable", ops::dense_acc_s4_portable),
    ];
    for (name, kernel) in kernels {
        let mut one = vec![0i32; out];
        kernel(input, &packed, 0, n, zp, &mut one);
        prop_assert_eq!(&one, &expected, "{} in one pass", name);
        let mut runs = vec![0i32; out];
        kernel(&input[..split], &packed, 0, n, zp, &mut runs);
        kernel(&input[split..], &packed, split, n, zp, &mut runs);
        prop_assert_eq!(&runs, &expected, "{} in runs split at {}", name, split);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn conv3x3_pool_s4_matches_reference(c in conv_case(1..12, 1..9, 1..9)) {
        check_conv(&c)?;
    }

    /// `C_in` on both sides of `PATCH_MAX_IN_CHANNELS` (patch path and row path), odd `9 * C_in`.
    #[test]
    fn conv3x3_pool_s4_wide_matches_reference(c in {
        let edge = tinycnn::ops::conv::PATCH_MAX_IN_CHANNELS;
        conv_case(1..6, edge - 3..edge + 4, 1..6)
    }) {
        check_conv(&c)?;
    }

    #[test]
    fn dense_s4_matches_reference(c in dense_case()) {
        check_dense(&c)?;
    }

    #[test]
    fn dense_acc_s4_in_runs_matches_naive(c in (1usize..200, 1usize..10).prop_flat_map(|(n, out)| {
        (Just(n), activations(n), s4_values(n * out), 0..=n, any::<i8>())
    })) {
        check_dense_runs(&c)?;
    }
}

/// The network layer by layer with the reference kernels, each layer at its bit width.
fn reference_forward(model: &Model, input: &[i8]) -> Vec<i8> {
    let mut x = input.to_vec();
    let mut zp = model.input.zero_point;
    for (spec, layer) in model.arch.layers().zip(model.layers.iter()) {
        let rq = Requant {
            params: layer,
            input_zero_point: zp,
            output_zero_point: layer.output().zero_point,
            relu: spec.relu,
        };
        let mut out = vec![0i8; spec.output_len];
        let mut unpacked = vec![0i8; spec.weight_len()];
        match (spec.kind, layer.weights()) {
            (LayerKind::ConvBlock(shape), w) => {
                let mut full = vec![0i8; shape.height * shape.width * shape.out_channels];
                match w {
                    Weights::S8(w) => {
                        reference::conv3x3_pool_s8(&x, shape, w, &rq, &mut full, &mut out)
                    }
                    Weights::S4(w) => reference::conv3x3_pool_s4(
                        &x,
                        shape,
                        w,
                        &rq,
                        &mut unpacked,
                        &mut full,
                        &mut out,
                    ),
                }
            }
            (LayerKind::Dense, Weights::S8(w)) => reference::dense_s8(&x, w, &rq, &mut out),
            (LayerKind::Dense, Weights::S4(w)) => {
                reference::dense_s4(&x, w, &rq, &mut unpacked, &mut out)
            }
        }
        zp = layer.output().zero_point;
        x = out;
    }
    x
}

fn arch_strategy() -> impl Strategy<Value = Arch> {
    (
        1u16..24,
        1u16..24,
        any::<bool>(),
        proptest::collection::vec(1u16..7, 1..=tinycnn::MAX_BLOCKS),
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
    let expected = reference_forward(&model, input);
    let mut scratch = vec![0x55i8; arch.scratch_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    forward(&model, input, &mut scratch, &mut logits);
    prop_assert_eq!(&logits, &expected, "forward");
    let mut scratch = vec![-3i8; arch.stream_scratch_len()];
    let mut acc = vec![12345i32; arch.stream_acc_len()];
    let mut streamed = vec![0i8; arch.classes as usize];
    forward_rows_from(&model, input, &mut scratch, &mut acc, &mut streamed);
    prop_assert_eq!(&streamed, &expected, "forward_rows");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn forward_mixed_bits_matches_reference(
        (arch, bits, seed, input) in arch_strategy().prop_flat_map(|a| {
            (Just(a), bits_strategy(), any::<u64>(), activations(a.input_len()))
        })
    ) {
        check_forward(arch, &bits, seed, &input)?;
    }
}

#[test]
fn forward_fashion_int4_matches_reference() {
    let arch = Arch::fashion();
    let input: Vec<i8> = (0..arch.input_len())
        .map(|i| ((i * 37) % 256) as u8 as i8)
        .collect();
    for policy in ["dense4", "all4", "8,4,8,4,8"] {
        let bits = tinycnn::parse_weight_bits(&arch, policy).unwrap();
        check_forward(arch, &bits, 7, &input).unwrap();
    }
    // The logits are not degenerate: random int4 models keep an output spread.
    let bits = tinycnn::parse_weight_bits(&arch, "all4").unwrap();
    let bytes = OwnedModel::random_bits(arch, &bits, 7).to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let logits = reference_forward(&model, &input);
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
