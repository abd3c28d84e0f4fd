//! The frame loop: capture -> `tinycnn::preprocess` -> `tinycnn::forward` -> argmax -> log.
//!
//! Per frame it logs one line the host parses (`tinycnn firmware`, tests/tests/firmware_qemu.rs):
//! `frame=<n> class=<i> confidence=<f32> logits=[..] <unit>=<count> label=<rest of line>`
//! where the count covers `forward` alone (the label goes last: it may contain spaces). The loop ends with `done frames=<n>` and exit code 0.
//! Before each frame line it logs the count per layer, `layers frame=<n> <unit>=[a, b, ..]`
//! (conv blocks, then the dense layers; they add up to the frame's count minus the few
//! instructions of the trace calls).
use static_cell::ConstStaticCell;
use tinycnn::{argmax, forward_traced, preprocess, probabilities, Frame, Model, MAX_CLASSES};

use crate::board::{Counter, FrameSource};
use crate::model::{ARCH, BOARD, MODEL_BLOB, MODEL_PATH};
use crate::{exit, ExitCode};

/// Capture buffer: a QVGA RGB565 camera frame, or one frame in the model's native format,
/// whichever is larger.
pub const FRAME_BYTES: usize = max(320 * 240 * 2, ARCH.input_len());
const CLASSES: usize = ARCH.classes as usize;
/// Layers whose counts the per-layer line reports (every layer of any supported network).
const MAX_TRACED_LAYERS: usize = 8;
const _: () = assert!(CLASSES <= MAX_CLASSES);

/// Word-aligned (cache-line aligned) so that camera DMA can fill it with 32-bit transfers.
#[repr(C, align(32))]
struct FrameBuffer([u8; FRAME_BYTES]);

static FRAME: ConstStaticCell<FrameBuffer> = ConstStaticCell::new(FrameBuffer([0; FRAME_BYTES]));
static INPUT: ConstStaticCell<[i8; ARCH.input_len()]> = ConstStaticCell::new([0; ARCH.input_len()]);
static SCRATCH: ConstStaticCell<[i8; ARCH.scratch_len()]> =
    ConstStaticCell::new([0; ARCH.scratch_len()]);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Validates the embedded model. On failure logs why and how to fix it, and exits with
/// [`ExitCode::InvalidModel`]. Call first at boot, before the camera is touched.
pub fn load_model() -> Model<'static> {
    let model = match Model::from_bytes(MODEL_BLOB) {
        Ok(model) => model,
        Err(e) => {
            defmt::error!(
                "the embedded model ({=str}) is invalid: {}. Rebuild the firmware with \
                 TINYCNN_MODEL pointing at a model.tcnn from `tinycnn quantize`",
                MODEL_PATH,
                e
            );
            exit(ExitCode::InvalidModel)
        }
    };
    if model.arch != ARCH {
        defmt::error!(
            "the embedded model's architecture differs from the one the buffers were sized for \
             at build time; rebuild the firmware"
        );
        exit(ExitCode::InvalidModel)
    }
    defmt::println!(
        "boot board={=str} model={=str} input={=u16}x{=u16}x{=u8} classes={=u16} macs={=u64} blob_bytes={=usize}",
        BOARD,
        MODEL_PATH,
        ARCH.height,
        ARCH.width,
        ARCH.channels,
        ARCH.classes,
        ARCH.macs(),
        MODEL_BLOB.len()
    );
    model
}

/// Classifies every frame `camera` delivers, then exits. Never returns.
pub fn run<C: FrameSource, K: Counter>(model: &Model, camera: &mut C, counter: &mut K) -> ! {
    let frame_buffer = &mut FRAME.take().0;
    let input = INPUT.take();
    let scratch = SCRATCH.take();
    let mut logits = [0i8; CLASSES];
    let mut probabilities_out = [0f32; CLASSES];
    let mut frames: u32 = 0;
    loop {
        let info = match camera.capture(frame_buffer) {
            Ok(Some(info)) => info,
            Ok(None) => break,
            Err(e) => {
                defmt::error!("frame {=u32}: capture failed: {}", frames, e);
                exit(ExitCode::BadFrame)
            }
        };
        let frame = match Frame::new(
            &frame_buffer[..info.len],
            info.width,
            info.height,
            info.format,
        ) {
            Ok(frame) => frame,
            Err(e) => {
                defmt::error!("frame {=u32} ({}): {}", frames, info, e);
                exit(ExitCode::BadFrame)
            }
        };
        if let Err(e) = preprocess(&frame, &model.arch, input) {
            defmt::error!("frame {=u32}: preprocessing failed: {}", frames, e);
            exit(ExitCode::BadFrame)
        }
        // The count at the end of each layer (forward_traced calls back after every layer).
        let mut laps = [0u64; MAX_TRACED_LAYERS];
        let mut layers = 0;
        counter.start();
        forward_traced(model, input, scratch, &mut logits, &mut |layer, _| {
            if layer < MAX_TRACED_LAYERS {
                laps[layer] = counter.stop();
                layers = layers.max(layer + 1);
            }
        });
        let count = counter.stop();
        let mut per_layer = [0u64; MAX_TRACED_LAYERS];
        for i in 0..layers {
            per_layer[i] = laps[i] - if i == 0 { 0 } else { laps[i - 1] };
        }
        defmt::println!(
            "layers frame={=u32} {=str}={=[?]}",
            frames,
            K::UNIT,
            &per_layer[..layers]
        );
        let class = argmax(&logits);
        probabilities(model, &logits, &mut probabilities_out);
        defmt::println!(
            "frame={=u32} class={=usize} confidence={=f32} logits={=[?]} {=str}={=u64} label={=str}",
            frames,
            class,
            probabilities_out[class],
            &logits[..],
            K::UNIT,
            count,
            model.labels[class].as_str()
        );
        frames += 1;
    }
    defmt::println!("done frames={=u32}", frames);
    exit(ExitCode::Success)
}
