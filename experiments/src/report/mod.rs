//! Reports, regenerated from the run records: [`summary`] (statistics per row), [`tables`]
//! (Markdown), [`plot`] (SVG). A study supplies its title, prose and extra sections
//! ([`crate::harness::Experiment::report`] and `sections`); this module assembles `report.md`.

pub mod plot;
pub mod summary;
pub mod tables;

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::harness::record::RunRecord;
use crate::harness::runlog::write_atomic;

pub use plot::{curves_svg, plot_svg};
pub use summary::{Intervals, SummaryRow, summarize, summarize_with};
pub use tables::{forms, line, table, verdicts, within_margin};

/// Everything a study's output dir holds in `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// The study's name.
    pub experiment: String,
    /// The configuration (`config.json`).
    pub config: serde_json::Value,
    /// Every run record, sweeps included.
    pub runs: Vec<RunRecord>,
    /// One entry per (task, method, rank, forward) of the final runs.
    pub summary: Vec<SummaryRow>,
}

/// What a study says in its report besides the records.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// The report's title.
    pub title: String,
    /// Opening paragraphs (the study's design, in its own words).
    pub intro: String,
    /// The method others are paired against.
    pub reference: String,
    /// Adapter method names (plotted as lines).
    pub variants: Vec<String>,
    /// Trainable share at which adapters equal the convs they adapt.
    pub break_even_share: f64,
    /// Tasks, in order (one plot each).
    pub tasks: Vec<String>,
    /// How the intervals are computed (Student t over seeds, or corrected for overlapping
    /// splits).
    pub intervals: Intervals,
    /// The adapters' forward form the plot shows (`weight` where twins run in several forms).
    pub plotted_form: String,
}

/// Write `report.md` and one plot per task (each atomically) into `out`, from the summary and
/// the records. `extra` (the study's own sections) follows the shared sections.
///
/// # Errors
/// I/O errors.
pub fn write(
    out: &Path,
    spec: &ReportSpec,
    summary: &[SummaryRow],
    records: &[RunRecord],
    extra: &str,
) -> Result<()> {
    let reference = &spec.reference;
    let mut md = format!("# {}\n\n{}", spec.title, spec.intro);
    let _ = writeln!(
        md,
        "## Results (final runs: test accuracy over seeds, 95% CI by {}; paired differences to `{reference}` over the same seeds)\n",
        match spec.intervals {
            Intervals::Student => "Student t",
            Intervals::NadeauBengio => "the Nadeau–Bengio corrected t (splits overlap)",
        }
    );
    md.push_str(&table(summary, reference));
    let _ = writeln!(
        md,
        "\n## What the intervals support\n\nA method is called better or worse than `{reference}` only where the 95% CI of the paired difference excludes 0.\n"
    );
    md.push_str(&verdicts(summary, reference));
    let _ = writeln!(md, "\n## Within 1 point of `{reference}`\n");
    md.push_str(&within_margin(
        summary,
        &spec.variants,
        0.01,
        reference,
        &spec.plotted_form,
    ));
    let _ = writeln!(md, "\n## Ranks capped below break-even\n");
    md.push_str(&tables::capped(summary));
    let sweeps = records.iter().filter(|r| r.phase == "sweep").count();
    let _ = writeln!(
        md,
        "\nRates chosen at the edge of their grid are marked `(grid edge)`: the best rate may lie outside the grid. {sweeps} sweep runs are in `runs.jsonl` (phase `sweep`), with every run's loss and validation curves.\n"
    );
    md.push_str(&forms(summary, records));
    md.push_str(extra);
    md.push_str("\n## Plots\n\nTest accuracy against trainable share (log scale), 95% CI error bars; the dashed line is break-even (adapters as large as the convs they adapt).\n\n");
    for task in &spec.tasks {
        let file = format!("accuracy-vs-share-{task}.svg");
        write_atomic(
            &out.join(&file),
            plot_svg(
                summary,
                task,
                &spec.variants,
                spec.break_even_share,
                &spec.plotted_form,
            )
            .as_bytes(),
        )?;
        let _ = writeln!(md, "![{task}]({file})\n");
        let curves = format!("curves-{task}.svg");
        write_atomic(
            &out.join(&curves),
            curves_svg(records, task, &spec.plotted_form).as_bytes(),
        )?;
        let _ = writeln!(
            md,
            "Validation accuracy and training loss over the steps, mean over each row's final runs:\n\n![{task} curves]({curves})\n"
        );
    }
    write_atomic(&out.join("report.md"), md.as_bytes())
}
