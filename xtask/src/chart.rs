//! `target/bench/latest.svg`: `cargo xtask bench`'s table as a chart. One row per
//! measurement with a figure of ours: our bar beside the reference's (Xen 4.17, or
//! Linux for I/O), both scaled to the larger of the two (the rows have different
//! units), each labelled with its median and unit. Rows where smaller is better say
//! so; the ratio column of the table is the bar's caption.

use std::fmt::Write;

/// One row of the chart.
pub struct Bar<'a> {
    pub label: &'a str,
    pub unit: &'a str,
    pub ours: f64,
    pub reference: Option<f64>,
    pub higher_is_better: bool,
}

const WIDTH: f64 = 900.0;
const LABEL: f64 = 330.0;
const ROW: f64 = 34.0;
const BAR: f64 = 12.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The chart of `bars`, titled `title`.
pub fn svg(title: &str, bars: &[Bar]) -> String {
    let height = 60.0 + ROW * bars.len() as f64 + 30.0;
    let span = WIDTH - LABEL - 170.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">{}</text>
<rect x="{LABEL}" y="32" width="10" height="10" fill="#2b6cb0"/><text x="{}" y="41">ours</text>
<rect x="{}" y="32" width="10" height="10" fill="#a0aec0"/><text x="{}" y="41">reference (Xen 4.17; Linux for I/O)</text>
"##,
        escape(title),
        LABEL + 14.0,
        LABEL + 60.0,
        LABEL + 74.0,
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 60.0 + ROW * i as f64;
        let top = b
            .ours
            .max(b.reference.unwrap_or(0.0))
            .max(f64::MIN_POSITIVE);
        let better = if b.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}">{}</text><text x="10" y="{}" fill="#718096">{} ({better})</text>"##,
            y + 10.0,
            escape(b.label),
            y + 23.0,
            escape(b.unit),
        );
        let w = span * b.ours / top;
        let _ = writeln!(
            s,
            r##"<rect x="{LABEL}" y="{y}" width="{w:.1}" height="{BAR}" fill="#2b6cb0"/><text x="{:.1}" y="{}">{}</text>"##,
            LABEL + w + 4.0,
            y + 10.0,
            num(b.ours),
        );
        if let Some(r) = b.reference {
            let w = span * r / top;
            let ratio = if b.higher_is_better {
                b.ours / r
            } else {
                r / b.ours
            };
            let _ = writeln!(
                s,
                r##"<rect x="{LABEL}" y="{}" width="{w:.1}" height="{BAR}" fill="#a0aec0"/><text x="{:.1}" y="{}">{} (ours {:.2}x)</text>"##,
                y + BAR + 2.0,
                LABEL + w + 4.0,
                y + BAR + 12.0,
                num(r),
                ratio,
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_scaled_per_row_and_labelled() {
        let bars = [
            Bar {
                label: "boot <fast>",
                unit: "s",
                ours: 0.5,
                reference: Some(1.0),
                higher_is_better: false,
            },
            Bar {
                label: "reads",
                unit: "IOPS",
                ours: 3000.0,
                reference: None,
                higher_is_better: true,
            },
        ];
        let s = svg("bench & co", &bars);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("bench &amp; co") && s.contains("boot &lt;fast&gt;"));
        // The reference is the longer bar of the first row; ours is half of it.
        let span = WIDTH - LABEL - 170.0;
        assert!(s.contains(&format!("width=\"{:.1}\"", span / 2.0)));
        assert!(s.contains(&format!("width=\"{span:.1}\"")));
        assert!(s.contains("(ours 2.00x)"), "lower is better: 1.0 / 0.5");
        assert!(s.contains("3000") && s.contains("IOPS (higher is better)"));
    }
}
