//! PNG charts: training curves and confusion matrices. Text is rendered with the DejaVu Sans font
//! embedded from the `dejavu` crate, so charts need no system fonts.
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::train::checkpoint::EpochMetrics;

/// Font family name the embedded font is registered under.
const FONT: &str = "sans-serif";

/// Errors while drawing a chart.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {reason}")]
pub struct PlotError {
    pub path: String,
    pub reason: String,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TTF; registration can only fail on a malformed file.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

fn err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> PlotError + '_ {
    move |e| PlotError {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Draws accuracy (train, val) and loss (train, val) against epoch into a PNG at `path`.
/// The PNG is rendered to a temp file and renamed into place.
pub fn training_curves(path: &Path, metrics: &[EpochMetrics]) -> Result<(), PlotError> {
    register_font();
    let e = err(path);
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let panels = root.split_evenly((1, 2));
        let last_epoch = metrics.last().map_or(1, |m| m.epoch).max(1) as f64;
        let series = [
            (
                "accuracy",
                [
                    (
                        "train",
                        metrics.iter().map(|m| m.train_accuracy).collect::<Vec<_>>(),
                    ),
                    (
                        "validation",
                        metrics.iter().map(|m| m.val_accuracy).collect(),
                    ),
                ],
            ),
            (
                "loss",
                [
                    ("train", metrics.iter().map(|m| m.train_loss).collect()),
                    ("validation", metrics.iter().map(|m| m.val_loss).collect()),
                ],
            ),
        ];
        for (panel, (title, lines)) in panels.iter().zip(series) {
            let values = lines
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .filter(|v| v.is_finite());
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.05).max(1e-3);
            let mut chart = ChartBuilder::on(panel)
                .caption(title, (FONT, 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(1.0..last_epoch.max(2.0), (lo - pad)..(hi + pad))
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .draw()
                .map_err(|x| e(&x))?;
            for ((name, values), color) in lines.iter().zip([BLUE, RED]) {
                let points: Vec<(f64, f64)> = metrics
                    .iter()
                    .zip(values)
                    .map(|(m, &v)| (m.epoch as f64, v))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(|x| e(&x))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 13))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    std::fs::rename(&tmp, path).map_err(|x| e(&x))
}

/// Draws `matrix[true][predicted]` as a heat map with counts and class names into a PNG at
/// `path` (rendered to a temp file and renamed into place). Rows are true classes, columns
/// predicted ones, both in label order.
pub fn confusion_matrix(
    path: &Path,
    labels: &[String],
    matrix: &[Vec<u64>],
    title: &str,
) -> Result<(), PlotError> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    register_font();
    let e = err(path);
    let n = labels.len().max(1) as i32;
    let cell = (720 / n).clamp(28, 80);
    let (left, top) = (150, 64);
    let grid = cell * n;
    let size = ((left + grid + 20) as u32, (top + grid + 60) as u32);
    let text =
        |px: u32, h: HPos, v: VPos| TextStyle::from((FONT, px).into_font()).pos(Pos::new(h, v));
    // Column labels alternate between two lines so that neighbours do not overlap.
    let fit = |label: &str| -> String {
        let max_chars = ((2 * cell) / 7).max(3) as usize;
        if label.chars().count() <= max_chars {
            label.to_string()
        } else {
            label.chars().take(max_chars - 1).chain(['.']).collect()
        }
    };
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        root.draw(&Text::new(
            title.to_string(),
            (size.0 as i32 / 2, 18),
            text(18, HPos::Center, VPos::Center),
        ))
        .map_err(|x| e(&x))?;
        root.draw(&Text::new(
            "rows: true class, columns: predicted class".to_string(),
            (size.0 as i32 / 2, 42),
            text(13, HPos::Center, VPos::Center),
        ))
        .map_err(|x| e(&x))?;
        let max = matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        for (t, row) in matrix.iter().enumerate() {
            let y = top + t as i32 * cell;
            root.draw(&Text::new(
                labels.get(t).cloned().unwrap_or_default(),
                (left - 8, y + cell / 2),
                text(13, HPos::Right, VPos::Center),
            ))
            .map_err(|x| e(&x))?;
            for (p, &count) in row.iter().enumerate() {
                let x = left + p as i32 * cell;
                let shade = count as f64 / max;
                let color = RGBColor(
                    255 - (shade * 200.0) as u8,
                    255 - (shade * 140.0) as u8,
                    255,
                );
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    color.filled(),
                ))
                .map_err(|x| e(&x))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.mix(0.15),
                ))
                .map_err(|x| e(&x))?;
                root.draw(&Text::new(
                    count.to_string(),
                    (x + cell / 2, y + cell / 2),
                    text(12, HPos::Center, VPos::Center),
                ))
                .map_err(|x| e(&x))?;
            }
        }
        for (p, label) in labels.iter().enumerate() {
            let x = left + p as i32 * cell + cell / 2;
            let y = top + grid + 10 + if p % 2 == 1 { 18 } else { 0 };
            root.draw(&Text::new(
                fit(label),
                (x, y),
                text(13, HPos::Center, VPos::Top),
            ))
            .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    std::fs::rename(&tmp, path).map_err(|x| e(&x))
}
