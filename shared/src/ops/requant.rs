//! The output stage shared by every kernel: add the bias, requantize, clamp.

use crate::arch::MAX_PRODUCT;
use crate::blob::Layer;
use crate::quant::requantize;

/// Per-output-channel integer parameters of one layer.
pub trait ChannelParams {
    /// int32 bias of channel `c` (scale `s_in * s_w[c]`).
    fn bias(&self, c: usize) -> i32;
    /// Q0.31 multiplier of channel `c`, `>= 0` (requantization is then monotonic).
    fn multiplier(&self, c: usize) -> i32;
    /// Shift of channel `c`, in `MIN_SHIFT..=MAX_SHIFT` (> 0 = left).
    fn shift(&self, c: usize) -> i32;
}

impl ChannelParams for Layer<'_> {
    #[inline]
    fn bias(&self, c: usize) -> i32 {
        Layer::bias(self, c)
    }
    #[inline]
    fn multiplier(&self, c: usize) -> i32 {
        Layer::multiplier(self, c)
    }
    #[inline]
    fn shift(&self, c: usize) -> i32 {
        Layer::shift(self, c)
    }
}

/// Per-channel parameters as plain slices (tests, host-side simulation).
#[derive(Clone, Copy, Debug)]
pub struct ChannelSlices<'a> {
    /// Bias per channel.
    pub bias: &'a [i32],
    /// Q0.31 multiplier per channel.
    pub multiplier: &'a [i32],
    /// Shift per channel.
    pub shift: &'a [i8],
}

impl ChannelParams for ChannelSlices<'_> {
    #[inline]
    fn bias(&self, c: usize) -> i32 {
        self.bias[c]
    }
    #[inline]
    fn multiplier(&self, c: usize) -> i32 {
        self.multiplier[c]
    }
    #[inline]
    fn shift(&self, c: usize) -> i32 {
        self.shift[c] as i32
    }
}

/// One channel: bias 0, multiplier 0.5, no shift (hand-computed unit tests).
#[cfg(test)]
pub(crate) const HALF: ChannelSlices<'static> = ChannelSlices {
    bias: &[0],
    multiplier: &[1 << 30],
    shift: &[0],
};

#[cfg(test)]
impl<'p, P: ?Sized> Requant<'p, P> {
    /// A requantization for hand-computed unit tests.
    pub(crate) fn test(
        params: &'p P,
        input_zero_point: i8,
        output_zero_point: i8,
        relu: bool,
    ) -> Self {
        Requant {
            params,
            input_zero_point,
            output_zero_point,
            relu,
        }
    }
}

/// Quantization of one layer's input and output:
/// `y[c] = clamp(MultiplyByQuantizedMultiplier(acc + bias[c], m[c], shift[c]) + zp_out, lo, 127)`
/// where `acc = Σ (x - zp_in) * w` and `lo = zp_out` with ReLU, `-128` without.
#[derive(Clone, Copy, Debug)]
pub struct Requant<'p, P: ?Sized> {
    /// Per-channel bias, multiplier, shift.
    pub params: &'p P,
    /// Zero point of the input activations.
    pub input_zero_point: i8,
    /// Zero point of the output activations.
    pub output_zero_point: i8,
    /// Fold ReLU into the clamp.
    pub relu: bool,
}

impl<'a> Requant<'a, Layer<'a>> {
    /// The requantization of `layer` given its input's zero point: the layer's own parameters
    /// and output zero point.
    #[inline]
    pub fn for_layer(layer: &'a Layer<'a>, input_zero_point: i8, relu: bool) -> Self {
        Requant {
            params: layer,
            input_zero_point,
            output_zero_point: layer.output().zero_point,
            relu,
        }
    }
}

impl<P: ChannelParams + ?Sized> Requant<'_, P> {
    /// The int8 output of channel `c` for accumulator `acc` (bias not yet added).
    #[inline]
    pub fn apply(&self, c: usize, acc: i32) -> i8 {
        let p = self.params;
        requantize(
            acc + p.bias(c),
            p.multiplier(c),
            p.shift(c),
            self.output_zero_point,
            self.relu,
        )
    }

    /// Debug-asserts the accumulator bound of a layer with `fan_in` terms per output:
    /// `MAX_PRODUCT * fan_in + |bias[c]| <= i32::MAX` for every channel, so `acc + bias` cannot
    /// overflow (|x - zp| <= 255 for any int8 x and zp, |w| <= 127).
    #[inline]
    pub fn debug_assert_bound(&self, fan_in: usize, channels: usize) {
        if cfg!(debug_assertions) {
            let bound = MAX_PRODUCT * fan_in as i64;
            for c in 0..channels {
                let b = self.params.bias(c) as i64;
                assert!(
                    bound + b.abs() <= i32::MAX as i64,
                    "accumulator bound: 255 * 127 * {fan_in} + |bias[{c}]| = {} exceeds i32::MAX",
                    bound + b.abs()
                );
            }
        }
    }
}

/// `Σ (x - zp) * w` over two equal-length int8 slices.
///
/// `x - zp` fits i16 (`|x - zp| <= 255`, so `|(x - zp) * w| <= 32385`); the operands are i16
/// widened to i32 before the multiply, the shape x86 compiles to `pmaddwd`.
#[inline]
pub fn dot_s8(x: &[i8], w: &[i8], zp: i32) -> i32 {
    debug_assert_eq!(x.len(), w.len());
    let zp = zp as i16;
    x.iter()
        .zip(w)
        .map(|(&x, &w)| (x as i16 - zp) as i32 * (w as i16) as i32)
        .sum()
}
