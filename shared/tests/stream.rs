//! The streaming forward pass (`forward_rows`) against the whole-map `forward`, bit for bit, on
//! random architectures of every block count, and its buffer plan.

mod common;

use common::{arch_strategy, lcg_bytes, model_bytes, qvga_rgb565, streamed};
use proptest::prelude::*;
use tinycnn::{forward_rows, forward_rows_from, Arch, Filters, Model};

const CASES: u32 = 256;

fn whole_map(model: &Model, input: &[i8]) -> Vec<i8> {
    common::whole_map(model, input, 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Architectures of 1..=6 blocks with odd and even sizes, gray or RGB, small filter counts.
    #[test]
    fn streaming_equals_whole_map(arch in arch_strategy(1..=40, 1..=12, 1..=20, 2..=12), seed in any::<u64>(), dirt in any::<i8>()) {
        prop_assume!(arch.validate().is_ok());
        let bytes = model_bytes(arch, seed);
        let model = Model::from_bytes(&bytes).unwrap();
        let input: Vec<i8> = lcg_bytes(seed ^ 0x9e37_79b9_7f4a_7c15, arch.input_len())
            .into_iter()
            .map(|b| b as i8)
            .collect();
        prop_assert_eq!(streamed(&model, &input, dirt), whole_map(&model, &input));
    }
}

/// Every block count from 1 to 6, with odd sizes at every level, on both presets' channel
/// counts: a deterministic sweep next to the proptest.
#[test]
fn every_block_count_and_odd_sizes() {
    for blocks in 1..=6 {
        for (height, width, channels) in [(37, 29, 3), (1, 1, 1), (2, 3, 1), (64, 5, 3), (7, 7, 1)]
        {
            let counts = [5, 8, 3, 7, 4, 6];
            let arch = Arch {
                height,
                width,
                channels,
                filters: Filters::new(&counts[..blocks]).unwrap(),
                fc_width: 9,
                classes: 3,
            };
            let bytes = model_bytes(arch, blocks as u64 * 31 + height as u64);
            let model = Model::from_bytes(&bytes).unwrap();
            for pattern in 0..3 {
                let input: Vec<i8> = (0..arch.input_len())
                    .map(|i| (i * 37 + pattern * 101) as i8)
                    .collect();
                assert_eq!(
                    streamed(&model, &input, 0x55),
                    whole_map(&model, &input),
                    "{arch:?} pattern {pattern}"
                );
            }
        }
    }
}

/// Both presets, on a random model: logits equal, and the const-fn plan meets its budgets.
#[test]
fn presets_stream_bit_exactly_within_budget() {
    for arch in [Arch::fashion(), Arch::tutorial(2)] {
        let bytes = model_bytes(arch, 7);
        let model = Model::from_bytes(&bytes).unwrap();
        let input: Vec<i8> = (0..arch.input_len()).map(|i| (i * 7 / 3) as i8).collect();
        assert_eq!(streamed(&model, &input, -3), whole_map(&model, &input));
    }
    assert!(Arch::tutorial(2).peak_activation_bytes() <= 16 * 1024);
    assert!(Arch::fashion().peak_activation_bytes() <= 4 * 1024);
    assert_eq!(
        Arch::fashion().peak_activation_bytes(),
        112 + 1792 + 896 + 256 + 512 + 128 + 10
    );
}

/// The input rows are pulled in order, once each, and a row source's error ends the pass.
#[test]
fn rows_are_pulled_in_order_and_errors_stop_the_pass() {
    let arch = Arch {
        height: 23,
        ..Arch::fashion()
    };
    let bytes = model_bytes(arch, 3);
    let model = Model::from_bytes(&bytes).unwrap();
    let mut scratch = vec![0i8; arch.stream_scratch_len()];
    let mut acc = vec![0i32; arch.stream_acc_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    let mut seen = Vec::new();
    let ok: Result<(), ()> = forward_rows(
        &model,
        &mut |y, row| {
            assert_eq!(row.len(), 28);
            seen.push(y);
            row.fill(y as i8);
            Ok(())
        },
        &mut scratch,
        &mut acc,
        &mut logits,
    );
    assert_eq!(ok, Ok(()));
    assert_eq!(seen, (0..23).collect::<Vec<_>>());

    let mut pulled = 0;
    let err = forward_rows(
        &model,
        &mut |y, _| {
            pulled += 1;
            if y == 9 {
                Err(y)
            } else {
                Ok(())
            }
        },
        &mut scratch,
        &mut acc,
        &mut logits,
    );
    assert_eq!(err, Err(9));
    assert_eq!(pulled, 10);
}

/// The ring check: a ring of 4 rows is enough for the pull order, and every read asserts the
/// row is still in its slot. Running every block count with the smallest and tallest inputs a
/// block sees (height 1, 2, 3 and 4k+{0..3}) exercises every edge row pattern.
#[test]
fn four_ring_rows_suffice_for_every_edge_pattern() {
    assert_eq!(Arch::RING_ROWS, 4);
    for height in 1..=19 {
        for blocks in 1..=4 {
            let arch = Arch {
                height,
                width: 3,
                channels: 1,
                filters: Filters::new(&[2, 3, 2, 2][..blocks]).unwrap(),
                fc_width: 4,
                classes: 2,
            };
            let bytes = model_bytes(arch, height as u64);
            let model = Model::from_bytes(&bytes).unwrap();
            let input: Vec<i8> = (0..arch.input_len()).map(|i| (i * 53) as i8).collect();
            assert_eq!(
                streamed(&model, &input, 1),
                whole_map(&model, &input),
                "{arch:?}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "scratch is")]
fn short_scratch_is_a_clear_panic() {
    let arch = Arch::fashion();
    let bytes = model_bytes(arch, 1);
    let model = Model::from_bytes(&bytes).unwrap();
    let input = vec![0i8; arch.input_len()];
    let mut scratch = vec![0i8; arch.stream_scratch_len() - 1];
    let mut acc = vec![0i32; arch.stream_acc_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    forward_rows_from(&model, &input, &mut scratch, &mut acc, &mut logits);
}

/// The firmware's pipeline on the host: camera rows -> `RowPreprocessor` -> `forward_rows`
/// equals `preprocess` of the whole frame -> `forward`.
#[test]
fn camera_rows_through_the_network_equal_the_whole_frame_path() {
    use tinycnn::preprocess::row_window_len;
    use tinycnn::{preprocess, Frame, PixelFormat, RowPreprocessor};
    let qvga = qvga_rgb565(13, 977);
    for arch in [Arch::fashion(), Arch::tutorial(3)] {
        let bytes = model_bytes(arch, 11);
        let model = Model::from_bytes(&bytes).unwrap();
        let mut frame = Frame::new(&qvga, 320, 240, PixelFormat::Rgb565Le).unwrap();
        let mut input = vec![0i8; arch.input_len()];
        preprocess(&frame, &arch, &mut input).unwrap();
        let expected = whole_map(&model, &input);

        let mut window = vec![0u8; row_window_len(PixelFormat::Rgb565Le, 320)];
        let mut rows =
            RowPreprocessor::new(320, 240, PixelFormat::Rgb565Le, &arch, &mut window).unwrap();
        let mut scratch = vec![0i8; arch.stream_scratch_len()];
        let mut acc = vec![0i32; arch.stream_acc_len()];
        let mut logits = vec![0i8; arch.classes as usize];
        let done: Result<(), core::convert::Infallible> = forward_rows(
            &model,
            &mut |y, row| rows.input_row(y, &mut frame, row),
            &mut scratch,
            &mut acc,
            &mut logits,
        );
        assert!(done.is_ok());
        assert_eq!(logits, expected, "{arch:?}");
    }
}
