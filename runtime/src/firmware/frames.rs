//! Camera frames for the firmware, made from test images: a QVGA RGB565 frame (the image scaled
//! into the centre square, the part the firmware's crop keeps, edges repeated outwards) and a
//! frame in the model's native format, written with the `frames.txt` list the QEMU boards read.
use std::path::{Path, PathBuf};

use tinycnn::protocol::{rgb888_to_rgb565, QVGA};
use tinycnn::{Arch, PixelFormat};

use super::{FirmwareError, Result};

/// One camera frame sent to the firmware.
#[derive(Clone, Debug)]
pub struct CameraFrame {
    /// Short description, e.g. `qvga-rgb565le` or `native-gray8`.
    pub kind: String,
    /// The test image it came from.
    pub source: PathBuf,
    pub width: u16,
    pub height: u16,
    pub format: PixelFormat,
    pub bytes: Vec<u8>,
}

/// `count` camera frames from test images in `data`, alternating a QVGA RGB565 frame and a
/// native one per image (fewer if `data` has fewer images).
pub fn camera_frames(data: &Path, arch: &Arch, count: usize) -> Result<Vec<CameraFrame>> {
    let images = pick_images(data, count.div_ceil(2))?;
    let mut frames = Vec::with_capacity(count);
    for path in &images {
        let image = crate::images::decode_image(path).map_err(|reason| FirmwareError::Image {
            path: path.clone(),
            reason,
        })?;
        frames.push(qvga_rgb565_frame(&image, path));
        frames.push(native_frame(&image, path, arch)?);
    }
    frames.truncate(count);
    Ok(frames)
}

/// Up to `count` test images, taken round-robin over the class folders (sorted), so that a few
/// frames cover several classes. Without class folders the images in `root` itself are used.
pub fn pick_images(root: &Path, count: usize) -> Result<Vec<PathBuf>> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        let io = |source| FirmwareError::Io {
            path: dir.to_path_buf(),
            error: source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_file() && crate::dataset::has_image_extension(&path) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    };
    let per_class: Vec<Vec<PathBuf>> = match crate::dataset::class_folders(root) {
        Ok(classes) => classes
            .iter()
            .map(|(_, dir)| list(dir))
            .collect::<Result<_>>()?,
        Err(crate::dataset::DataError::TooFewClasses { .. }) => vec![list(root)?],
        Err(e) => return Err(e.into()),
    };
    let mut picked = Vec::with_capacity(count);
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    'outer: for i in 0..longest {
        for files in &per_class {
            if picked.len() == count {
                break 'outer;
            }
            if let Some(path) = files.get(i) {
                picked.push(path.clone());
            }
        }
    }
    if picked.is_empty() {
        return Err(FirmwareError::NoImages(root.to_path_buf()));
    }
    Ok(picked)
}

/// A QVGA RGB565 (little-endian) camera frame showing `image`: the image is scaled
/// (nearest neighbour) into the centred 240 x 240 square, and its edge pixels repeat outwards.
pub fn qvga_rgb565_frame(image: &image::DynamicImage, source: &Path) -> CameraFrame {
    let rgb = image.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let (frame_w, frame_h) = (usize::from(QVGA.0), usize::from(QVGA.1));
    let side = frame_w.min(frame_h);
    let (left, top) = ((frame_w - side) / 2, (frame_h - side) / 2);
    let mut bytes = Vec::with_capacity(frame_w * frame_h * 2);
    for y in 0..frame_h {
        let sy = ((y.saturating_sub(top)) * h / side).min(h - 1);
        for x in 0..frame_w {
            let sx = ((x.saturating_sub(left)) * w / side).min(w - 1);
            let [r, g, b] = rgb.get_pixel(sx as u32, sy as u32).0;
            let v = rgb888_to_rgb565([r, g, b]);
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    CameraFrame {
        kind: "qvga-rgb565le".to_owned(),
        source: source.to_path_buf(),
        width: QVGA.0,
        height: QVGA.1,
        format: PixelFormat::Rgb565Le,
        bytes,
    }
}

/// `image` in the model's native format: H x W, gray (1 channel) or RGB888 (3), produced by
/// the shared preprocessing. The firmware passes such a frame through unchanged.
pub fn native_frame(
    image: &image::DynamicImage,
    source: &Path,
    arch: &Arch,
) -> Result<CameraFrame> {
    let bytes = crate::images::preprocess_image(image, arch).map_err(|e| FirmwareError::Image {
        path: source.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (kind, format) = if arch.channels == 1 {
        ("native-gray8", PixelFormat::Gray8)
    } else {
        ("native-rgb888", PixelFormat::Rgb888)
    };
    Ok(CameraFrame {
        kind: kind.to_owned(),
        source: source.to_path_buf(),
        width: arch.width,
        height: arch.height,
        format,
        bytes,
    })
}

/// Writes each frame to `work_dir/frame-NNN.<kind>.raw` and the list `work_dir/frames.txt`
/// the firmware reads (`<file> <width> <height> <format>` per line).
pub fn write_frames(frames: &[CameraFrame], work_dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FirmwareError::Io {
            path,
            error: source,
        }
    };
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    let mut list = String::from("# <file> <width> <height> <format>, one camera frame per line\n");
    for (i, frame) in frames.iter().enumerate() {
        let name = format!("frame-{i:03}.{}.raw", frame.kind);
        let path = work_dir.join(&name);
        std::fs::write(&path, &frame.bytes).map_err(io(&path))?;
        list.push_str(&format!(
            "{name} {} {} {}\n",
            frame.width,
            frame.height,
            frame.format.name()
        ));
    }
    let path = work_dir.join("frames.txt");
    std::fs::write(&path, list).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qvga_frame_puts_the_image_in_the_centre_square() {
        let mut img = image::RgbImage::new(2, 2);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(1, 1, image::Rgb([0, 0, 255]));
        let frame = qvga_rgb565_frame(&image::DynamicImage::ImageRgb8(img), Path::new("x.png"));
        assert_eq!(frame.bytes.len(), 320 * 240 * 2);
        let at = |x: usize, y: usize| {
            u16::from_le_bytes([
                frame.bytes[(y * 320 + x) * 2],
                frame.bytes[(y * 320 + x) * 2 + 1],
            ])
        };
        // The centre square spans x 40..280; its top-left quarter is the red pixel.
        assert_eq!(at(40, 0), 0xf800);
        assert_eq!(at(0, 0), 0xf800, "edges repeat outwards");
        assert_eq!(at(279, 239), 0x001f);
        assert_eq!(at(160, 0), 0x0000);
    }
}
