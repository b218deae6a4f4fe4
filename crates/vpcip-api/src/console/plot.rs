//! An EIP's traffic over the last hour as SVG drawn by the server: bits,
//! packets and limiter drops per second, in and out, from the samples of
//! the counters its gateways reported.

use std::fmt::Write;

use vpcip_model::desired::TrafficRate;

const WIDTH: f64 = 640.0;
const CHART_H: f64 = 120.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 24.0;
const GAP: f64 = 44.0;
const IN_COLOUR: &str = "#1f77b4";
const OUT_COLOUR: &str = "#d62728";

/// One chart: its title, unit, and the in and out series.
struct Chart {
    title: &'static str,
    unit: &'static str,
    /// Scale by powers of 1000 (bits) or not.
    si: bool,
    series: [fn(&TrafficRate) -> f64; 2],
}

const CHARTS: [Chart; 3] = [
    Chart {
        title: "Bandwidth",
        unit: "bit/s",
        si: true,
        series: [|p| p.bits_in, |p| p.bits_out],
    },
    Chart {
        title: "Packets",
        unit: "packets/s",
        si: false,
        series: [|p| p.packets_in, |p| p.packets_out],
    },
    Chart {
        title: "Dropped by the bandwidth limit",
        unit: "packets/s",
        si: false,
        series: [|p| p.drops_in, |p| p.drops_out],
    },
];

/// The plot of `points` over the `window` seconds before `now`.
pub(crate) fn traffic(points: &[TrafficRate], now: i64, window: i64) -> String {
    let height = TOP + CHARTS.len() as f64 * (CHART_H + GAP);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11" role="img" aria-label="traffic over the last hour" data-points="{n}">"#,
        n = points.len()
    );
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="14" fill="{IN_COLOUR}">— in (towards the EIP)</text><text x="{x}" y="14" fill="{OUT_COLOUR}">— out (from it)</text>"##,
        x = LEFT + 200.0
    );
    let start = now - window;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x_of = |at: i64| LEFT + plot_w * ((at - start).max(0) as f64 / window.max(1) as f64);
    for (i, chart) in CHARTS.iter().enumerate() {
        let top = TOP + i as f64 * (CHART_H + GAP) + 16.0;
        let bottom = top + CHART_H;
        let max = points
            .iter()
            .flat_map(|p| chart.series.iter().map(move |f| f(p)))
            .fold(0.0_f64, f64::max);
        let (scale, prefix) = if chart.si { si(max) } else { (1.0, "") };
        let top_value = nice(max / scale);
        let _ = write!(
            out,
            r##"<g class="chart" data-chart="{title}"><text x="{LEFT}" y="{ty}" font-weight="bold">{title} ({prefix}{unit})</text><rect x="{LEFT}" y="{top}" width="{plot_w}" height="{CHART_H}" fill="#fafafa" stroke="#ccc"/>"##,
            title = chart.title,
            unit = chart.unit,
            ty = top - 4.0
        );
        // The value axis: zero, half, the top.
        for frac in [0.0, 0.5, 1.0] {
            let y = bottom - CHART_H * frac;
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{x2}" y1="{y}" y2="{y}" stroke="#e5e5e5"/><text x="{tx}" y="{ty}" text-anchor="end">{v}</text>"##,
                x2 = LEFT + plot_w,
                tx = LEFT - 6.0,
                ty = y + 4.0,
                v = short(top_value * frac)
            );
        }
        // The time axis: every quarter of the window.
        for q in 0..=4 {
            let at = start + window * q / 4;
            let mins = (now - at) / 60;
            let label = if mins == 0 {
                "now".to_string()
            } else {
                format!("−{mins} min")
            };
            let _ = write!(
                out,
                r#"<text x="{x}" y="{y}" text-anchor="middle">{label}</text>"#,
                x = x_of(at),
                y = bottom + 14.0
            );
        }
        for (series, colour) in chart.series.iter().zip([IN_COLOUR, OUT_COLOUR]) {
            let coords: Vec<String> = points
                .iter()
                .filter(|p| p.at >= start)
                .map(|p| {
                    let v = series(p) / scale;
                    let y = if top_value > 0.0 {
                        bottom - CHART_H * (v / top_value).min(1.0)
                    } else {
                        bottom
                    };
                    format!("{:.1},{:.1}", x_of(p.at), y)
                })
                .collect();
            if coords.len() == 1 {
                let (x, y) = coords[0].split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    out,
                    r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>"#
                );
            } else if !coords.is_empty() {
                let _ = write!(
                    out,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                    coords.join(" ")
                );
            }
        }
        if points.is_empty() {
            let _ = write!(
                out,
                r##"<text x="{x}" y="{y}" text-anchor="middle" fill="#888">no traffic counted in the last hour</text>"##,
                x = LEFT + plot_w / 2.0,
                y = top + CHART_H / 2.0
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// The power of 1000 to show `max` in, and its prefix.
fn si(max: f64) -> (f64, &'static str) {
    match max {
        m if m >= 1e9 => (1e9, "G"),
        m if m >= 1e6 => (1e6, "M"),
        m if m >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    }
}

/// The axis' top: `max` rounded up to 1, 2 or 5 times a power of ten.
fn nice(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

fn short(v: f64) -> String {
    if v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: i64, bits_in: f64) -> TrafficRate {
        TrafficRate {
            at,
            bits_in,
            bits_out: bits_in / 2.0,
            packets_in: bits_in / 8000.0,
            packets_out: 0.0,
            drops_in: 0.0,
            drops_out: 0.0,
        }
    }

    #[test]
    fn axes_are_round_and_lines_follow_the_points() {
        assert_eq!(nice(7.3), 10.0);
        assert_eq!(nice(1.2), 2.0);
        assert_eq!(nice(420.0), 500.0);
        assert_eq!(nice(0.0), 1.0);
        let now = 10_000;
        let svg = traffic(&[point(now - 3000, 2e6), point(now - 60, 8e6)], now, 3600);
        assert!(svg.contains("Bandwidth (Mbit/s)"), "{svg}");
        assert!(svg.contains(">10</text>"), "the axis' top: {svg}");
        assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
        assert!(svg.contains("data-points=\"2\""));
        // The latest point sits near the right edge, 8 of 10 up.
        let want = format!(
            "{:.1},{:.1}",
            LEFT + (WIDTH - LEFT - RIGHT) * (3540.0 / 3600.0),
            TOP + 16.0 + CHART_H - CHART_H * 0.8
        );
        assert!(svg.contains(&want), "{want} in {svg}");
        let empty = traffic(&[], now, 3600);
        assert!(empty.contains("no traffic counted in the last hour"));
    }
}
