//! The report's Markdown: the summary table, the verdicts the intervals support, the rows
//! within a margin of the reference, the forward forms, capped ranks, per-class recall and
//! confusion matrices; and the one-line form of a run the binaries print.

use std::fmt::Write as _;

use super::summary::SummaryRow;
use crate::harness::record::RunRecord;

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

/// The Markdown table of the summary, eight columns: method, rank, form, trainable share,
/// rate, test accuracy with its 95% CI and the number of seeds, the paired difference to the
/// reference with its CI, and the training time per step. One table per task, under the task's
/// name when there are several. Everything else a row holds (parameter counts, peak memory,
/// divergences, the rate's grid) is in `results.json`.
pub fn table(summary: &[SummaryRow], reference: &str) -> String {
    let mut out = String::new();
    let mut tasks: Vec<&str> = Vec::new();
    for r in summary {
        if !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
    }
    for task in &tasks {
        if tasks.len() > 1 {
            let _ = writeln!(out, "\n**{task}**\n");
        }
        let _ = writeln!(
            out,
            "| method | rank | form | trainable | lr | test accuracy [95% CI] (n) | Δ vs `{reference}` [95% CI] | ms/step |"
        );
        let _ = writeln!(out, "|{}", "---|".repeat(8));
        for r in summary.iter().filter(|r| r.task == *task) {
            let diff = r.diff_vs_full.as_ref().map_or("-".into(), |d| {
                format!("{:+.4} {}", d.mean, signed_ci(d.ci95))
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}% | {}{} | {:.4} {} ({}){} | {diff} | {} |",
                r.method,
                r.rank.map_or("-".into(), |x| x.to_string()),
                r.forward.as_deref().unwrap_or("-"),
                100.0 * r.trainable_share,
                r.lr.iter()
                    .map(|l| format!("{l}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if r.lr_at_grid_edge { " (edge)" } else { "" },
                r.mean,
                ci(r.ci95),
                r.n,
                if r.diverged > 0 {
                    format!(", {} diverged", r.diverged)
                } else {
                    String::new()
                },
                // Baselines train nothing: no step time.
                if r.steps_per_second > 0.0 {
                    format!("{:.0}", 1000.0 / r.steps_per_second)
                } else {
                    "-".to_string()
                },
            );
        }
    }
    out
}

/// What the intervals support against the reference: one sentence per row whose paired 95% CI
/// excludes 0 (better or worse, by how much), then one line listing the rows where it does not,
/// and one listing the rows without an interval (one seed).
pub fn verdicts(summary: &[SummaryRow], reference: &str) -> String {
    let mut out = String::new();
    let mut none = Vec::new();
    let mut single = Vec::new();
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
        if d.ci95.is_none() {
            single.push(name);
        } else if d.excludes(0.0) {
            let _ = writeln!(
                out,
                "- {name}: {} `{reference}` by {:.4} (paired 95% CI {}, {} seeds).",
                if d.mean > 0.0 {
                    "**better** than"
                } else {
                    "**worse** than"
                },
                d.mean.abs(),
                signed_ci(d.ci95),
                d.n
            );
        } else {
            none.push(format!("{name} ({:+.4})", d.mean));
        }
    }
    if !none.is_empty() {
        let _ = writeln!(
            out,
            "- No difference from `{reference}` established (the paired 95% CI contains 0): {}.",
            none.join(", ")
        );
    }
    if !single.is_empty() {
        let _ = writeln!(
            out,
            "- No interval (one seed), so no call: {}.",
            single.join(", ")
        );
    }
    out
}

/// Which adapter rows (of forward form `form`) are within `margin` of the reference by the
/// paired CI (its lower end above `-margin`), the smallest trainable share first; and if none,
/// the closest row of each variant.
pub fn within_margin(
    summary: &[SummaryRow],
    variants: &[String],
    margin: f64,
    reference: &str,
    form: &str,
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
                    && r.forward.as_deref().is_none_or(|f| f == form)
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

/// The forward forms side by side: for each adapter cell that also ran in bypass or auto form
/// (from the same initial factors), mean test accuracy and steps/s per form, and the form each
/// layer of the auto runs chose. Empty when no twin ran.
pub fn forms(summary: &[SummaryRow], records: &[RunRecord]) -> String {
    // Only cells run in more than one form have twins to compare.
    let forms_of = |r: &SummaryRow| {
        summary
            .iter()
            .filter(|x| x.task == r.task && x.method == r.method && x.rank == r.rank)
            .filter(|x| x.forward.is_some())
            .count()
    };
    let twins: Vec<&SummaryRow> = summary
        .iter()
        .filter(|r| matches!(r.forward.as_deref(), Some("bypass" | "auto")) && forms_of(r) > 1)
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

/// The layers whose rank was capped below break-even, once per (method, rank).
pub fn capped(summary: &[SummaryRow]) -> String {
    let mut md = String::new();
    let mut seen = Vec::new();
    for r in summary {
        let key = (r.method.clone(), r.rank);
        if r.capped.is_empty() || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        for c in &r.capped {
            let _ = writeln!(
                md,
                "- `{}` rank {}: {c}",
                r.method,
                r.rank.map_or("-".into(), |x| x.to_string())
            );
        }
    }
    if md.is_empty() {
        md.push_str("No rank was capped.\n");
    }
    md
}

/// The final runs a summary row is made of.
pub fn runs_of<'a>(records: &'a [RunRecord], r: &SummaryRow) -> Vec<&'a RunRecord> {
    records
        .iter()
        .filter(|x| {
            x.phase == "final"
                && x.task == r.task
                && x.method == r.method
                && x.rank == r.rank
                && x.forward == r.forward
                && (r.cell.is_empty() || x.cell_key() == r.cell)
        })
        .collect()
}

/// Per-class test recall of each summary row, mean over its runs (`-` where none recorded).
pub fn recall_table(summary: &[SummaryRow], records: &[RunRecord], classes: &[&str]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "| method | rank | {} |", classes.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---|".repeat(classes.len()));
    for r in summary {
        let runs = runs_of(records, r);
        let cells: Vec<String> = (0..classes.len())
            .map(|c| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|x| {
                        x.recall_per_class
                            .as_ref()
                            .and_then(|rc| rc.get(c).copied())
                    })
                    .filter(|v| v.is_finite())
                    .collect();
                if v.is_empty() {
                    "-".into()
                } else {
                    format!("{:.2}", v.iter().sum::<f64>() / v.len() as f64)
                }
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            r.method,
            r.rank.map_or("-".into(), |x| x.to_string()),
            cells.join(" | ")
        );
    }
    md
}

/// One test confusion matrix per summary row, summed over its runs (rows true, columns
/// predicted).
pub fn confusion_tables(summary: &[SummaryRow], records: &[RunRecord], classes: &[&str]) -> String {
    let mut md = String::new();
    for r in summary {
        let mut total = vec![vec![0usize; classes.len()]; classes.len()];
        for x in runs_of(records, r) {
            if let Some(m) = &x.confusion {
                for (i, row) in m.iter().enumerate().take(classes.len()) {
                    for (j, v) in row.iter().enumerate().take(classes.len()) {
                        total[i][j] += v;
                    }
                }
            }
        }
        let _ = writeln!(
            md,
            "`{}`{}:\n",
            r.method,
            r.rank.map_or(String::new(), |x| format!(" rank {x}"))
        );
        let _ = writeln!(md, "| true \\ predicted | {} |", classes.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(classes.len()));
        for (i, row) in total.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} |",
                classes[i],
                row.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        md.push('\n');
    }
    md
}
