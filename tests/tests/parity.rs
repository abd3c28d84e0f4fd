//! The real round trip on a quickly trained small Fashion-MNIST model: float training, PTQ and
//! QAT, export (blob + both ONNX files), then `tinycnn parity`'s checks, through the same library
//! functions the CLI runs.
//!
//! Needs the test subset: `cargo xtask data fashion-mnist --per-class 50 --out data/fashion-mnist-small`
//! (or `TINYCNN_FASHION_SMALL`).
use clap::Parser;
use tinycnn_host::check::parity::{self, ParityArgs};
use tinycnn_host::quant::{self as qat, QuantizeArgs};
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
        calib_images: 500,
        seed: 0,
        weight_bits: "int8".into(),
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
    ] {
        assert!(run.join(file).is_file(), "{file} was not written");
    }

    // --strict fails on any violated threshold; check the figures too, so a failure names them.
    let report = parity::parity_command(&ParityArgs {
        run: Some(run.clone()),
        model: None,
        checkpoint: None,
        data: data.join("test"),
        out: None,
        report: None,
        strict: true,
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
    assert!(report.tract_qdq_max_lsb <= 1, "{report:?}");
    assert!(report.tract_qdq_argmax_agreement >= 0.995, "{report:?}");

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
    std::fs::remove_dir_all(&run)?;
    Ok(())
}
