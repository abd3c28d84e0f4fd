//! Training data: the image-folder data sets of `tinycnn_runtime::dataset` (decoded once,
//! preprocessed by `shared`, kept as HWC u8, or decoded batch by batch in a prefetching
//! background thread when they exceed the memory budget) turned into float tensor batches, and
//! augmentation.
pub mod augment;

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};
use tinycnn::Arch;
pub use tinycnn_runtime::dataset::*;

/// The images of `indices` of `data` as a float batch `[B, C, H, W]` in `[0, 1]` (channels-last
/// memory layout) on `device`, and their class ids `[B]`.
pub fn batch(data: &Dataset, indices: &[usize], device: Device) -> (Tensor, Tensor) {
    augmented_batch(data, indices, &augment::Augment::NONE, 0, device)
}

/// [`batch`] with `augment` applied, seeded per image from `seed` as in
/// [`augment::Augment::apply_batch`].
pub fn augmented_batch(
    data: &Dataset,
    indices: &[usize],
    augment: &augment::Augment,
    seed: u64,
    device: Device,
) -> (Tensor, Tensor) {
    let list = &data.list;
    let mut bytes = Vec::with_capacity(indices.len() * list.arch.input_len());
    for &i in indices {
        bytes.extend_from_slice(data.image(i));
    }
    let bytes = augment.apply_batch(bytes, &list.arch, seed);
    let targets: Vec<i64> = indices.iter().map(|&i| list.targets[i]).collect();
    (
        pixels_to_tensor(&bytes, indices.len(), &list.arch, device),
        Tensor::from_slice(&targets).to_device(device),
    )
}

/// Turns `count` HWC u8 images into a float batch `[B, C, H, W]` in `[0, 1]` whose memory is
/// channels-last (NHWC strides), the layout in which libtorch's CPU conv and pool are fastest.
pub fn pixels_to_tensor(bytes: &[u8], count: usize, arch: &Arch, device: Device) -> Tensor {
    Tensor::from_slice(bytes)
        .view([
            count as i64,
            arch.height as i64,
            arch.width as i64,
            arch.channels as i64,
        ])
        .to_device(device)
        .to_kind(Kind::Float)
        .divide_scalar(255.0)
        .permute([0, 3, 1, 2])
}

/// Images addressed by index: preprocessed HWC u8 pixels and class ids.
pub trait ImageSource: Sync {
    /// Input geometry, class ids and files of the images.
    fn list(&self) -> &ImageList;
    /// Writes the pixels of `indices`, image after image, into `out`
    /// (`indices.len() * list().arch.input_len()` bytes).
    fn fill(&self, indices: &[usize], out: &mut [u8]) -> Result<(), SourceError>;
}

/// An image that could be read when the data set was scanned but not when it was needed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path} any more ({reason}); it was readable when the data set was scanned; restore the file or remove it and start again")]
pub struct SourceError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

impl ImageSource for Dataset {
    fn list(&self) -> &ImageList {
        &self.list
    }

    fn fill(&self, indices: &[usize], out: &mut [u8]) -> Result<(), SourceError> {
        let len = self.list.arch.input_len();
        for (dst, &i) in out.chunks_exact_mut(len).zip(indices) {
            dst.copy_from_slice(self.image(i));
        }
        Ok(())
    }
}

impl ImageSource for ImageFiles {
    fn list(&self) -> &ImageList {
        &self.list
    }

    fn fill(&self, indices: &[usize], out: &mut [u8]) -> Result<(), SourceError> {
        let len = self.list.arch.input_len();
        out.par_chunks_exact_mut(len)
            .zip(indices.par_iter())
            .try_for_each(|(dst, &i)| {
                self.decode_into(i, dst).map_err(|reason| SourceError {
                    path: self.list.paths[i].clone(),
                    reason,
                })
            })
    }
}

/// A training data set: decoded into memory, or decoded from its files batch by batch when the
/// decoded images would exceed the memory budget. Both index the same images in the same order.
#[derive(Debug)]
pub enum TrainSet {
    Memory(Dataset),
    Files(ImageFiles),
}

impl TrainSet {
    /// Lists `root` and loads it into memory if its decoded images fit in `budget_bytes`, else
    /// checks every file once (so that corrupt files are skipped exactly as in memory) and keeps
    /// only the file list. Both passes show a progress bar.
    pub fn open(root: &Path, input: &Arch, budget_bytes: u64) -> Result<TrainSet, DataError> {
        let scan = ProgressBar::new_spinner().with_message(format!("scanning {}", root.display()));
        scan.enable_steady_tick(std::time::Duration::from_millis(100));
        let files = ImageFiles::list(root, input)?;
        scan.finish_and_clear();
        let stream = files.memory_bytes() > budget_bytes;
        let verb = if stream { "checking" } else { "decoding" };
        let bar = ProgressBar::new(files.list.len() as u64).with_style(
            ProgressStyle::with_template(&format!(
                "{verb} {{pos}}/{{len}} images [{{bar:30}}] ({{elapsed}}<{{eta}})"
            ))
            .expect("static progress template is valid")
            .progress_chars("=> "),
        );
        let tick = || bar.inc(1);
        let set = if stream {
            TrainSet::Files(files.check(&tick)?)
        } else {
            TrainSet::Memory(files.load(&tick)?)
        };
        bar.finish_and_clear();
        Ok(set)
    }

    /// Whether images are decoded batch by batch from their files.
    pub fn is_streamed(&self) -> bool {
        matches!(self, TrainSet::Files(_))
    }

    /// The images as an [`ImageSource`].
    pub fn source(&self) -> &dyn ImageSource {
        match self {
            TrainSet::Memory(d) => d,
            TrainSet::Files(f) => f,
        }
    }

    /// Geometry, class names, class ids, files and skipped files of the images.
    pub fn list(&self) -> &ImageList {
        self.source().list()
    }
}

/// Runs `consume(b, pixels, targets)` on the batches `order.chunks(batch)` in order, while a
/// background thread reads the next `depth` batches from `source` (and passes each through
/// `prepare(b, pixels)`, e.g. augmentation). Stops at the first error of either side.
pub fn prefetch_batches<E, P, C>(
    source: &dyn ImageSource,
    order: &[usize],
    batch: usize,
    depth: usize,
    prepare: P,
    mut consume: C,
) -> Result<(), E>
where
    E: From<SourceError>,
    P: Fn(usize, Vec<u8>) -> Vec<u8> + Send,
    C: FnMut(usize, &[u8], Vec<i64>) -> Result<(), E>,
{
    let list = source.list();
    let len = list.arch.input_len();
    let batch = batch.max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        scope.spawn(move || {
            for (b, indices) in order.chunks(batch).enumerate() {
                let mut pixels = vec![0u8; indices.len() * len];
                let item = source
                    .fill(indices, &mut pixels)
                    .map(|()| prepare(b, pixels));
                let failed = item.is_err();
                // A closed channel means the consumer stopped; nothing is left to do.
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
        for (b, indices) in order.chunks(batch).enumerate() {
            let pixels = rx
                .recv()
                .expect("the prefetch thread sends one item per batch or an error")?;
            let targets = indices.iter().map(|&i| list.targets[i]).collect();
            consume(b, &pixels, targets)?;
        }
        Ok(())
    })
}
