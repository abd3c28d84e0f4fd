//! Training data: the image-folder data sets of `tinycnn_runtime::dataset` (decoded once,
//! preprocessed by `shared`, kept as HWC u8) turned into float tensor batches, and augmentation.
pub mod augment;

use tch::{Device, Kind, Tensor};
use tinycnn::Arch;
pub use tinycnn_runtime::dataset::*;

/// Float tensor batches of a [`Dataset`].
pub trait TensorBatches {
    /// The images of `indices` as a float batch `[B, C, H, W]` in `[0, 1]` (channels-last
    /// memory layout) on `device`, and their class ids `[B]`.
    fn batch(&self, indices: &[usize], device: Device) -> (Tensor, Tensor);
}

impl TensorBatches for Dataset {
    fn batch(&self, indices: &[usize], device: Device) -> (Tensor, Tensor) {
        let mut bytes = Vec::with_capacity(indices.len() * self.arch.input_len());
        for &i in indices {
            bytes.extend_from_slice(self.image(i));
        }
        let targets: Vec<i64> = indices.iter().map(|&i| self.targets[i]).collect();
        (
            pixels_to_tensor(&bytes, indices.len(), &self.arch, device),
            Tensor::from_slice(&targets).to_device(device),
        )
    }
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
