//! Runs `preprocess` + `forward` on the host for one raw frame and prints the int8 logits in
//! the firmware's `logits=[..]` form, to compare with a QEMU run bit for bit.
//!
//! `cargo run -p tinycnn --example forward_file -- <model.tcnn> <frame> <width> <height> <gray8|rgb888>`

use tinycnn::{forward, preprocess, Frame, Model, PixelFormat};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, frame, width, height, format] = args.as_slice() else {
        eprintln!("usage: forward_file <model.tcnn> <frame> <width> <height> <gray8|rgb888>");
        std::process::exit(2);
    };
    let fail = |what: String| -> ! {
        eprintln!("{what}");
        std::process::exit(1)
    };
    let blob = std::fs::read(model).unwrap_or_else(|e| fail(format!("cannot read {model}: {e}")));
    let model = Model::from_bytes(&blob)
        .unwrap_or_else(|e| fail(format!("{model} is not a valid model: {e}")));
    let bytes = std::fs::read(frame).unwrap_or_else(|e| fail(format!("cannot read {frame}: {e}")));
    let size = |s: &str| -> u16 {
        s.parse()
            .unwrap_or_else(|e| fail(format!("{s:?} is not a frame size: {e}")))
    };
    let format = match format.as_str() {
        "gray8" => PixelFormat::Gray8,
        "rgb888" => PixelFormat::Rgb888,
        other => fail(format!("unsupported format {other:?}: use gray8 or rgb888")),
    };
    let frame = Frame::new(&bytes, size(width), size(height), format)
        .unwrap_or_else(|e| fail(format!("bad frame: {e}")));
    let arch = model.arch;
    let mut input = vec![0i8; arch.input_len()];
    preprocess(&frame, &arch, &mut input).unwrap_or_else(|e| fail(format!("preprocess: {e}")));
    let mut scratch = vec![0i8; arch.scratch_len()];
    let mut logits = vec![0i8; arch.classes as usize];
    forward(&model, &input, &mut scratch, &mut logits);
    println!("logits={logits:?}");
}
