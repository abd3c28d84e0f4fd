//! The network architecture and every buffer size derived from it.
//!
//! The network is fixed: three blocks of `conv 3x3 stride 1 SAME + bias -> max-pool 2x2 stride 2
//! SAME -> ReLU`, then `flatten (HWC) -> dense fc_width + ReLU -> dense classes`. A preset only
//! chooses the input size and channel count, the three filter counts, the FC width and the number
//! of classes. Every size is a `const fn`, so firmware can declare exact `static` buffers.
//!
//! The size functions are only meaningful for an `Arch` that passes [`Arch::validate`]; on an
//! invalid one they may overflow.

use core::fmt;

/// Most classes a model may have (capacity of [`crate::Model::labels`]).
pub const MAX_CLASSES: usize = 64;
/// Longest class label in bytes (UTF-8).
pub const MAX_LABEL_LEN: usize = 32;
/// Number of conv blocks.
pub const BLOCKS: usize = 3;
/// Number of layers with weights: conv1, conv2, conv3, fc1, fc2.
pub const LAYERS: usize = 5;
/// Conv kernel size (3x3).
pub const KERNEL: usize = 3;
/// Largest |(q - zp) * w| term: activations span 255 steps from their zero point, weights are
/// symmetric in [-127, 127].
pub const MAX_PRODUCT: i64 = 255 * 127;
/// Largest value of any size this crate computes (activations, weights, MAC terms); keeps every
/// derived size far from `usize` overflow on 32-bit targets.
pub const MAX_ELEMENTS: u64 = i32::MAX as u64;

/// Input size, channel count, filter counts, FC width and classes of the tutorial CNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Arch {
    /// Input height in pixels.
    pub height: u16,
    /// Input width in pixels.
    pub width: u16,
    /// Input channels: 1 (gray) or 3 (RGB).
    pub channels: u8,
    /// Output channels of conv1, conv2, conv3.
    pub filters: [u16; 3],
    /// Width of the hidden dense layer (fc1).
    pub fc_width: u16,
    /// Number of classes (fc2 outputs).
    pub classes: u16,
}

/// Why an [`Arch`] is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ArchError {
    /// Height, width, a filter count or the FC width is zero.
    ZeroSize,
    /// Channels is not 1 or 3.
    Channels(u8),
    /// Classes is not in `2..=MAX_CLASSES`.
    Classes(u16),
    /// A buffer or weight tensor would exceed [`MAX_ELEMENTS`].
    TooLarge,
    /// A layer has so many inputs that its int32 accumulator could overflow
    /// (`MAX_PRODUCT * fan_in > i32::MAX`). `layer` is 0..5.
    AccumulatorOverflow {
        /// Layer index (conv1, conv2, conv3, fc1, fc2).
        layer: u8,
    },
}

impl fmt::Display for ArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchError::ZeroSize => f.write_str(
                "architecture has a zero size (height, width, filters and fc_width must be > 0)",
            ),
            ArchError::Channels(c) => {
                write!(
                    f,
                    "architecture has {c} input channels; use 1 (gray) or 3 (RGB)"
                )
            }
            ArchError::Classes(n) => write!(
                f,
                "architecture has {n} classes; a model needs 2..={MAX_CLASSES} classes"
            ),
            ArchError::TooLarge => f.write_str(
                "architecture is too large (a buffer or weight tensor exceeds 2^31 elements); \
                 use a smaller input or fewer filters",
            ),
            ArchError::AccumulatorOverflow { layer } => write!(
                f,
                "layer {layer} has too many inputs for an int32 accumulator \
                 (255 * 127 * fan_in must be <= 2^31 - 1); use a smaller input or fewer filters"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ArchError {}

const fn ceil_half(n: usize) -> usize {
    n.div_ceil(2)
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

impl Arch {
    /// The tutorial CNN: 128x128 RGB input, filters 32, 32, 64, FC 128.
    pub const fn tutorial(classes: u16) -> Arch {
        Arch {
            height: 128,
            width: 128,
            channels: 3,
            filters: [32, 32, 64],
            fc_width: 128,
            classes,
        }
    }

    /// Fashion-MNIST: 28x28 gray input, filters 32, 32, 64, FC 128, 10 classes.
    pub const fn fashion() -> Arch {
        Arch {
            height: 28,
            width: 28,
            channels: 1,
            filters: [32, 32, 64],
            fc_width: 128,
            classes: 10,
        }
    }

    /// (height, width) of the input of conv block `block` (0..3).
    pub const fn block_input_hw(&self, block: usize) -> (usize, usize) {
        let mut h = self.height as usize;
        let mut w = self.width as usize;
        let mut b = 0;
        while b < block {
            h = ceil_half(h);
            w = ceil_half(w);
            b += 1;
        }
        (h, w)
    }

    /// (height, width) of the output of conv block `block` (0..3) after max-pool 2x2 SAME:
    /// `ceil(n / 2)`, so 7 -> 4 as in TensorFlow.
    pub const fn block_output_hw(&self, block: usize) -> (usize, usize) {
        let (h, w) = self.block_input_hw(block);
        (ceil_half(h), ceil_half(w))
    }

    /// Input channels of conv block `block` (0..3).
    pub const fn block_in_channels(&self, block: usize) -> usize {
        if block == 0 {
            self.channels as usize
        } else {
            self.filters[block - 1] as usize
        }
    }

    /// Output channels of conv block `block` (0..3).
    pub const fn block_out_channels(&self, block: usize) -> usize {
        self.filters[block] as usize
    }

    /// Elements (= bytes of i8) of the pooled output of conv block `block`, HWC.
    pub const fn block_output_len(&self, block: usize) -> usize {
        let (h, w) = self.block_output_hw(block);
        h * w * self.block_out_channels(block)
    }

    /// Input elements, `H * W * C`.
    pub const fn input_len(&self) -> usize {
        self.height as usize * self.width as usize * self.channels as usize
    }

    /// fc1 input length: the HWC flatten of block 2's output.
    pub const fn flatten_len(&self) -> usize {
        self.block_output_len(2)
    }

    /// (inputs, outputs) of layer `layer` (0..5): conv layers count `9 * C_in` inputs per output
    /// channel.
    pub const fn layer_fan_in_out(&self, layer: usize) -> (usize, usize) {
        match layer {
            0..=2 => (
                KERNEL * KERNEL * self.block_in_channels(layer),
                self.block_out_channels(layer),
            ),
            3 => (self.flatten_len(), self.fc_width as usize),
            _ => (self.fc_width as usize, self.classes as usize),
        }
    }

    /// Number of int8 weights of layer `layer` (0..5).
    pub const fn layer_weight_len(&self, layer: usize) -> usize {
        let (i, o) = self.layer_fan_in_out(layer);
        i * o
    }

    /// Number of output channels of layer `layer` (0..5): the length of its bias, multiplier and
    /// shift arrays.
    pub const fn layer_out_channels(&self, layer: usize) -> usize {
        self.layer_fan_in_out(layer).1
    }

    /// Bytes of i8 scratch [`crate::forward()`] needs.
    ///
    /// Two ping-pong regions: A holds block 0's and block 2's outputs, B holds block 1's output
    /// and fc1's output. Conv and pool are fused, so no full-resolution conv output is stored.
    pub const fn scratch_len(&self) -> usize {
        self.scratch_a_len() + self.scratch_b_len()
    }

    /// Size of ping-pong region A (block 0 and block 2 outputs).
    pub const fn scratch_a_len(&self) -> usize {
        max(self.block_output_len(0), self.block_output_len(2))
    }

    /// Size of ping-pong region B (block 1 and fc1 outputs).
    pub const fn scratch_b_len(&self) -> usize {
        max(self.block_output_len(1), self.fc_width as usize)
    }

    /// Peak activation RAM of a forward pass in bytes: input + scratch + logits.
    pub const fn peak_activation_bytes(&self) -> usize {
        self.input_len() + self.scratch_len() + self.classes as usize
    }

    /// Peak activation RAM of a naive layer-by-layer plan, for comparison: each conv writes its
    /// full-resolution output to a fresh buffer while its input is live (pooling then runs in
    /// place), so the peak is the largest `conv input + full-resolution conv output`.
    pub const fn naive_activation_bytes(&self) -> usize {
        let mut peak = self.flatten_len() + self.fc_width as usize;
        let mut b = 0;
        while b < BLOCKS {
            let (h, w) = self.block_input_hw(b);
            let conv = h * w * self.block_in_channels(b) + h * w * self.block_out_channels(b);
            peak = max(peak, conv);
            b += 1;
        }
        peak
    }

    /// Multiply-accumulates of one forward pass.
    pub const fn macs(&self) -> u64 {
        let mut total = 0u64;
        let mut b = 0;
        while b < BLOCKS {
            let (h, w) = self.block_input_hw(b);
            let (fan_in, out) = self.layer_fan_in_out(b);
            total += (h * w) as u64 * fan_in as u64 * out as u64;
            b += 1;
        }
        total + self.layer_weight_len(3) as u64 + self.layer_weight_len(4) as u64
    }

    /// Trainable parameters (weights + biases).
    pub const fn param_count(&self) -> u64 {
        let mut total = 0u64;
        let mut l = 0;
        while l < LAYERS {
            total += self.layer_weight_len(l) as u64 + self.layer_out_channels(l) as u64;
            l += 1;
        }
        total
    }

    /// Checks that every size is positive, channels is 1 or 3, classes is `2..=MAX_CLASSES`,
    /// every buffer fits [`MAX_ELEMENTS`] and no layer's int32 accumulator can overflow:
    /// `MAX_PRODUCT * fan_in <= i32::MAX` (the bias then gets the remaining headroom, checked
    /// when a blob loads).
    pub const fn validate(&self) -> Result<(), ArchError> {
        if self.height == 0
            || self.width == 0
            || self.filters[0] == 0
            || self.filters[1] == 0
            || self.filters[2] == 0
            || self.fc_width == 0
        {
            return Err(ArchError::ZeroSize);
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(ArchError::Channels(self.channels));
        }
        if self.classes < 2 || self.classes as usize > MAX_CLASSES {
            return Err(ArchError::Classes(self.classes));
        }
        // Every product below fits u64: factors are < 2^17.
        let hw = self.height as u64 * self.width as u64;
        let widest = max(
            self.channels as usize,
            max(self.filters[0] as usize, self.filters[1] as usize),
        ) as u64;
        if hw * widest > MAX_ELEMENTS || hw * self.filters[2] as u64 > MAX_ELEMENTS {
            return Err(ArchError::TooLarge);
        }
        let mut layer = 0;
        while layer < LAYERS {
            let (fan_in, out) = self.layer_fan_in_out(layer);
            if fan_in as u64 * out as u64 > MAX_ELEMENTS {
                return Err(ArchError::TooLarge);
            }
            if MAX_PRODUCT * fan_in as i64 > i32::MAX as i64 {
                return Err(ArchError::AccumulatorOverflow { layer: layer as u8 });
            }
            layer += 1;
        }
        Ok(())
    }

    /// Largest |accumulator| of layer `layer` before the bias: `MAX_PRODUCT * fan_in`.
    pub const fn accumulator_bound(&self, layer: usize) -> i64 {
        MAX_PRODUCT * self.layer_fan_in_out(layer).0 as i64
    }
}

const _: () = assert!(Arch::tutorial(2).validate().is_ok());
const _: () = assert!(Arch::fashion().validate().is_ok());
// The tutorial scratch plan must fit the 200 KB budget.
const _: () = assert!(Arch::tutorial(2).scratch_len() <= 200 * 1024);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_pool_rounds_up() {
        let a = Arch {
            height: 7,
            width: 13,
            ..Arch::fashion()
        };
        assert_eq!(a.block_output_hw(0), (4, 7));
        assert_eq!(a.block_output_hw(1), (2, 4));
        assert_eq!(a.block_output_hw(2), (1, 2));
        let f = Arch::fashion();
        assert_eq!(f.block_output_hw(0), (14, 14));
        assert_eq!(f.block_output_hw(1), (7, 7));
        assert_eq!(f.block_output_hw(2), (4, 4));
        assert_eq!(f.flatten_len(), 4 * 4 * 64);
    }

    #[test]
    fn tutorial_sizes() {
        let t = Arch::tutorial(2);
        assert_eq!(t.input_len(), 128 * 128 * 3);
        assert_eq!(t.flatten_len(), 16 * 16 * 64);
        // 64*64*32 + 32*32*32 = 160 KiB
        assert_eq!(t.scratch_len(), 163_840);
        // conv1 128*128*27*32 + conv2 64*64*288*32 + conv3 32*32*288*64 + fc 16384*128 + 128*2
        assert_eq!(
            t.macs(),
            14_155_776 + 37_748_736 + 18_874_368 + 2_097_152 + 256
        );
        assert_eq!(t.param_count(), 896 + 9248 + 18496 + 2_097_280 + 258);
        // conv1: 128*128*3 in + 128*128*32 out
        assert_eq!(t.naive_activation_bytes(), 573_440);
        assert_eq!(t.peak_activation_bytes(), 49_152 + 163_840 + 2);
    }

    #[test]
    fn validate_rejects() {
        let f = Arch::fashion();
        assert_eq!(
            Arch { channels: 2, ..f }.validate(),
            Err(ArchError::Channels(2))
        );
        assert_eq!(
            Arch { classes: 1, ..f }.validate(),
            Err(ArchError::Classes(1))
        );
        assert_eq!(
            Arch { classes: 65, ..f }.validate(),
            Err(ArchError::Classes(65))
        );
        assert_eq!(Arch { height: 0, ..f }.validate(), Err(ArchError::ZeroSize));
        assert_eq!(
            Arch { fc_width: 0, ..f }.validate(),
            Err(ArchError::ZeroSize)
        );
        // fc1 fan-in 40*40*64 = 102400 > 2^31 / 32385
        assert_eq!(
            Arch {
                height: 320,
                width: 320,
                ..f
            }
            .validate(),
            Err(ArchError::AccumulatorOverflow { layer: 3 })
        );
        assert_eq!(
            Arch {
                filters: [8000, 32, 64],
                ..f
            }
            .validate(),
            Err(ArchError::AccumulatorOverflow { layer: 1 })
        );
        assert_eq!(
            Arch {
                height: u16::MAX,
                width: u16::MAX,
                filters: [u16::MAX; 3],
                ..f
            }
            .validate(),
            Err(ArchError::TooLarge)
        );
    }
}
