//! A tiny self-contained SVG line-plot writer for `shmproc bench --plot`.

use std::fmt::Write;

/// One line of a panel: a name and its points.
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) points: Vec<(f64, f64)>,
}

/// One chart: a title and its lines.
#[derive(Debug, Clone)]
pub(super) struct Panel {
    pub(super) title: String,
    pub(super) series: Vec<Series>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];
const W: f64 = 420.0;
const H: f64 = 260.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Speed-up (y) against workers (x), one panel per kernel stacked vertically,
/// with the ideal `y = x` dashed and the sequential baseline `y = 1` dotted.
pub(super) fn speedup_plot(title: &str, panels: &[Panel]) -> String {
    let total_h = TOP + panels.len() as f64 * H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" viewBox="0 0 {W} {total_h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="13">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    for (i, panel) in panels.iter().enumerate() {
        panel_svg(&mut s, panel, TOP + i as f64 * H);
    }
    s.push_str("</svg>\n");
    s
}

fn panel_svg(s: &mut String, panel: &Panel, y0: f64) {
    let pts = panel.series.iter().flat_map(|l| l.points.iter().copied());
    let (mut xmax, mut ymax) = (1.0f64, 1.0f64);
    for (x, y) in pts {
        xmax = xmax.max(x);
        ymax = ymax.max(y);
    }
    ymax = ymax.max(xmax) * 1.1;
    let (x_lo, x_hi) = (LEFT, W - RIGHT);
    let (y_lo, y_hi) = (y0 + H - BOTTOM, y0 + 20.0);
    let px = |x: f64| x_lo + (x - 1.0) / (xmax - 1.0).max(1.0) * (x_hi - x_lo);
    let py = |y: f64| y_lo - y / ymax * (y_lo - y_hi);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>"#,
        (x_lo + x_hi) / 2.0,
        y0 + 12.0,
        esc(&panel.title)
    );
    // Axes, ticks and labels.
    let _ = writeln!(
        s,
        r#"<path d="M{x_lo} {y_hi} V{y_lo} H{x_hi}" fill="none" stroke="black"/>"#
    );
    let xticks = xmax.round().max(1.0) as usize;
    let step = xticks.div_ceil(8).max(1);
    for w in (1..=xticks).step_by(step) {
        let x = px(w as f64);
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y_lo}" x2="{x}" y2="{}" stroke="black"/><text x="{x}" y="{}" text-anchor="middle">{w}</text>"#,
            y_lo + 4.0,
            y_lo + 15.0
        );
    }
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{x_hi}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v:.1}</text>"##,
            x_lo,
            x_lo - 4.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">workers</text><text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">speed-up</text>"#,
        (x_lo + x_hi) / 2.0,
        y_lo + 30.0,
        (y_lo + y_hi) / 2.0,
        (y_lo + y_hi) / 2.0
    );
    // Ideal and baseline.
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="5,4"/>"##,
        px(1.0),
        py(1.0),
        px(xmax),
        py(xmax)
    );
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="1,3"/>"##,
        px(1.0),
        py(1.0),
        px(xmax),
        py(1.0)
    );
    for (i, line) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let d: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            d.join(" ")
        );
        for &(x, y) in &line.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                px(x),
                py(y)
            );
        }
        let ly = y_hi + 14.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x_hi + 10.0,
            x_hi + 28.0,
            x_hi + 32.0,
            ly + 4.0,
            esc(&line.name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_is_wellformed_and_has_one_line_per_series() {
        let panel = Panel {
            title: "power <u64>".into(),
            series: vec![
                Series {
                    name: "threads".into(),
                    points: vec![(1.0, 1.0), (2.0, 1.9)],
                },
                Series {
                    name: "rayon".into(),
                    points: vec![(1.0, 0.9), (2.0, 1.7)],
                },
            ],
        };
        let svg = speedup_plot("bench", &[panel.clone(), panel]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("power &lt;u64&gt;"), "titles are escaped");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
