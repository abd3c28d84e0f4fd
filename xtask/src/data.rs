//! `cargo xtask data fashion-mnist`: the gzip IDX files of Fashion-MNIST decoded into the
//! image-folder layout the trainer reads, `OUT/{train,test}/<class>/<index>.png`.
//!
//! `<index>` is the image's position in the original IDX file, so every PNG can be traced back.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Read as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use flate2::read::GzDecoder;

use crate::args::Args;
use crate::cmd::{self, Context};
use crate::setup;

/// Fashion-MNIST's classes in label order, as file-system-safe folder names.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
];

/// Records in OUT which subset was written; it says `complete` only once every PNG is on disk.
const MARKER: &str = ".tinycnn-data";
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// How many images per class to keep from each split; `None` keeps all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subset {
    pub train_per_class: Option<usize>,
    pub test_per_class: Option<usize>,
}

impl Subset {
    pub const ALL: Subset = Subset {
        train_per_class: None,
        test_per_class: None,
    };
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |limit: Option<usize>| limit.map_or("all".to_owned(), |n| n.to_string());
        write!(
            f,
            "train-per-class={} test-per-class={}",
            show(self.train_per_class),
            show(self.test_per_class)
        )
    }
}

pub fn command(ctx: &Context, mut args: Args) -> Result<()> {
    let Some(name) = args.next_positional() else {
        bail!("which data set? the one available is `cargo xtask data fashion-mnist`");
    };
    if name != "fashion-mnist" {
        bail!("unknown data set `{name}`; the one available is `fashion-mnist` (bring other data sets as <class>/*.jpg folders, see data/README.md)");
    }
    let out: Option<PathBuf> = args.option("out")?.map(PathBuf::from);
    let train_per_class: Option<usize> = args.parsed_option("per-class")?;
    let test_per_class: Option<usize> = args.parsed_option("test-per-class")?;
    args.finish()?;
    ensure!(
        train_per_class != Some(0) && test_per_class != Some(0),
        "--per-class and --test-per-class must be at least 1"
    );
    let subset = Subset {
        train_per_class,
        test_per_class: test_per_class.or(train_per_class),
    };
    let out = out.unwrap_or_else(|| {
        ctx.path(if subset == Subset::ALL {
            "data/fashion-mnist"
        } else {
            "data/fashion-mnist-small"
        })
    });
    let raw = setup::fashion_mnist_raw(ctx)?;
    prepare_fashion_mnist(&raw, &out, subset)
}

/// Writes the PNG folders unless OUT already holds exactly this subset.
pub fn prepare_fashion_mnist(raw: &Path, out: &Path, subset: Subset) -> Result<()> {
    let spec = format!("fashion-mnist {subset}");
    let marker = out.join(MARKER);
    match fs::read_to_string(&marker) {
        Ok(text) if text.trim() == format!("complete {spec}") => {
            println!(
                "{} already holds Fashion-MNIST ({subset}); nothing to do",
                out.display()
            );
            return Ok(());
        }
        Ok(_) => {
            // Written by this command before: a different subset, or a run that was interrupted.
            println!(
                "{} holds another or an incomplete Fashion-MNIST export; rewriting it",
                out.display()
            );
            for split in ["train", "test"] {
                remove_dir_if_present(&out.join(split))?;
            }
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            for split in ["train", "test"] {
                if out.join(split).exists() {
                    bail!(
                        "{} already exists and was not written by `cargo xtask data`; choose another --out or remove it",
                        out.join(split).display()
                    );
                }
            }
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", marker.display())),
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&marker, &format!("in-progress {spec}\n"))?;

    let start = Instant::now();
    let mut written = Vec::new();
    for (split, prefix, limit) in [
        ("train", "train", subset.train_per_class),
        ("test", "t10k", subset.test_per_class),
    ] {
        let images_path = raw.join(format!("{prefix}-images-idx3-ubyte.gz"));
        let labels_path = raw.join(format!("{prefix}-labels-idx1-ubyte.gz"));
        let images = Images::parse(&gunzip(&images_path)?)
            .with_context(|| format!("decoding {}", images_path.display()))?;
        let labels = parse_labels(&gunzip(&labels_path)?)
            .with_context(|| format!("decoding {}", labels_path.display()))?;
        ensure!(
            images.count == labels.len(),
            "{} holds {} images but {} holds {} labels; the package is damaged: delete data/cache and run again",
            images_path.display(),
            images.count,
            labels_path.display(),
            labels.len()
        );
        let chosen = choose(&labels, limit);
        let dir = out.join(split);
        write_split(&dir, &images, &chosen)?;
        written.push(format!("{} {split}", chosen.len()));
    }
    write_atomic(&marker, &format!("complete {spec}\n"))?;
    println!(
        "wrote {} PNGs into {} ({subset}) in {:.1} s",
        written.join(" + "),
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let temp = path.with_extension("tmp");
    fs::write(&temp, text).with_context(|| format!("writing {}", temp.display()))?;
    fs::rename(&temp, path)
        .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
}

fn gunzip(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| {
        format!(
            "opening {}; run `cargo xtask setup` to fetch Fashion-MNIST",
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| {
            format!(
                "{} is not a valid gzip file; delete data/cache and run again",
                path.display()
            )
        })?;
    Ok(bytes)
}

fn be_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ])
}

/// The item count of an IDX u8 `kind` file, after checking that `bytes` holds its
/// `header_len`-byte header and that the header starts with `magic`.
fn idx_count(bytes: &[u8], kind: &str, header_len: usize, magic: u32) -> Result<usize> {
    ensure!(
        bytes.len() >= header_len,
        "{} bytes is too short for an IDX {kind} header ({header_len} bytes)",
        bytes.len()
    );
    let found = be_u32(bytes, 0);
    ensure!(
        found == magic,
        "magic number {found:#010x} is not an IDX u8 {kind} file ({magic:#010x})"
    );
    Ok(be_u32(bytes, 4) as usize)
}

/// An IDX3 image file: `count` row-major `rows x cols` u8 images, 0 = background.
struct Images {
    count: usize,
    rows: u32,
    cols: u32,
    pixels: Vec<u8>,
}

impl Images {
    fn parse(bytes: &[u8]) -> Result<Images> {
        let count = idx_count(bytes, "image", 16, IMAGES_MAGIC)?;
        let (rows, cols) = (be_u32(bytes, 8), be_u32(bytes, 12));
        ensure!(
            (1..=4096).contains(&rows) && (1..=4096).contains(&cols),
            "image size {rows}x{cols} is out of range"
        );
        let expected = count
            .checked_mul(rows as usize * cols as usize)
            .and_then(|n| n.checked_add(16))
            .context("the header's image count is impossibly large")?;
        ensure!(
            bytes.len() == expected,
            "the header says {count} images of {rows}x{cols} ({expected} bytes) but the file has {} bytes (truncated or damaged)",
            bytes.len()
        );
        Ok(Images {
            count,
            rows,
            cols,
            pixels: bytes[16..].to_vec(),
        })
    }

    fn image(&self, index: usize) -> &[u8] {
        let size = self.rows as usize * self.cols as usize;
        &self.pixels[index * size..(index + 1) * size]
    }
}

/// An IDX1 label file; every label is a valid index into [`FASHION_MNIST_CLASSES`].
fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>> {
    let count = idx_count(bytes, "label", 8, LABELS_MAGIC)?;
    ensure!(
        bytes.len() - 8 == count,
        "the header says {count} labels but the file has {} (truncated or damaged)",
        bytes.len() - 8
    );
    let labels = bytes[8..].to_vec();
    if let Some(position) = labels
        .iter()
        .position(|&label| label as usize >= FASHION_MNIST_CLASSES.len())
    {
        bail!(
            "label {} at index {position} is not one of the {} classes",
            labels[position],
            FASHION_MNIST_CLASSES.len()
        );
    }
    Ok(labels)
}

/// The first `limit` indices of each class in file order (the files are already shuffled).
fn choose(labels: &[u8], limit: Option<usize>) -> Vec<(usize, u8)> {
    let mut taken = [0usize; FASHION_MNIST_CLASSES.len()];
    labels
        .iter()
        .enumerate()
        .filter(|&(_, &label)| {
            let count = &mut taken[label as usize];
            *count += 1;
            limit.is_none_or(|limit| *count <= limit)
        })
        .map(|(index, &label)| (index, label))
        .collect()
}

fn write_split(dir: &Path, images: &Images, chosen: &[(usize, u8)]) -> Result<()> {
    for class in FASHION_MNIST_CLASSES {
        let class_dir = dir.join(class);
        fs::create_dir_all(&class_dir)
            .with_context(|| format!("creating {}", class_dir.display()))?;
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunk = chosen.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = chosen
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<()> {
                    for &(index, label) in part {
                        let path = dir
                            .join(FASHION_MNIST_CLASSES[label as usize])
                            .join(format!("{index:05}.png"));
                        write_png(&path, images.image(index), images.cols, images.rows)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or_else(|_| bail!("a PNG writer thread panicked"))
        })
    })?;
    cmd::flush();
    Ok(())
}

fn write_png(path: &Path, gray: &[u8], width: u32, height: u32) -> Result<()> {
    let file = File::create(path)?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(gray)?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut bytes = magic.to_be_bytes().to_vec();
        for dim in dims {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn parses_a_valid_image_file() {
        let mut bytes = header(IMAGES_MAGIC, &[2, 2, 3]);
        bytes.extend(0..12u8);
        let images = Images::parse(&bytes).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (2, 2, 3));
        assert_eq!(images.image(1), &[6, 7, 8, 9, 10, 11]);
    }

    #[test]
    fn rejects_wrong_magic_and_truncation() {
        let mut bytes = header(LABELS_MAGIC, &[1, 2, 2]);
        bytes.extend([0; 4]);
        let error = Images::parse(&bytes).err().unwrap().to_string();
        assert!(error.contains("magic number 0x00000801"), "{error}");

        let mut bytes = header(IMAGES_MAGIC, &[2, 2, 2]);
        bytes.extend([0; 7]);
        let error = Images::parse(&bytes).err().unwrap().to_string();
        assert!(error.contains("truncated"), "{error}");

        let error = Images::parse(&[0, 0, 8]).err().unwrap().to_string();
        assert!(error.contains("too short"), "{error}");
    }

    #[test]
    fn rejects_bad_labels() {
        let mut bytes = header(LABELS_MAGIC, &[3]);
        bytes.extend([0, 9, 10]);
        let error = parse_labels(&bytes).err().unwrap().to_string();
        assert!(error.contains("label 10 at index 2"), "{error}");

        let mut bytes = header(LABELS_MAGIC, &[4]);
        bytes.extend([0, 1]);
        let error = parse_labels(&bytes).err().unwrap().to_string();
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn choose_keeps_the_first_n_of_each_class_in_order() {
        let labels = [3, 1, 3, 3, 1, 0];
        assert_eq!(
            choose(&labels, Some(2)),
            vec![(0, 3), (1, 1), (2, 3), (4, 1), (5, 0)]
        );
        assert_eq!(choose(&labels, None).len(), labels.len());
    }

    #[test]
    fn prepares_idempotently_and_refuses_foreign_folders() {
        let root = std::env::temp_dir().join(format!("xtask-data-test-{}", std::process::id()));
        let raw = root.join("raw");
        fs::create_dir_all(&raw).unwrap();
        let gz = |name: &str, bytes: &[u8]| {
            let file = File::create(raw.join(name)).unwrap();
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, bytes).unwrap();
            encoder.finish().unwrap();
        };
        for prefix in ["train", "t10k"] {
            let mut images = header(IMAGES_MAGIC, &[4, 2, 2]);
            images.extend((0..16).map(|value| value * 16));
            gz(&format!("{prefix}-images-idx3-ubyte.gz"), &images);
            let mut labels = header(LABELS_MAGIC, &[4]);
            labels.extend([9, 0, 9, 9]);
            gz(&format!("{prefix}-labels-idx1-ubyte.gz"), &labels);
        }
        let out = root.join("out");
        let subset = Subset {
            train_per_class: Some(2),
            test_per_class: None,
        };
        prepare_fashion_mnist(&raw, &out, subset).unwrap();
        let count =
            |split: &str, class: &str| fs::read_dir(out.join(split).join(class)).unwrap().count();
        assert_eq!(
            (count("train", "Ankle_boot"), count("train", "T-shirt_top")),
            (2, 1)
        );
        assert_eq!(count("test", "Ankle_boot"), 3);
        assert!(out.join("train/Ankle_boot/00002.png").is_file());

        // A complete export is left alone; another subset replaces it.
        fs::remove_file(out.join("test/Ankle_boot/00003.png")).unwrap();
        prepare_fashion_mnist(&raw, &out, subset).unwrap();
        assert_eq!(count("test", "Ankle_boot"), 2);
        prepare_fashion_mnist(&raw, &out, Subset::ALL).unwrap();
        assert_eq!(
            (count("train", "Ankle_boot"), count("test", "Ankle_boot")),
            (3, 3)
        );

        let foreign = root.join("foreign");
        fs::create_dir_all(foreign.join("train")).unwrap();
        let error = prepare_fashion_mnist(&raw, &foreign, subset)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("not written by `cargo xtask data`"),
            "{error}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
