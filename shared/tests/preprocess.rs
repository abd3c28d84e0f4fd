//! Preprocessing goldens (hand-computed, compared exactly) and properties.

mod common;

use common::{lcg_bytes, pixel_format};
use proptest::prelude::*;
use tinycnn::preprocess::{luma, yuv_to_rgb};
use tinycnn::protocol::rgb565_to_rgb888 as rgb565;
use tinycnn::{preprocess, preprocess_u8, Arch, Frame, FrameError, PixelFormat};

/// Compares exactly; a failure names the first differing index.
#[track_caller]
fn assert_golden<T: PartialEq + core::fmt::Debug>(actual: &[T], expected: &[T]) {
    assert_eq!(actual.len(), expected.len(), "length differs");
    if let Some(i) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!(
            "first difference at index {i}: got {:?}, expected {:?}\n  actual:   {actual:?}\n  expected: {expected:?}",
            actual[i], expected[i]
        );
    }
}

fn arch(height: u16, width: u16, channels: u8) -> Arch {
    Arch {
        height,
        width,
        channels,
        ..Arch::fashion()
    }
}

fn run_u8(data: &[u8], fw: u16, fh: u16, format: PixelFormat, arch: Arch) -> Vec<u8> {
    let frame = Frame::new(data, fw, fh, format).unwrap();
    let mut out = vec![0u8; arch.input_len()];
    preprocess_u8(&frame, &arch, &mut out).unwrap();
    out
}

#[test]
fn golden_identity_gray_and_rgb() {
    let gray: Vec<u8> = (0..12).map(|i| (i * 21) as u8).collect();
    assert_golden(
        &run_u8(&gray, 4, 3, PixelFormat::Gray8, arch(3, 4, 1)),
        &gray,
    );
    let rgb: Vec<u8> = (0..18).map(|i| (255 - i * 13) as u8).collect();
    assert_golden(
        &run_u8(&rgb, 3, 2, PixelFormat::Rgb888, arch(2, 3, 3)),
        &rgb,
    );
}

#[test]
fn golden_quantize_is_p_minus_128() {
    let gray = [0u8, 1, 127, 128, 254, 255];
    let frame = Frame::new(&gray, 3, 2, PixelFormat::Gray8).unwrap();
    let mut out = [0i8; 6];
    preprocess(&frame, &arch(2, 3, 1), &mut out).unwrap();
    assert_golden(&out, &[-128, -127, -1, 0, 126, 127]);
}

#[test]
fn golden_gray_to_rgb_replicates() {
    let gray = [7u8, 200];
    assert_golden(
        &run_u8(&gray, 2, 1, PixelFormat::Gray8, arch(1, 2, 3)),
        &[7, 7, 7, 200, 200, 200],
    );
}

#[test]
fn golden_rgb_to_gray_luma() {
    // (77 R + 150 G + 29 B + 128) >> 8
    // red 19763>>8=77, green 38378>>8=149, blue 7523>>8=29, white 65408>>8=255,
    // (10,20,30): 770+3000+870+128=4768>>8=18, black 0
    let rgb = [
        255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 10, 20, 30, 0, 0, 0,
    ];
    assert_golden(
        &run_u8(&rgb, 3, 2, PixelFormat::Rgb888, arch(2, 3, 1)),
        &[77, 149, 29, 255, 18, 0],
    );
    assert_eq!(luma([10, 20, 30]), 18);
}

#[test]
fn golden_rgb565_little_and_big_endian() {
    // 0xF800 red, 0x07E0 green, 0x001F blue, 0x8410 -> r5=16 g6=32 b5=16 -> (132, 130, 132)
    let words = [0xF800u16, 0x07E0, 0x001F, 0x8410];
    let expected = [255, 0, 0, 0, 255, 0, 0, 0, 255, 132, 130, 132];
    let le: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let be: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    assert_golden(
        &run_u8(&le, 2, 2, PixelFormat::Rgb565Le, arch(2, 2, 3)),
        &expected,
    );
    assert_golden(
        &run_u8(&be, 2, 2, PixelFormat::Rgb565Be, arch(2, 2, 3)),
        &expected,
    );
    // The same bytes read with the wrong byte order give different colours: 0xF800 read as
    // 0x00F8 is r=0 g=7 b=24.
    assert_eq!(rgb565(0x00F8), [0, 28, 198]);
    assert_ne!(
        run_u8(&le, 2, 2, PixelFormat::Rgb565Be, arch(2, 2, 3)),
        expected
    );
}

#[test]
fn golden_yuyv() {
    // Pixel pairs (Y0 U Y1 V): (100, 128, 200, 128) is neutral gray; (128, 0, 50, 255) is
    // strongly coloured and shares U/V across the pair.
    // Y=128 U=0 V=255: R = 128 + (91881*127 + 32768) >> 16 = 128 + 178 -> 255,
    //   G = 128 + (22554*128 - 46802*127 + 32768) >> 16 = 128 - 47 = 81, B = 128 - 227 -> 0
    // Y=50: R -> 255 (50 + 178 = 228), G = 50 - 47 = 3, B -> 0
    let yuyv = [100u8, 128, 200, 128, 128, 0, 50, 255];
    assert_golden(
        &run_u8(&yuyv, 2, 2, PixelFormat::Yuyv, arch(2, 2, 3)),
        &[100, 100, 100, 200, 200, 200, 255, 81, 0, 228, 3, 0],
    );
    // Gray models take Y directly.
    assert_golden(
        &run_u8(&yuyv, 2, 2, PixelFormat::Yuyv, arch(2, 2, 1)),
        &[100, 200, 128, 50],
    );
    assert_eq!(yuv_to_rgb(50, 200, 60), [0, 74, 178]);
}

#[test]
fn golden_center_crop() {
    // 6x2 frame to a square model: crop width (2*2)/2 = 2 at x0 = (6-2)/2 = 2.
    let wide = [0u8, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15];
    assert_golden(
        &run_u8(&wide, 6, 2, PixelFormat::Gray8, arch(2, 2, 1)),
        &[2, 3, 12, 13],
    );
    // 2x5 frame: crop height 2 at y0 = (5-2)/2 = 1.
    let tall = [0u8, 1, 10, 11, 20, 21, 30, 31, 40, 41];
    assert_golden(
        &run_u8(&tall, 2, 5, PixelFormat::Gray8, arch(2, 2, 1)),
        &[10, 11, 20, 21],
    );
}

#[test]
fn golden_bilinear_downscale_half_pixel() {
    // 4x4 -> 2x2: each output samples the centre of a 2x2 block, weights 1/2 x 1/2, rounding
    // half up: 10/4=2.5->3, 18/4=4.5->5, 42/4=10.5->11, 51/4=12.75->13
    let frame = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16];
    assert_golden(
        &run_u8(&frame, 4, 4, PixelFormat::Gray8, arch(2, 2, 1)),
        &[3, 5, 11, 13],
    );
}

#[test]
fn golden_bilinear_upscale_half_pixel() {
    // 2x2 -> 4x4: source coordinates -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    // Row 1 (fy = 1/4), column 1 (fx = 1/4): 25 * 3/4 + 213.75 / 4 = 72.19 -> 72
    let frame = [0u8, 100, 200, 255];
    let expected = [
        0, 25, 75, 100, 50, 72, 117, 139, 150, 167, 200, 216, 200, 214, 241, 255,
    ];
    assert_golden(
        &run_u8(&frame, 2, 2, PixelFormat::Gray8, arch(4, 4, 1)),
        &expected,
    );
}

#[test]
fn frame_errors() {
    let wrong_length = |expected, found| FrameError::WrongLength { expected, found };
    let cases = [
        (5, 2, 2, PixelFormat::Gray8, wrong_length(4, 5)),
        (8, 2, 2, PixelFormat::Rgb888, wrong_length(12, 8)),
        (7, 2, 2, PixelFormat::Rgb565Le, wrong_length(8, 7)),
        (6, 3, 1, PixelFormat::Yuyv, FrameError::OddYuyvWidth(3)),
        (0, 0, 1, PixelFormat::Gray8, FrameError::ZeroSize),
    ];
    for (len, w, h, format, error) in cases {
        let data = vec![0u8; len];
        assert_eq!(Frame::new(&data, w, h, format).unwrap_err(), error);
    }
    let data = [0u8; 4];
    let frame = Frame::new(&data, 2, 2, PixelFormat::Gray8).unwrap();
    let mut out = [0u8; 3];
    assert_eq!(
        preprocess_u8(&frame, &arch(2, 2, 1), &mut out).unwrap_err(),
        FrameError::WrongOutputLength {
            expected: 4,
            found: 3
        }
    );
    let mut out = [0u8; 8];
    assert_eq!(
        preprocess_u8(&frame, &arch(2, 2, 2), &mut out).unwrap_err(),
        FrameError::Channels(2)
    );
    // Messages say what is wrong.
    let msg = FrameError::WrongLength {
        expected: 4,
        found: 5,
    }
    .to_string();
    assert!(msg.contains('5') && msg.contains('4'), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A frame that already has the model's size and channel count passes through unchanged.
    #[test]
    fn identity_pass_through(w in 1u16..40, h in 1u16..40, rgb in any::<bool>(), seed in any::<u64>()) {
        let c: u8 = if rgb { 3 } else { 1 };
        let data = lcg_bytes(seed, w as usize * h as usize * c as usize);
        let format = if rgb { PixelFormat::Rgb888 } else { PixelFormat::Gray8 };
        let out = run_u8(&data, w, h, format, arch(h, w, c));
        prop_assert_eq!(out, data);
    }

    /// Any well-formed frame of any format and size preprocesses without error into any model
    /// size; `preprocess` is exactly `preprocess_u8` minus 128; the output stays within the
    /// range of the source pixels (bilinear interpolation is a convex combination).
    #[test]
    fn any_frame_any_size(format in pixel_format(), w in 1u16..24, h in 1u16..24,
                          ow in 1u16..20, oh in 1u16..20, rgb in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 24 * 24 * 3)) {
        let w = if format == PixelFormat::Yuyv { w + w % 2 } else { w };
        let len = format.row_bytes(w as usize) * h as usize;
        let data = &bytes[..len];
        let frame = Frame::new(data, w, h, format).unwrap();
        let a = arch(oh, ow, if rgb { 3 } else { 1 });
        let mut out_u8 = vec![0u8; a.input_len()];
        preprocess_u8(&frame, &a, &mut out_u8).unwrap();
        let mut out_i8 = vec![0i8; a.input_len()];
        preprocess(&frame, &a, &mut out_i8).unwrap();
        for (p, q) in out_u8.iter().zip(&out_i8) {
            prop_assert_eq!(*p as i16 - 128, *q as i16);
        }
        if format == PixelFormat::Gray8 && !rgb {
            let lo = *data.iter().min().unwrap();
            let hi = *data.iter().max().unwrap();
            prop_assert!(out_u8.iter().all(|&p| p >= lo && p <= hi));
        }
    }

    /// A length that does not match the format and size is an error, never a panic.
    #[test]
    fn wrong_length_is_an_error(format in pixel_format(), w in 1u16..50, h in 1u16..50, delta in 1usize..10, longer in any::<bool>()) {
        let w = if format == PixelFormat::Yuyv { w + w % 2 } else { w };
        let len = format.row_bytes(w as usize) * h as usize;
        let bad = if longer { len + delta } else { len.saturating_sub(delta) };
        let data = vec![0u8; bad];
        prop_assert_eq!(Frame::new(&data, w, h, format).unwrap_err(), FrameError::WrongLength { expected: len, found: bad });
    }
}
