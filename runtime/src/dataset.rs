//! Image-folder data sets in the tutorial's layout: `ROOT/<class>/*.{jpg,jpeg,png,webp,bmp}`.
//!
//! Labels are the sorted class folder names. Images are decoded in parallel and preprocessed
//! once by `tinycnn::preprocess` (through [`crate::images`]); they stay in memory as HWC u8,
//! a quarter of the f32 size (the trainer turns them into `[0, 1]` floats one batch at a time).
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tinycnn::{Arch, MAX_CLASSES, MAX_LABEL_LEN};

/// File extensions (lower case) read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

/// A data set problem the user has to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data folder {0} does not exist; pass the folder that holds one sub-folder per class (for Fashion-MNIST run `cargo xtask data fashion-mnist`)")]
    MissingRoot(PathBuf),
    #[error("{0} is not a folder; pass the folder that holds one sub-folder per class")]
    NotAFolder(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{root} has {found} class folder(s) {labels:?}; at least 2 are needed, one sub-folder of images per class")]
    TooFewClasses {
        root: PathBuf,
        found: usize,
        labels: Vec<String>,
    },
    #[error(
        "{root} has {found} class folders; at most {max} are supported, merge or remove classes"
    )]
    TooManyClasses {
        root: PathBuf,
        found: usize,
        max: usize,
    },
    #[error("class folder name {name:?} is longer than {max} bytes or not valid UTF-8; rename the folder")]
    BadLabel { name: String, max: usize },
    #[error("invalid input geometry: {0}; fix --height/--width/--channels")]
    InvalidArch(String),
    #[error("class folder {0} has no usable images (*.jpg, *.jpeg, *.png, *.webp, *.bmp); add images or remove the folder")]
    EmptyClass(PathBuf),
    #[error("the classes in {root} are {found:?} but the model was trained on {expected:?}; use a data folder with the model's class folders")]
    ClassMismatch {
        root: PathBuf,
        expected: Vec<String>,
        found: Vec<String>,
    },
}

/// A file that was not used, and why.
#[derive(Clone, Debug)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// What a data set knows of its images besides their pixels, in the order every loader
/// indexes them: class by class (sorted class names), file names sorted within a class.
#[derive(Clone, Debug)]
pub struct ImageList {
    /// Input geometry the images are preprocessed to; `classes` is `labels.len()`.
    pub arch: Arch,
    /// Sorted class folder names; index = class id.
    pub labels: Vec<String>,
    /// Class id of each image.
    pub targets: Vec<i64>,
    /// Source file of each image.
    pub paths: Vec<PathBuf>,
    /// Files in the class folders that are not used (not an image, or not decodable once the
    /// images have been decoded or checked).
    pub skipped: Vec<SkippedFile>,
}

impl ImageList {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Prints one warning line per skipped file to stderr.
    pub fn warn_skipped(&self) {
        for s in &self.skipped {
            eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
        }
    }
}

/// A loaded, preprocessed image-folder data set.
#[derive(Debug)]
pub struct Dataset {
    /// The images' geometry, classes, files and skipped files.
    pub list: ImageList,
    /// `list.len() * list.arch.input_len()` bytes, image after image, each HWC.
    pub pixels: Vec<u8>,
}

/// Lists the class folders of `root`, sorted by name.
pub fn class_folders(root: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    if !root.exists() {
        return Err(DataError::MissingRoot(root.to_path_buf()));
    }
    if !root.is_dir() {
        return Err(DataError::NotAFolder(root.to_path_buf()));
    }
    let io = |source| DataError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str().map(str::to_owned) else {
            return Err(DataError::BadLabel {
                name: name.to_string_lossy().into_owned(),
                max: MAX_LABEL_LEN,
            });
        };
        if name.starts_with('.') {
            continue;
        }
        if name.len() > MAX_LABEL_LEN {
            return Err(DataError::BadLabel {
                name,
                max: MAX_LABEL_LEN,
            });
        }
        classes.push((name, path));
    }
    classes.sort();
    if classes.len() < 2 {
        return Err(DataError::TooFewClasses {
            root: root.to_path_buf(),
            found: classes.len(),
            labels: classes.into_iter().map(|(n, _)| n).collect(),
        });
    }
    if classes.len() > MAX_CLASSES {
        return Err(DataError::TooManyClasses {
            root: root.to_path_buf(),
            found: classes.len(),
            max: MAX_CLASSES,
        });
    }
    Ok(classes)
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files of a data set folder, listed in [`ImageList`] order. Listing reads no image;
/// undecodable files move to `list.skipped` once [`ImageFiles::check`] has run.
#[derive(Clone, Debug)]
pub struct ImageFiles {
    /// The images' geometry, classes, files and skipped files.
    pub list: ImageList,
    class_dirs: Vec<PathBuf>,
}

impl ImageFiles {
    /// Lists the image files under `root` for `input`'s height, width and channels
    /// (`input.classes` is ignored). Files without an image extension go to `skipped`.
    pub fn list(root: &Path, input: &Arch) -> Result<ImageFiles, DataError> {
        let classes = class_folders(root)?;
        let arch = Arch {
            classes: classes.len() as u16,
            ..*input
        };
        arch.validate()
            .map_err(|e| DataError::InvalidArch(e.to_string()))?;
        let (mut targets, mut paths, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        for (class, (_, dir)) in classes.iter().enumerate() {
            let io = |source| DataError::Io {
                path: dir.clone(),
                source,
            };
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(io)? {
                let path = entry.map_err(io)?.path();
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                if path.is_dir() || hidden {
                    continue;
                }
                if has_image_extension(&path) {
                    entries.push(path);
                } else {
                    skipped.push(SkippedFile {
                        path,
                        reason: format!(
                            "not an image file (expected one of {})",
                            IMAGE_EXTENSIONS.join(", ")
                        ),
                    });
                }
            }
            entries.sort();
            targets.extend(std::iter::repeat_n(class as i64, entries.len()));
            paths.extend(entries);
        }
        let (labels, class_dirs) = classes.into_iter().unzip();
        Ok(ImageFiles {
            list: ImageList {
                arch,
                labels,
                targets,
                paths,
                skipped,
            },
            class_dirs,
        })
    }

    /// Bytes the preprocessed images take when held in memory ([`ImageFiles::load`]).
    pub fn memory_bytes(&self) -> u64 {
        self.list.len() as u64 * self.list.arch.input_len() as u64
    }

    /// Decodes and preprocesses image `i` into `out` (`arch.input_len()` HWC bytes); the error
    /// says why the file is unusable.
    pub fn decode_into(&self, i: usize, out: &mut [u8]) -> Result<(), String> {
        let image = crate::images::decode_image(&self.list.paths[i])?;
        crate::images::preprocess_image_into(&image, &self.list.arch, out)
            .map_err(|e| e.to_string())
    }

    /// Decodes every image in parallel, calling `progress` once per image; undecodable files
    /// move to `skipped`. Returns the pixels of the kept images if `keep` (else empty).
    fn decode_all(
        &mut self,
        keep: bool,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Vec<u8>, DataError> {
        let len = self.list.arch.input_len().max(1);
        let mut pixels = vec![0u8; if keep { self.list.len() * len } else { 0 }];
        let status: Vec<Result<(), String>> = if keep {
            pixels
                .par_chunks_mut(len)
                .enumerate()
                .map(|(i, out)| {
                    let r = self.decode_into(i, out);
                    progress();
                    r
                })
                .collect()
        } else {
            (0..self.list.len())
                .into_par_iter()
                .map_init(
                    || vec![0u8; len],
                    |out, i| {
                        let r = self.decode_into(i, out);
                        progress();
                        r
                    },
                )
                .collect()
        };
        let list = &mut self.list;
        let files = std::mem::take(&mut list.paths).into_iter();
        let targets = std::mem::take(&mut list.targets);
        let mut kept = 0;
        for (i, ((path, class), result)) in files.zip(targets).zip(status).enumerate() {
            match result {
                Ok(()) => {
                    if keep && kept != i {
                        pixels.copy_within(i * len..(i + 1) * len, kept * len);
                    }
                    kept += 1;
                    list.targets.push(class);
                    list.paths.push(path);
                }
                Err(reason) => list.skipped.push(SkippedFile { path, reason }),
            }
        }
        pixels.truncate(if keep { kept * len } else { 0 });
        pixels.shrink_to_fit();
        for (class, dir) in self.class_dirs.iter().enumerate() {
            if !list.targets.contains(&(class as i64)) {
                return Err(DataError::EmptyClass(dir.clone()));
            }
        }
        list.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(pixels)
    }

    /// Decodes every image once without keeping it, so that undecodable files move to `skipped`
    /// and the indices match [`ImageFiles::load`]'s. `progress` is called once per image.
    pub fn check(mut self, progress: &(dyn Fn() + Sync)) -> Result<ImageFiles, DataError> {
        self.decode_all(false, progress)?;
        Ok(self)
    }

    /// Decodes every image into memory; undecodable files are skipped. `progress` is called
    /// once per image.
    pub fn load(mut self, progress: &(dyn Fn() + Sync)) -> Result<Dataset, DataError> {
        let pixels = self.decode_all(true, progress)?;
        Ok(Dataset {
            list: self.list,
            pixels,
        })
    }
}

impl Dataset {
    /// Loads every image under `root`, preprocessed to `input`'s height, width and channels
    /// (`input.classes` is ignored). Unusable files are skipped and listed in `skipped`.
    pub fn load(root: &Path, input: &Arch) -> Result<Dataset, DataError> {
        ImageFiles::list(root, input)?.load(&|| ())
    }

    /// Loads `root` for a model with `arch` and `labels`, failing if its classes differ.
    pub fn load_for_model(
        root: &Path,
        arch: &Arch,
        labels: &[String],
    ) -> Result<Dataset, DataError> {
        let found: Vec<String> = class_folders(root)?.into_iter().map(|(n, _)| n).collect();
        if found != labels {
            return Err(DataError::ClassMismatch {
                root: root.to_path_buf(),
                expected: labels.to_vec(),
                found,
            });
        }
        Dataset::load(root, arch)
    }

    /// The images at `indices`, in that order, as a data set of their own.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let list = &self.list;
        Dataset {
            list: ImageList {
                arch: list.arch,
                labels: list.labels.clone(),
                targets: indices.iter().map(|&i| list.targets[i]).collect(),
                paths: indices.iter().map(|&i| list.paths[i].clone()).collect(),
                skipped: Vec::new(),
            },
            pixels: indices
                .iter()
                .flat_map(|&i| self.image(i))
                .copied()
                .collect(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the data set holds no images.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Preprocessed HWC u8 pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.list.arch.input_len();
        &self.pixels[i * len..(i + 1) * len]
    }
}

/// Splits `0..len` into (train, validation) indices with `round(len * val_fraction)` validation
/// images. The split depends only on `len`, `val_fraction` and `seed`.
pub fn split_indices(len: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let val_len = ((len as f64) * val_fraction.clamp(0.0, 1.0)).round() as usize;
    let train = order.split_off(val_len);
    (train, order)
}
