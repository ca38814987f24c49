//! Summary, `results.json`, `report.md` and the plots, all regenerated from the run records.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::record::{RunRecord, write_atomic};
use crate::stats::{Estimate, estimate, paired_difference};

/// One entry of the summary: the final runs of a (task, method, rank, forward) over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Task.
    pub task: String,
    /// Method.
    pub method: String,
    /// Rank asked for.
    pub rank: Option<usize>,
    /// `weight`, `bypass`, `auto`, or `None` for methods without adapters.
    pub forward: Option<String>,
    /// Mean test accuracy.
    pub mean: f64,
    /// Its 95% confidence interval (Student t over seeds); `None` with one seed.
    pub ci95: Option<[f64; 2]>,
    /// Seeds.
    pub n: usize,
    /// Paired difference (this method minus the reference, same seeds) with its 95% CI; `None`
    /// for the reference itself or without a reference.
    pub diff_vs_full: Option<Estimate>,
    /// Runs stopped by a NaN or infinite loss (their accuracy is their last good checkpoint's).
    pub diverged: usize,
    /// Trainable parameters (mean over seeds; the same for every seed).
    pub trainable_params: f64,
    /// Trainable parameters / the base network's own parameters.
    pub trainable_share: f64,
    /// Adapter parameters / the parameters of the conv weights they adapt.
    pub adapter_share_of_adapted: Option<f64>,
    /// Learning rates used (one unless the sweep was rerun).
    pub lr: Vec<f64>,
    /// Whether the chosen rate sits at the edge of its grid.
    pub lr_at_grid_edge: bool,
    /// Optimizer steps.
    pub steps: usize,
    /// Mean training seconds.
    pub train_seconds: f64,
    /// Mean steps per second.
    pub steps_per_second: f64,
    /// Largest peak resident memory.
    pub peak_memory_bytes: Option<u64>,
    /// Layers whose rank was capped: `path: rank r (asked R): why`.
    pub capped: Vec<String>,
}

/// Everything a binary writes to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// `compare` or `inflate3d`.
    pub experiment: String,
    /// The configuration (`config.json`).
    pub config: serde_json::Value,
    /// Every run record, sweeps included.
    pub runs: Vec<RunRecord>,
    /// One entry per (task, method, rank, forward) of the final runs.
    pub summary: Vec<SummaryRow>,
}

type Key = (usize, usize, Option<usize>, Option<String>);

/// The summary of the final runs, in first-seen order of tasks and methods, then rank and
/// forward. `reference` names the method every other is paired against (same task, same seed).
pub fn summarize(records: &[RunRecord], reference: &str) -> Vec<SummaryRow> {
    let finals: Vec<&RunRecord> = records.iter().filter(|r| r.phase == "final").collect();
    let mut tasks: Vec<&str> = Vec::new();
    let mut methods: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<&RunRecord>> = BTreeMap::new();
    for r in &finals {
        if !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
        if !methods.contains(&r.method.as_str()) {
            methods.push(&r.method);
        }
        let t = tasks.iter().position(|t| *t == r.task).unwrap_or(0);
        let m = methods.iter().position(|m| *m == r.method).unwrap_or(0);
        groups
            .entry((t, m, r.rank, r.forward.clone()))
            .or_default()
            .push(r);
    }
    let seeds_of = |runs: &[&RunRecord]| -> Vec<(u64, f64)> {
        runs.iter().map(|r| (r.seed, r.test_accuracy)).collect()
    };
    let reference_runs = |task: &str| -> Vec<(u64, f64)> {
        seeds_of(
            &finals
                .iter()
                .filter(|r| r.task == task && r.method == reference && r.forward.is_none())
                .copied()
                .collect::<Vec<_>>(),
        )
    };
    groups
        .into_values()
        .map(|mut runs| {
            runs.sort_by_key(|r| r.seed);
            let first = runs[0];
            let accs: Vec<f64> = runs.iter().map(|r| r.test_accuracy).collect();
            let e = estimate(&accs);
            let mean = |f: &dyn Fn(&RunRecord) -> f64| {
                runs.iter().map(|&r| f(r)).sum::<f64>() / runs.len() as f64
            };
            let mut lr: Vec<f64> = Vec::new();
            for r in &runs {
                if !lr.contains(&r.lr) {
                    lr.push(r.lr);
                }
            }
            let mut capped: Vec<String> = Vec::new();
            for l in runs.iter().flat_map(|r| &r.layers) {
                if let Some(why) = &l.capped {
                    let text = format!(
                        "{}: rank {} (asked {}): {why}",
                        l.path, l.rank, l.requested_rank
                    );
                    if !capped.contains(&text) {
                        capped.push(text);
                    }
                }
            }
            let is_reference = first.method == reference && first.forward.is_none();
            // Baselines that train nothing (steps 0: majority, position-only) are constants,
            // not seeds to pair; the brain report compares every network with them instead.
            let diff = if is_reference || first.steps == 0 {
                None
            } else {
                let refs = reference_runs(&first.task);
                (!refs.is_empty()).then(|| paired_difference(&seeds_of(&runs), &refs))
            };
            SummaryRow {
                task: first.task.clone(),
                method: first.method.clone(),
                rank: first.rank,
                forward: first.forward.clone(),
                mean: e.mean,
                ci95: e.ci95,
                n: e.n,
                diff_vs_full: diff,
                diverged: runs.iter().filter(|r| r.diverged).count(),
                trainable_params: mean(&|r| r.trainable_params as f64),
                trainable_share: mean(&|r| r.trainable_share),
                adapter_share_of_adapted: first
                    .adapter_share_of_adapted
                    .map(|_| mean(&|r| r.adapter_share_of_adapted.unwrap_or(f64::NAN))),
                lr,
                lr_at_grid_edge: runs
                    .iter()
                    .any(|r| r.lr_choice.as_ref().is_some_and(|c| c.at_grid_edge)),
                steps: first.steps,
                train_seconds: mean(&|r| r.train_seconds),
                steps_per_second: mean(&|r| r.steps_per_second),
                peak_memory_bytes: runs.iter().filter_map(|r| r.peak_memory_bytes).max(),
                capped,
            }
        })
        .collect()
}

/// One line for a finished run (what the binaries print without a terminal).
pub fn line(r: &RunRecord) -> String {
    let score = if r.phase == "final" {
        format!("test {:.4} ", r.test_accuracy)
    } else {
        String::new()
    };
    format!(
        "{} {} {} r{} {} seed {} lr {}: {score}val {:.4}, {} steps in {:.1} s ({:.2} steps/s){}",
        r.phase,
        r.task,
        r.method,
        r.rank.map_or("-".into(), |x| x.to_string()),
        r.forward.as_deref().unwrap_or("dense"),
        r.seed,
        r.lr,
        r.val_accuracy,
        r.steps,
        r.train_seconds,
        r.steps_per_second,
        if r.diverged { " DIVERGED" } else { "" }
    )
}

fn ci(c: Option<[f64; 2]>) -> String {
    c.map_or("n/a (1 seed)".into(), |[lo, hi]| {
        format!("[{lo:.4}, {hi:.4}]")
    })
}

fn signed_ci(c: Option<[f64; 2]>) -> String {
    c.map_or("n/a".into(), |[lo, hi]| format!("[{lo:+.4}, {hi:+.4}]"))
}

/// The Markdown table of the summary.
pub fn table(summary: &[SummaryRow], reference: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| task | method | rank | forward | seeds | lr | trainable params | trainable share | adapter / adapted | test accuracy (mean) | 95% CI | paired diff vs `{reference}` | 95% CI of diff | diverged | train s | steps/s | peak MiB |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(17));
    for r in summary {
        let diff = r.diff_vs_full.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}{} | {:.0} | {:.2}% | {} | {:.4} | {} | {} | {} | {} | {:.1} | {:.2} | {} |",
            r.task,
            r.method,
            r.rank.map_or("-".into(), |x| x.to_string()),
            r.forward.as_deref().unwrap_or("-"),
            r.n,
            r.lr.iter()
                .map(|l| format!("{l}"))
                .collect::<Vec<_>>()
                .join(", "),
            if r.lr_at_grid_edge {
                " (grid edge)"
            } else {
                ""
            },
            r.trainable_params,
            100.0 * r.trainable_share,
            r.adapter_share_of_adapted
                .map_or("-".into(), |s| format!("{:.1}%", 100.0 * s)),
            r.mean,
            ci(r.ci95),
            diff.map_or("-".into(), |d| format!("{:+.4}", d.mean)),
            diff.map_or("-".into(), |d| signed_ci(d.ci95)),
            r.diverged,
            r.train_seconds,
            r.steps_per_second,
            r.peak_memory_bytes
                .map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1_048_576.0)),
        );
    }
    out
}

/// Sentences comparing each method with the reference: a difference is called only when the
/// 95% CI of the paired difference excludes 0.
pub fn verdicts(summary: &[SummaryRow], reference: &str) -> String {
    let mut out = String::new();
    for r in summary {
        let Some(d) = &r.diff_vs_full else { continue };
        let name = format!(
            "`{}`{}{} on {}",
            r.method,
            r.rank.map_or(String::new(), |x| format!(" rank {x}")),
            r.forward
                .as_deref()
                .map_or(String::new(), |f| format!(" ({f})")),
            r.task
        );
        let verdict = if d.excludes(0.0) {
            format!(
                "{} `{reference}` by {:.4} (paired 95% CI {}, {} seeds)",
                if d.mean > 0.0 {
                    "**better** than"
                } else {
                    "**worse** than"
                },
                d.mean.abs(),
                signed_ci(d.ci95),
                d.n
            )
        } else {
            format!(
                "no difference from `{reference}` established (paired difference {:+.4}, 95% CI {} contains 0 or is undefined, {} seeds)",
                d.mean,
                signed_ci(d.ci95),
                d.n
            )
        };
        let _ = writeln!(out, "- {name}: {verdict}.");
    }
    out
}

/// Which adapter rows are within `margin` of the reference by the paired CI (its lower end
/// above `-margin`), the smallest trainable share first; and if none, the closest row of each
/// variant.
pub fn within_margin(
    summary: &[SummaryRow],
    variants: &[String],
    margin: f64,
    reference: &str,
) -> String {
    let mut out = String::new();
    for task in summary
        .iter()
        .map(|r| r.task.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let rows: Vec<&SummaryRow> = summary
            .iter()
            .filter(|r| {
                r.task == task
                    && variants.contains(&r.method)
                    && matches!(r.forward.as_deref(), None | Some("weight"))
            })
            .collect();
        let mut hits: Vec<&&SummaryRow> = rows
            .iter()
            .filter(|r| {
                r.diff_vs_full
                    .and_then(|d| d.ci95)
                    .is_some_and(|[lo, _]| lo > -margin)
            })
            .collect();
        hits.sort_by(|a, b| a.trainable_share.total_cmp(&b.trainable_share));
        if let Some(best) = hits.first() {
            let _ = writeln!(
                out,
                "- {task}: the smallest trainable share within {:.0} point(s) of `{reference}` (lower end of the paired 95% CI above -{margin}) is `{}` rank {} at {:.2}% (difference {:+.4}, CI {}).",
                margin * 100.0,
                best.method,
                best.rank.map_or("-".into(), |x| x.to_string()),
                100.0 * best.trainable_share,
                best.diff_vs_full.map_or(f64::NAN, |d| d.mean),
                signed_ci(best.diff_vs_full.and_then(|d| d.ci95)),
            );
        } else {
            let _ = writeln!(
                out,
                "- {task}: no adapter row is within {:.0} point(s) of `{reference}` by the paired CI. Closest per variant:",
                margin * 100.0
            );
            for v in variants {
                let closest = rows
                    .iter()
                    .filter(|r| &r.method == v)
                    .filter_map(|r| r.diff_vs_full.map(|d| (r, d)))
                    .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
                if let Some((r, d)) = closest {
                    let _ = writeln!(
                        out,
                        "  - `{v}` rank {} ({:.2}% trainable): {:+.4}, CI {}",
                        r.rank.map_or("-".into(), |x| x.to_string()),
                        100.0 * r.trainable_share,
                        d.mean,
                        signed_ci(d.ci95)
                    );
                }
            }
        }
    }
    out
}

/// An SVG plot for one task: mean test accuracy against trainable share (log x), with 95% CI
/// error bars, one marker shape per adapter variant (weight-space rows, joined over ranks), one
/// square per other method, and a dashed vertical line at `break_even_share`, the trainable
/// share at which adapters would be as large as the convs they adapt.
pub fn plot_svg(
    summary: &[SummaryRow],
    task: &str,
    variants: &[String],
    break_even_share: f64,
) -> String {
    let rows: Vec<&SummaryRow> = summary
        .iter()
        .filter(|r| {
            r.task == task
                && matches!(r.forward.as_deref(), None | Some("weight"))
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
    let (mut y0, mut y1) = ((ylo * 20.0).floor() / 20.0, (yhi * 20.0).ceil() / 20.0);
    if !y0.is_finite() || !y1.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if y1 <= y0 {
        y1 = y0 + 0.05;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (y.clamp(y0, y1) - y0) / (y1 - y0) * (h - top - bottom);
    let colours = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf",
        "#bcbd22",
    ];
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{task}: test accuracy (mean, 95% CI) vs trainable share</text>"#,
        w / 2.0
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

/// The forward forms side by side: for each adapter cell that also ran in bypass or auto form
/// (from the same initial factors), mean test accuracy and steps/s per form, and the form each
/// layer of the auto runs chose. Empty when no twin ran.
pub fn forms(summary: &[SummaryRow], records: &[RunRecord]) -> String {
    let twins: Vec<&SummaryRow> = summary
        .iter()
        .filter(|r| matches!(r.forward.as_deref(), Some("bypass" | "auto")))
        .collect();
    if twins.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## Forward forms\n\nThe same adapters from the same initial factors, run in \
         weight-space form (`lora_core::attach`), in bypass form and in auto form (per call the \
         cheaper of the two under `lora_conv::CostModel`); they compute the same function, so \
         accuracy differs only by float rounding and the forms differ in speed.\n\n\
         | task | method | rank | form | seeds | test accuracy (mean) | steps/s (mean) | forms per layer (auto) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut cells: Vec<(&str, &str, Option<usize>)> = Vec::new();
    for t in &twins {
        let key = (t.task.as_str(), t.method.as_str(), t.rank);
        if !cells.contains(&key) {
            cells.push(key);
        }
    }
    for (task, method, rank) in cells {
        for r in summary.iter().filter(|r| {
            r.task == task && r.method == method && r.rank == rank && r.forward.is_some()
        }) {
            let form = r.forward.as_deref().unwrap_or("-");
            let layers = if form == "auto" {
                records
                    .iter()
                    .find(|x| {
                        x.phase == "final"
                            && x.task == task
                            && x.method == method
                            && x.rank == rank
                            && x.forward.as_deref() == Some("auto")
                    })
                    .map_or("-".into(), |x| {
                        x.layers
                            .iter()
                            .map(|l| l.forward.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
            } else {
                "-".into()
            };
            let _ = writeln!(
                md,
                "| {task} | {method} | {} | {form} | {} | {:.4} | {:.2} | {layers} |",
                rank.map_or("-".into(), |x| x.to_string()),
                r.n,
                r.mean,
                r.steps_per_second
            );
        }
    }
    md
}

/// What a report needs besides the records.
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// `compare` or `inflate3d`.
    pub experiment: String,
    /// The report's title.
    pub title: String,
    /// Opening paragraphs (setup).
    pub intro: String,
    /// The method others are paired against.
    pub reference: String,
    /// Adapter method names (plotted as lines).
    pub variants: Vec<String>,
    /// Trainable share at which adapters equal the convs they adapt.
    pub break_even_share: f64,
    /// Tasks, in order (one plot each).
    pub tasks: Vec<String>,
    /// `config.json`.
    pub config: serde_json::Value,
}

/// Write `results.json`, `report.md` and one plot per task (each atomically), from the
/// records. `extra` is appended to the report.
///
/// # Errors
/// I/O errors.
pub fn write_with(
    out: &Path,
    cx: &ReportContext,
    records: &[RunRecord],
    extra: &str,
) -> Result<Vec<SummaryRow>> {
    let summary = summarize(records, &cx.reference);
    let results = Results {
        experiment: cx.experiment.clone(),
        config: cx.config.clone(),
        runs: records.to_vec(),
        summary: summary.clone(),
    };
    let json = serde_json::to_string_pretty(&results)
        .map_err(|e| ExpError::Input(format!("serialising results.json: {e}")))?;
    write_atomic(&out.join("results.json"), json.as_bytes())?;
    let mut md = format!("# {}\n\n{}", cx.title, cx.intro);
    let _ = writeln!(
        md,
        "## Results (final runs: test accuracy over seeds, 95% CI by Student t; paired differences to `{}` over the same seeds)\n",
        cx.reference
    );
    md.push_str(&table(&summary, &cx.reference));
    let _ = writeln!(
        md,
        "\n## What the intervals support\n\nA method is called better or worse than `{}` only where the 95% CI of the paired difference excludes 0.\n",
        cx.reference
    );
    md.push_str(&verdicts(&summary, &cx.reference));
    let _ = writeln!(md, "\n## Within 1 point of `{}`\n", cx.reference);
    md.push_str(&within_margin(&summary, &cx.variants, 0.01, &cx.reference));
    let _ = writeln!(md, "\n## Ranks capped below break-even\n");
    let mut any = false;
    let mut seen = Vec::new();
    for r in &summary {
        let key = (r.method.clone(), r.rank);
        if r.capped.is_empty() || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        any = true;
        for c in &r.capped {
            let _ = writeln!(
                md,
                "- `{}` rank {}: {c}",
                r.method,
                r.rank.map_or("-".into(), |x| x.to_string())
            );
        }
    }
    if !any {
        md.push_str("No rank was capped.\n");
    }
    let sweeps = records.iter().filter(|r| r.phase == "sweep").count();
    let _ = writeln!(
        md,
        "\nRates chosen at the edge of their grid are marked `(grid edge)`: the best rate may lie outside the grid. {sweeps} sweep runs are in `runs.jsonl` (phase `sweep`), with every run's loss and validation curves.\n"
    );
    md.push_str(&forms(&summary, records));
    md.push_str(extra);
    md.push_str("\n## Plots\n\nTest accuracy against trainable share (log scale), 95% CI error bars; the dashed line is break-even (adapters as large as the convs they adapt).\n\n");
    for task in &cx.tasks {
        let file = format!("accuracy-vs-share-{task}.svg");
        write_atomic(
            &out.join(&file),
            plot_svg(&summary, task, &cx.variants, cx.break_even_share).as_bytes(),
        )?;
        let _ = writeln!(md, "![{task}]({file})\n");
    }
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    Ok(summary)
}

/// [`write_with`] without extra sections.
///
/// # Errors
/// I/O errors.
pub fn write(out: &Path, cx: &ReportContext, records: &[RunRecord]) -> Result<()> {
    write_with(out, cx, records, "").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::record;

    fn adapter(seed: u64, acc: f64, rank: usize, share: f64) -> RunRecord {
        let mut r = record(&format!("hf{rank}-{seed}"), "hf", seed, acc);
        r.rank = Some(rank);
        r.forward = Some("weight".into());
        r.trainable_share = share;
        r.adapter_share_of_adapted = Some(share * 2.0);
        r
    }

    /// full: 0.90, 0.80, 0.85 over seeds 0..3; hf r4: full - 0.02 on every seed, so the paired
    /// difference is exactly -0.02 with a zero-width CI (worse), although the unpaired CIs
    /// overlap. hf r8 differs by -0.01, +0.01, 0: mean 0, CI ±t_{0.975,2}·0.01/sqrt(3) =
    /// ±0.024841.
    #[test]
    fn summary_pairs_by_seed() {
        let full = [0.9, 0.8, 0.85];
        let mut runs: Vec<RunRecord> = full
            .iter()
            .enumerate()
            .map(|(s, &a)| record(&format!("full-{s}"), "full", s as u64, a))
            .collect();
        for (s, &a) in full.iter().enumerate().rev() {
            runs.push(adapter(s as u64, a - 0.02, 4, 0.05));
        }
        for (s, d) in [-0.01, 0.01, 0.0].iter().enumerate() {
            runs.push(adapter(s as u64, full[s] + d, 8, 0.1));
        }
        let mut sweep = record("sweep", "full", 99, 0.1);
        sweep.phase = "sweep".into();
        runs.push(sweep);
        let mut baseline = record("majority", "majority", 0, 0.1);
        baseline.steps = 0;
        runs.push(baseline);
        let summary = summarize(&runs, "full");
        assert_eq!(summary.len(), 4);
        assert_eq!(summary[3].method, "majority");
        assert_eq!(summary[3].diff_vs_full, None, "a baseline is not paired");
        let f = &summary[0];
        assert_eq!((f.method.as_str(), f.n), ("full", 3));
        assert!((f.mean - 0.85).abs() < 1e-12);
        assert_eq!(f.diff_vs_full, None);
        let r4 = summary.iter().find(|r| r.rank == Some(4)).unwrap();
        let d = r4.diff_vs_full.unwrap();
        assert!((d.mean + 0.02).abs() < 1e-9 && d.excludes(0.0));
        let r8 = summary.iter().find(|r| r.rank == Some(8)).unwrap();
        let [lo, hi] = r8.diff_vs_full.unwrap().ci95.unwrap();
        assert!(
            (hi - 0.024_841).abs() < 1e-5 && (lo + 0.024_841).abs() < 1e-5,
            "{lo} {hi}"
        );
        let text = verdicts(&summary, "full");
        assert!(
            text.contains("`hf` rank 4 (weight) on t: **worse** than `full` by 0.0200"),
            "{text}"
        );
        assert!(
            text.contains("`hf` rank 8 (weight) on t: no difference"),
            "{text}"
        );
        let near = within_margin(&summary, &["hf".into()], 0.01, "full");
        assert!(near.contains("no adapter row is within 1 point"), "{near}");
        let near = within_margin(&summary, &["hf".into()], 0.03, "full");
        assert!(near.contains("`hf` rank 4 at 5.00%"), "{near}");
    }

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
        let svg = plot_svg(&summary, "t", &["hf".into()], 0.99);
        // Three rows with a CI each: three error bars; two hf points joined by a line.
        assert_eq!(svg.matches(r#"class="err""#).count(), 3, "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches(r#"class="break-even""#).count(), 1);
        // Log axis: one tick per decade from 1% to 100%.
        assert_eq!(svg.matches(r#"class="tick""#).count(), 3, "{svg}");
        assert!(svg.contains(">1%<") && svg.contains(">100%<"));
    }
}
