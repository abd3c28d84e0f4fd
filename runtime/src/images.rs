//! The host side of preprocessing: decodes image files, turns a decoded `image` into a `tinycnn`
//! camera frame and hands it to `tinycnn::preprocess`, the one definition of crop, resize and channel conversion
//! that training, host inference and the firmware all share.
use std::path::Path;

use anyhow::Context as _;
use image::DynamicImage;
use tinycnn::preprocess::{preprocess_u8, Frame, PixelFormat};
use tinycnn::Arch;

/// Why an image could not be turned into model input.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The image is larger than a frame can describe (sides are `u16`).
    #[error(
        "image is {width}x{height}; sides above 65535 pixels are not supported, downscale it first"
    )]
    TooLarge { width: u32, height: u32 },
    /// `tinycnn` rejected the frame (for example a zero-sized image).
    #[error("cannot preprocess a {width}x{height} image: {reason}")]
    Frame {
        width: u32,
        height: u32,
        reason: String,
    },
}

/// Preprocesses `image` for `arch` into `out` (HWC u8, `arch.input_len()` bytes).
///
/// Grayscale images are passed as `Gray8` frames and everything else as `Rgb888`, so that any
/// conversion between gray and colour is done by `tinycnn`, exactly as on the device.
pub fn preprocess_image_into(
    image: &DynamicImage,
    arch: &Arch,
    out: &mut [u8],
) -> Result<(), PreprocessError> {
    let (width, height) = (image.width(), image.height());
    let (w16, h16) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(PreprocessError::TooLarge { width, height }),
    };
    let is_gray = matches!(
        image,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let pixels;
    let format = if is_gray {
        pixels = image.to_luma8().into_raw();
        PixelFormat::Gray8
    } else {
        pixels = image.to_rgb8().into_raw();
        PixelFormat::Rgb888
    };
    let frame_error = |e: &dyn std::fmt::Display| PreprocessError::Frame {
        width,
        height,
        reason: e.to_string(),
    };
    let frame = Frame::new(&pixels, w16, h16, format).map_err(|e| frame_error(&e))?;
    preprocess_u8(&frame, arch, out).map_err(|e| frame_error(&e))
}

/// Preprocesses `image` for `arch` into a new HWC u8 buffer of `arch.input_len()` bytes.
pub fn preprocess_image(image: &DynamicImage, arch: &Arch) -> Result<Vec<u8>, PreprocessError> {
    let mut out = vec![0u8; arch.input_len()];
    preprocess_image_into(image, arch, &mut out)?;
    Ok(out)
}

/// Decodes the image at `path` (format guessed from its content).
pub fn decode_image(path: &Path) -> Result<image::DynamicImage, String> {
    image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())
}

/// Decodes the image at `path` and preprocesses it for `arch` with `shared`'s preprocessing:
/// HWC u8 pixels, the same as training, the int8 model and the firmware see.
pub fn image_pixels(path: &Path, arch: &Arch) -> anyhow::Result<Vec<u8>> {
    let image = decode_image(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "cannot decode {}; pass a jpg, png, webp or bmp image",
                path.display()
            )
        })?;
    preprocess_image(&image, arch).with_context(|| format!("preprocessing {}", path.display()))
}
