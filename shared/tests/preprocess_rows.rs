//! The row form of preprocessing (`RowPreprocessor`) against the whole-frame `preprocess`, and
//! the order it reads source rows in.

mod common;

use common::{pixel_format, qvga_rgb565};
use proptest::prelude::*;
use tinycnn::preprocess::row_window_len;
use tinycnn::{preprocess, Arch, Frame, FrameError, PixelFormat, RowPreprocessor, RowSource};

/// A frame source that records which rows were read.
struct Recording<'a> {
    frame: Frame<'a>,
    reads: Vec<usize>,
}

impl RowSource for Recording<'_> {
    type Error = core::convert::Infallible;

    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        self.reads.push(y);
        self.frame.read_row(y, out)
    }
}

/// Streams every row of `frame` into a model input and checks it against `preprocess`;
/// returns the source rows read.
fn check(frame: Frame, arch: &Arch) -> Vec<usize> {
    let mut whole = vec![0i8; arch.input_len()];
    preprocess(&frame, arch, &mut whole).unwrap();
    let mut window = vec![0xa5u8; row_window_len(frame.format(), frame.width() as usize) + 3];
    let mut rows = RowPreprocessor::new(
        frame.width(),
        frame.height(),
        frame.format(),
        arch,
        &mut window,
    )
    .unwrap();
    let mut source = Recording {
        frame,
        reads: Vec::new(),
    };
    let row_len = arch.width as usize * arch.channels as usize;
    for (y, expected) in whole.chunks_exact(row_len).enumerate() {
        let mut row = vec![0i8; row_len];
        rows.input_row(y, &mut source, &mut row).unwrap();
        assert_eq!(row, expected, "row {y} of {arch:?} from {frame:?}");
    }
    source.reads
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rows_equal_the_whole_frame(
        format in pixel_format(),
        fw in 1u16..=90,
        fh in 1u16..=90,
        h in 1u16..=40,
        w in 1u16..=40,
        gray in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let fw = if format == PixelFormat::Yuyv { fw * 2 } else { fw };
        let len = format.row_bytes(fw as usize) * fh as usize;
        let mut rng = seed | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let frame = Frame::new(&data, fw, fh, format).unwrap();
        let arch = Arch { height: h, width: w, channels: if gray { 1 } else { 3 }, ..Arch::fashion() };
        let reads = check(frame, &arch);
        // Increasing order, each row once: the window never re-reads.
        prop_assert!(reads.windows(2).all(|p| p[0] < p[1]), "{:?}", reads);
        // Never more source rows than the output needs: two per output row at most.
        prop_assert!(reads.len() <= 2 * h as usize);
    }
}

/// The firmware's case: a QVGA RGB565 frame into both presets, and a native frame.
#[test]
fn qvga_and_native_frames() {
    let qvga = qvga_rgb565(7, 640);
    for arch in [Arch::fashion(), Arch::tutorial(2)] {
        let frame = Frame::new(&qvga, 320, 240, PixelFormat::Rgb565Le).unwrap();
        let reads = check(frame, &arch);
        // The 240-row crop steps 240/h rows per output row: 28 rows read 56, 128 read 256
        // at most, and none twice.
        assert!(reads.len() <= 2 * arch.height as usize);
    }
    let native: Vec<u8> = (0..28 * 28).map(|i| (i * 5) as u8).collect();
    let frame = Frame::new(&native, 28, 28, PixelFormat::Gray8).unwrap();
    // Same size: every row once, in order.
    assert_eq!(check(frame, &Arch::fashion()), (0..28).collect::<Vec<_>>());
    assert_eq!(row_window_len(PixelFormat::Rgb565Le, 320), 1280);
}

#[test]
fn errors_name_the_problem() {
    let arch = Arch::fashion();
    let mut window = [0u8; 100];
    let err = RowPreprocessor::new(320, 240, PixelFormat::Rgb565Le, &arch, &mut window).err();
    assert_eq!(
        err,
        Some(FrameError::WindowTooSmall {
            expected: 1280,
            found: 100
        })
    );
    let message = err.unwrap().to_string();
    assert!(
        message.contains("1280") && message.contains("row_window_len"),
        "{message}"
    );
    let err = RowPreprocessor::new(0, 240, PixelFormat::Gray8, &arch, &mut window).err();
    assert_eq!(err, Some(FrameError::ZeroSize));
    let err = RowPreprocessor::new(3, 2, PixelFormat::Yuyv, &arch, &mut window).err();
    assert_eq!(err, Some(FrameError::OddYuyvWidth(3)));
    let bad = Arch {
        channels: 2,
        ..arch
    };
    let err = RowPreprocessor::new(4, 4, PixelFormat::Gray8, &bad, &mut window).err();
    assert_eq!(err, Some(FrameError::Channels(2)));
}

#[test]
#[should_panic(expected = "asked for row 1, expected row 0")]
fn rows_out_of_order_are_a_clear_panic() {
    let data = [0u8; 16];
    let frame = Frame::new(&data, 4, 4, PixelFormat::Gray8).unwrap();
    let arch = Arch {
        height: 4,
        width: 4,
        ..Arch::fashion()
    };
    let mut window = [0u8; 8];
    let mut rows = RowPreprocessor::new(4, 4, PixelFormat::Gray8, &arch, &mut window).unwrap();
    let mut source = frame;
    let mut out = [0i8; 4];
    let _ = rows.input_row(1, &mut source, &mut out);
}
