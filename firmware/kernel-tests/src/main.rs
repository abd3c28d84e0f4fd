//! On-target kernel suite: seeded random cases run through tinycnn's Cortex-M DSP kernels, its
//! portable kernels (the same crate, compiled for the same target) and `ops::reference`, which
//! must all agree exactly.
//!
//! Prints one line per case over semihosting (a failing case names the kernel and the first
//! differing index), then libtest's `test result:` line. Exit code 0: every case passed; 1: a
//! case failed, or a panic or HardFault. Runs unchanged on QEMU `mps2-an386` (M4) and
//! `mps2-an500` (M7):
//!
//! ```sh
//! cd firmware && cargo build --release -p tinycnn-kernel-tests
//! timeout 120 qemu-system-arm -cpu cortex-m7 -machine mps2-an500 -nographic -monitor none \
//!   -serial none -semihosting-config enable=on,target=native \
//!   -kernel target/thumbv7em-none-eabihf/release/kernel-tests
//! ```
#![no_std]
#![no_main]

use cortex_m_rt::{entry, exception, ExceptionFrame};
use semihosting::println;
use tinycnn::ops::reference;
use tinycnn::ops::{
    conv3x3_pool, conv3x3_pool_row_portable, conv3x3_pool_row_s8_dsp, dense, dense_acc_portable,
    dense_acc_s4_dsp, dense_acc_s8_dsp, pool_rows, requantize_dsp, ChannelSlices, ConvShape,
    Requant,
};
use tinycnn::quant::{requantize, MAX_SHIFT, MIN_SHIFT};
use tinycnn::weights::{pack_s4_into, WeightBits, Weights};

/// Largest conv cases: 9 x 9 x 64 input; 72 filters (two blocks of output stages); 1,023-pixel
/// rows.
const MAX_INPUT: usize = 9 * 9 * 64;
const MAX_CO: usize = 72;
const MAX_WEIGHTS: usize = MAX_CO * 9 * 64;
const MAX_FULL: usize = 4096;
const MAX_POOLED: usize = 1024;
/// Largest dense case: 2,051 inputs (more than one 1,024-input chunk of the DSP kernel), row
/// stride up to 2,060, 17 outputs.
const MAX_N: usize = 2051;
const MAX_STRIDE: usize = 2060;
const MAX_OUT: usize = 17;

// SplitMix64: a seeded generator, the same sequence on every run and board.
use tinycnn::rng::SplitMix64 as Rng;

/// How a case draws its activations and weights.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// Uniform int8 activations, weights in [-127, 127].
    Random,
    /// `x - zp = +255` or `-255` everywhere (x = 127, zp = -128 or x = -128, zp = 127) with
    /// weights of +-127, the largest terms the accumulator bound allows.
    Extreme,
    /// Activations and weights drawn from their extremes only, mixed signs.
    Corners,
}

fn fill_activations(rng: &mut Rng, fill: Fill, zp: i8, out: &mut [i8]) {
    for v in out.iter_mut() {
        *v = match fill {
            Fill::Random => rng.range(-128, 127) as i8,
            Fill::Extreme => {
                if zp == -128 {
                    127
                } else {
                    -128
                }
            }
            Fill::Corners => [-128, 127, 0, zp][rng.range(0, 3) as usize],
        };
    }
}

/// Weights in `[-max, max]`: `max` is 127 for int8 weights, 7 for int4.
fn fill_weights(rng: &mut Rng, fill: Fill, max: i8, sign: i8, out: &mut [i8]) {
    for v in out.iter_mut() {
        *v = match fill {
            Fill::Random => rng.range(-max as i32, max as i32) as i8,
            Fill::Extreme => max * sign,
            Fill::Corners => [-max, max, 0, 1][rng.range(0, 3) as usize],
        };
    }
}

/// Draws case `index`'s operands: its input zero point (returned), the activations into
/// `input` and weights in `[-max_weight, max_weight]` into `weights`. With [`Fill::Extreme`]
/// every `x - zp` is +255 (even cases) or -255 (odd ones) and the weights' sign alternates
/// every two cases.
fn draw_operands(
    rng: &mut Rng,
    fill: Fill,
    index: usize,
    max_weight: i8,
    input: &mut [i8],
    weights: &mut [i8],
) -> i8 {
    let zp = match fill {
        Fill::Extreme if index % 2 == 0 => -128,
        Fill::Extreme => 127,
        _ => rng.range(-128, 127) as i8,
    };
    let sign = if index % 4 < 2 { 1 } else { -1 };
    fill_activations(rng, fill, zp, input);
    fill_weights(rng, fill, max_weight, sign, weights);
    zp
}

/// Accumulator magnitude of `taps` products with weights up to `max_weight` (about
/// `typical_weight` when random): what [`Params::draw`] scales the outputs for.
fn accumulator_scale(fill: Fill, taps: u32, max_weight: u32, typical_weight: u32) -> u32 {
    match fill {
        Fill::Extreme => 255 * max_weight * taps,
        _ => 100 * typical_weight * taps.isqrt() + 1,
    }
}

/// A dense accumulation kernel's two builds, `dsp` and `portable`, over `out` outputs against
/// the i64 sums of `(x - zp) * weight(o, i)` over `input`. Both accumulate on top of the same
/// random starting values, as fc1 does run by run. Prints the first difference like
/// [`outputs_agree`].
fn accumulators_agree(
    rng: &mut Rng,
    case: core::fmt::Arguments,
    (input, zp, out): (&[i8], i8, usize),
    weight: impl Fn(usize, usize) -> i64,
    dsp: impl FnOnce(&mut [i32]),
    portable: impl FnOnce(&mut [i32]),
) -> bool {
    let mut start = [0i32; MAX_OUT];
    for s in start[..out].iter_mut() {
        *s = rng.range(-1 << 20, 1 << 20);
    }
    let (mut dsp_acc, mut portable_acc) = (start, start);
    dsp(&mut dsp_acc[..out]);
    portable(&mut portable_acc[..out]);
    let mut expected = [0i32; MAX_OUT];
    for (o, e) in expected[..out].iter_mut().enumerate() {
        let sum: i64 = input
            .iter()
            .enumerate()
            .map(|(i, &x)| (x as i64 - zp as i64) * weight(o, i))
            .sum();
        *e = i32::try_from(start[o] as i64 + sum).expect("accumulator bound");
    }
    let accumulators = [
        ("dsp accumulator", &dsp_acc[..out]),
        ("portable accumulator", &portable_acc[..out]),
    ];
    outputs_agree(case, "the i64 sum", &accumulators, &expected[..out])
}

/// Per-channel requantization parameters for `len <= MAX_CO` channels, and the output zero
/// point.
struct Params {
    bias: [i32; MAX_CO],
    multiplier: [i32; MAX_CO],
    shift: [i8; MAX_CO],
    len: usize,
    output_zero_point: i8,
}

impl Params {
    /// Parameters that keep outputs spread over int8 for accumulators of about `scale` (so a
    /// wrong accumulator shows in the output): multiplier in [0.5, 1) Q0.31, right shift
    /// `log2(scale) - 6`, small random biases; then an output zero point in
    /// `-128..=max_output_zero_point`.
    fn draw(rng: &mut Rng, scale: u32, len: usize, max_output_zero_point: i32) -> Self {
        let mut params = Self {
            bias: [0; MAX_CO],
            multiplier: [0; MAX_CO],
            shift: [0; MAX_CO],
            len,
            output_zero_point: 0,
        };
        let base = -((32 - scale.leading_zeros()) as i32 - 6).clamp(0, 31);
        let channels = params.bias[..len]
            .iter_mut()
            .zip(&mut params.multiplier[..len])
            .zip(&mut params.shift[..len]);
        for ((b, m), s) in channels {
            *b = rng.range(-4096, 4096);
            *m = rng.range(1 << 30, i32::MAX);
            *s = (base + rng.range(-1, 1)).clamp(-31, 0) as i8;
        }
        params.output_zero_point = rng.range(-128, max_output_zero_point) as i8;
        params
    }

    fn slices(&self) -> ChannelSlices<'_> {
        ChannelSlices {
            bias: &self.bias[..self.len],
            multiplier: &self.multiplier[..self.len],
            shift: &self.shift[..self.len],
        }
    }

    /// The requantization with `slices` (of `self`), input zero point `zp` and ReLU if `relu`.
    fn requant<'p>(
        &self,
        slices: &'p ChannelSlices<'p>,
        zp: i8,
        relu: bool,
    ) -> Requant<'p, ChannelSlices<'p>> {
        Requant {
            params: slices,
            input_zero_point: zp,
            output_zero_point: self.output_zero_point,
            relu,
        }
    }
}

/// The requantization of a whole dense layer.
type DenseRequant<'p> = Requant<'p, ChannelSlices<'p>>;

/// A whole dense layer of `out` outputs, input zero point `zp`: `layer` (the dispatched kernel,
/// named `name`) against `reference`, both given the same [`DenseRequant`] for accumulators of
/// about `scale`, a random output zero point and ReLU on even cases. Prints the first
/// difference like [`outputs_agree`].
fn dense_layer_agrees(
    rng: &mut Rng,
    case: core::fmt::Arguments,
    (index, zp, scale, out): (usize, i8, u32, usize),
    name: &str,
    layer: impl FnOnce(&DenseRequant, &mut [i8]),
    reference: impl FnOnce(&DenseRequant, &mut [i8]),
) -> bool {
    let params = Params::draw(rng, scale, out, 127);
    let slices = params.slices();
    let rq = params.requant(&slices, zp, index % 2 == 0);
    let mut got = [0i8; MAX_OUT];
    let mut want = [0i8; MAX_OUT];
    layer(&rq, &mut got[..out]);
    reference(&rq, &mut want[..out]);
    outputs_agree(case, "reference", &[(name, &got[..out])], &want[..out])
}

/// Checks each `(name, got)` of `outputs` against `want`. At the first difference prints
/// `FAIL {case}: {name} differs from {reference} first at output {i}: ..` and returns false.
fn outputs_agree<T: PartialEq + core::fmt::Display>(
    case: core::fmt::Arguments,
    reference: &str,
    outputs: &[(&str, &[T])],
    want: &[T],
) -> bool {
    for (name, got) in outputs {
        if let Some(i) = first_difference(got, want) {
            println!(
                "FAIL {case}: {name} differs from {reference} first at output {i}: {} != {}",
                got[i], want[i]
            );
            return false;
        }
    }
    true
}

/// The first index where `a` and `b` differ.
fn first_difference<T: PartialEq>(a: &[T], b: &[T]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[derive(Clone, Copy, Debug)]
struct ConvCase {
    height: usize,
    width: usize,
    in_channels: usize,
    out_channels: usize,
    fill: Fill,
}

const CONV_CASES: &[ConvCase] = &{
    const fn c(h: usize, w: usize, ci: usize, co: usize, fill: Fill) -> ConvCase {
        ConvCase {
            height: h,
            width: w,
            in_channels: ci,
            out_channels: co,
            fill,
        }
    }
    use Fill::{Corners, Extreme, Random};
    [
        // conv1 shapes: K = 9 and 27, not multiples of 4.
        c(7, 5, 1, 8, Random),
        c(9, 9, 1, 32, Random),
        c(5, 7, 3, 32, Random),
        c(8, 6, 3, 16, Random),
        c(1, 1, 1, 3, Random),
        c(1, 9, 3, 5, Random),
        c(9, 1, 1, 4, Random),
        c(3, 3, 3, 7, Extreme),
        c(4, 5, 1, 9, Extreme),
        c(6, 3, 3, 2, Corners),
        // conv2/conv3 shapes: C_in 32 and 64.
        c(7, 7, 32, 32, Random),
        c(6, 8, 32, 16, Random),
        c(5, 3, 64, 32, Random),
        c(9, 9, 64, 32, Random),
        c(2, 2, 64, 1, Random),
        c(3, 5, 32, 3, Extreme),
        c(5, 5, 64, 8, Extreme),
        c(3, 3, 32, 5, Corners),
        // Other widths: C_in % 4 = 1, 2, 3, 0 on the generic and the word-run gathers.
        c(5, 4, 2, 6, Random),
        c(4, 7, 5, 11, Random),
        c(3, 6, 8, 4, Random),
        c(5, 5, 17, 6, Corners),
        c(3, 3, 63, 5, Random),
        // Rows too wide for the padded-row copies of C_in <= 3: the generic gather.
        c(2, 341, 3, 4, Random),
        c(2, 1023, 1, 2, Corners),
        // More than 64 output channels: output stages in two blocks.
        c(3, 5, 3, 70, Random),
        c(3, 3, 32, 72, Random),
    ]
};

fn conv_case(index: usize, case: &ConvCase, rng: &mut Rng) -> bool {
    let shape = ConvShape {
        height: case.height,
        width: case.width,
        in_channels: case.in_channels,
        out_channels: case.out_channels,
    };
    let (input_len, weight_len, pooled_len) =
        (shape.input_len(), shape.weight_len(), shape.pooled_len());
    let full_len = case.height * case.width * case.out_channels;
    let co = case.out_channels;

    let mut input = [0i8; MAX_INPUT];
    let mut weights = [0i8; MAX_WEIGHTS];
    let (inputs, weight_values) = (&mut input[..input_len], &mut weights[..weight_len]);
    let zp = draw_operands(rng, case.fill, index, 127, inputs, weight_values);
    let (input, weights) = (&input[..input_len], &weights[..weight_len]);

    let scale = accumulator_scale(case.fill, 9 * case.in_channels as u32, 127, 70);
    let params = Params::draw(rng, scale, co, 20);
    let slices = params.slices();
    let rq = params.requant(&slices, zp, index % 3 != 2);

    let row = shape.row();
    let pooled_h = case.height.div_ceil(2);
    let mut dsp = [0i8; MAX_POOLED];
    let mut portable = [0i8; MAX_POOLED];
    let mut dispatched = [0i8; MAX_POOLED];
    let mut reference_out = [0i8; MAX_POOLED];
    let mut full = [0i8; MAX_FULL];
    let row_len = row.pooled_row_len();
    for py in 0..pooled_h {
        let rows = pool_rows(input, case.height, row.input_row_len(), py);
        let out = &mut dsp[py * row_len..][..row_len];
        if !conv3x3_pool_row_s8_dsp(rows, row, weights, &rq, out) {
            println!(
                "conv case {index} {case:?}: the DSP kernel declined C_in {}",
                case.in_channels
            );
            return false;
        }
        let out = &mut portable[py * row_len..][..row_len];
        conv3x3_pool_row_portable(rows, row, Weights::S8(weights), &rq, out);
    }
    let w = Weights::S8(weights);
    conv3x3_pool(input, shape, w, &rq, &mut dispatched[..pooled_len]);
    reference::conv3x3_pool(
        input,
        shape,
        w,
        &rq,
        &mut full[..full_len],
        &mut reference_out[..pooled_len],
    );

    let (ow, reference_out) = (case.width.div_ceil(2), &reference_out[..pooled_len]);
    for (name, got) in [
        ("dsp", &dsp[..pooled_len]),
        ("portable", &portable[..pooled_len]),
        ("conv3x3_pool", &dispatched[..pooled_len]),
    ] {
        if let Some(i) = first_difference(got, reference_out) {
            let (pixel, c) = (i / co, i % co);
            println!(
                "FAIL conv case {index} {case:?} zp={zp}: {name} differs from reference first at \
                 index {i} (y={} x={} channel={c}): {} != {}",
                pixel / ow,
                pixel % ow,
                got[i],
                reference_out[i]
            );
            return false;
        }
    }
    let distinct = count_distinct(reference_out);
    println!(
        "ok conv case {index}: {}x{}x{} -> {} {:?} zp={zp}, {pooled_len} outputs ({distinct} distinct)",
        case.height,
        case.width,
        case.in_channels,
        co,
        case.fill
    );
    true
}

fn count_distinct(values: &[i8]) -> usize {
    let mut seen = [false; 256];
    for &v in values {
        seen[(v as i32 + 128) as usize] = true;
    }
    seen.iter().filter(|&&s| s).count()
}

#[derive(Clone, Copy, Debug)]
struct DenseCase {
    inputs: usize,
    stride_extra: usize,
    outputs: usize,
    fill: Fill,
}

const DENSE_CASES: &[DenseCase] = &{
    const fn d(n: usize, extra: usize, out: usize, fill: Fill) -> DenseCase {
        DenseCase {
            inputs: n,
            stride_extra: extra,
            outputs: out,
            fill,
        }
    }
    use Fill::{Corners, Extreme, Random};
    [
        d(1, 0, 2, Random),
        d(3, 0, 1, Random),
        d(4, 0, 3, Random),
        d(5, 1, 2, Random),
        d(9, 0, 16, Random),
        d(27, 3, 5, Random),
        d(64, 0, 16, Random),
        d(127, 2, 17, Random),
        d(128, 0, 10, Random),
        d(1024, 0, 16, Random),
        d(1029, 3, 7, Random),
        d(2051, 9, 4, Random),
        d(256, 0, 16, Extreme),
        d(255, 1, 3, Extreme),
        d(2048, 0, 2, Extreme),
        d(97, 5, 9, Corners),
    ]
};

/// A dense case at weight width `bits`: `dense_acc`'s DSP kernel and its portable one against
/// the i64 sums, each row's run starting `first` elements in (int4: `index % 3`, so odd starts
/// read a high nibble first and an odd stride alternates the parity row by row; int8: 0), then
/// the whole `dense` layer against `reference::dense`.
fn dense_case(index: usize, case: &DenseCase, bits: WeightBits, rng: &mut Rng) -> bool {
    let (n, out) = (case.inputs, case.outputs);
    let stride = n + case.stride_extra;
    let first = match bits {
        WeightBits::S8 => 0,
        WeightBits::S4 => index % 3,
    };
    let max_weight = bits.qmax() as i8;
    let mut input = [0i8; MAX_N];
    let mut values = [0i8; MAX_OUT * MAX_STRIDE + 2];
    let len = first + (out - 1) * stride + n;
    let (inputs, weight_values) = (&mut input[..n], &mut values[..len]);
    let zp = draw_operands(rng, case.fill, index, max_weight, inputs, weight_values);
    let (input, values) = (&input[..n], &values[..len]);
    let mut packed = [0u8; (MAX_OUT * MAX_STRIDE + 2).div_ceil(2)];
    let weights = match bits {
        WeightBits::S8 => Weights::S8(values),
        WeightBits::S4 => {
            pack_s4_into(values, &mut packed);
            Weights::S4(&packed[..len.div_ceil(2)])
        }
    };

    let agrees = accumulators_agree(
        rng,
        format_args!("dense {bits} case {index} {case:?} first={first} zp={zp}"),
        (input, zp, out),
        |o, i| weights.get(first + o * stride + i) as i64,
        |acc| match weights {
            Weights::S8(w) => dense_acc_s8_dsp(input, &w[first..], stride, zp as i32, acc),
            Weights::S4(w) => dense_acc_s4_dsp(input, w, first, stride, zp as i32, acc),
        },
        |acc| dense_acc_portable(input, weights, first, stride, zp as i32, acc),
    );
    if !agrees {
        return false;
    }

    // The whole layer (`dense` runs the dispatched `dense_acc`) against the reference.
    if case.stride_extra == 0 && first == 0 {
        let typical_weight = match bits {
            WeightBits::S8 => 70,
            WeightBits::S4 => 4,
        };
        let scale = accumulator_scale(case.fill, n as u32, bits.qmax() as u32, typical_weight);
        let agrees = dense_layer_agrees(
            rng,
            format_args!("dense {bits} case {index} {case:?} zp={zp}"),
            (index, zp, scale, out),
            "dense",
            |rq, got| dense(input, weights, rq, got),
            |rq, want| reference::dense(input, weights, rq, want),
        );
        if !agrees {
            return false;
        }
    }
    println!(
        "ok dense {bits} case {index}: {n} -> {out} (stride {stride}, first {first}) {:?} zp={zp}",
        case.fill
    );
    true
}

/// Random draws per round of the requantization comparison.
const REQUANT_DRAWS: u32 = 20_000;

/// The DSP kernels' output stage against `quant::requantize` (the definition): random and
/// edge accumulators, multipliers (0, 1, 2^30, i32::MAX, negative, i32::MIN), every shift, ReLU on/off.
fn requant_case(rng: &mut Rng) -> bool {
    const ACC_EDGES: [i32; 9] = [
        0,
        1,
        -1,
        i32::MAX,
        i32::MIN,
        1 << 30,
        -(1 << 30),
        12345,
        -54321,
    ];
    const MULT_EDGES: [i32; 7] = [0, 1, 1 << 30, i32::MAX, (1 << 30) + 1, -(1 << 30), i32::MIN];
    for draw in 0..REQUANT_DRAWS {
        let acc = if draw % 4 == 0 {
            ACC_EDGES[rng.range(0, ACC_EDGES.len() as i32 - 1) as usize]
        } else {
            let bits = rng.range(0, 31);
            (rng.next_u64() as i32) >> bits
        };
        let multiplier = if draw % 3 == 0 {
            MULT_EDGES[rng.range(0, MULT_EDGES.len() as i32 - 1) as usize]
        } else {
            rng.range(1 << 30, i32::MAX)
        };
        let shift = rng.range(MIN_SHIFT, MAX_SHIFT);
        let zero_point = rng.range(-128, 127) as i8;
        let relu = draw % 2 == 0;
        let got = requantize_dsp(acc, multiplier, shift, zero_point, relu);
        let want = requantize(acc, multiplier, shift, zero_point, relu);
        if got != want {
            println!(
                "FAIL requantize_dsp(acc={acc}, multiplier={multiplier}, shift={shift}, \
                 zero_point={zero_point}, relu={relu}) = {got}, requantize gives {want}"
            );
            return false;
        }
    }
    println!("ok requantize: {REQUANT_DRAWS} draws");
    true
}

#[entry]
fn main() -> ! {
    /// Seeded rounds: every case runs this many times with fresh random data.
    const ROUNDS: u64 = 3;
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut tally = |ok: bool| {
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    };
    for round in 0..ROUNDS {
        let mut rng = Rng(0x7153_0dd5 + round);
        println!("round {round} (seed {:#x})", rng.0);
        for (i, case) in CONV_CASES.iter().enumerate() {
            tally(conv_case(i, case, &mut rng));
        }
        for bits in [WeightBits::S8, WeightBits::S4] {
            for (i, case) in DENSE_CASES.iter().enumerate() {
                tally(dense_case(i, case, bits, &mut rng));
            }
        }
        tally(requant_case(&mut rng));
    }
    // libtest's summary line, which `cargo xtask test` adds to its totals.
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("test result: {verdict}. {passed} passed; {failed} failed; 0 ignored");
    semihosting::process::exit(if failed == 0 { 0 } else { 1 })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {info}");
    semihosting::process::exit(1)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    println!(
        "HardFault at pc={:#010x} lr={:#010x}",
        frame.pc(),
        frame.lr()
    );
    semihosting::process::exit(1)
}
