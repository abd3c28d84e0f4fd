//! An inference session (std): a model with the buffers one image needs, for host tools that
//! run many images (predict, parity, QAT selection, the firmware's host-side check).

use crate::blob::Model;
use crate::forward::{argmax, forward, forward_traced, probabilities};
use crate::preprocess::{pixel_to_input, preprocess, Frame, FrameError};
use std::vec;
use std::vec::Vec;

/// A model and the input, scratch, logits and probability buffers of one forward pass, sized
/// once from its architecture.
#[derive(Clone, Debug)]
pub struct Session<'m> {
    model: Model<'m>,
    input: Vec<i8>,
    scratch: Vec<i8>,
    logits: Vec<i8>,
    probabilities: Vec<f32>,
}

impl<'m> Session<'m> {
    /// A session for `model`.
    pub fn new(model: Model<'m>) -> Session<'m> {
        let arch = model.arch;
        Session {
            input: vec![0; arch.input_len()],
            scratch: vec![0; arch.scratch_len()],
            logits: vec![0; arch.classes as usize],
            probabilities: vec![0.0; arch.classes as usize],
            model,
        }
    }

    /// The model.
    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// Runs one int8 input (HWC, `arch.input_len()` values, zero point -128) and returns the
    /// logits.
    ///
    /// # Panics
    /// If `input` has the wrong length.
    pub fn run(&mut self, input: &[i8]) -> &[i8] {
        self.run_traced(input, &mut |_, _| {})
    }

    /// [`Session::run`], calling `trace(layer, output)` after each layer (see
    /// [`forward_traced`]).
    pub fn run_traced(&mut self, input: &[i8], trace: &mut dyn FnMut(usize, &[i8])) -> &[i8] {
        forward_traced(
            &self.model,
            input,
            &mut self.scratch,
            &mut self.logits,
            trace,
        );
        &self.logits
    }

    /// Runs preprocessed u8 pixels (HWC, `arch.input_len()` values, as
    /// [`preprocess_u8`](crate::preprocess::preprocess_u8) writes them) and returns the logits.
    ///
    /// # Panics
    /// If `pixels` has the wrong length.
    pub fn run_pixels(&mut self, pixels: &[u8]) -> &[i8] {
        assert_eq!(
            pixels.len(),
            self.input.len(),
            "Session::run_pixels: pixel count"
        );
        for (q, &p) in self.input.iter_mut().zip(pixels) {
            *q = pixel_to_input(p);
        }
        self.run_own_input()
    }

    /// Preprocesses a camera frame exactly as the firmware does, runs it and returns the logits.
    pub fn run_frame(&mut self, frame: &Frame) -> Result<&[i8], FrameError> {
        preprocess(frame, &self.model.arch, &mut self.input)?;
        Ok(self.run_own_input())
    }

    /// Runs the session's own input buffer.
    fn run_own_input(&mut self) -> &[i8] {
        forward(
            &self.model,
            &self.input,
            &mut self.scratch,
            &mut self.logits,
        );
        &self.logits
    }

    /// The logits of the last run.
    pub fn logits(&self) -> &[i8] {
        &self.logits
    }

    /// The predicted class of the last run (first maximum of the logits).
    pub fn class(&self) -> usize {
        argmax(&self.logits)
    }

    /// Class probabilities of the last run (softmax of the dequantized logits).
    pub fn probabilities(&mut self) -> &[f32] {
        probabilities(&self.model, &self.logits, &mut self.probabilities);
        &self.probabilities
    }
}
