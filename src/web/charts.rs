//! Server-drawn SVG charts for every page: line charts, sparklines, histograms, stacked
//! bars and heatmaps. Colours come from CSS classes (`static/style.css`) so light and dark
//! schemes both work; every label passes through [`esc`].

use std::fmt::Write;

/// Escapes text for HTML/SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub use crate::text::{clock as fmt_clock, datetime as fmt_datetime, fmt_ms};

/// About `count` round tick values covering [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if hi <= lo || hi.is_nan() || lo.is_nan() || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / count.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    // Ticks by index, not by adding steps: near 1.7e18 (nanosecond timestamps) a small
    // step does not change a float, and the sum would never reach `hi`.
    let first = (lo / step).ceil();
    let mut ticks: Vec<f64> = (0..MAX_TICKS)
        .map(|k| (first + k as f64) * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .map(|t| if t.abs() < step * 1e-9 { 0.0 } else { t })
        .collect();
    ticks.dedup();
    if ticks.is_empty() {
        ticks.push(lo);
    }
    ticks
}

/// Most ticks on an axis, whatever the range.
const MAX_TICKS: usize = 64;

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub struct LineSeries<'a> {
    pub name: &'a str,
    /// CSS class picking the colour: `s0`..`s5`.
    pub class: &'a str,
    /// (unix nanoseconds, value)
    pub points: &'a [(i64, f64)],
}

/// A time-series line chart with axes, ticks, units, a legend and hover titles.
/// `min_top` keeps small values from filling the whole height (4 messages for counts).
pub fn line_chart(
    series: &[LineSeries<'_>],
    from: i64,
    to: i64,
    y_unit: &str,
    min_top: f64,
    format_y: fn(f64) -> String,
) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 230.0, 56.0, 12.0, 22.0, 42.0);
    let max_y = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let y_ticks = nice_ticks(0.0, max_y.max(min_top).max(1e-9), 4);
    let y_top = y_ticks.last().copied().unwrap_or(1.0).max(max_y).max(1e-9);
    let span = (to - from).max(1) as f64;
    let x = |t: i64| left + (t - from) as f64 / span * (w - left - right);
    let y = |v: f64| top + (1.0 - v / y_top) * (h - top - bottom);
    let mut svg = String::new();
    let _ = write!(svg, r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#, esc(y_unit));
    for t in &y_ticks {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            w - right,
            left - 6.0,
            y(*t) + 4.0,
            esc(&format_y(*t)),
            y = y(*t)
        );
    }
    for t in nice_ticks(from as f64, to as f64, 5) {
        let tx = x(t as i64);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{tx:.1}" x2="{tx:.1}" y1="{top}" y2="{}"/><text class="tick" x="{tx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            h - bottom,
            h - bottom + 16.0,
            fmt_clock(t as i64)
        );
    }
    let _ = write!(svg, r#"<text class="axis" x="{left}" y="{}">time (UTC)</text>"#, h - 6.0);
    let _ = write!(svg, r#"<text class="axis" x="4" y="12">{}</text>"#, esc(y_unit));
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let path: Vec<String> = s.points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
        let _ = write!(svg, r#"<polyline class="line {}" points="{}"/>"#, esc(s.class), path.join(" "));
        for (t, v) in s.points {
            let _ = write!(
                svg,
                r#"<circle class="dot {}" cx="{:.1}" cy="{:.1}" r="2.5"><title>{} {}: {}</title></circle>"#,
                esc(s.class),
                x(*t),
                y(*v),
                esc(s.name),
                fmt_clock(*t),
                esc(&format_y(*v))
            );
        }
    }
    svg.push_str("</svg>");
    if series.len() > 1 {
        svg.push_str(r#"<div class="legend">"#);
        for s in series {
            let _ = write!(svg, r#"<span><i class="swatch {}"></i>{}</span>"#, esc(s.class), esc(s.name));
        }
        svg.push_str("</div>");
    }
    svg
}

/// "2.50/s": a rate per second.
pub fn fmt_rate(r: f64) -> String {
    format!("{r:.2}/s")
}

pub fn fmt_count(v: f64) -> String {
    fmt_num(v)
}

/// A small trend line without axes, for table cells.
pub fn sparkline(values: &[f64], title: &str) -> String {
    let (w, h) = (100.0, 24.0);
    if values.len() < 2 {
        return format!(r#"<svg class="spark" viewBox="0 0 {w} {h}"><title>{}</title></svg>"#, esc(title));
    }
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1e-9);
    let step = w / (values.len() - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, h - 2.0 - v / max * (h - 4.0)))
        .collect();
    format!(
        r#"<svg class="spark" viewBox="0 0 {w} {h}"><title>{}</title><polyline class="line s0" points="{}"/></svg>"#,
        esc(title),
        points.join(" ")
    )
}

/// Vertical bars with a label under each: `(label, count, title)`.
pub fn histogram(bars: &[(String, f64, String)], x_unit: &str, y_unit: &str) -> String {
    let (w, h, left, bottom, top) = (640.0, 200.0, 48.0, 42.0, 10.0);
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max);
    let ticks = nice_ticks(0.0, max.max(1.0), 4);
    let y_top = ticks.last().copied().unwrap_or(1.0).max(max).max(1e-9);
    let n = bars.len().max(1) as f64;
    let bw = (w - left - 8.0) / n;
    let mut svg = format!(r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="histogram">"#);
    for t in &ticks {
        let y = top + (1.0 - t / y_top) * (h - top - bottom);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            w - 8.0,
            left - 6.0,
            y + 4.0,
            fmt_num(*t)
        );
    }
    for (i, (label, count, title)) in bars.iter().enumerate() {
        let bh = count / y_top * (h - top - bottom);
        let x = left + i as f64 * bw;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}"><title>{}</title></rect>"#,
            x + 1.0,
            h - bottom - bh,
            (bw - 2.0).max(1.0),
            esc(title)
        );
        if bars.len() <= 16 || i % 2 == 0 {
            let _ = write!(
                svg,
                r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x + bw / 2.0,
                h - bottom + 14.0,
                esc(label)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{left}" y="{}">{}</text><text class="axis" x="4" y="{}">{}</text></svg>"#,
        h - 6.0,
        esc(x_unit),
        top + 2.0,
        esc(y_unit)
    );
    svg
}

/// One horizontal bar per row, split into segments: `(row label, [(segment class, value)])`.
pub fn stacked_bars(rows: &[(String, Vec<(&str, f64)>)], legend: &[(&str, &str)], format: fn(f64) -> String) -> String {
    let (w, row_h, left) = (640.0, 22.0, 210.0);
    let h = row_h * rows.len() as f64 + 8.0;
    let max = rows.iter().map(|(_, segs)| segs.iter().map(|s| s.1).sum::<f64>()).fold(0.0f64, f64::max).max(1e-9);
    let mut svg = format!(r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="breakdown">"#);
    for (i, (label, segments)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let _ = write!(
            svg,
            r#"<text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 14.0,
            esc(label)
        );
        let mut x = left;
        let total: f64 = segments.iter().map(|s| s.1).sum();
        for (class, v) in segments {
            let bw = v / max * (w - left - 70.0);
            if bw > 0.0 {
                let _ = write!(
                    svg,
                    r#"<rect class="seg {}" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{}"><title>{}: {}</title></rect>"#,
                    esc(class),
                    row_h - 6.0,
                    esc(legend.iter().find(|l| l.0 == *class).map_or(*class, |l| l.1)),
                    esc(&format(*v))
                );
            }
            x += bw;
        }
        let _ =
            write!(svg, r#"<text class="tick" x="{:.1}" y="{:.1}">{}</text>"#, x + 4.0, y + 14.0, esc(&format(total)));
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (class, name) in legend {
        let _ = write!(svg, r#"<span><i class="swatch {}"></i>{}</span>"#, esc(class), esc(name));
    }
    svg.push_str("</div>");
    svg
}

/// One row of [`paired_bars`]: a label (linked), and two values drawn side by side.
pub struct PairedBar {
    pub label: String,
    pub href: String,
    pub first: f64,
    pub second: f64,
    /// Shown after the bars, e.g. "+820 ms".
    pub note: String,
}

/// Two bars per row (e.g. typical vs tail), each label a link, values in `format`.
pub fn paired_bars(rows: &[PairedBar], names: (&str, &str), format: fn(f64) -> String) -> String {
    let (w, row_h, left) = (640.0, 30.0, 230.0);
    let h = row_h * rows.len() as f64 + 8.0;
    let max = rows.iter().map(|r| r.first.max(r.second)).fold(0.0f64, f64::max).max(1e-9);
    let span = w - left - 90.0;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{} vs {}">"#,
        esc(names.0),
        esc(names.1)
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let _ = write!(
            svg,
            r#"<a href="{}"><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text></a>"#,
            esc(&r.href),
            left - 6.0,
            y + 16.0,
            esc(&r.label)
        );
        for (k, (class, name, v)) in
            [("typical", names.0, r.first), ("tail", names.1, r.second)].into_iter().enumerate()
        {
            let bw = (v / max * span).max(if v > 0.0 { 1.0 } else { 0.0 });
            let _ = write!(
                svg,
                r#"<rect class="seg {class}" x="{left}" y="{:.1}" width="{bw:.1}" height="11"><title>{}: {}</title></rect>"#,
                y + 2.0 + k as f64 * 12.0,
                esc(name),
                esc(&format(v))
            );
        }
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
            left + r.first.max(r.second) / max * span + 6.0,
            y + 16.0,
            esc(&r.note)
        );
    }
    let _ = write!(
        svg,
        r#"</svg><div class="legend"><span><i class="swatch typical"></i>{}</span><span><i class="swatch tail"></i>{}</span></div>"#,
        esc(names.0),
        esc(names.1)
    );
    svg
}

/// Rows x time-bucket columns, colour by count, with a legend and a title per cell.
pub fn heatmap(rows: &[String], from: i64, bucket_ns: i64, columns: usize, cells: &[(usize, usize, i64)]) -> String {
    let (left, cell_w, cell_h, top) = (220.0, (640.0 - 220.0) / columns.max(1) as f64, 18.0, 4.0);
    let h = top + cell_h * rows.len() as f64 + 40.0;
    let max = cells.iter().map(|c| c.2).max().unwrap_or(0).max(1);
    let mut svg =
        format!(r#"<svg class="chart heatmap" viewBox="0 0 640 {h}" role="img" aria-label="retries heatmap">"#);
    for (i, row) in rows.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            top + i as f64 * cell_h + 13.0,
            esc(row)
        );
    }
    for (r, c, count) in cells {
        // Five colour steps, so one retry is visible next to a storm of hundreds.
        let level = ((*count as f64).ln_1p() / (max as f64).ln_1p() * 4.0).ceil().clamp(1.0, 4.0) as usize;
        let start = from + *c as i64 * bucket_ns;
        let _ = write!(
            svg,
            r#"<rect class="cell h{level}" x="{:.1}" y="{:.1}" width="{:.1}" height="{}"><title>{} at {}: {count} retries</title></rect>"#,
            left + *c as f64 * cell_w,
            top + *r as f64 * cell_h,
            (cell_w - 1.0).max(1.0),
            cell_h - 2.0,
            esc(&rows[*r]),
            fmt_clock(start)
        );
    }
    let axis_y = top + cell_h * rows.len() as f64 + 14.0;
    for k in 0..=4 {
        let c = columns * k / 4;
        let anchor = match k {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{axis_y:.1}" text-anchor="{anchor}">{}</text>"#,
            left + c as f64 * cell_w,
            fmt_clock(from + c as i64 * bucket_ns)
        );
    }
    svg.push_str("</svg><div class=\"legend\"><span>fewer</span>");
    for level in 1..=4 {
        let _ = write!(svg, r#"<i class="swatch cell h{level}"></i>"#);
    }
    let _ = write!(svg, "<span>more (max {max} per cell)</span></div>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        for (ms, want) in
            [(0.5, "500 µs"), (3.25, "3.2 ms"), (42.0, "42 ms"), (1234.0, "1.23 s"), (90_000.0, "1.5 min")]
        {
            assert_eq!(fmt_ms(ms), want);
        }
        assert_eq!(fmt_clock(3_723_000_000_000), "01:02:03");
        assert_eq!(fmt_datetime(1_700_000_000_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(esc("<script>\"&'"), "&lt;script&gt;&quot;&amp;&#39;");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 100.0, 4), vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(nice_ticks(0.0, 9.0, 4), vec![0.0, 2.5, 5.0, 7.5]);
        assert_eq!(nice_ticks(5.0, 5.0, 4), vec![5.0]);
        // Nanosecond timestamps with a range far below their float precision: ends, few ticks.
        let lo = 1.7e18;
        for width in [1.0, 256.0, 1e3, 1e9] {
            let ticks = nice_ticks(lo, lo + width, 5);
            assert!(!ticks.is_empty() && ticks.len() <= MAX_TICKS, "{width}: {}", ticks.len());
        }
        assert!(nice_ticks(0.0, f64::MAX, 4).len() <= MAX_TICKS);
    }

    #[test]
    fn charts_escape_labels() {
        let bars = vec![("<b>".to_string(), 3.0, "<i>".to_string())];
        let svg = histogram(&bars, "ms", "flows");
        assert!(!svg.contains("<b>") && !svg.contains("<i>") && svg.contains("&lt;b&gt;"));
        let svg = heatmap(&["<x>".into()], 0, 10, 4, &[(0, 1, 5)]);
        assert!(svg.contains("&lt;x&gt;") && svg.contains("class=\"cell h4\""));
        let svg = line_chart(
            &[LineSeries { name: "<q>", class: "s0", points: &[(0, 1.0), (10, 2.0)] }],
            0,
            10,
            "depth",
            4.0,
            fmt_count,
        );
        assert!(svg.contains("polyline") && !svg.contains("<q>"));
    }
}
