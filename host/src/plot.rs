//! PNG charts: training curves and confusion matrices. Text is rendered with the DejaVu Sans font
//! embedded from the `dejavu` crate, so charts need no system fonts.
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::checkpoint::EpochMetrics;

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
/// `path` (rendered to a temp file and renamed into place).
pub fn confusion_matrix(
    path: &Path,
    labels: &[String],
    matrix: &[Vec<u64>],
    title: &str,
) -> Result<(), PlotError> {
    register_font();
    let e = err(path);
    let n = labels.len();
    let cell = (560 / n.max(1)).clamp(24, 80) as u32;
    let label_px = 150u32;
    let size = (
        label_px + cell * n as u32 + 30,
        label_px + cell * n as u32 + 50,
    );
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let root = root.titled(title, (FONT, 18)).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(label_px - 40)
            .y_label_area_size(label_px)
            .build_cartesian_2d((0..n).into_segmented(), (0..n).into_segmented())
            .map_err(|x| e(&x))?;
        // Row t (true class t) is drawn at y = n - 1 - t, so the first class is on top.
        let x_name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < n => labels[*i].clone(),
            _ => String::new(),
        };
        let y_name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < n => labels[n - 1 - *i].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n + 1)
            .y_labels(n + 1)
            .x_label_formatter(&x_name)
            .y_label_formatter(&y_name)
            .label_style((FONT, 12))
            .x_label_style((FONT, 12).into_font().transform(FontTransform::Rotate90))
            .x_desc("predicted")
            .y_desc("true")
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(|x| e(&x))?;
        let max = matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        for (t, row) in matrix.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                let y = n - 1 - t;
                let shade = count as f64 / max;
                let color = RGBColor(
                    255 - (shade * 200.0) as u8,
                    255 - (shade * 140.0) as u8,
                    255,
                );
                chart
                    .draw_series([Rectangle::new(
                        [
                            (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                            (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                        ],
                        color.filled(),
                    )])
                    .map_err(|x| e(&x))?;
                let style = TextStyle::from((FONT, 12).into_font()).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                );
                let top_left = (SegmentValue::Exact(p), SegmentValue::Exact(y + 1));
                let (x0, y0) = chart.backend_coord(&top_left);
                let (x1, y1) =
                    chart.backend_coord(&(SegmentValue::Exact(p + 1), SegmentValue::Exact(y)));
                let offset = ((x1 - x0) / 2, (y1 - y0) / 2);
                chart
                    .draw_series([
                        EmptyElement::at(top_left) + Text::new(count.to_string(), offset, style)
                    ])
                    .map_err(|x| e(&x))?;
            }
        }
        root.present().map_err(|x| e(&x))?;
    }
    std::fs::rename(&tmp, path).map_err(|x| e(&x))
}
