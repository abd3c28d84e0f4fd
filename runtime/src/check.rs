//! Checks of `shared` against itself that need no libtorch: the streaming forward pass against
//! the whole-map one, and int8 logits of many images on all cores.
use rayon::prelude::*;
use tinycnn::Model;

/// Images per parallel work item (each owns one set of buffers).
const CHUNK: usize = 64;

/// int8 logits of `inputs` (model inputs back to back, HWC int8) through `tinycnn::forward`,
/// `[images][classes]`, computed on all cores; the order is the input order.
pub fn shared_logits(model: &Model, inputs: &[i8]) -> Vec<i8> {
    let per = model.arch.input_len();
    inputs
        .par_chunks(per * CHUNK)
        .flat_map_iter(|chunk| {
            let mut session = tinycnn::Session::new(model.clone());
            chunk
                .chunks_exact(per)
                .flat_map(|input| session.run(input).to_vec())
                .collect::<Vec<i8>>()
        })
        .collect()
}

/// How the streaming forward pass compared with the whole-map one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamingCheck {
    pub images: usize,
    /// Logits (all images, all classes) where `forward_rows_from` differs from `forward`.
    pub mismatched_logits: usize,
    /// The first image where they differ.
    pub first_mismatch_image: Option<usize>,
}

/// Runs every input through `tinycnn::forward_rows_from` (the firmware's streaming plan) and
/// compares with `whole_map` (`forward`'s logits of the same inputs), on all cores.
pub fn streaming_vs_whole_map(model: &Model, inputs: &[i8], whole_map: &[i8]) -> StreamingCheck {
    let arch = model.arch;
    let (per, classes) = (arch.input_len(), arch.classes as usize);
    let images = inputs.len() / per;
    let mismatches: Vec<(usize, usize)> = inputs
        .par_chunks(per * CHUNK)
        .enumerate()
        .flat_map_iter(|(c, chunk)| {
            let mut scratch = vec![0i8; arch.stream_scratch_len()];
            let mut acc = vec![0i32; arch.stream_acc_len()];
            let mut logits = vec![0i8; classes];
            chunk
                .chunks_exact(per)
                .enumerate()
                .map(|(i, input)| {
                    let image = c * CHUNK + i;
                    tinycnn::forward_rows_from(model, input, &mut scratch, &mut acc, &mut logits);
                    let expected = &whole_map[image * classes..][..classes];
                    let differ = logits.iter().zip(expected).filter(|(a, b)| a != b).count();
                    (image, differ)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    StreamingCheck {
        images,
        mismatched_logits: mismatches.iter().map(|m| m.1).sum(),
        first_mismatch_image: mismatches.iter().find(|m| m.1 > 0).map(|m| m.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinycnn::{Arch, OwnedModel};

    #[test]
    fn streaming_equals_whole_map_and_parallel_logits_keep_order() {
        let arch = Arch::fashion();
        let bytes = OwnedModel::random(arch, 4).to_bytes().unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        let inputs: Vec<i8> = (0..arch.input_len() * 150)
            .map(|i| (i * 29 % 256) as u8 as i8)
            .collect();
        let logits = shared_logits(&model, &inputs);
        let mut session = tinycnn::Session::new(model.clone());
        for (i, input) in inputs.chunks(arch.input_len()).enumerate() {
            assert_eq!(session.run(input), &logits[i * 10..][..10], "image {i}");
        }
        let check = streaming_vs_whole_map(&model, &inputs, &logits);
        assert_eq!(
            check,
            StreamingCheck {
                images: 150,
                ..Default::default()
            }
        );
        let mut wrong = logits.clone();
        wrong[10 * 77 + 3] ^= 1;
        let check = streaming_vs_whole_map(&model, &inputs, &wrong);
        assert_eq!(
            (check.mismatched_logits, check.first_mismatch_image),
            (1, Some(77))
        );
    }
}
