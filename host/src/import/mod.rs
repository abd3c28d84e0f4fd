//! `tinycnn import`: models made elsewhere to the tinycnn blob.
//!
//! - an int8 `.tflite` (TensorFlow's converter, or `tinycnn quantize`) through
//!   `tinycnn_tflite::import_tflite`: its integers and scales are taken as they are;
//! - a float ONNX model (PyTorch, tf2onnx, `tinycnn quantize`'s `model.float.onnx`) through
//!   [`onnx::read_float_onnx`], checked against tract on calibration images, then calibrated
//!   and exported by the same PTQ as `tinycnn quantize`.
pub mod onnx;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tch::{nn, Device, Tensor};

use crate::data::Dataset;
use crate::export::FloatParams;
use crate::quant::{post_training_quantize, PtqArgs};
use crate::train::model::Net;

/// `tinycnn import`.
#[derive(Clone, Debug, clap::Args)]
#[command(
    mut_arg("calib_images", |a| a.help("Images of --calibrate used for calibration (a seeded random subset)")),
    mut_arg("weight_bits", |a| a.help("Weight bit width of a float model's layers, as `tinycnn quantize --weight-bits`")),
)]
pub struct ImportArgs {
    /// The model: an int8 `.tflite`, or a float `.onnx` (needs --calibrate).
    pub model: PathBuf,
    /// Where to write the tinycnn blob (model.tcnn).
    #[arg(long)]
    pub out: PathBuf,
    /// Image folder (one sub-folder per class, the model's classes) that calibrates a float
    /// model's activation ranges.
    #[arg(long)]
    pub calibrate: Option<PathBuf>,
    #[command(flatten)]
    pub ptq: PtqArgs,
}

/// Relative difference allowed between tract on the ONNX model and tch on the imported weights.
pub const FLOAT_CHECK_MAX_REL_ERR: f32 = 1e-4;
/// Calibration images the float check runs.
const FLOAT_CHECK_IMAGES: usize = 16;

/// Whether `bytes` is a TFLite flatbuffer (file identifier `TFL3` at offset 4).
pub fn is_tflite(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"TFL3")
}

/// Runs `tinycnn import`; returns the blob it wrote.
pub fn import_command(args: &ImportArgs) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("reading the model {}", args.model.display()))?;
    let blob = if is_tflite(&bytes) {
        if args.calibrate.is_some() {
            eprintln!("note: --calibrate is ignored: a .tflite model is already quantized");
        }
        let imported = tinycnn_tflite::import_tflite(&bytes)
            .with_context(|| format!("importing {}", args.model.display()))?;
        for note in &imported.notes {
            eprintln!("note: {note}");
        }
        imported.model.to_bytes().context("encoding the blob")?
    } else {
        import_float_onnx(&bytes, args)
            .with_context(|| format!("importing {}", args.model.display()))?
    };
    tinycnn_runtime::fsutil::write_atomic(&args.out, &blob)?;
    {
        let model = tinycnn::Model::from_bytes(&blob).context("the written blob does not load")?;
        let a = model.arch;
        println!(
            "wrote {} ({} bytes): {}x{}x{}, filters {:?}, fc {}, classes {}",
            args.out.display(),
            blob.len(),
            a.height,
            a.width,
            a.channels,
            a.filters.as_slice(),
            a.fc_width,
            model
                .labels
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(blob)
}

/// A float ONNX model to a calibrated blob.
fn import_float_onnx(bytes: &[u8], args: &ImportArgs) -> anyhow::Result<Vec<u8>> {
    let mut float = onnx::read_float_onnx(bytes)?;
    for note in &float.notes {
        eprintln!("note: {note}");
    }
    let Some(dir) = &args.calibrate else {
        bail!(
            "the model is float: pass --calibrate DIR, a folder of training images with one \
             sub-folder per class, to calibrate its int8 activation ranges"
        );
    };
    let arch = float.params.arch;
    let data = load_calibration(dir, &mut float.params)?;
    float.params.weight_bits = args.ptq.layer_weight_bits(&arch)?;
    let device = Device::cuda_if_available();
    let (_vs, net) = net_from_params(&float.params, device)?;
    check_against_tract(bytes, &float, &net, &data, device)?;
    let calib = args.ptq.calibration_indices(data.len());
    let (_, exported) = post_training_quantize(&net, &float.params.labels, &data, &calib, device)?;
    eprintln!(
        "calibrated on {} images; int8 accuracy on the calibration folder {:.2}%",
        calib.len(),
        100.0 * exported.accuracy(&data)?
    );
    Ok(exported.blob)
}

/// Loads the calibration folder; the labels come from the ONNX metadata when it has them (the
/// folder must then have exactly those classes), from the folder otherwise.
fn load_calibration(dir: &Path, params: &mut FloatParams) -> anyhow::Result<Dataset> {
    let arch = params.arch;
    let data = if params.labels.is_empty() {
        Dataset::load(dir, &arch)
    } else {
        Dataset::load_for_model(dir, &arch, &params.labels)
    }
    .with_context(|| format!("loading calibration images from {}", dir.display()))?;
    data.list.warn_skipped();
    if data.is_empty() {
        bail!("{} holds no calibration images", dir.display());
    }
    if data.list.labels.len() != arch.classes as usize {
        bail!(
            "{} has {} class folders but the model has {} classes",
            dir.display(),
            data.list.labels.len(),
            arch.classes
        );
    }
    params.labels = data.list.labels.clone();
    Ok(data)
}

/// A tch net holding `params`' weights.
pub fn net_from_params(
    params: &FloatParams,
    device: Device,
) -> anyhow::Result<(nn::VarStore, Net)> {
    params.validate()?;
    let vs = nn::VarStore::new(device);
    let mut net = Net::new(&vs.root(), &params.arch);
    net.weight_bits = params.weight_bits.clone();
    tch::no_grad(|| {
        for (layer, values) in net.layers.iter().zip(&params.layers) {
            let mut ws = layer.ws().shallow_clone();
            let shape = ws.size();
            ws.copy_(
                &Tensor::from_slice(&values.weight)
                    .reshape(&shape)
                    .to_device(device),
            );
            if let Some(bs) = layer.bs() {
                bs.shallow_clone()
                    .copy_(&Tensor::from_slice(&values.bias).to_device(device));
            }
        }
    });
    Ok((vs, net))
}

/// Runs the ONNX model in tract and the imported net in tch on a few calibration images and
/// fails unless they agree: the check that the graph was mapped onto the architecture right.
fn check_against_tract(
    bytes: &[u8],
    float: &onnx::FloatOnnx,
    net: &Net,
    data: &Dataset,
    device: Device,
) -> anyhow::Result<()> {
    use tract_onnx::prelude::*;
    let arch = net.arch;
    let n = data.len().min(FLOAT_CHECK_IMAGES);
    let (h, w, c) = (
        arch.height as usize,
        arch.width as usize,
        arch.channels as usize,
    );
    let size = |axis: char| match axis {
        'N' => n,
        'C' => c,
        'H' => h,
        _ => w,
    };
    let order = float.input_order;
    let dims: Vec<usize> = order.iter().map(|&a| size(a)).collect();
    let image_len = h * w * c;
    let input = tract_ndarray::ArrayD::from_shape_fn(dims.clone(), |i| {
        let at = |axis: char| {
            i[order
                .iter()
                .position(|&a| a == axis)
                .expect("a permutation")]
        };
        let pixel = data.pixels[at('N') * image_len + (at('H') * w + at('W')) * c + at('C')];
        pixel as f32 * float.pixel_scale
    });
    let run = || -> TractResult<Vec<f32>> {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))?
            .with_input_fact(0, f32::fact(&dims).into())?
            .into_optimized()?
            .into_runnable()?;
        let out = plan.run(tvec!(Tensor::from(input).into()))?;
        Ok(out[0]
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect())
    };
    let theirs = run().map_err(|e| anyhow::anyhow!("tract could not run the ONNX model: {e:#}"))?;
    let indices: Vec<usize> = (0..n).collect();
    let ours = tch::no_grad(|| {
        let (xs, _) = crate::data::batch(data, &indices, device);
        let logits = net.forward_t(&xs, false);
        let logits = if float.softmax {
            logits.softmax(-1, tch::Kind::Float)
        } else {
            logits
        };
        Vec::<f32>::try_from(logits.to_device(Device::Cpu).reshape([-1]))
    })?;
    if theirs.len() != ours.len() {
        bail!(
            "the ONNX model gives {} outputs for {n} images, the imported network {}",
            theirs.len(),
            ours.len()
        );
    }
    let classes = arch.classes as usize;
    let mut worst = 0f32;
    for (t, o) in theirs.chunks_exact(classes).zip(ours.chunks_exact(classes)) {
        let norm = o.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (a, b) in t.iter().zip(o) {
            worst = worst.max((a - b).abs() / norm);
        }
    }
    if worst > FLOAT_CHECK_MAX_REL_ERR {
        bail!(
            "the imported network does not reproduce the ONNX model (relative error {worst:.2e} on \
             {n} calibration images, allowed {FLOAT_CHECK_MAX_REL_ERR:.0e}): the graph does something \
             the tutorial architecture does not; {}",
            onnx::SUPPORTED
        );
    }
    eprintln!("imported network matches the ONNX model in tract (relative error {worst:.1e} on {n} images)");
    Ok(())
}
