//! The exported ONNX models in tract (an independent runtime) against tch and `shared`, on
//! float-consistent random nets: calibrated activation ranges, so every layer carries signal.
//! Odd input sizes exercise SAME pooling (7 -> 4) in every runtime.
use tinycnn::Arch;
use tinycnn_host::check::int_sim;
use tinycnn_host::export::export;
use tinycnn_host::export::onnx;
use tinycnn_host::quant::{calibrate, float_logits, float_params, int8_inputs, shared_logits};
use tinycnn_runtime::tract::TractModel;
use tinycnn_tests::onnx_fixtures::{
    assert_int_sim_bit_exact, assert_qdq_logits_within, random_net, synthetic_dataset,
    tract_qdq_logits,
};

const ARCHES: [Arch; 2] = [
    Arch::fashion(),
    Arch {
        height: 15,
        width: 13,
        channels: 3,
        filters: tinycnn::Filters::of([4, 6, 8]),
        fc_width: 16,
        classes: 5,
    },
];

#[test]
fn tract_runs_both_exports_like_tch_and_shared() {
    for (k, arch) in ARCHES.iter().enumerate() {
        let (_vs, net) = random_net(arch, 7 + k as i64);
        let data = synthetic_dataset(arch, 48, 11 + k as u64);
        let classes = arch.classes as usize;
        let labels = data.list.labels.clone();

        let float = float_params(&net, &labels);
        let tch_logits = float_logits(&net, &data, tch::Device::Cpu);
        let float_onnx = onnx::to_bytes(&onnx::float_model(&float));
        let tract_float = TractModel::from_bytes(&float_onnx, *arch, 16, "float")
            .unwrap()
            .run_u8_hwc(&data.pixels)
            .unwrap();
        for (image, (t, f)) in tract_float
            .chunks(classes)
            .zip(tch_logits.chunks(classes))
            .enumerate()
        {
            let norm = f.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            for (class, (a, b)) in t.iter().zip(f).enumerate() {
                assert!(
                    (a - b).abs() / norm <= 1e-4,
                    "arch {k} image {image} class {class}: tract {a} vs tch {b}"
                );
            }
        }

        let all: Vec<usize> = (0..data.len()).collect();
        let params =
            tinycnn_host::quant::params_of(&calibrate(&net, &data, &all, tch::Device::Cpu));
        let model = export(&float, &params).unwrap();
        let blob = model.to_bytes().unwrap();
        let shared = shared_logits(&tinycnn::Model::from_bytes(&blob).unwrap(), &data);
        // Calibrated logits use a good part of the int8 range.
        let spread = *shared.iter().max().unwrap() as i32 - *shared.iter().min().unwrap() as i32;
        assert!(spread > 20, "arch {k}: int8 logits barely vary ({spread})");

        assert_int_sim_bit_exact(&model, &data, &format!("arch {k}"));

        let qdq = onnx::to_bytes(&onnx::qdq_model(&model));
        let (meta_arch, meta_labels) = tinycnn_runtime::tract::read_metadata(&qdq, "qdq").unwrap();
        assert_eq!((meta_arch, &meta_labels), (*arch, &labels));
        let tract_q = tract_qdq_logits(&model, &qdq, &data, 16);
        assert_qdq_logits_within(&tract_q, &shared, classes, 1, &format!("arch {k}, fc2"));
    }
}

#[test]
fn int_sim_matches_shared_on_random_blobs() {
    for (k, arch) in ARCHES.iter().enumerate() {
        let model = tinycnn::OwnedModel::random(*arch, 3 + k as u64);
        let data = synthetic_dataset(arch, 8, 5);
        assert_int_sim_bit_exact(&model, &data, &format!("arch {k}"));
    }
}

#[test]
fn int_sim_reports_the_first_differing_layer() {
    let arch = ARCHES[1];
    let model = tinycnn::OwnedModel::random(arch, 9);
    let data = synthetic_dataset(&arch, 4, 6);
    let inputs = int8_inputs(&data);
    // The simulation runs a blob whose conv2 bias differs; shared runs the original.
    let mut changed = model.clone();
    changed.layers[1].bias[0] += 1 << 20;
    let sim = int_sim::IntSim::new(&changed).forward_traced(&inputs);
    let report = int_sim::compare_outputs(&sim, &model, &inputs).unwrap();
    let first = report.first_mismatch.expect("a changed bias must be found");
    assert_eq!((first.image, first.layer), (0, "conv2"));
    // Channel 0 of the HWC output: the index is a multiple of conv2's channel count.
    assert_eq!(first.index % arch.block_out_channels(1), 0);
    assert!(first.to_string().contains("layer conv2"));
}
