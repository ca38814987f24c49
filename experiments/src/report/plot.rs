//! The report's plot: test accuracy against trainable share, as SVG.

use std::fmt::Write as _;

use super::summary::SummaryRow;
use crate::harness::record::RunRecord;

/// Series colours of both plots (the accuracy plot cycles through the first nine).
const COLOURS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf",
    "#bcbd22", "#ff7f0e",
];

/// An SVG plot for one task: mean test accuracy against trainable share (log x), with 95% CI
/// error bars, one marker shape per adapter variant (rows of forward form `form`, joined over
/// ranks), one
/// square per other method, and a dashed vertical line at `break_even_share`, the trainable
/// share at which adapters would be as large as the convs they adapt.
pub fn plot_svg(
    summary: &[SummaryRow],
    task: &str,
    variants: &[String],
    break_even_share: f64,
    form: &str,
) -> String {
    let rows: Vec<&SummaryRow> = summary
        .iter()
        .filter(|r| {
            r.task == task
                && r.forward.as_deref().is_none_or(|f| f == form)
                && r.trainable_share > 0.0
        })
        .collect();
    let (w, h, left, right, top, bottom) = (760.0, 460.0, 70.0, 190.0, 40.0, 50.0);
    let lo_of = |r: &SummaryRow| r.ci95.map_or(r.mean, |c| c[0]);
    let hi_of = |r: &SummaryRow| r.ci95.map_or(r.mean, |c| c[1]);
    let xs: Vec<f64> = rows.iter().map(|r| r.trainable_share.log10()).collect();
    let x0 = xs
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(-1.0)
        .floor();
    let x1 = xs
        .iter()
        .copied()
        .chain([break_even_share.max(1e-9).log10()])
        .fold(f64::NEG_INFINITY, f64::max)
        .max(0.0)
        .ceil();
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let ylo = rows.iter().map(|&r| lo_of(r)).fold(f64::INFINITY, f64::min);
    let yhi = rows
        .iter()
        .map(|&r| hi_of(r))
        .fold(f64::NEG_INFINITY, f64::max);
    // Accuracies live in [0, 1]: a wide interval (two seeds) is cut at the frame, not allowed
    // to stretch the axis.
    let (mut y0, mut y1) = (
        ((ylo.max(0.0)) * 20.0).floor() / 20.0,
        ((yhi.min(1.0)) * 20.0).ceil() / 20.0,
    );
    if !y0.is_finite() || !y1.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if y1 <= y0 {
        y1 = y0 + 0.05;
    }
    let tick = nice_step(y1 - y0, 8);
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (y.clamp(y0, y1) - y0) / (y1 - y0) * (h - top - bottom);
    let colours = &COLOURS[..9];
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{task}: test accuracy ({}) vs trainable share</text>"#,
        w / 2.0,
        if rows.iter().any(|r| r.ci95.is_some()) {
            "mean, 95% CI bars"
        } else {
            "one seed: no CI"
        }
    );
    for decade in (x0 as i32)..=(x1 as i32) {
        let x = px(f64::from(decade));
        let digits = (-(decade + 2)).max(0) as usize;
        let label = format!("{:.digits$}%", 100.0 * 10f64.powi(decade));
        let _ = writeln!(
            svg,
            r##"<line class="tick" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    let steps = ((y1 - y0) / tick).floor().max(1.0) as usize;
    for i in 0..=steps {
        let y = y0 + tick * i as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{y:.2}</text>"##,
            py(y),
            w - right,
            py(y),
            left - 6.0,
            py(y) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">trainable parameters / base network parameters (log scale)</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">test accuracy</text>"#,
        (left + w - right) / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    let bx = px(break_even_share.max(1e-9).log10());
    let _ = writeln!(
        svg,
        r##"<line class="break-even" x1="{bx:.1}" y1="{top}" x2="{bx:.1}" y2="{}" stroke="#555" stroke-dasharray="5,4"/><text x="{:.1}" y="{}" text-anchor="end" fill="#555">break-even</text>"##,
        h - bottom,
        bx - 4.0,
        top + 12.0
    );
    let mut legend = 0;
    let mut add_legend = |svg: &mut String, shape: &str, label: &str| {
        let y = top + 10.0 + 18.0 * f64::from(legend);
        let x = w - right + 20.0;
        let _ = writeln!(
            svg,
            r#"<g transform="translate({x},{y})">{shape}</g><text x="{}" y="{}">{label}</text>"#,
            x + 14.0,
            y + 4.0
        );
        legend += 1;
    };
    let marker = |kind: usize, c: &str| -> String {
        match kind % 3 {
            0 => format!(r#"<circle class="marker" r="4" fill="{c}"/>"#),
            1 => format!(r#"<rect class="marker" x="-4" y="-4" width="8" height="8" fill="{c}"/>"#),
            _ => format!(r#"<polygon class="marker" points="0,-5 4.5,4 -4.5,4" fill="{c}"/>"#),
        }
    };
    let draw = |svg: &mut String, r: &SummaryRow, shape: &str, c: &str| {
        let x = px(r.trainable_share.log10());
        if let Some([lo, hi]) = r.ci95 {
            let _ = writeln!(
                svg,
                r#"<line class="err" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{c}"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}"/>"#,
                py(lo),
                py(hi),
                x - 3.0,
                py(lo),
                x + 3.0,
                py(lo),
                x - 3.0,
                py(hi),
                x + 3.0,
                py(hi)
            );
        }
        let _ = writeln!(
            svg,
            r#"<g transform="translate({x:.1},{:.1})">{shape}</g>"#,
            py(r.mean)
        );
    };
    let mut colour = colours.iter().cycle();
    for (k, variant) in variants.iter().enumerate() {
        let mut points: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| &r.method == variant)
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.trainable_share.total_cmp(&b.trainable_share));
        let c: &str = colour.next().copied().unwrap_or("#000");
        let path: Vec<String> = points
            .iter()
            .map(|r| format!("{:.1},{:.1}", px(r.trainable_share.log10()), py(r.mean)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="1.5"/>"#,
            path.join(" ")
        );
        let shape = marker(k, c);
        for &r in &points {
            draw(&mut svg, r, &shape, c);
            if let Some(rank) = r.rank {
                let _ = writeln!(
                    svg,
                    r#"<text class="rank" x="{:.1}" y="{:.1}" font-size="10" fill="{c}">r{rank}</text>"#,
                    px(r.trainable_share.log10()) + 6.0,
                    py(r.mean) - 6.0
                );
            }
        }
        add_legend(&mut svg, &shape, variant);
    }
    for r in rows
        .iter()
        .copied()
        .filter(|r| !variants.contains(&r.method))
    {
        let c: &str = colour.next().copied().unwrap_or("#000");
        let shape = format!(r#"<polygon class="marker" points="0,-5 5,0 0,5 -5,0" fill="{c}"/>"#);
        draw(&mut svg, r, &shape, c);
        add_legend(&mut svg, &shape, &r.method);
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round tick step (1, 2 or 5 times a power of ten) giving at most `max` ticks over `span`.
fn nice_step(span: f64, max: usize) -> f64 {
    let raw = span / max.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Learning curves of one task, as SVG: validation accuracy (left) and training loss (right)
/// against the step, the mean over each row's final runs at each evaluation, one line per
/// (method, rank) of the rows shown in `form` (and the dense methods).
pub fn curves_svg(records: &[RunRecord], task: &str, form: &str) -> String {
    type Curve = (String, Vec<(f64, f64)>, Vec<(f64, f64)>);
    let mut rows: Vec<(String, Vec<&RunRecord>)> = Vec::new();
    for r in records.iter().filter(|r| {
        r.phase == "final"
            && r.task == task
            && r.steps > 0
            && r.forward.as_deref().is_none_or(|f| f == form)
    }) {
        let name = format!(
            "{}{}",
            r.method,
            r.rank.map_or(String::new(), |k| format!(" r{k}"))
        );
        match rows.iter_mut().find(|(n, _)| *n == name) {
            Some((_, runs)) => runs.push(r),
            None => rows.push((name, vec![r])),
        }
    }
    let mean_curve = |runs: &[&RunRecord], of: &dyn Fn(&RunRecord) -> &Vec<f64>| {
        let first = runs[0];
        (0..first.eval_steps.len())
            .filter_map(|i| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| of(r).get(i).copied())
                    .filter(|v| v.is_finite())
                    .collect();
                (!v.is_empty()).then(|| {
                    (
                        first.eval_steps[i] as f64,
                        v.iter().sum::<f64>() / v.len() as f64,
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    let curves: Vec<Curve> = rows
        .iter()
        .map(|(name, runs)| {
            (
                name.clone(),
                mean_curve(runs, &|r| &r.val_curve),
                mean_curve(runs, &|r| &r.loss_curve),
            )
        })
        .collect();
    let (pw, ph, gap, left, top, bottom, legend) = (360.0, 300.0, 70.0, 60.0, 40.0, 45.0, 170.0);
    let w = left + 2.0 * pw + gap + legend;
    let h = top + ph + bottom;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{:.1}" y="22" text-anchor="middle" font-size="15">{task}: validation accuracy and training loss per evaluation (mean over final runs)</text>
"#,
        (left + 2.0 * pw + gap) / 2.0
    );
    let colours = COLOURS;
    let xmax = curves
        .iter()
        .flat_map(|c| c.1.iter().chain(&c.2).map(|p| p.0))
        .fold(1.0f64, f64::max);
    for (panel, label) in [(0usize, "validation accuracy"), (1, "training loss")] {
        let x0 = left + panel as f64 * (pw + gap);
        let values: Vec<f64> = curves
            .iter()
            .flat_map(|c| if panel == 0 { &c.1 } else { &c.2 }.iter().map(|p| p.1))
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        let px = |x: f64| x0 + x / xmax * pw;
        let py = |y: f64| top + ph - (y - lo) / (hi - lo) * ph;
        let _ = writeln!(
            svg,
            r##"<rect x="{x0}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/><text x="{:.1}" y="{}" text-anchor="middle">step</text><text x="{:.1}" y="{:.1}" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{label}</text><text x="{x0}" y="{}" font-size="10">{lo:.3}</text><text x="{x0}" y="{}" font-size="10">{hi:.3}</text><text x="{:.1}" y="{}" font-size="10" text-anchor="end">{xmax}</text>"##,
            x0 + pw / 2.0,
            h - 10.0,
            x0 - 40.0,
            top + ph / 2.0,
            x0 - 40.0,
            top + ph / 2.0,
            top + ph + 14.0,
            top - 4.0,
            x0 + pw,
            top + ph + 14.0
        );
        for (k, c) in curves.iter().enumerate() {
            let points = if panel == 0 { &c.1 } else { &c.2 };
            let colour = colours[k % colours.len()];
            let dash = if k >= colours.len() {
                r#" stroke-dasharray="4,3""#
            } else {
                ""
            };
            let path: Vec<String> = points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline class="curve" points="{}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>"#,
                path.join(" ")
            );
        }
    }
    for (k, c) in curves.iter().enumerate() {
        let y = top + 8.0 + 16.0 * k as f64;
        let x = left + 2.0 * pw + gap + 10.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x + 18.0,
            colours[k % colours.len()],
            x + 24.0,
            y + 4.0,
            c.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::record::tests::record;
    use crate::report::summary::summarize;
    use crate::report::summary::tests::adapter;

    #[test]
    fn plot_has_error_bars_log_axis_and_break_even() {
        let mut runs = Vec::new();
        for s in 0..3 {
            runs.push(record(
                &format!("full-{s}"),
                "full",
                s,
                0.8 + 0.01 * s as f64,
            ));
            runs.push(adapter(s, 0.7 + 0.01 * s as f64, 1, 0.01));
            runs.push(adapter(s, 0.75 + 0.01 * s as f64, 4, 0.04));
        }
        let summary = summarize(&runs, "full");
        let svg = plot_svg(&summary, "t", &["locon".into()], 0.99, "weight");
        // Three rows with a CI each: three error bars; two locon points joined by a line.
        assert_eq!(svg.matches(r#"class="err""#).count(), 3, "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches(r#"class="break-even""#).count(), 1);
        // Log axis: one tick per decade from 1% to 100%.
        assert_eq!(svg.matches(r#"class="tick""#).count(), 3, "{svg}");
        assert!(svg.contains(">1%<") && svg.contains(">100%<"));
        // Each adapter point carries its rank.
        assert_eq!(svg.matches(r#"class="rank""#).count(), 2, "{svg}");
        assert!(svg.contains(">r1<") && svg.contains(">r4<"));
        // The y axis stays within [0, 1] with at most 9 ticks, whatever the intervals.
        assert!(svg.matches("text-anchor=\"end\">").count() <= 12, "{svg}");
        // One curve per row and panel: full, locon r1, locon r4 twice.
        let curves = curves_svg(&runs, "t", "weight");
        assert_eq!(curves.matches(r#"class="curve""#).count(), 6, "{curves}");
    }

    #[test]
    fn tick_steps_are_round_and_few() {
        assert_eq!(nice_step(1.0, 8), 0.2);
        assert_eq!(nice_step(0.3, 8), 0.05);
        assert_eq!(nice_step(0.05, 8), 0.01);
        assert!((nice_step(2.0, 8) - 0.5).abs() < 1e-12);
    }
}
