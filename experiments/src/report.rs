//! `results.json`, `report.md` and the accuracy-vs-parameters plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The task and data setting, e.g. `mnist-8000`.
    pub task: String,
    /// The method, e.g. `full`, `head`, `hf`.
    pub method: String,
    /// Adapter rank, or `None` for methods without one.
    pub rank: Option<usize>,
    /// `"weight"` or `"bypass"` for adapters, `None` otherwise.
    pub forward: Option<String>,
    /// Seed of the run.
    pub seed: u64,
    /// Training examples.
    pub train_examples: usize,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// All parameters.
    pub total_params: usize,
    /// Test accuracy in `0..1` (balanced accuracy for the 3D task).
    pub test_accuracy: f64,
    /// Training wall time.
    pub train_seconds: f64,
    /// Peak resident memory during the run, or `None` where it cannot be measured.
    pub peak_memory_bytes: Option<u64>,
}

/// The whole output of one binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// `compare` or `inflate3d`.
    pub experiment: String,
    /// The device it ran on.
    pub device: String,
    /// The full configuration, as recorded.
    pub config: serde_json::Value,
    /// Every run.
    pub runs: Vec<Run>,
}

/// Mean and sample standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Runs grouped by `(task, method, rank, forward)`, in first-seen order of tasks.
pub struct Group<'a> {
    /// Task.
    pub task: &'a str,
    /// Method.
    pub method: &'a str,
    /// Rank.
    pub rank: Option<usize>,
    /// Forward mode.
    pub forward: Option<&'a str>,
    /// The runs (one per seed).
    pub runs: Vec<&'a Run>,
}

impl Group<'_> {
    /// Mean ± std of the test accuracy.
    pub fn accuracy(&self) -> (f64, f64) {
        mean_std(
            &self
                .runs
                .iter()
                .map(|r| r.test_accuracy)
                .collect::<Vec<_>>(),
        )
    }

    /// Mean trainable parameters.
    pub fn trainable(&self) -> f64 {
        mean_std(
            &self
                .runs
                .iter()
                .map(|r| r.trainable_params as f64)
                .collect::<Vec<_>>(),
        )
        .0
    }
}

/// Task order, method order, rank, forward mode.
type GroupKey = (usize, usize, Option<usize>, Option<String>);

/// Group the runs.
pub fn groups(runs: &[Run]) -> Vec<Group<'_>> {
    let mut map: BTreeMap<GroupKey, Vec<&Run>> = BTreeMap::new();
    let mut task_order: Vec<&str> = Vec::new();
    let mut method_order: Vec<&str> = Vec::new();
    for run in runs {
        if !task_order.contains(&run.task.as_str()) {
            task_order.push(&run.task);
        }
        if !method_order.contains(&run.method.as_str()) {
            method_order.push(&run.method);
        }
        let t = task_order.iter().position(|t| *t == run.task).unwrap_or(0);
        let m = method_order
            .iter()
            .position(|m| *m == run.method)
            .unwrap_or(0);
        map.entry((t, m, run.rank, run.forward.clone()))
            .or_default()
            .push(run);
    }
    map.into_values()
        .map(|runs| Group {
            task: &runs[0].task,
            method: &runs[0].method,
            rank: runs[0].rank,
            forward: runs[0].forward.as_deref(),
            runs,
        })
        .collect()
}

/// The Markdown table of a results file: one row per task, method, rank and forward mode.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| task | method | rank | forward | seeds | trainable params | trainable % | test accuracy (mean ± std) | train s (mean) | peak MiB (max) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for g in groups(&results.runs) {
        let (acc, std) = g.accuracy();
        let total = g.runs[0].total_params as f64;
        let secs = mean_std(&g.runs.iter().map(|r| r.train_seconds).collect::<Vec<_>>()).0;
        let peak = g.runs.iter().filter_map(|r| r.peak_memory_bytes).max();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {:.3} | {:.4} ± {:.4} | {:.1} | {} |",
            g.task,
            g.method,
            g.rank.map_or("-".into(), |r| r.to_string()),
            g.forward.unwrap_or("-"),
            g.runs.len(),
            g.trainable(),
            100.0 * g.trainable() / total.max(1.0),
            acc,
            std,
            secs,
            peak.map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1048576.0)),
        );
    }
    out
}

/// An SVG plot of accuracy against trainable parameters (log x) for one task: one line per
/// adapter variant over its ranks (weight-space runs), one marker per other method.
pub fn plot_svg(results: &Results, task: &str, variants: &[&str]) -> String {
    let groups: Vec<Group<'_>> = groups(&results.runs)
        .into_iter()
        .filter(|g| g.task == task && g.forward != Some("bypass"))
        .collect();
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 170.0, 40.0, 50.0);
    let xs: Vec<f64> = groups
        .iter()
        .map(|g| g.trainable().max(1.0).log10())
        .collect();
    let ys: Vec<f64> = groups.iter().map(|g| g.accuracy().0).collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min).floor(),
        xs.iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .ceil()
            .max(1.0),
    );
    let (y0, y1) = (
        (ys.iter().copied().fold(f64::INFINITY, f64::min) * 20.0).floor() / 20.0,
        (ys.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 20.0).ceil() / 20.0,
    );
    let (y0, y1) = if y1 > y0 {
        (y0, y1)
    } else {
        (y0 - 0.05, y0 + 0.05)
    };
    let px = |x: f64| left + (x - x0) / (x1 - x0).max(1e-9) * (w - left - right);
    let py = |y: f64| h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom);
    let colours = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{task}: test accuracy vs trainable parameters</text>"#,
        w / 2.0
    );
    // Axes, ticks and grid.
    for decade in (x0 as i32)..=(x1 as i32) {
        let x = px(f64::from(decade));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">1e{decade}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    let steps = ((y1 - y0) / 0.05).round().max(1.0) as usize;
    for i in 0..=steps {
        let y = y0 + (y1 - y0) * i as f64 / steps as f64;
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
        r#"<text x="{}" y="{}" text-anchor="middle">trainable parameters (log scale)</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">test accuracy</text>"#,
        (left + w - right) / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    let mut legend = 0;
    let mut add_legend = |svg: &mut String, colour: &str, label: &str, line: bool| {
        let y = top + 10.0 + 18.0 * f64::from(legend);
        let x = w - right + 14.0;
        if line {
            let _ = writeln!(
                svg,
                r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2"/>"#,
                x + 20.0
            );
        } else {
            let _ = writeln!(
                svg,
                r#"<rect x="{}" y="{}" width="8" height="8" fill="{colour}"/>"#,
                x + 6.0,
                y - 4.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{label}</text>"#,
            x + 26.0,
            y + 4.0
        );
        legend += 1;
    };
    let mut colour = colours.iter().cycle();
    for variant in variants {
        let mut points: Vec<(f64, f64)> = groups
            .iter()
            .filter(|g| g.method == *variant && g.rank.is_some())
            .map(|g| (g.trainable().max(1.0).log10(), g.accuracy().0))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = colour.next().unwrap_or(&"#000");
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y) in &points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#,
                px(*x),
                py(*y)
            );
        }
        add_legend(&mut svg, c, variant, true);
    }
    for g in groups.iter().filter(|g| g.rank.is_none()) {
        let c = colour.next().unwrap_or(&"#000");
        let (x, y) = (px(g.trainable().max(1.0).log10()), py(g.accuracy().0));
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{c}"/>"#,
            x - 4.5,
            y - 4.5
        );
        add_legend(&mut svg, c, g.method, false);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Write `results.json`.
///
/// # Errors
/// I/O errors.
pub fn write_json(dir: &Path, results: &Results) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("results.json"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(method: &str, rank: Option<usize>, seed: u64, acc: f64, trainable: usize) -> Run {
        Run {
            task: "t".into(),
            method: method.into(),
            rank,
            forward: rank.map(|_| "weight".into()),
            seed,
            train_examples: 10,
            trainable_params: trainable,
            total_params: 1000,
            test_accuracy: acc,
            train_seconds: 1.0,
            peak_memory_bytes: None,
        }
    }

    #[test]
    fn table_and_plot() {
        let results = Results {
            experiment: "x".into(),
            device: "cpu".into(),
            config: serde_json::json!({}),
            runs: vec![
                run("full", None, 0, 0.9, 1000),
                run("full", None, 1, 0.8, 1000),
                run("hf", Some(1), 0, 0.7, 10),
                run("hf", Some(2), 0, 0.75, 20),
            ],
        };
        let table = table(&results);
        assert!(
            table.contains("| t | full | - | - | 2 | 1000 | 100.000 | 0.8500 ± 0.0707 |"),
            "{table}"
        );
        assert!(
            table.contains("| t | hf | 2 | weight | 1 | 20 | 2.000 | 0.7500 ± 0.0000 |"),
            "{table}"
        );
        let svg = plot_svg(&results, "t", &["hf"]);
        assert!(svg.contains("<polyline"));
        assert_eq!(svg.matches("<circle").count(), 2);
    }
}
