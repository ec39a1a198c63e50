//! A small SVG line plot for bench results: linear x axis, logarithmic y axis (so a 4 ms line and a 400 ms
//! line are both readable), ticks, grid, one polyline per series and a legend. No dependency.

use std::fmt::Write;

pub struct Series {
    pub label: String,
    /// Any SVG colour.
    pub color: &'static str,
    pub dashed: bool,
    /// (x, y) with y > 0; points with y <= 0 cannot sit on a log axis and are skipped.
    pub points: Vec<(f64, f64)>,
}

pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

impl LinePlot {
    pub fn to_svg(&self) -> String {
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|p| p.1 > 0.0)
        };
        let x_max = points().map(|p| p.0).fold(0.0, f64::max);
        let x_step = nice_step(x_max.max(1.0) / 5.0);
        let x_top = (x_max / x_step).ceil().max(1.0) * x_step;
        let y_min = points().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let y_max = points().map(|p| p.1).fold(0.0, f64::max);
        let (lo_decade, hi_decade) = if y_min.is_finite() {
            (
                y_min.log10().floor(),
                y_max.log10().ceil().max(y_min.log10().floor() + 1.0),
            )
        } else {
            (0.0, 1.0)
        };
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let px = |x: f64| LEFT + x / x_top * plot_w;
        let py = |y: f64| TOP + plot_h - (y.log10() - lo_decade) / (hi_decade - lo_decade) * plot_h;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"##
        );
        let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"##,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );

        // Y: a labelled line at 1, 2 and 5 of every decade, a faint one at the others.
        for decade in lo_decade as i32..hi_decade as i32 {
            for m in 1..10 {
                let v = f64::from(m) * 10f64.powi(decade);
                let y = py(v);
                let labelled = matches!(m, 1 | 2 | 5);
                let stroke = if labelled { "#d0d0d0" } else { "#eeeeee" };
                let _ = writeln!(
                    svg,
                    r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"##,
                    LEFT + plot_w
                );
                if labelled {
                    let _ = writeln!(
                        svg,
                        r##"<line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="black"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                        LEFT - 5.0,
                        LEFT - 8.0,
                        y + 4.0,
                        number(v)
                    );
                }
            }
        }
        let top_label = 10f64.powf(hi_decade);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{TOP}" x2="{:.1}" y2="{TOP}" stroke="#d0d0d0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 5.0,
            LEFT + plot_w,
            LEFT - 8.0,
            TOP + 4.0,
            number(top_label)
        );

        // X: linear ticks on a 1-2-5 step.
        let mut x = 0.0;
        while x <= x_top + x_step / 2.0 {
            let sx = px(x);
            let _ = writeln!(
                svg,
                r##"<line x1="{sx:.1}" y1="{TOP}" x2="{sx:.1}" y2="{:.1}" stroke="#eeeeee"/><line x1="{sx:.1}" y1="{:.1}" x2="{sx:.1}" y2="{:.1}" stroke="black"/><text x="{sx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h,
                TOP + plot_h + 5.0,
                TOP + plot_h + 19.0,
                number(x)
            );
            x += x_step;
        }

        // Axes and their labels.
        let _ = writeln!(
            svg,
            r##"<polyline points="{LEFT},{TOP} {LEFT},{:.1} {:.1},{:.1}" fill="none" stroke="black"/>"##,
            TOP + plot_h,
            LEFT + plot_w,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            LEFT + plot_w / 2.0,
            HEIGHT - 15.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r##"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );

        // Series, then the legend to the right of the plot.
        for (i, s) in self.series.iter().enumerate() {
            let dash = if s.dashed {
                r##" stroke-dasharray="7 4""##
            } else {
                ""
            };
            let pts: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.1 > 0.0)
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                svg,
                r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"##,
                pts.join(" "),
                s.color
            );
            for &(x, y) in s.points.iter().filter(|p| p.1 > 0.0) {
                let _ = writeln!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} at {}</title></circle>"##,
                    px(x),
                    py(y),
                    s.color,
                    escape(&s.label),
                    number(y),
                    number(x)
                );
            }
            let ly = TOP + 10.0 + i as f64 * 22.0;
            let lx = LEFT + plot_w + 20.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"##,
                lx + 30.0,
                s.color,
                lx + 38.0,
                ly + 4.0,
                escape(&s.label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let base = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * base)
}

/// Tick labels without trailing zeros: 0.5, 2, 1000.
fn number(v: f64) -> String {
    if v >= 1.0 || v == 0.0 {
        format!("{}", v.round())
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
