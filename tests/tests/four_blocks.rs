//! A fourth conv block (`--filters 16,32,32,64` on the `tutorial` geometry, 128x128x3) through
//! the whole chain: a float-consistent random net, calibrated and exported to the blob; the int
//! sim bit-exact with `shared`; tract on the QDQ ONNX within 2 LSB (1 LSB of float rounding per
//! requantization, compounded over six layers); streaming equal to the
//! whole-map forward; and the firmware in QEMU bit-exact with the host.
use std::time::Duration;

use tinycnn::{Arch, Filters, Model};
use tinycnn_host::export::{export, onnx};
use tinycnn_host::quant::{calibrate, float_params, int8_inputs, params_of, shared_logits};
use tinycnn_runtime::firmware::{CameraFrame, QemuBoard};
use tinycnn_tests::firmware_fixtures::build_and_run;
use tinycnn_tests::fixtures::scratch_dir;
use tinycnn_tests::onnx_fixtures::{
    assert_int_sim_bit_exact, assert_qdq_logits_within, random_net, synthetic_dataset,
    tract_qdq_logits,
};

const FOUR_BLOCKS: Arch = Arch {
    filters: Filters::of([16, 32, 32, 64]),
    ..Arch::tutorial(3)
};

#[test]
fn four_block_tutorial_model_passes_the_whole_chain() {
    let arch = FOUR_BLOCKS;
    assert_eq!(arch.layer_count(), 6);
    // fc1 reads an 8x8x64 map: 4x fewer weights than the 3-block tutorial's 16x16x64.
    assert_eq!(arch.flatten_len() * 4, Arch::tutorial(3).flatten_len());

    let (_vs, net) = random_net(&arch, 41);
    let data = synthetic_dataset(&arch, 24, 5);
    let all: Vec<usize> = (0..data.len()).collect();
    let float = float_params(&net, &data.list.labels);
    let model = export(
        &float,
        &params_of(&calibrate(&net, &data, &all, tch::Device::Cpu)),
    )
    .expect("the 4-block model exports");
    let blob = model.to_bytes().expect("the 4-block blob encodes");
    let shared_model = Model::from_bytes(&blob).expect("the 4-block blob loads");
    let shared = shared_logits(&shared_model, &data);
    let classes = arch.classes as usize;

    assert_int_sim_bit_exact(&model, &data, "4-block");

    let qdq = onnx::to_bytes(&onnx::qdq_model(&model));
    let tract = tract_qdq_logits(&model, &qdq, &data, 8);
    // tract requantizes in float (round half to even) where `shared` uses TFLite's fixed
    // point: each layer may differ by 1 LSB, and over six layers a logit may drift by 2.
    assert_qdq_logits_within(&tract, &shared, classes, 2, "4-block");

    let mut stream = vec![0i8; arch.stream_scratch_len()];
    let mut acc = vec![0i32; arch.stream_acc_len()];
    let mut logits = vec![0i8; classes];
    for (image, input) in int8_inputs(&data).chunks(arch.input_len()).enumerate() {
        tinycnn::forward_rows_from(&shared_model, input, &mut stream, &mut acc, &mut logits);
        assert_eq!(
            logits,
            shared[image * classes..][..classes],
            "image {image}"
        );
    }

    let dir = scratch_dir("four-blocks").unwrap();
    let model_path = dir.join("model.tcnn");
    std::fs::write(&model_path, &blob).unwrap();
    let frames: Vec<CameraFrame> = (0..2)
        .map(|i| CameraFrame {
            kind: "native-rgb888".to_owned(),
            source: format!("synthetic-{i}").into(),
            width: arch.width,
            height: arch.height,
            format: tinycnn::PixelFormat::Rgb888,
            bytes: data.image(i).to_vec(),
        })
        .collect();
    let report = build_and_run(
        QemuBoard::default(),
        &model_path,
        &shared_model,
        &frames,
        &dir,
        Duration::from_secs(300),
    )
    .unwrap();
    assert_eq!(
        report.frames_bit_exact,
        frames.len(),
        "{}",
        report.summary_line()
    );
    eprintln!("{}", report.summary_line());
    std::fs::remove_dir_all(&dir).unwrap();
}
