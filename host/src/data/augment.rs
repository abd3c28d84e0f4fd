//! Training-time augmentation on preprocessed HWC u8 images, in three stages per image: one
//! affine resampling (horizontal flip, rotation, crop/zoom and whole-pixel translation; bilinear,
//! edges replicated), then colour jitter, then random erasing. Each stage draws from the image's
//! own RNG in a fixed order, so a seed gives the same image whatever the batch or thread.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tinycnn::Arch;

/// Which augmentations to apply; all off is the identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Rotate by a uniform angle in `[-rotate_degrees, rotate_degrees]`.
    pub rotate_degrees: f32,
    /// Random crop/zoom: scale by a uniform factor in `[1, 1 + crop]` (zoom in) and shift the
    /// window by up to `crop / 2` of the side in each direction.
    pub crop: f32,
    /// Shift by a whole number of pixels, uniform in `[-translate, translate]` of the side in
    /// each direction (no resampling blur when nothing else is on).
    #[serde(default)]
    pub translate: f32,
    /// Colour jitter: brightness, contrast and (RGB only) saturation, each scaled by a uniform
    /// factor in `[1 - jitter, 1 + jitter]`.
    #[serde(default)]
    pub jitter: f32,
    /// Random erasing: with this probability, one rectangle of 2–33 % of the image (aspect 0.3 to
    /// 3.3) is filled with uniform noise.
    #[serde(default)]
    pub erase: f32,
}

/// The `--augment` presets: (name, what it is for, settings).
pub const PRESETS: [(&str, &str, Augment); 3] = [
    (
        "centred",
        "centred, aligned images such as Fashion-MNIST: flips, up to ±10% whole-pixel shifts, random erasing half the time",
        Augment::CENTRED,
    ),
    (
        "photo",
        "photos such as cats and dogs: flips, ±10° rotation, up to 20% crop/zoom, ±20% colour jitter",
        Augment::PHOTO,
    ),
    (
        "default",
        "flips, ±10° rotation, up to 10% crop/zoom",
        Augment::DEFAULT,
    ),
];

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment {
        flip: false,
        rotate_degrees: 0.0,
        crop: 0.0,
        translate: 0.0,
        jitter: 0.0,
        erase: 0.0,
    };
    /// `--augment centred`: for centred, aligned images (Fashion-MNIST, digits on a plain
    /// ground). Geometry stays on the pixel grid; erasing hides parts so the net uses all of it.
    pub const CENTRED: Augment = Augment {
        flip: true,
        translate: 0.1,
        erase: 0.5,
        ..Augment::NONE
    };
    /// `--augment photo`: for photos (cats and dogs): framing, pose and lighting vary.
    pub const PHOTO: Augment = Augment {
        flip: true,
        rotate_degrees: 10.0,
        crop: 0.2,
        jitter: 0.2,
        ..Augment::NONE
    };
    /// `--augment default`: flips, ±10° and up to 10 % crop/zoom.
    pub const DEFAULT: Augment = Augment {
        flip: true,
        rotate_degrees: 10.0,
        crop: 0.1,
        ..Augment::NONE
    };

    /// Whether any augmentation is on.
    pub fn is_active(&self) -> bool {
        *self != Augment::NONE
    }

    /// Parses `none`, a preset name ([`PRESETS`]) or a comma list of `flip`, `rotate=DEG`,
    /// `crop=F`, `translate=F`, `jitter=F`, `erase=P`.
    pub fn parse(spec: &str) -> Result<Augment, String> {
        let spec = spec.trim();
        if spec == "none" || spec.is_empty() {
            return Ok(Augment::NONE);
        }
        if let Some((_, _, preset)) = PRESETS.iter().find(|(name, _, _)| *name == spec) {
            return Ok(*preset);
        }
        let mut a = Augment::NONE;
        for item in spec.split(',').map(str::trim) {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let number = |max: f32| -> Result<f32, String> {
                let v: f32 = value
                    .parse()
                    .map_err(|_| format!("`{item}` needs a number, e.g. `{key}=0.1`"))?;
                if !(0.0..=max).contains(&v) {
                    return Err(format!("`{item}`: the value must be in 0..={max}"));
                }
                Ok(v)
            };
            match key {
                "flip" if value.is_empty() => a.flip = true,
                "rotate" => a.rotate_degrees = number(45.0)?,
                "crop" => a.crop = number(0.5)?,
                "translate" => a.translate = number(0.5)?,
                "jitter" => a.jitter = number(1.0)?,
                "erase" => a.erase = number(1.0)?,
                _ => {
                    return Err(format!(
                        "unknown augmentation `{item}`; use none, a preset ({}), or a comma list of flip, rotate=DEG, crop=F, translate=F, jitter=F, erase=P",
                        PRESETS.map(|(name, _, _)| name).join(", ")
                    ))
                }
            }
        }
        Ok(a)
    }

    /// `pixels` (the images of one batch, HWC u8 each) augmented with per-image seeds derived
    /// from `seed`, so an image's augmentation does not depend on the thread that ran it;
    /// returned unchanged when nothing is on.
    pub fn apply_batch(&self, pixels: Vec<u8>, arch: &Arch, seed: u64) -> Vec<u8> {
        if !self.is_active() {
            return pixels;
        }
        let len = arch.input_len();
        let mut out = vec![0u8; pixels.len()];
        out.par_chunks_mut(len)
            .zip(pixels.par_chunks(len))
            .enumerate()
            .for_each(|(k, (dst, src))| {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                self.apply(src, dst, arch, &mut rng);
            });
        out
    }

    /// Writes a randomly augmented copy of `src` (HWC, `arch`'s geometry) into `dst`.
    pub fn apply<R: Rng>(&self, src: &[u8], dst: &mut [u8], arch: &Arch, rng: &mut R) {
        let shape = Shape {
            h: arch.height as usize,
            w: arch.width as usize,
            c: arch.channels as usize,
        };
        self.resample(src, dst, shape, rng);
        if self.jitter > 0.0 {
            jitter(dst, shape.c, self.jitter, rng);
        }
        if self.erase > 0.0 && rng.gen_bool(self.erase as f64) {
            erase(dst, shape, rng);
        }
    }

    /// The geometric stage: flip, rotation, crop/zoom and translation as one inverse affine map.
    fn resample<R: Rng>(&self, src: &[u8], dst: &mut [u8], shape: Shape, rng: &mut R) {
        let Shape { h, w, c } = shape;
        let flip = self.flip && rng.gen_bool(0.5);
        let angle = if self.rotate_degrees > 0.0 {
            rng.gen_range(-self.rotate_degrees..=self.rotate_degrees)
                .to_radians()
        } else {
            0.0
        };
        let (zoom, mut shift_x, mut shift_y) = if self.crop > 0.0 {
            let half = self.crop / 2.0;
            (
                rng.gen_range(1.0..=1.0 + self.crop),
                rng.gen_range(-half..=half) * w as f32,
                rng.gen_range(-half..=half) * h as f32,
            )
        } else {
            (1.0, 0.0, 0.0)
        };
        if self.translate > 0.0 {
            let (tx, ty) = (
                (self.translate * w as f32).floor() as i32,
                (self.translate * h as f32).floor() as i32,
            );
            shift_x += rng.gen_range(-tx..=tx) as f32;
            shift_y += rng.gen_range(-ty..=ty) as f32;
        }
        // Inverse map: for each output pixel (relative to the centre), the source position is
        // R(-angle) * (out / zoom) + shift, mirrored in x when flipping.
        let (sin, cos) = angle.sin_cos();
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        for y in 0..h {
            for x in 0..w {
                let dx = (x as f32 - cx) / zoom;
                let dy = (y as f32 - cy) / zoom;
                let mut sx = cos * dx + sin * dy + shift_x;
                let sy = -sin * dx + cos * dy + shift_y;
                if flip {
                    sx = -sx;
                }
                let (sx, sy) = (
                    (sx + cx).clamp(0.0, w as f32 - 1.0),
                    (sy + cy).clamp(0.0, h as f32 - 1.0),
                );
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                for ch in 0..c {
                    let p = |yy: usize, xx: usize| src[(yy * w + xx) * c + ch] as f32;
                    let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                    let bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                    dst[(y * w + x) * c + ch] = (top + (bottom - top) * fy).round() as u8;
                }
            }
        }
    }
}

/// An image's height, width and channels.
#[derive(Clone, Copy)]
struct Shape {
    h: usize,
    w: usize,
    c: usize,
}

/// Scales brightness, then contrast about the image's mean, then (3 channels) saturation about
/// each pixel's gray value, each by a uniform factor in `[1 - strength, 1 + strength]`.
fn jitter<R: Rng>(image: &mut [u8], channels: usize, strength: f32, rng: &mut R) {
    let mut factor = || rng.gen_range(1.0 - strength..=1.0 + strength);
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    let mean =
        image.iter().map(|&v| v as f32).sum::<f32>() / image.len().max(1) as f32 * brightness;
    for pixel in image.chunks_exact_mut(channels) {
        let mut v = [0f32; 3];
        for (out, &p) in v.iter_mut().zip(pixel.iter()) {
            *out = (p as f32 * brightness - mean) * contrast + mean;
        }
        if channels == 3 {
            let gray = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2];
            for out in &mut v {
                *out = gray + (*out - gray) * saturation;
            }
        }
        for (p, out) in pixel.iter_mut().zip(v) {
            *p = out.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Fills one random rectangle (2–33 % of the area, aspect ratio 0.3 to 3.3, inside the image)
/// with uniform noise (Zhong et al., "Random Erasing Data Augmentation", 2017).
fn erase<R: Rng>(image: &mut [u8], shape: Shape, rng: &mut R) {
    let Shape { h, w, c } = shape;
    let area = rng.gen_range(0.02..=0.33) * (h * w) as f32;
    let aspect = rng.gen_range(0.3f32.ln()..=(1.0f32 / 0.3).ln()).exp();
    let eh = ((area * aspect).sqrt().round() as usize).clamp(1, h);
    let ew = ((area / aspect).sqrt().round() as usize).clamp(1, w);
    let (top, left) = (rng.gen_range(0..=h - eh), rng.gen_range(0..=w - ew));
    for row in image.chunks_exact_mut(w * c).skip(top).take(eh) {
        rng.fill(&mut row[left * c..(left + ew) * c]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch is augmented image by image, each from its own seed: the same bytes as applying
    /// each image alone, whatever rayon's split; and `NONE` hands the batch back untouched.
    #[test]
    fn batch_is_per_image_and_seeded() {
        let arch = Arch::fashion();
        let len = arch.input_len();
        let pixels: Vec<u8> = (0..3 * len).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(Augment::NONE.apply_batch(pixels.clone(), &arch, 5), pixels);
        let batch = Augment::CENTRED.apply_batch(pixels.clone(), &arch, 5);
        assert_eq!(
            batch,
            Augment::CENTRED.apply_batch(pixels.clone(), &arch, 5)
        );
        assert_ne!(
            batch,
            Augment::CENTRED.apply_batch(pixels.clone(), &arch, 6)
        );
        for k in 0..3 {
            let mut alone = vec![0u8; len];
            let mut rng =
                ChaCha8Rng::seed_from_u64(5 ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            Augment::CENTRED.apply(&pixels[k * len..][..len], &mut alone, &arch, &mut rng);
            assert_eq!(&batch[k * len..][..len], &alone[..]);
        }
    }

    #[test]
    fn parse_lists_and_rejects_unknown() {
        assert_eq!(Augment::parse("none").unwrap(), Augment::NONE);
        let a = Augment::parse("flip,rotate=5,crop=0.2").unwrap();
        assert_eq!(
            a,
            Augment {
                flip: true,
                rotate_degrees: 5.0,
                crop: 0.2,
                ..Augment::NONE
            }
        );
        assert!(Augment::parse("mixup")
            .unwrap_err()
            .contains("unknown augmentation"));
        assert!(Augment::parse("crop=2").is_err());
        assert!(Augment::parse("erase=1.5").is_err());
        for (name, _, preset) in PRESETS {
            assert_eq!(Augment::parse(name).unwrap(), preset);
            assert!(preset.is_active());
        }
        assert_eq!(
            Augment::parse("translate=0.1,erase=0.5,flip").unwrap(),
            Augment::CENTRED
        );
    }

    #[test]
    fn translation_moves_pixels_whole() {
        let arch = Arch::fashion();
        let (h, w) = (arch.height as usize, arch.width as usize);
        let mut src = vec![0u8; arch.input_len()];
        src[(h / 2) * w + w / 2] = 200;
        let shift = Augment {
            translate: 0.1,
            ..Augment::NONE
        };
        let mut dst = vec![0; src.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..16 {
            shift.apply(&src, &mut dst, &arch, &mut rng);
            // The one bright pixel lands, unblurred, within 2 pixels (10 % of 28) of the centre.
            let lit: Vec<usize> = (0..dst.len()).filter(|&i| dst[i] != 0).collect();
            assert_eq!(lit.len(), 1, "{lit:?}");
            assert_eq!(dst[lit[0]], 200);
            let (y, x) = (lit[0] / w, lit[0] % w);
            assert!(y.abs_diff(h / 2) <= 2 && x.abs_diff(w / 2) <= 2);
        }
    }

    #[test]
    fn erasing_changes_one_rectangle_and_jitter_keeps_flat_gray() {
        let arch = Arch::fashion();
        let w = arch.width as usize;
        let src = vec![0u8; arch.input_len()];
        let mut dst = vec![0; src.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let always = Augment {
            erase: 1.0,
            ..Augment::NONE
        };
        always.apply(&src, &mut dst, &arch, &mut rng);
        let changed: Vec<(usize, usize)> = (0..dst.len())
            .filter(|&i| dst[i] != 0)
            .map(|i| (i / w, i % w))
            .collect();
        assert!(changed.len() >= 5, "noise fills at least 2 % of 784 pixels");
        let (y0, y1) = (
            changed.iter().map(|p| p.0).min().unwrap(),
            changed.iter().map(|p| p.0).max().unwrap(),
        );
        let (x0, x1) = (
            changed.iter().map(|p| p.1).min().unwrap(),
            changed.iter().map(|p| p.1).max().unwrap(),
        );
        assert!(((y1 - y0 + 1) * (x1 - x0 + 1)) as f32 <= 0.34 * dst.len() as f32);
        // Contrast and saturation leave a flat image flat; brightness scales it.
        let flat = vec![100u8; arch.input_len()];
        let jitter = Augment {
            jitter: 0.2,
            ..Augment::NONE
        };
        jitter.apply(&flat, &mut dst, &arch, &mut rng);
        assert!(dst.iter().all(|&v| v == dst[0] && (80..=120).contains(&v)));
    }

    #[test]
    fn identity_and_flip_are_exact() {
        let arch = Arch::fashion();
        let src: Vec<u8> = (0..arch.input_len()).map(|i| (i * 7 % 251) as u8).collect();
        let mut dst = vec![0; src.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        Augment::NONE.apply(&src, &mut dst, &arch, &mut rng);
        assert_eq!(src, dst);
        let flip = Augment {
            flip: true,
            ..Augment::NONE
        };
        let w = arch.width as usize;
        let mut flipped_once = false;
        for _ in 0..8 {
            flip.apply(&src, &mut dst, &arch, &mut rng);
            if dst != src {
                flipped_once = true;
                for (row_src, row_dst) in src.chunks(w).zip(dst.chunks(w)) {
                    assert!(row_src.iter().eq(row_dst.iter().rev()));
                }
            }
        }
        assert!(flipped_once);
    }
}
