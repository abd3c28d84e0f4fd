//! The real round trip on a quickly trained small Fashion-MNIST model: float training, PTQ and
//! QAT, export (blob + both ONNX files), then `tinycnn parity`'s checks, through the same library
//! functions the CLI runs.
//!
//! Needs the test subset: `cargo xtask data fashion-mnist --per-class 50 --out data/fashion-mnist-small`
//! (or `TINYCNN_FASHION_SMALL`).
use clap::Parser;
use tinycnn_host::check::parity::{self, ParityArgs};
use tinycnn_host::quant::{self as qat, PtqArgs, QuantizeArgs};
use tinycnn_host::train::{self, TrainOptions};
use tinycnn_tests::fixtures::fashion_small;

#[derive(Parser)]
struct TrainArgs {
    #[command(flatten)]
    options: TrainOptions,
}

#[test]
fn train_quantize_export_load_infer_agree() -> anyhow::Result<()> {
    let data = fashion_small();
    let run = std::env::temp_dir().join(format!("tinycnn-parity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    // Options as the CLI parses them, so defaults of options added later apply.
    let train_dir = data.join("train");
    let train_options = TrainArgs::try_parse_from([
        "train".as_ref(),
        "--data".as_ref(),
        train_dir.as_os_str(),
        "--out".as_ref(),
        run.as_os_str(),
        "--preset=fashion".as_ref(),
        "--epochs=4".as_ref(),
        "--lr=2e-3".as_ref(),
        "--batch=32".as_ref(),
        "--val-split=0.1".as_ref(),
        "--seed=1".as_ref(),
        "--force".as_ref(),
    ] as [&std::ffi::OsStr; 12])?
    .options;
    let summary = train::train(&train_options)?;

    let quantized = qat::quantize_command(&QuantizeArgs {
        run: None,
        checkpoint: Some(summary.best_checkpoint.clone()),
        data: data.join("train"),
        test: data.join("test"),
        out: Some(run.clone()),
        qat_epochs: 2,
        freeze_epochs: 1,
        qat_lr: 1e-4,
        batch: 32,
        ptq: PtqArgs {
            calib_images: 500,
            seed: 0,
            weight_bits: "int8".into(),
        },
        report: None,
    })?;
    // A model that learned something, so the comparisons below are not about noise.
    assert!(
        quantized.float_test_accuracy > 0.5,
        "float accuracy {}",
        quantized.float_test_accuracy
    );
    assert!(
        quantized.int8_test_accuracy > 0.5,
        "int8 accuracy {}",
        quantized.int8_test_accuracy
    );
    for file in [
        qat::BLOB_FILE,
        qat::FLOAT_ONNX_FILE,
        qat::QDQ_ONNX_FILE,
        qat::MODEL_REPORT_MD,
        qat::MODEL_REPORT_JSON,
        qat::TFLITE_FILE,
    ] {
        assert!(run.join(file).is_file(), "{file} was not written");
    }

    // Every row of the parity table must pass (near ties are excluded from LiteRT's argmax row).
    let report = parity::parity_command(&ParityArgs {
        run: Some(run.clone()),
        model: None,
        checkpoint: None,
        data: data.join("test"),
        out: None,
        report: None,
        strict: false,
        python: None,
        litert_images: 10_000,
    })?;
    assert!(report.images >= 100, "only {} test images", report.images);
    assert_eq!(
        report.int_sim_mismatched_logits, 0,
        "{:?}",
        report.int_sim_first_mismatch
    );
    assert!(report.fakequant_within_1lsb_fraction >= 0.99, "{report:?}");
    assert!(report.fakequant_max_lsb <= 2, "{report:?}");
    assert!(report.argmax_agreement >= 0.995, "{report:?}");
    assert!(report.tract_float_max_rel_err <= 1e-4, "{report:?}");
    assert!(report.tract_qdq_max_lsb <= 2, "{report:?}");
    assert!(report.tract_qdq_argmax_agreement >= 0.995, "{report:?}");
    let litert = report
        .litert
        .as_ref()
        .unwrap_or_else(|| panic!("LiteRT did not run: {:?}", report.litert_not_run));
    assert_eq!(litert.images, report.images);
    assert!(litert.reference_conv_blocks_exact(), "{litert:?}");
    assert!(
        litert.reference_max_lsb().is_some_and(|m| m <= 1),
        "{litert:?}"
    );
    assert!(litert.logits_max_lsb() <= 2, "{litert:?}");
    assert!(
        litert.min_decisive_argmax_agreement() >= 0.999,
        "{litert:?}"
    );
    assert!(litert.min_argmax_agreement() >= 0.99, "{litert:?}");
    print!("{}", report.table());
    for (check, measured, required, ok) in report.rows() {
        assert!(ok, "{check}: {measured}, required {required}");
    }

    imports_round_trip(&run, &data)?;

    let merged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json"))?)?;
    for key in [
        "int8_test_accuracy",
        "ptq_test_accuracy",
        "blob_bytes",
        "peak_ram_bytes",
    ] {
        assert!(merged.get(key).is_some(), "report.json lacks {key}");
    }
    assert_eq!(merged["parity"]["int_sim_mismatched_logits"], 0);
    assert_eq!(merged["parity"]["litert"]["images"], report.images);
    std::fs::remove_dir_all(&run)?;
    Ok(())
}

/// `tinycnn import` of the run's own exports: the `.tflite` gives back `model.tcnn` byte for
/// byte; the float ONNX, calibrated on the training folder, gives the same blob as PTQ of the
/// QAT checkpoint (whose weights the float ONNX holds) on the same calibration images.
fn imports_round_trip(run: &std::path::Path, data: &std::path::Path) -> anyhow::Result<()> {
    use tinycnn_host::import::{import_command, ImportArgs};
    let args = |model: &str, out: &str, calibrate: bool| ImportArgs {
        model: run.join(model),
        out: run.join(out),
        calibrate: calibrate.then(|| data.join("train")),
        ptq: PtqArgs {
            calib_images: 300,
            seed: 5,
            weight_bits: "int8".into(),
        },
    };
    let blob = std::fs::read(run.join(qat::BLOB_FILE))?;
    let from_tflite = import_command(&args(qat::TFLITE_FILE, "from-tflite.tcnn", false))?;
    assert!(
        from_tflite == blob,
        "the imported .tflite differs from model.tcnn"
    );

    let from_onnx = import_command(&args(qat::FLOAT_ONNX_FILE, "from-onnx.tcnn", true))?;
    let device = tch::Device::Cpu;
    let ckpt = tinycnn_host::train::checkpoint::load(&run.join(qat::QAT_CHECKPOINT_FILE), device)?;
    let train = tinycnn_host::data::Dataset::load_for_model(
        &data.join("train"),
        &ckpt.meta.arch,
        &ckpt.meta.labels,
    )?;
    let calib = qat::calibration_indices(train.len(), 300, 5);
    let (_, direct) =
        qat::post_training_quantize(&ckpt.net, &ckpt.meta.labels, &train, &calib, device)?;
    assert!(
        from_onnx == direct.blob,
        "the float ONNX import differs from direct PTQ"
    );
    Ok(())
}
