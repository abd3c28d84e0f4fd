//! Every float-to-fixed decision of the export: activation (scale, zero point) from an observed
//! range, int32 biases and per-channel requantization multipliers. The fixed-point arithmetic
//! itself is `tinycnn::quant`; this module only chooses its parameters.
use tinycnn::blob::QuantParams;

use super::ExportError;

/// Smallest activation scale chosen, so an all-zero observed range still gives a valid scale.
pub const MIN_ACTIVATION_SCALE: f32 = f32::EPSILON;

/// Asymmetric int8 parameters for a tensor observed in `[min, max]`, as PyTorch's MinMaxObserver
/// chooses them for qint8: the range is widened to include 0, `scale = (max - min) / 255`, and the
/// zero point `-128 - round(min / scale)` makes 0.0 exactly representable.
pub fn activation_params(min: f32, max: f32) -> QuantParams {
    let min = min.min(0.0);
    let max = max.max(0.0);
    let scale = ((max - min) / 255.0).max(MIN_ACTIVATION_SCALE);
    let zero_point = (-128.0 - (min / scale).round_ties_even()).clamp(-128.0, 127.0) as i8;
    QuantParams { scale, zero_point }
}

/// int32 biases at scale `input_scale * weight_scales[c]` (shared's `quantize_bias`, rounding
/// half away from zero). A bias that would saturate is an error rather than a silent clamp.
pub fn quantize_bias(
    layer: &'static str,
    bias: &[f32],
    input_scale: f32,
    weight_scales: &[f32],
) -> Result<Vec<i32>, ExportError> {
    bias.iter()
        .zip(weight_scales)
        .enumerate()
        .map(|(channel, (&b, &sw))| {
            let scale = input_scale as f64 * sw as f64;
            if (b as f64 / scale).abs() > i32::MAX as f64 / 2.0 {
                return Err(ExportError::BiasRange {
                    layer,
                    channel,
                    bias: b,
                    scale,
                });
            }
            Ok(tinycnn::quant::quantize_bias(b, input_scale, sw))
        })
        .collect()
}

/// Per-channel `(multiplier, shift)` for `M = input_scale * weight_scales[c] / output_scale`,
/// split as TFLite's QuantizeMultiplier does (`tinycnn::quant::quantize_multiplier`).
pub fn channel_multipliers(
    input_scale: f32,
    weight_scales: &[f32],
    output_scale: f32,
) -> (Vec<i32>, Vec<i8>) {
    weight_scales
        .iter()
        .map(|&sw| {
            let real = input_scale as f64 * sw as f64 / output_scale as f64;
            let (m, shift) = tinycnn::quant::quantize_multiplier(real);
            (m, shift.clamp(i8::MIN as i32, i8::MAX as i32) as i8)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_relu_range_gets_zero_point_minus_128() {
        let q = activation_params(0.0, 2.55);
        assert_eq!(q.zero_point, -128);
        assert!((q.scale - 0.01).abs() < 1e-7);
    }

    #[test]
    fn symmetric_range_puts_zero_in_the_middle() {
        let q = activation_params(-1.0, 1.0);
        assert!((q.scale - 2.0 / 255.0).abs() < 1e-7);
        // -1/scale is -127.5 up to f32 rounding, so the zero point sits next to the middle.
        assert!(
            (-1..=0).contains(&q.zero_point),
            "zero point {}",
            q.zero_point
        );
        // The range ends map near the int8 ends.
        let lo = (-1.0f32 / q.scale).round_ties_even() + q.zero_point as f32;
        let hi = (1.0f32 / q.scale).round_ties_even() + q.zero_point as f32;
        assert!(
            (-129.0..=-127.0).contains(&lo) && (126.0..=128.0).contains(&hi),
            "{lo} {hi}"
        );
    }

    #[test]
    fn empty_range_still_has_a_positive_scale() {
        let q = activation_params(0.0, 0.0);
        assert!(q.scale > 0.0);
        assert_eq!(q.zero_point, -128);
    }

    #[test]
    fn bias_overflow_is_an_error() {
        assert!(quantize_bias("fc2", &[1e9], 1e-3, &[1e-3]).is_err());
        assert_eq!(
            quantize_bias("fc2", &[0.5, -0.5], 0.5, &[0.5]).unwrap(),
            vec![2]
        );
    }

    #[test]
    fn multipliers_reconstruct_the_real_scale() {
        let (m, s) = channel_multipliers(1.0 / 255.0, &[0.01, 0.002], 0.05);
        for (i, sw) in [0.01f64, 0.002].iter().enumerate() {
            let real = (1.0f64 / 255.0) as f32 as f64 * (*sw as f32) as f64 / 0.05f32 as f64;
            let back = m[i] as f64 / (1u64 << 31) as f64 * 2f64.powi(s[i] as i32);
            assert!(
                (back - real).abs() / real < 1e-8,
                "channel {i}: {back} vs {real}"
            );
        }
    }
}
