//! The frame loop: rows from the board -> `tinycnn::RowPreprocessor` -> `tinycnn::forward_rows`
//! -> argmax -> log.
//!
//! Rows stream: the board serves source rows on demand, the preprocessing turns at most two of
//! them into one model-input row, and the streaming forward pass pulls those rows through its
//! rings. Neither the frame nor the model input is ever in memory as a whole.
//!
//! Per frame it logs the line of [`tinycnn::FrameReport`] (parsed by the host with
//! `tinycnn::ParsedFrame`), whose count covers the forward pass without the row fetching and
//! preprocessing, then `preprocess frame=<n> <unit>=<count>` with those. The loop ends with
//! `stack boot_bytes=<n> frames_bytes=<n> of=<n>` (stack high-water marks, from the
//! top of RAM) and `done frames=<n>`, exit code 0.

use static_cell::ConstStaticCell;
use tinycnn::preprocess::{row_window_len, RowSource};
use tinycnn::protocol::{FrameReport, DONE_PREFIX, FRAME_LINE_MAX, QVGA};
use tinycnn::{
    argmax, forward_rows, probabilities, ExitCode, Model, PixelFormat, RowPreprocessor, MAX_CLASSES,
};

use crate::board::{Counter, FrameSource};
use crate::model::{ARCH, BOARD, MODEL_BLOB, MODEL_PATH};
use crate::{exit, stack};

/// The widest source row the loop accepts: a QVGA frame or one of the model's size, in any
/// pixel format (at most 3 bytes per pixel).
pub const MAX_ROW_BYTES: usize = max(
    PixelFormat::Rgb888.row_bytes(QVGA.0 as usize),
    PixelFormat::Rgb888.row_bytes(ARCH.width as usize),
);
/// The preprocessing's source-row window: two of the widest rows.
pub const WINDOW_BYTES: usize = 2 * MAX_ROW_BYTES;
const _: () = assert!(WINDOW_BYTES >= row_window_len(PixelFormat::Rgb888, QVGA.0 as usize));
const CLASSES: usize = ARCH.classes as usize;
const _: () = assert!(CLASSES <= MAX_CLASSES);

/// Every activation buffer of the streaming forward pass, at its const-fn size.
static SCRATCH: ConstStaticCell<[i8; ARCH.stream_scratch_len()]> =
    ConstStaticCell::new([0; ARCH.stream_scratch_len()]);
static ACC: ConstStaticCell<[i32; ARCH.stream_acc_len()]> =
    ConstStaticCell::new([0; ARCH.stream_acc_len()]);
static WINDOW: ConstStaticCell<[u8; WINDOW_BYTES]> = ConstStaticCell::new([0; WINDOW_BYTES]);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Validates the embedded model. On failure logs why and how to fix it, and exits with
/// [`ExitCode::InvalidModel`]. Call first at boot, before the camera is touched.
///
/// Never inlined: validation's temporaries (the `Result` and copies of the `Model`) then live
/// in this frame, which is gone before the frame loop, instead of in `main`'s, which is not.
#[inline(never)]
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
        "boot board={=str} model={=str} input={=u16}x{=u16}x{=u8} classes={=u16} macs={=u64} blob_bytes={=usize} activation_bytes={=usize}",
        BOARD,
        MODEL_PATH,
        ARCH.height,
        ARCH.width,
        ARCH.channels,
        ARCH.classes,
        ARCH.macs(),
        MODEL_BLOB.len(),
        ARCH.peak_activation_bytes()
    );
    model
}

/// A board's frame source as the preprocessing's [`RowSource`].
struct Rows<'a, C>(&'a mut C);

impl<C: FrameSource> RowSource for Rows<'_, C> {
    type Error = C::Error;

    fn read_row(&mut self, y: usize, out: &mut [u8]) -> Result<(), C::Error> {
        self.0.read_row(y, out)
    }
}

/// Classifies every frame `camera` delivers, then exits. Never returns.
pub fn run<C: FrameSource, K: Counter>(model: &Model, camera: &mut C, counter: &mut K) -> ! {
    // Boot (model validation, board set-up) and the frame loop are measured apart: the loop's
    // figure is what streaming costs per frame.
    let (boot_stack, stack_size) = stack::high_water();
    stack::paint();
    let scratch = SCRATCH.take();
    let acc = ACC.take();
    let window = WINDOW.take();
    let mut logits = [0i8; CLASSES];
    let mut probabilities_out = [0f32; CLASSES];
    let mut frames: u32 = 0;
    loop {
        let info = match camera.next_frame() {
            Ok(Some(info)) => info,
            Ok(None) => break,
            Err(e) => {
                defmt::error!("frame {=u32}: capture failed: {}", frames, e);
                exit(ExitCode::BadFrame)
            }
        };
        let mut rows =
            match RowPreprocessor::new(info.width, info.height, info.format, &model.arch, window) {
                Ok(rows) => rows,
                Err(e) => {
                    defmt::error!("frame {=u32} ({}): {}", frames, info, e);
                    exit(ExitCode::BadFrame)
                }
            };
        let mut source = Rows(camera);
        let mut preprocess_count = 0u64;
        counter.start();
        let result = forward_rows(
            model,
            &mut |y, row| {
                let lap = counter.stop();
                let read = rows.input_row(y, &mut source, row);
                preprocess_count += counter.stop() - lap;
                read
            },
            scratch,
            acc,
            &mut logits,
        );
        let count = counter.stop() - preprocess_count;
        if let Err(e) = result {
            defmt::error!(
                "frame {=u32} ({}): reading a row failed: {}",
                frames,
                info,
                e
            );
            exit(ExitCode::BadFrame)
        }
        let class = argmax(&logits);
        probabilities(model, &logits, &mut probabilities_out);
        let report = FrameReport {
            frame: frames,
            class,
            confidence: probabilities_out[class],
            logits: &logits,
            unit: K::UNIT,
            count,
            label: model.labels[class].as_str(),
        };
        let mut line = heapless::String::<FRAME_LINE_MAX>::new();
        // FRAME_LINE_MAX bounds every line `write` produces.
        defmt::unwrap!(report.write(&mut line).ok());
        defmt::println!("{=str}", line.as_str());
        defmt::println!(
            "preprocess frame={=u32} {=str}={=u64}",
            frames,
            K::UNIT.name(),
            preprocess_count
        );
        frames += 1;
    }
    let (frames_stack, _) = stack::high_water();
    defmt::println!(
        "stack boot_bytes={=usize} frames_bytes={=usize} of={=usize}",
        boot_stack,
        frames_stack,
        stack_size
    );
    defmt::println!("{=str}{=u32}", DONE_PREFIX, frames);
    exit(ExitCode::Success)
}
