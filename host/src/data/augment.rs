//! Training-time augmentation on preprocessed HWC u8 images: horizontal flip, small rotation and
//! random crop/zoom, applied as one affine resampling (bilinear, edges replicated).
use rand::Rng;
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
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment {
        flip: false,
        rotate_degrees: 0.0,
        crop: 0.0,
    };
    /// The `--augment default` set: flips, ±10° and up to 10 % crop/zoom.
    pub const DEFAULT: Augment = Augment {
        flip: true,
        rotate_degrees: 10.0,
        crop: 0.1,
    };

    /// Whether any augmentation is on.
    pub fn is_active(&self) -> bool {
        self.flip || self.rotate_degrees > 0.0 || self.crop > 0.0
    }

    /// Parses `none`, `default` or a comma list of `flip`, `rotate=DEG`, `crop=FRACTION`.
    pub fn parse(spec: &str) -> Result<Augment, String> {
        match spec.trim() {
            "none" | "" => return Ok(Augment::NONE),
            "default" => return Ok(Augment::DEFAULT),
            _ => {}
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
                _ => {
                    return Err(format!(
                        "unknown augmentation `{item}`; use none, default, or a comma list of flip, rotate=DEG, crop=FRACTION"
                    ))
                }
            }
        }
        Ok(a)
    }

    /// Writes a randomly augmented copy of `src` (HWC, `arch`'s geometry) into `dst`.
    pub fn apply<R: Rng>(&self, src: &[u8], dst: &mut [u8], arch: &Arch, rng: &mut R) {
        let (h, w, c) = (
            arch.height as usize,
            arch.width as usize,
            arch.channels as usize,
        );
        let flip = self.flip && rng.gen_bool(0.5);
        let angle = if self.rotate_degrees > 0.0 {
            rng.gen_range(-self.rotate_degrees..=self.rotate_degrees)
                .to_radians()
        } else {
            0.0
        };
        let (zoom, shift_x, shift_y) = if self.crop > 0.0 {
            let half = self.crop / 2.0;
            (
                rng.gen_range(1.0..=1.0 + self.crop),
                rng.gen_range(-half..=half) * w as f32,
                rng.gen_range(-half..=half) * h as f32,
            )
        } else {
            (1.0, 0.0, 0.0)
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parse_lists_and_rejects_unknown() {
        assert_eq!(Augment::parse("none").unwrap(), Augment::NONE);
        let a = Augment::parse("flip,rotate=5,crop=0.2").unwrap();
        assert_eq!(
            a,
            Augment {
                flip: true,
                rotate_degrees: 5.0,
                crop: 0.2
            }
        );
        assert!(Augment::parse("mixup")
            .unwrap_err()
            .contains("unknown augmentation"));
        assert!(Augment::parse("crop=2").is_err());
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
