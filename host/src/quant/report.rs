//! What `tinycnn quantize` measured: `model.report.json` and `model.report.md`.
use super::{QatEpoch, QatOptions};

/// Everything `tinycnn quantize` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantizeReport {
    pub preset: String,
    pub arch: tinycnn::Arch,
    pub labels: Vec<String>,
    pub test_images: usize,
    pub float_test_accuracy: f64,
    pub ptq_test_accuracy: f64,
    /// Accuracy of the exported (QAT) int8 blob through `tinycnn::forward`.
    pub int8_test_accuracy: f64,
    /// The QAT net's own float accuracy (without fake quantization).
    pub qat_float_test_accuracy: f64,
    pub blob_bytes: usize,
    pub peak_ram_bytes: usize,
    pub macs: u64,
    /// Size of `model.tflite`, or `None` where the model has int4 layers (TFLite's int4
    /// weights are not exported).
    pub tflite_bytes: Option<usize>,
    pub calib_images: usize,
    /// The exported QAT epoch (best int8 accuracy on the validation split; 0 = the PTQ start).
    pub qat_selected_epoch: usize,
    pub qat: QatOptions,
    pub qat_epochs: Vec<QatEpoch>,
    pub layers: Vec<LayerReport>,
}

/// One layer's quantization parameters.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    pub name: &'static str,
    pub input_scale: f32,
    pub input_zero_point: i8,
    pub output_scale: f32,
    pub output_zero_point: i8,
    pub weight_scale_min: f32,
    pub weight_scale_max: f32,
    pub shift_min: i8,
    pub shift_max: i8,
    pub weights: usize,
    /// 8 or 4.
    pub weight_bits: u8,
    /// Bytes the weights take in the blob (int4: two per byte).
    pub weight_bytes: usize,
}

pub fn layer_reports(model: &tinycnn::blob::OwnedModel) -> Vec<LayerReport> {
    let mut input = model.input;
    model
        .layers
        .iter()
        .zip(model.arch.layers())
        .map(|(l, spec)| {
            let r = LayerReport {
                name: spec.name,
                input_scale: input.scale,
                input_zero_point: input.zero_point,
                output_scale: l.output.scale,
                output_zero_point: l.output.zero_point,
                weight_scale_min: l
                    .weight_scales
                    .iter()
                    .copied()
                    .fold(f32::INFINITY, f32::min),
                weight_scale_max: l.weight_scales.iter().copied().fold(0.0, f32::max),
                shift_min: l.shift.iter().copied().min().unwrap_or(0),
                shift_max: l.shift.iter().copied().max().unwrap_or(0),
                weights: l.weights.len(),
                weight_bits: l.weight_bits.bits(),
                weight_bytes: spec.weight_bytes(l.weight_bits),
            };
            input = l.output;
            r
        })
        .collect()
}

pub(crate) fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

impl QuantizeReport {
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let a = &self.arch;
        let _ = writeln!(s, "# tinycnn integer model ({} preset)\n", self.preset);
        let _ = writeln!(
            s,
            "Input {}x{}x{}, filters {:?}, fc {}, {} classes: {}.\n",
            a.height,
            a.width,
            a.channels,
            a.filters,
            a.fc_width,
            a.classes,
            self.labels.join(", ")
        );
        let _ = writeln!(s, "| metric | value |\n|---|---|");
        let _ = writeln!(s, "| test images | {} |", self.test_images);
        let _ = writeln!(
            s,
            "| float test accuracy | {} |",
            percent(self.float_test_accuracy)
        );
        let _ = writeln!(
            s,
            "| PTQ test accuracy, integer model ({} calibration images) | {} |",
            self.calib_images,
            percent(self.ptq_test_accuracy)
        );
        let _ = writeln!(
            s,
            "| QAT test accuracy, integer model ({} of {} epochs run, exported epoch {} by validation accuracy; 0 = PTQ start) | {} |",
            self.qat_epochs.len(),
            self.qat.epochs,
            self.qat_selected_epoch,
            percent(self.int8_test_accuracy)
        );
        let _ = writeln!(
            s,
            "| QAT net, float | {} |",
            percent(self.qat_float_test_accuracy)
        );
        let _ = writeln!(s, "| blob bytes | {} |", self.blob_bytes);
        let _ = writeln!(s, "| peak activation RAM bytes | {} |", self.peak_ram_bytes);
        let _ = writeln!(s, "| MACs per image | {} |", self.macs);
        let _ = writeln!(
            s,
            "| model.tflite bytes | {} |\n",
            self.tflite_bytes
                .map_or("not written (int4 layers)".to_string(), |b| b.to_string())
        );
        let _ = writeln!(s, "| layer | in scale | in zp | out scale | out zp | weight scales | shifts | weights | bits | weight bytes |\n|---|---|---|---|---|---|---|---|---|---|");
        for l in &self.layers {
            let _ = writeln!(
                s,
                "| {} | {:.6e} | {} | {:.6e} | {} | {:.3e} .. {:.3e} | {} .. {} | {} | {} | {} |",
                l.name,
                l.input_scale,
                l.input_zero_point,
                l.output_scale,
                l.output_zero_point,
                l.weight_scale_min,
                l.weight_scale_max,
                l.shift_min,
                l.shift_max,
                l.weights,
                l.weight_bits,
                l.weight_bytes
            );
        }
        s
    }
}
