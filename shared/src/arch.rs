//! The network architecture and every buffer size derived from it.
//!
//! The network is the tutorial CNN: 1 to [`MAX_BLOCKS`] blocks of `conv 3x3 stride 1 SAME + bias
//! -> max-pool 2x2 stride 2 SAME -> ReLU` (the tutorial has 3: 32, 32, 64 filters), then
//! `flatten (HWC) -> dense fc_width + ReLU -> dense classes`. A preset only chooses the input size
//! and channel count, the filter count of each block, the FC width and the number of classes.
//!
//! [`Arch::layer`] is the one layer description: every consumer (forward pass, blob, host
//! simulation, QAT, export, parity) iterates over [`Arch::layers`] instead of counting layers
//! itself. Every size is a `const fn`, so firmware can declare exact `static` buffers.
//!
//! The size functions are only meaningful for an `Arch` that passes [`Arch::validate`]; on an
//! invalid one they may overflow.

use crate::ops::ConvShape;
use core::fmt;

/// Most classes a model may have (capacity of [`crate::Model::labels`]).
pub const MAX_CLASSES: usize = 64;
/// Longest class label in bytes (UTF-8).
pub const MAX_LABEL_LEN: usize = 32;
/// Most conv blocks an architecture may have.
pub const MAX_BLOCKS: usize = 6;
/// Dense layers after the conv blocks: fc1 (`fc_width`, ReLU) and fc2 (`classes`, the logits).
pub const DENSE_LAYERS: usize = 2;
/// Most layers with weights: [`MAX_BLOCKS`] conv blocks and the dense layers.
pub const MAX_LAYERS: usize = MAX_BLOCKS + DENSE_LAYERS;
/// Names of the conv blocks' layers, in order.
const CONV_NAMES: [&str; MAX_BLOCKS] = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6"];
/// Names of the dense layers, in order.
const DENSE_NAMES: [&str; DENSE_LAYERS] = ["fc1", "fc2"];
/// Conv kernel size (3x3).
pub const KERNEL: usize = 3;
/// Largest |(q - zp) * w| term: activations span 255 steps from their zero point, weights are
/// symmetric in [-127, 127].
pub const MAX_PRODUCT: i64 = 255 * 127;
/// Largest value of any size this crate computes (activations, weights, MAC terms); keeps every
/// derived size far from `usize` overflow on 32-bit targets.
pub const MAX_ELEMENTS: u64 = i32::MAX as u64;

/// The filter count of each conv block: 1 to [`MAX_BLOCKS`] values (an empty list is
/// representable, and rejected by [`Arch::validate`]). Serialized as a sequence.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Filters {
    len: u8,
    counts: [u16; MAX_BLOCKS],
}

impl Filters {
    /// Filters from a fixed-size list; `N > MAX_BLOCKS` does not compile.
    pub const fn of<const N: usize>(counts: [u16; N]) -> Filters {
        const { assert!(N <= MAX_BLOCKS, "more conv blocks than MAX_BLOCKS") };
        let mut out = [0u16; MAX_BLOCKS];
        let mut i = 0;
        while i < N {
            out[i] = counts[i];
            i += 1;
        }
        Filters {
            len: N as u8,
            counts: out,
        }
    }

    /// Filters from a slice, `None` if it has more than [`MAX_BLOCKS`] values.
    pub const fn new(counts: &[u16]) -> Option<Filters> {
        if counts.len() > MAX_BLOCKS {
            return None;
        }
        let mut out = [0u16; MAX_BLOCKS];
        let mut i = 0;
        while i < counts.len() {
            out[i] = counts[i];
            i += 1;
        }
        Some(Filters {
            len: counts.len() as u8,
            counts: out,
        })
    }

    /// Number of conv blocks.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are no blocks (an invalid architecture).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Filter count of block `block`. Panics if `block >= len()`.
    pub const fn get(&self, block: usize) -> u16 {
        assert!(block < self.len as usize, "Filters::get: no such block");
        self.counts[block]
    }

    /// The filter counts, one per block.
    pub fn as_slice(&self) -> &[u16] {
        &self.counts[..self.len as usize]
    }
}

impl fmt::Debug for Filters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Filters {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=[?]}", self.as_slice())
    }
}

impl serde::Serialize for Filters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.as_slice())
    }
}

impl<'de> serde::Deserialize<'de> for Filters {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Filters, D::Error> {
        let v = heapless::Vec::<u16, MAX_BLOCKS>::deserialize(d)?;
        Ok(Filters::new(&v).expect("heapless::Vec holds at most MAX_BLOCKS"))
    }
}

/// What a layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// A conv block: conv 3x3 SAME + bias -> max-pool 2x2 SAME -> ReLU, on an input of this shape.
    ConvBlock(ConvShape),
    /// A dense layer on the flattened (HWC) output of the previous layer.
    Dense,
}

/// One layer with weights, as the forward pass, the blob and the host all see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// Position in the network, `0..arch.layer_count()`.
    pub index: usize,
    /// Conv block or dense.
    pub kind: LayerKind,
    /// Inputs per output: `9 * C_in` for a conv block, the input length for a dense layer.
    pub fan_in: usize,
    /// Output channels (conv filters or dense outputs): the length of its bias, multiplier and
    /// shift arrays.
    pub outputs: usize,
    /// Whether ReLU is folded into the output clamp (every layer but the logits).
    pub relu: bool,
    /// `conv1`.., `fc1`, `fc2`.
    pub name: &'static str,
    /// Elements of the layer's output (the pooled HWC map of a conv block).
    pub output_len: usize,
    /// `(height, width, channels)` of the layer's input when it is a map: a conv block's input,
    /// and the last block's pooled output that fc1 reads flattened in HWC order. `None` for a
    /// dense layer on a vector (fc2).
    pub input_hwc: Option<(usize, usize, usize)>,
}

impl LayerSpec {
    /// Number of int8 weights, `fan_in * outputs`.
    pub const fn weight_len(&self) -> usize {
        self.fan_in * self.outputs
    }

    /// Bytes of the layer's weights stored at `bits` (int8: one per weight; int4: packed two
    /// per byte, [`WeightBits::bytes`](crate::weights::WeightBits::bytes)).
    pub const fn weight_bytes(&self, bits: crate::weights::WeightBits) -> usize {
        bits.bytes(self.weight_len())
    }

    /// Elements of the layer's input: the HWC map of a conv block, the vector of a dense layer.
    pub const fn input_len(&self) -> usize {
        match self.kind {
            LayerKind::ConvBlock(shape) => shape.input_len(),
            LayerKind::Dense => self.fan_in,
        }
    }

    /// Largest |accumulator| before the bias: `MAX_PRODUCT * fan_in`.
    pub const fn accumulator_bound(&self) -> i64 {
        MAX_PRODUCT * self.fan_in as i64
    }

    /// The conv shape of a conv block, `None` for a dense layer.
    pub const fn conv_shape(&self) -> Option<ConvShape> {
        match self.kind {
            LayerKind::ConvBlock(shape) => Some(shape),
            LayerKind::Dense => None,
        }
    }

    /// Whether this is the last layer (its output is the logits).
    pub const fn is_logits(&self) -> bool {
        !self.relu
    }
}

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
    /// Output channels of each conv block, in order.
    pub filters: Filters,
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
    /// The number of conv blocks is not in `1..=MAX_BLOCKS`.
    Blocks(usize),
    /// Channels is not 1 or 3.
    Channels(u8),
    /// Classes is not in `2..=MAX_CLASSES`.
    Classes(u16),
    /// A buffer or weight tensor would exceed [`MAX_ELEMENTS`].
    TooLarge,
    /// A layer has so many inputs that its int32 accumulator could overflow
    /// (`MAX_PRODUCT * fan_in > i32::MAX`).
    AccumulatorOverflow {
        /// The layer's name (`conv1`.., `fc1`, `fc2`).
        layer: &'static str,
    },
}

impl fmt::Display for ArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchError::ZeroSize => f.write_str(
                "architecture has a zero size (height, width, filters and fc_width must be > 0)",
            ),
            ArchError::Blocks(n) => write!(
                f,
                "architecture has {n} conv blocks; use 1..={MAX_BLOCKS} filter counts"
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
                 (255 * 127 * fan_in must be <= 2^31 - 1); use a smaller input, fewer filters \
                 or one more conv block"
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
            filters: Filters::of([32, 32, 64]),
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
            filters: Filters::of([32, 32, 64]),
            fc_width: 128,
            classes: 10,
        }
    }

    /// Number of conv blocks.
    pub const fn blocks(&self) -> usize {
        self.filters.len()
    }

    /// Number of layers with weights: the conv blocks, then fc1 and fc2.
    pub const fn layer_count(&self) -> usize {
        self.blocks() + DENSE_LAYERS
    }

    /// (height, width) of the input of conv block `block`.
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

    /// (height, width) of the output of conv block `block` after max-pool 2x2 SAME:
    /// `ceil(n / 2)`, so 7 -> 4 as in TensorFlow.
    pub const fn block_output_hw(&self, block: usize) -> (usize, usize) {
        let (h, w) = self.block_input_hw(block);
        (ceil_half(h), ceil_half(w))
    }

    /// Input channels of conv block `block`.
    pub const fn block_in_channels(&self, block: usize) -> usize {
        if block == 0 {
            self.channels as usize
        } else {
            self.filters.get(block - 1) as usize
        }
    }

    /// Output channels of conv block `block`.
    pub const fn block_out_channels(&self, block: usize) -> usize {
        self.filters.get(block) as usize
    }

    /// The conv shape of block `block`: its input size and channels, and its filters.
    pub const fn block_shape(&self, block: usize) -> ConvShape {
        let (height, width) = self.block_input_hw(block);
        ConvShape {
            height,
            width,
            in_channels: self.block_in_channels(block),
            out_channels: self.block_out_channels(block),
        }
    }

    /// Elements (= bytes of i8) of the pooled output of conv block `block`, HWC.
    pub const fn block_output_len(&self, block: usize) -> usize {
        self.block_shape(block).pooled_len()
    }

    /// Input elements, `H * W * C`.
    pub const fn input_len(&self) -> usize {
        self.height as usize * self.width as usize * self.channels as usize
    }

    /// fc1 input length: the HWC flatten of the last block's output.
    pub const fn flatten_len(&self) -> usize {
        self.block_output_len(self.blocks() - 1)
    }

    /// Layer `index` (`0..layer_count()`): the one description of what each layer is.
    ///
    /// # Panics
    /// If `index >= layer_count()`.
    pub const fn layer(&self, index: usize) -> LayerSpec {
        let blocks = self.blocks();
        assert!(index < self.layer_count(), "Arch::layer: no such layer");
        if index < blocks {
            let shape = self.block_shape(index);
            LayerSpec {
                index,
                kind: LayerKind::ConvBlock(shape),
                fan_in: KERNEL * KERNEL * shape.in_channels,
                outputs: shape.out_channels,
                relu: true,
                name: CONV_NAMES[index],
                output_len: shape.pooled_len(),
                input_hwc: Some((shape.height, shape.width, shape.in_channels)),
            }
        } else {
            let dense = index - blocks;
            let last = self.blocks() - 1;
            let (ph, pw) = self.block_output_hw(last);
            let (fan_in, outputs, input_hwc) = if dense == 0 {
                let map = (ph, pw, self.block_out_channels(last));
                (self.flatten_len(), self.fc_width as usize, Some(map))
            } else {
                (self.fc_width as usize, self.classes as usize, None)
            };
            LayerSpec {
                index,
                kind: LayerKind::Dense,
                fan_in,
                outputs,
                relu: dense + 1 < DENSE_LAYERS,
                name: DENSE_NAMES[dense],
                output_len: outputs,
                input_hwc,
            }
        }
    }

    /// Every layer in order (see [`Arch::layer`]).
    pub fn layers(&self) -> impl ExactSizeIterator<Item = LayerSpec> + '_ {
        (0..self.layer_count()).map(move |i| self.layer(i))
    }

    /// The layer whose output is the logits (the last one).
    pub const fn logits_layer(&self) -> LayerSpec {
        self.layer(self.layer_count() - 1)
    }

    /// Bytes of i8 scratch [`crate::forward()`] needs.
    ///
    /// Two ping-pong regions: A holds the outputs of even layers, B those of odd layers (a conv
    /// block's pooled map or a dense layer's vector; the logits go to the caller's buffer). Conv
    /// and pool are fused, so no full-resolution conv output is stored.
    pub const fn scratch_len(&self) -> usize {
        self.scratch_a_len() + self.scratch_b_len()
    }

    /// Size of ping-pong region A (outputs of layers 0, 2, 4, ..., but not the logits).
    pub const fn scratch_a_len(&self) -> usize {
        self.scratch_region_len(0)
    }

    /// Size of ping-pong region B (outputs of layers 1, 3, 5, ..., but not the logits).
    pub const fn scratch_b_len(&self) -> usize {
        self.scratch_region_len(1)
    }

    const fn scratch_region_len(&self, parity: usize) -> usize {
        let mut len = 0;
        let mut l = parity;
        while l + 1 < self.layer_count() {
            len = max(len, self.layer(l).output_len);
            l += 2;
        }
        len
    }

    /// Peak activation RAM in bytes of the streaming forward pass
    /// ([`crate::forward::forward_rows`]), the plan the firmware runs:
    /// [`Arch::stream_scratch_len`] + 4 bytes per fc1 accumulator + the logits. It needs no
    /// model input buffer: block 0's ring holds the input rows in flight.
    pub const fn peak_activation_bytes(&self) -> usize {
        self.stream_scratch_len() + 4 * self.stream_acc_len() + self.classes as usize
    }

    /// Peak activation RAM in bytes of the whole-map forward pass ([`crate::forward()`]):
    /// input + scratch + logits.
    pub const fn whole_map_activation_bytes(&self) -> usize {
        self.input_len() + self.scratch_len() + self.classes as usize
    }

    /// Rows in each conv block's input ring of the streaming forward pass: pooled row `py`
    /// reads input rows `2py-1 ..= 2py+2`, so 4 rows (see [`crate::forward::forward_rows`] for
    /// why 4 suffice).
    pub const RING_ROWS: usize = 4;

    /// Bytes of one input row of conv block `block`, `width * C_in`.
    pub const fn block_input_row_len(&self, block: usize) -> usize {
        self.block_shape(block).row().input_row_len()
    }

    /// Bytes of conv block `block`'s input ring: [`Arch::RING_ROWS`] input rows.
    pub const fn stream_ring_len(&self, block: usize) -> usize {
        Self::RING_ROWS * self.block_input_row_len(block)
    }

    /// Offset of conv block `block`'s ring in the streaming scratch (the rings lie back to back
    /// in block order, first in the scratch).
    pub const fn stream_ring_offset(&self, block: usize) -> usize {
        let mut offset = 0;
        let mut b = 0;
        while b < block {
            offset += self.stream_ring_len(b);
            b += 1;
        }
        offset
    }

    /// Bytes of every conv block's input ring together.
    pub const fn stream_rings_len(&self) -> usize {
        self.stream_ring_offset(self.blocks())
    }

    /// Bytes of one pooled output row of the last conv block: the run of fc1 columns each
    /// streaming step accumulates.
    pub const fn stream_row_len(&self) -> usize {
        self.block_shape(self.blocks() - 1).row().pooled_row_len()
    }

    /// i32 accumulators of the streaming forward pass: one per fc1 output.
    pub const fn stream_acc_len(&self) -> usize {
        self.fc_width as usize
    }

    /// Bytes of i8 scratch [`crate::forward::forward_rows`] needs: the rings, the last block's
    /// pooled row, and fc1's output (the logits layer's input).
    pub const fn stream_scratch_len(&self) -> usize {
        self.stream_rings_len() + self.stream_row_len() + self.fc_width as usize
    }

    /// Peak activation RAM of a naive layer-by-layer plan, for comparison: each conv writes its
    /// full-resolution output to a fresh buffer while its input is live (pooling then runs in
    /// place), so the peak is the largest `conv input + full-resolution conv output`.
    pub const fn naive_activation_bytes(&self) -> usize {
        let mut peak = self.flatten_len() + self.fc_width as usize;
        let mut b = 0;
        while b < self.blocks() {
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
        let mut l = 0;
        while l < self.layer_count() {
            total += self.layer_macs(l);
            l += 1;
        }
        total
    }

    /// Multiply-accumulates of layer `index`: a conv block computes every full-resolution pixel.
    pub const fn layer_macs(&self, index: usize) -> u64 {
        let layer = self.layer(index);
        let pixels = match layer.kind {
            LayerKind::ConvBlock(s) => (s.height * s.width) as u64,
            LayerKind::Dense => 1,
        };
        pixels * layer.weight_len() as u64
    }

    /// Trainable parameters (weights + biases).
    pub const fn param_count(&self) -> u64 {
        let mut total = 0u64;
        let mut l = 0;
        while l < self.layer_count() {
            let layer = self.layer(l);
            total += (layer.weight_len() + layer.outputs) as u64;
            l += 1;
        }
        total
    }

    /// Checks that there are 1..=[`MAX_BLOCKS`] conv blocks, every size is positive, channels is
    /// 1 or 3, classes is `2..=MAX_CLASSES`, every buffer fits [`MAX_ELEMENTS`] and no layer's
    /// int32 accumulator can overflow: `MAX_PRODUCT * fan_in <= i32::MAX` (the bias then gets
    /// the remaining headroom, checked when a blob loads).
    pub const fn validate(&self) -> Result<(), ArchError> {
        let blocks = self.blocks();
        if blocks == 0 || blocks > MAX_BLOCKS {
            return Err(ArchError::Blocks(blocks));
        }
        if self.height == 0 || self.width == 0 || self.fc_width == 0 {
            return Err(ArchError::ZeroSize);
        }
        let mut b = 0;
        while b < blocks {
            if self.filters.get(b) == 0 {
                return Err(ArchError::ZeroSize);
            }
            b += 1;
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(ArchError::Channels(self.channels));
        }
        if self.classes < 2 || self.classes as usize > MAX_CLASSES {
            return Err(ArchError::Classes(self.classes));
        }
        // Every product below fits u64: factors are < 2^17.
        let hw = self.height as u64 * self.width as u64;
        let mut b = 0;
        while b < blocks {
            let widest = max(self.block_in_channels(b), self.block_out_channels(b)) as u64;
            if hw * widest > MAX_ELEMENTS {
                return Err(ArchError::TooLarge);
            }
            b += 1;
        }
        let mut l = 0;
        while l < self.layer_count() {
            let layer = self.layer(l);
            if layer.fan_in as u64 * layer.outputs as u64 > MAX_ELEMENTS {
                return Err(ArchError::TooLarge);
            }
            if MAX_PRODUCT * layer.fan_in as i64 > i32::MAX as i64 {
                return Err(ArchError::AccumulatorOverflow { layer: layer.name });
            }
            l += 1;
        }
        Ok(())
    }
}

const _: () = assert!(Arch::tutorial(2).validate().is_ok());
const _: () = assert!(Arch::fashion().validate().is_ok());
// The tutorial scratch plan must fit the 200 KB budget.
const _: () = assert!(Arch::tutorial(2).scratch_len() <= 200 * 1024);
// The streaming plan's budgets: 16 KB for the tutorial net (any class count), 4 KB for fashion.
const _: () = assert!(Arch::tutorial(MAX_CLASSES as u16).peak_activation_bytes() <= 16 * 1024);
const _: () = assert!(Arch::fashion().peak_activation_bytes() <= 4 * 1024);

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

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
        assert_eq!(t.whole_map_activation_bytes(), 49_152 + 163_840 + 2);
        // Rings 4*128*3 + 4*64*32 + 4*32*32, last row 16*64, fc1 acc 4*128, fc1 out 128, logits.
        assert_eq!(t.stream_rings_len(), 1536 + 8192 + 4096);
        assert_eq!(t.stream_row_len(), 1024);
        assert_eq!(
            t.peak_activation_bytes(),
            1536 + 8192 + 4096 + 1024 + 512 + 128 + 2
        );
    }

    #[test]
    fn layer_description() {
        let t = Arch::tutorial(2);
        let names: std::vec::Vec<_> = t.layers().map(|l| l.name).collect();
        assert_eq!(names, ["conv1", "conv2", "conv3", "fc1", "fc2"]);
        let relu: std::vec::Vec<_> = t.layers().map(|l| l.relu).collect();
        assert_eq!(relu, [true, true, true, true, false]);
        assert_eq!(t.layer(0).fan_in, 27);
        assert_eq!(t.layer(3).fan_in, 16 * 16 * 64);
        assert_eq!(t.layer(3).kind, LayerKind::Dense);
        assert_eq!(t.logits_layer().outputs, 2);
        assert!(t.logits_layer().is_logits());
        // A fourth block shrinks fc1 4x: the way to fit a small flash.
        let four = Arch {
            filters: Filters::of([16, 32, 32, 64]),
            ..t
        };
        assert_eq!(four.validate(), Ok(()));
        assert_eq!(four.layer_count(), 6);
        assert_eq!(four.layer(3).name, "conv4");
        assert_eq!(four.layer(4).name, "fc1");
        assert_eq!(four.layer(4).fan_in, 8 * 8 * 64);
        assert_eq!(four.flatten_len() * 4, t.flatten_len());
        let sum: u64 = (0..four.layer_count()).map(|l| four.layer_macs(l)).sum();
        assert_eq!(sum, four.macs());
    }

    #[test]
    fn filters_limits() {
        assert_eq!(Filters::new(&[1; MAX_BLOCKS + 1]), None);
        assert_eq!(Filters::new(&[4, 5]).unwrap().as_slice(), &[4, 5]);
        let none = Arch {
            filters: Filters::new(&[]).unwrap(),
            ..Arch::fashion()
        };
        assert_eq!(none.validate(), Err(ArchError::Blocks(0)));
        let one = Arch {
            filters: Filters::of([8]),
            ..Arch::fashion()
        };
        assert_eq!(one.validate(), Ok(()));
        assert_eq!(one.flatten_len(), 14 * 14 * 8);
        // Scratch: A holds conv1's output (even layer), B fc1's (odd layer).
        assert_eq!(one.scratch_a_len(), 14 * 14 * 8);
        assert_eq!(one.scratch_b_len(), 128);
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
            Err(ArchError::AccumulatorOverflow { layer: "fc1" })
        );
        assert_eq!(
            Arch {
                filters: Filters::of([8000, 32, 64]),
                ..f
            }
            .validate(),
            Err(ArchError::AccumulatorOverflow { layer: "conv2" })
        );
        assert_eq!(
            Arch {
                height: u16::MAX,
                width: u16::MAX,
                filters: Filters::of([u16::MAX; 3]),
                ..f
            }
            .validate(),
            Err(ArchError::TooLarge)
        );
    }
}
