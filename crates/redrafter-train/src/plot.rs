//! Minimal SVG line charts (training curves, benchmark sweeps), with no plotting dependency.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// One chart with a line per series, axes with min/max labels, and a legend.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h, m) = (720.0, 420.0, 60.0);
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    let sx = |x: f64| m + (x - x0) / (x1 - x0) * (w - 2.0 * m);
    let sy = |y: f64| h - m - (y - y0) / (y1 - y0) * (h - 2.0 * m);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text><line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke="black"/><text x="{}" y="{}" text-anchor="middle">{x_label}</text><text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">{y_label}</text><text x="{m}" y="{}" text-anchor="middle">{x0:.3}</text><text x="{}" y="{}" text-anchor="middle">{x1:.3}</text><text x="{}" y="{}" text-anchor="end">{y0:.3}</text><text x="{}" y="{}" text-anchor="end">{y1:.3}</text>"#,
        w / 2.0, h - m, w - m, h - m, h - m, w / 2.0, h - 20.0, h / 2.0, h / 2.0, h - m + 15.0, w - m, h - m + 15.0,
        m - 5.0, h - m, m - 5.0, m + 4.0,
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = ser.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#, path.join(" "));
        let _ = write!(s, r#"<rect x="{}" y="{}" width="12" height="3" fill="{c}"/><text x="{}" y="{}">{}</text>"#, w - m - 150.0, m + 14.0 * i as f64, w - m - 132.0, m + 5.0 + 14.0 * i as f64, ser.name);
    }
    s.push_str("</svg>\n");
    s
}
