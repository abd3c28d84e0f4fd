//! The host–firmware protocol: its one definition, used by every board and by the host tools
//! that build frames for the firmware and read its log.
//!
//! - [`ExitCode`]: how the firmware ends (semihosting exit code on QEMU, `probe-rs run`'s code on
//!   hardware).
//! - [`PixelFormat::name`] / [`PixelFormat::parse`]: the pixel-format names of frame lists.
//! - [`FrameReport`]: the per-frame log line, `frame=<n> class=<i> confidence=<p> logits=[..]
//!   <unit>=<count> label=<label>`, with a formatter ([`FrameReport::write`]) and a parser
//!   ([`ParsedFrame::parse`]) that reads every board's unit (`instructions` on QEMU, `cycles` on
//!   hardware).
//! - [`rgb888_to_rgb565`] / [`rgb565_to_rgb888`]: RGB565 packing.
//! - [`QVGA`]: the camera frame size the boards and the host use.

use crate::arch::{MAX_CLASSES, MAX_LABEL_LEN};
use crate::preprocess::PixelFormat;
use core::fmt;

/// The camera frame size, (width, height): QVGA.
pub const QVGA: (u16, u16) = (320, 240);

/// How the firmware ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(i32)]
pub enum ExitCode {
    /// Every frame was classified.
    Success = 0,
    /// A panic or a HardFault.
    Fault = 1,
    /// The embedded model failed validation at boot.
    InvalidModel = 2,
    /// The camera or a frame was unusable.
    BadFrame = 3,
}

impl ExitCode {
    /// Every exit code, in numeric order.
    pub const ALL: [ExitCode; 4] = [
        ExitCode::Success,
        ExitCode::Fault,
        ExitCode::InvalidModel,
        ExitCode::BadFrame,
    ];

    /// The process exit status.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The exit code with status `code`, `None` for a status the firmware never uses.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }

    /// What the code means, for messages.
    pub const fn meaning(self) -> &'static str {
        match self {
            ExitCode::Success => "every frame was classified",
            ExitCode::Fault => "panic or HardFault",
            ExitCode::InvalidModel => "the embedded model is invalid",
            ExitCode::BadFrame => "a frame could not be read or preprocessed",
        }
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.meaning())
    }
}

impl PixelFormat {
    /// Every pixel format.
    pub const ALL: [PixelFormat; 5] = [
        PixelFormat::Gray8,
        PixelFormat::Rgb888,
        PixelFormat::Rgb565Le,
        PixelFormat::Rgb565Be,
        PixelFormat::Yuyv,
    ];

    /// The format's name in frame lists and logs: `gray8`, `rgb888`, `rgb565le`, `rgb565be`,
    /// `yuyv`.
    pub const fn name(self) -> &'static str {
        match self {
            PixelFormat::Gray8 => "gray8",
            PixelFormat::Rgb888 => "rgb888",
            PixelFormat::Rgb565Le => "rgb565le",
            PixelFormat::Rgb565Be => "rgb565be",
            PixelFormat::Yuyv => "yuyv",
        }
    }

    /// The format called `name` (see [`PixelFormat::name`]).
    pub fn parse(name: &str) -> Option<PixelFormat> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Packs RGB888 into RGB565 (`RRRRRGGG GGGBBBBB`) by truncating each channel.
pub const fn rgb888_to_rgb565(rgb: [u8; 3]) -> u16 {
    ((rgb[0] as u16 >> 3) << 11) | ((rgb[1] as u16 >> 2) << 5) | (rgb[2] as u16 >> 3)
}

/// Unpacks RGB565 to RGB888 by bit replication (`r8 = r5 << 3 | r5 >> 2`, `g8 = g6 << 2 | g6 >> 4`):
/// the widening the preprocessing applies to camera frames.
pub const fn rgb565_to_rgb888(v: u16) -> [u8; 3] {
    let r = ((v >> 11) & 0x1f) as u8;
    let g = ((v >> 5) & 0x3f) as u8;
    let b = (v & 0x1f) as u8;
    [
        (r << 3) | (r >> 2),
        (g << 2) | (g >> 4),
        (b << 3) | (b >> 2),
    ]
}

/// What a board counts the forward pass in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CountUnit {
    /// Retired instructions (QEMU's icount through a timer).
    Instructions,
    /// CPU cycles (DWT CYCCNT on hardware).
    Cycles,
}

impl CountUnit {
    /// The key of the count in the frame line.
    pub const fn name(self) -> &'static str {
        match self {
            CountUnit::Instructions => "instructions",
            CountUnit::Cycles => "cycles",
        }
    }

    fn parse(name: &str) -> Option<CountUnit> {
        [CountUnit::Instructions, CountUnit::Cycles]
            .into_iter()
            .find(|u| u.name() == name)
    }
}

/// Longest frame line [`FrameReport::write`] produces (every field at its widest).
pub const FRAME_LINE_MAX: usize = 96 + 5 * MAX_CLASSES + 4 * MAX_LABEL_LEN;

/// The per-frame log line a board writes after classifying a frame:
/// `frame=<n> class=<i> confidence=<p> logits=[<l0>, <l1>, ..] <unit>=<count> label=<label>`.
///
/// `confidence` is the top class's probability with 4 decimals; `count` covers the forward pass
/// alone. The label goes last because it may contain spaces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameReport<'a> {
    /// Frame number, from 0.
    pub frame: u32,
    /// The predicted class (argmax of the logits).
    pub class: usize,
    /// Its probability, in [0, 1].
    pub confidence: f32,
    /// The int8 logits.
    pub logits: &'a [i8],
    /// What `count` counts.
    pub unit: CountUnit,
    /// The cost of the forward pass.
    pub count: u64,
    /// The predicted class's label.
    pub label: &'a str,
}

impl FrameReport<'_> {
    /// Writes the line (no newline). Integer formatting only, so firmware pulls in no float
    /// formatting code.
    pub fn write(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let permyriad = if self.confidence.is_finite() {
            (self.confidence.clamp(0.0, 1.0) * 10_000.0 + 0.5) as u32
        } else {
            0
        };
        write!(
            out,
            "frame={} class={} confidence={}.{:04} logits=[",
            self.frame,
            self.class,
            permyriad / 10_000,
            permyriad % 10_000
        )?;
        for (i, v) in self.logits.iter().enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            write!(out, "{v}")?;
        }
        write!(
            out,
            "] {}={} label={}",
            self.unit.name(),
            self.count,
            self.label
        )
    }
}

impl fmt::Display for FrameReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

/// A frame line read back by [`ParsedFrame::parse`].
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedFrame {
    /// Frame number.
    pub frame: u32,
    /// Predicted class.
    pub class: usize,
    /// Its probability (4 decimals).
    pub confidence: f32,
    /// The int8 logits.
    pub logits: heapless::Vec<i8, MAX_CLASSES>,
    /// What `count` counts.
    pub unit: CountUnit,
    /// The cost of the forward pass.
    pub count: u64,
    /// The predicted class's label.
    pub label: heapless::String<MAX_LABEL_LEN>,
}

impl ParsedFrame {
    /// Parses a line [`FrameReport::write`] wrote, from any board; any other line gives `None`.
    pub fn parse(line: &str) -> Option<ParsedFrame> {
        let rest = line.strip_prefix("frame=")?;
        let (frame, rest) = rest.split_once(" class=")?;
        let (class, rest) = rest.split_once(" confidence=")?;
        let (confidence, rest) = rest.split_once(" logits=[")?;
        let (logits, rest) = rest.split_once("] ")?;
        let (unit, rest) = rest.split_once('=')?;
        let (count, label) = rest.split_once(" label=")?;
        let mut parsed_logits = heapless::Vec::new();
        if !logits.trim().is_empty() {
            for v in logits.split(',') {
                parsed_logits.push(v.trim().parse().ok()?).ok()?;
            }
        }
        Some(ParsedFrame {
            frame: frame.parse().ok()?,
            class: class.parse().ok()?,
            confidence: confidence.parse().ok()?,
            logits: parsed_logits,
            unit: CountUnit::parse(unit)?,
            count: count.parse().ok()?,
            label: heapless::String::try_from(label).ok()?,
        })
    }
}

/// The line that ends a run of frames: `done frames=<n>`.
pub const DONE_PREFIX: &str = "done frames=";

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn exit_codes_round_trip() {
        for e in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(e.code()), Some(e));
        }
        assert_eq!(ExitCode::from_code(2), Some(ExitCode::InvalidModel));
        assert_eq!(ExitCode::from_code(7), None);
        assert_eq!(ExitCode::from_code(-1), None);
    }

    #[test]
    fn pixel_format_names_round_trip() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::parse(f.name()), Some(f));
        }
        assert_eq!(PixelFormat::parse("rgb565le"), Some(PixelFormat::Rgb565Le));
        assert_eq!(PixelFormat::parse("RGB565"), None);
    }

    #[test]
    fn rgb565_pack_unpack() {
        // Every 565 value survives unpack then pack.
        for v in 0..=u16::MAX {
            assert_eq!(rgb888_to_rgb565(rgb565_to_rgb888(v)), v);
        }
        assert_eq!(rgb565_to_rgb888(0xffff), [255, 255, 255]);
        assert_eq!(rgb888_to_rgb565([255, 0, 0]), 0xf800);
        assert_eq!(rgb565_to_rgb888(0x07e0), [0, 255, 0]);
    }

    #[test]
    fn frame_line_round_trips_for_every_unit() {
        let logits = [-128, 5, 127];
        for unit in [CountUnit::Instructions, CountUnit::Cycles] {
            let report = FrameReport {
                frame: 3,
                class: 2,
                confidence: 0.812_46,
                logits: &logits,
                unit,
                count: 1240,
                label: "Ankle boot",
            };
            let mut line = String::new();
            report.write(&mut line).unwrap();
            let expected = std::format!(
                "frame=3 class=2 confidence=0.8125 logits=[-128, 5, 127] {}=1240 label=Ankle boot",
                unit.name()
            );
            assert_eq!(line, expected);
            let parsed = ParsedFrame::parse(&line).unwrap();
            assert_eq!(parsed.frame, 3);
            assert_eq!(parsed.class, 2);
            assert_eq!(parsed.confidence, 0.8125);
            assert_eq!(&parsed.logits[..], &logits);
            assert_eq!(parsed.unit, unit);
            assert_eq!(parsed.count, 1240);
            assert_eq!(parsed.label.as_str(), "Ankle boot");
        }
    }

    #[test]
    fn widest_frame_line_fits_the_bound() {
        let logits = [-128i8; MAX_CLASSES];
        let label = "x".repeat(MAX_LABEL_LEN);
        let report = FrameReport {
            frame: u32::MAX,
            class: MAX_CLASSES - 1,
            confidence: 1.0,
            logits: &logits,
            unit: CountUnit::Instructions,
            count: u64::MAX,
            label: &label,
        };
        let line = std::format!("{report}");
        assert!(line.len() <= FRAME_LINE_MAX, "{}", line.len());
        assert!(line.contains("confidence=1.0000"));
        assert_eq!(ParsedFrame::parse(&line).unwrap().count, u64::MAX);
    }

    #[test]
    fn other_lines_do_not_parse() {
        for line in [
            "boot board=qemu",
            "done frames=3",
            "frame=1 class=2 confidence=1 logits=[300] instructions=1 label=x",
            "frame=1 class=2 confidence=1 logits=[3] furlongs=1 label=x",
            "frame=x class=2 confidence=1 logits=[3] cycles=1 label=x",
        ] {
            assert_eq!(ParsedFrame::parse(line), None, "{line}");
        }
    }
}
