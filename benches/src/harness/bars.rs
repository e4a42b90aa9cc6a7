//! Grouped bar charts (SVG) for categorical axes, where a line through one point would show
//! nothing: speedup per backend for each drafter and grid, τ per cell.

const COLORS: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `groups`: (x label, one value per series, `None` where missing). A dashed line marks
/// `reference` (e.g. 1.0 for a speedup).
pub fn bar_chart(title: &str, y_label: &str, series: &[String], groups: &[(String, Vec<Option<f64>>)], reference: Option<f64>) -> String {
    let (w, h, left, top, bottom) = (760.0, 440.0, 70.0, 40.0, 110.0);
    let plot_w = w - left - 20.0;
    let plot_h = h - top - bottom;
    let max = groups.iter().flat_map(|g| g.1.iter().flatten()).copied().filter(|v| v.is_finite()).fold(reference.unwrap_or(0.0), f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    s += &format!(r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#, top + plot_h, left + plot_w, top + plot_h, top + plot_h);
    s += &format!(r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#, top + plot_h / 2.0, top + plot_h / 2.0, esc(y_label));
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        s += &format!(r#"<text x="{}" y="{}" text-anchor="end">{v:.2}</text>"#, left - 4.0, y(v) + 4.0);
    }
    let gw = plot_w / groups.len().max(1) as f64;
    let bw = gw * 0.8 / series.len().max(1) as f64;
    for (g, (label, values)) in groups.iter().enumerate() {
        let x0 = left + g as f64 * gw + gw * 0.1;
        for (k, v) in values.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite()) else { continue };
            let x = x0 + k as f64 * bw;
            s += &format!(
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{v:.2}</text>"#,
                y(v),
                bw * 0.9,
                (top + plot_h - y(v)).max(0.0),
                COLORS[k % COLORS.len()],
                x + bw * 0.45,
                y(v) - 3.0
            );
        }
        s += &format!(r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, x0 + gw * 0.4, top + plot_h + 16.0, esc(label));
    }
    if let Some(r) = reference {
        s += &format!(r#"<line x1="{left}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="gray" stroke-dasharray="5,4"/>"#, y(r), left + plot_w, y(r));
    }
    for (k, name) in series.iter().enumerate() {
        let ly = top + plot_h + 36.0 + 14.0 * (k / 3) as f64;
        let lx = left + 230.0 * (k % 3) as f64;
        s += &format!(r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#, ly - 9.0, COLORS[k % COLORS.len()], lx + 14.0, ly, esc(name));
    }
    s + "</svg>"
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_one_bar_per_value_and_escapes_labels() {
        let svg = super::bar_chart("t", "y", &["a<b".into(), "c".into()], &[("g1".into(), vec![Some(1.5), None]), ("g2".into(), vec![Some(0.5), Some(2.0)])], Some(1.0));
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2, "3 bars + 2 legend swatches");
        assert!(svg.contains("a&lt;b") && svg.contains("stroke-dasharray"));
    }
}
