//! The ELPV study's report: its design in prose, the three scores with corrected intervals,
//! every method against full fine-tuning (Holm across the table, non-inferiority at 1 point),
//! which decomposition wins per budget, the confusion matrices, and the paper's figures beside
//! ours.

use std::fmt::Write as _;

use super::metrics::{Score, holm, t_statistic, t_two_sided_p};
use super::plan::{Method, Plan, percent};
use crate::harness::ConfigOf;
use crate::harness::record::RunRecord;
use crate::harness::stats::{Estimate, corrected_estimate, corrected_paired_difference, t975};
use crate::report::tables::{confusion_tables, runs_of};
use crate::report::{Intervals, ReportSpec, SummaryRow};

/// The non-inferiority margin, in accuracy (1 point).
pub const MARGIN: f64 = 0.01;

/// The class names of the confusion matrices.
const CLASSES: [&str; 4] = ["p=0", "p=1/3", "p=2/3", "p=1"];

/// The report's frame.
pub fn spec(plan: &Plan, config: &ConfigOf<Plan>) -> ReportSpec {
    let f = &config.facts;
    let mut variants: Vec<String> = Vec::new();
    for m in plan.methods() {
        if matches!(m, Method::Adapter { .. }) && !variants.contains(&m.name()) {
            variants.push(m.name());
        }
    }
    ReportSpec {
        title: "elpv: conv LoRA on a pretrained ResNet-29, solar-cell defects".into(),
        intro: describe(plan, config),
        reference: "full".into(),
        variants,
        break_even_share: f.conv_weights as f64 / f.base_params.max(1) as f64,
        tasks: vec![plan.task()],
        intervals: Intervals::NadeauBengio,
        plotted_form: "auto".into(),
    }
}

/// The design, in prose.
fn describe(plan: &Plan, config: &ConfigOf<Plan>) -> String {
    let f = &config.facts;
    let budgets: Vec<String> = plan.budgets.iter().map(|b| percent(*b)).collect();
    format!(
        "Profile `{:?}` on `{}`. Backbone: dlib's ResNet-29 face-descriptor network as \
         face-api 1.7.15 ships it (npm `@vladmandic/face-api`), pretrained on faces: 29 convs \
         with {} weights, {} parameters without face-api's unused descriptor layer. A new \
         linear head (256 -> 4) on its 256 pooled features, standardized per feature with the \
         pretrained features' mean and SD on the split's training images (frozen).\n\n\
         Data: ELPV (PyPI `elpv-dataset` 1.0.0.post1), {} electroluminescence images of solar \
         cells, classes by defect probability 0 / 1/3 / 2/3 / 1 = {:?}, {} mono and {} poly. \
         Each 300x300 grayscale image is area-resized to {} px and its gray value copied into \
         the three RGB channels (0..255), which face-api then normalises. Training examples \
         go through one of the 8 symmetries of the square, drawn per example (cells have no \
         preferred orientation; none of them resamples a pixel).\n\n\
         Splits: {} x {}-fold stratified by (class, cell type), paired: split k is seed k of \
         every method (its data order, augmentation and head init). {}% of each training part \
         (stratified) is validation; split 0 has {} training, {} validation and {} test \
         images. Every final run: **{} Adam steps** of batch {}, cosine schedule from the \
         chosen rate, validation accuracy {} times, the best checkpoint tested. Rates: one \
         sweep per method and budget on split 0's validation part, {} steps per sweep run, \
         starting grids {:?} (probe), {:?} (affine), {:?} (full), {:?} (adapters), extended \
         by one rate at most {} time(s) when the pick sits at an edge.\n\n\
         Methods: `probe` (head only, trained on the frozen backbone's features of every \
         image under each of the 8 symmetries, computed once), `affine` (the 29 per-channel affine maps and the head), \
         `full` (everything), and adapters {:?} on all 29 convs at budgets {:?} of the conv \
         weights, ranks per type from `lora_conv::budget::allocate` with the filled rule (the \
         largest common rank that fits, capped per layer below break-even, then one more rank \
         on the cheapest layers while the budget allows, so every type spends its budget to \
         within one rank step; the `rank` column is the lowest per-layer rank, every layer's \
         rank is in `runs.jsonl`). Adapters use alpha = rank \
         (scale 1), the auto forward form, the head trains with them.\n\n\
         LP-FT: {}\n\n\
         Intervals are 95% Nadeau–Bengio corrected t intervals over the splits (their training \
         parts overlap), with n_test/n_train from one split's sizes in images. The shared \
         \"What the intervals support\" section below uses unadjusted intervals; the Holm \
         table further down is the one that accounts for the number of comparisons. Rates are \
         chosen once per method and budget on split 0's validation images, which belong to the \
         test folds of splits 1 to 4: every method is chosen the same way, so paired \
         differences are fair, but the absolute accuracies may be slightly optimistic.\n\n",
        plan.profile,
        config.device,
        f.conv_weights,
        f.base_params,
        f.images,
        f.class_counts,
        f.mono_poly[0],
        f.mono_poly[1],
        plan.size,
        plan.repeats,
        plan.folds,
        (plan.val_fraction * 100.0).round(),
        f.split_sizes[0],
        f.split_sizes[1],
        f.split_sizes[2],
        plan.steps,
        plan.batch_size,
        plan.evals,
        plan.protocol().sweep_steps(),
        plan.grids.probe,
        plan.grids.affine,
        plan.grids.full,
        plan.grids.adapter,
        plan.grid_extensions,
        plan.types.iter().map(|v| v.name()).collect::<Vec<_>>(),
        budgets,
        match plan.probe_init {
            Some(init) => format!(
                "every method but the probe starts from the head a linear probe reaches on \
                 the split's cached features (Adam {}, cosine, {} steps, the best validation \
                 checkpoint; Kumar et al., ICLR 2022). A fresh head needs a rate near 1e-2 and \
                 the pretrained backbone far less; at one rate for both, full fine-tuning stayed \
                 at the majority class (the withdrawn shard in docs/results/withdrawn/).",
                init.lr, init.steps
            ),
            None => "off: every method starts from the fresh seeded head.".into(),
        },
    )
}

/// Per split (seed), the score of each final run of a row.
fn scores(runs: &[&RunRecord], score: Score) -> Vec<(u64, f64)> {
    runs.iter()
        .filter_map(|r| r.confusion.as_ref().map(|m| (r.seed, score.of(m))))
        .collect()
}

/// The sizes the correction uses: training part (training + validation) and test fold, in
/// images. Every method runs on the same splits, so these come from `full`'s runs when given
/// (older probe records counted its 8 cached views per image as examples).
fn sizes(runs: &[&RunRecord]) -> (usize, usize) {
    let of = |r: &&RunRecord| (r.train_examples + r.val_examples, r.test_examples);
    runs.iter()
        .find(|r| r.method == "full")
        .or_else(|| runs.iter().find(|r| r.method != "probe"))
        .or_else(|| runs.first())
        .map_or((0, 0), of)
}

fn paired(a: &[(u64, f64)], b: &[(u64, f64)], n: (usize, usize)) -> Estimate {
    corrected_paired_difference(a, b, n.0, n.1)
}

fn pct(e: &Estimate) -> String {
    match e.ci95 {
        Some([lo, hi]) => format!(
            "{:.2} [{:.2}, {:.2}]",
            100.0 * e.mean,
            100.0 * lo,
            100.0 * hi
        ),
        None => format!("{:.2}", 100.0 * e.mean),
    }
}

/// The per-layer ranks of a row's adapters, `lo-hi` (or one number), from its first run.
fn rank_range(runs: &[&RunRecord]) -> String {
    let ranks: Vec<usize> = runs
        .first()
        .map(|r| r.layers.iter().map(|l| l.rank).collect())
        .unwrap_or_default();
    match (ranks.iter().min(), ranks.iter().max()) {
        (Some(lo), Some(hi)) if lo < hi => format!("{lo}-{hi}"),
        (Some(lo), _) => lo.to_string(),
        _ => "-".into(),
    }
}

fn budget_of(r: &RunRecord) -> Option<String> {
    r.id.split('/')
        .find(|s| s.starts_with('b') && s.ends_with('%'))
        .map(|s| s[1..].to_string())
}

/// The study's own sections.
pub fn sections(
    plan: &Plan,
    _config: &ConfigOf<Plan>,
    summary: &[SummaryRow],
    records: &[RunRecord],
) -> String {
    let mut md = String::new();
    let rows: Vec<(&SummaryRow, Vec<&RunRecord>)> =
        summary.iter().map(|r| (r, runs_of(records, r))).collect();
    let Some((_, full)) = rows.iter().find(|(r, _)| r.method == "full") else {
        md.push_str("\n## ELPV sections\n\nNo final run of `full` yet: nothing to compare.\n");
        return md;
    };
    let full = full.clone();
    scores_table(&mut md, &rows, &full);
    let (key, pooled_sd, n, ratio) = against_full(&mut md, &rows, &full);
    half_width(&mut md, key, pooled_sd, n, ratio, plan.folds);
    per_budget(&mut md, &rows);
    paper(&mut md, &rows, plan);
    cost(&mut md, &rows, plan);
    let _ = writeln!(
        md,
        "\n## Confusion matrices (test folds, summed over splits; rows true, columns predicted)\n"
    );
    md.push_str(&confusion_tables(summary, records, &CLASSES));
    md
}

fn scores_table(md: &mut String, rows: &[(&SummaryRow, Vec<&RunRecord>)], full: &[&RunRecord]) {
    let _ = writeln!(
        md,
        "\n## Three scores (percent, mean over splits [95% corrected CI]; Δ: paired difference to `full`)\n"
    );
    let _ = writeln!(
        md,
        "| method | rank | trainable | {} | Δ four-class | Δ balanced | Δ binary |",
        Score::ALL.map(Score::name).join(" | ")
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let n = sizes(full);
    for (row, runs) in rows {
        let mut cells = Vec::new();
        let mut deltas = Vec::new();
        for s in Score::ALL {
            let v = scores(runs, s);
            let values: Vec<f64> = v.iter().map(|x| x.1).collect();
            cells.push(pct(&corrected_estimate(&values, n.0, n.1)));
            deltas.push(if row.method == "full" {
                "-".to_string()
            } else {
                pct(&paired(&v, &scores(full, s), n))
            });
        }
        let _ = writeln!(
            md,
            "| {} | {} | {:.2}% | {} | {} |",
            row.method,
            row.rank.map_or("-".into(), |r| r.to_string()),
            100.0 * row.trainable_share,
            cells.join(" | "),
            deltas.join(" | ")
        );
    }
}

/// The four-class comparisons to `full`: Holm across the table, non-inferiority at 1 point.
/// Returns the rows compared, the pooled SD of the paired differences, the splits and
/// n_test/n_train.
fn against_full<'a>(
    md: &mut String,
    rows: &'a [(&SummaryRow, Vec<&RunRecord>)],
    full: &[&RunRecord],
) -> (Vec<&'a SummaryRow>, f64, usize, f64) {
    let _ = writeln!(
        md,
        "\n## Against full fine-tuning, four-class accuracy (Holm across the table; non-inferiority margin {} point)\n",
        MARGIN * 100.0
    );
    let _ = writeln!(
        md,
        "| method | rank | Δ (points) [95% CI] | half-width | p | Holm p | difference | within 1 point? |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    let full_scores = scores(full, Score::FourClass);
    let mut compared = Vec::new();
    let mut estimates = Vec::new();
    let mut p = Vec::new();
    let n = sizes(full);
    for (row, runs) in rows.iter().filter(|(r, _)| r.method != "full") {
        let e = paired(&scores(runs, Score::FourClass), &full_scores, n);
        p.push(e.ci95.map_or(f64::NAN, |ci| {
            t_two_sided_p(t_statistic(e.mean, ci, e.n), e.n.saturating_sub(1))
        }));
        compared.push((*row, n));
        estimates.push(e);
    }
    let adjusted = holm(&p);
    let mut sds = Vec::new();
    let (mut splits, mut ratio) = (0, f64::NAN);
    for (i, ((row, n), e)) in compared.iter().zip(&estimates).enumerate() {
        let half = e.ci95.map_or(f64::NAN, |[lo, hi]| (hi - lo) / 2.0);
        let differs = match (e.ci95, adjusted[i] < 0.05) {
            (Some(_), true) if e.mean > 0.0 => "better (Holm)",
            (Some(_), true) => "worse (Holm)",
            (Some(_), false) => "not established",
            (None, _) => "n/a (one split)",
        };
        let margin = match e.ci95 {
            Some([lo, _]) if lo > -MARGIN => "yes: lower bound above -1",
            Some([_, hi]) if hi < -MARGIN => "no: upper bound below -1",
            Some(_) => "undecided at this n",
            None => "n/a",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.4} | {:.4} | {differs} | {margin} |",
            row.method,
            row.rank.map_or("-".into(), |r| r.to_string()),
            pct(e),
            100.0 * half,
            p[i],
            adjusted[i]
        );
        if e.n >= 2 && n.0 > 0 {
            // Back out the SD of the differences from the corrected half-width.
            let factor = 1.0 / e.n as f64 + n.1 as f64 / n.0 as f64;
            sds.push(half / t975(e.n - 1) / factor.sqrt());
            splits = e.n;
            ratio = n.1 as f64 / n.0 as f64;
        }
    }
    let pooled = if sds.is_empty() {
        f64::NAN
    } else {
        (sds.iter().map(|s| s * s).sum::<f64>() / sds.len() as f64).sqrt()
    };
    (
        compared.into_iter().map(|c| c.0).collect(),
        pooled,
        splits,
        ratio,
    )
}

/// The half-width reached, and the number of splits a 1-point half-width would need.
fn half_width(
    md: &mut String,
    rows: Vec<&SummaryRow>,
    sd: f64,
    n: usize,
    ratio: f64,
    folds: usize,
) {
    let _ = writeln!(
        md,
        "\n## Precision: the half-width reached and the n it implies\n"
    );
    if !sd.is_finite() || n < 2 {
        let _ = writeln!(
            md,
            "Fewer than two splits per method: no interval, so no half-width.\n"
        );
        return;
    }
    let half = |j: usize| t975(j - 1) * sd * (1.0 / j as f64 + ratio).sqrt();
    let _ = writeln!(
        md,
        "Over the {} comparisons to `full`, the paired differences have a pooled SD of {:.2} \
         points; at {n} splits (n_test/n_train = {ratio:.3}) the corrected half-width is about \
         {:.2} points.",
        rows.len(),
        100.0 * sd,
        100.0 * half(n)
    );
    let floor = 1.959_964 * sd * ratio.sqrt();
    match (2..=1000).find(|&j| half(j) <= MARGIN) {
        Some(j) => {
            let _ = writeln!(
                md,
                " A half-width of 1 point needs about {j} splits ({} repeats of {folds}-fold) at this SD.\n",
                j.div_ceil(folds.max(1))
            );
        }
        None => {
            let _ = writeln!(
                md,
                " A half-width of 1 point is out of reach at any number of repeated splits under \
                 this correction: its floor, 1.96 · SD · sqrt(n_test/n_train), is {:.2} points. \
                 The non-inferiority question at a 1-point margin is then decided only by \
                 differences whose mean sits well above -1 point.\n",
                100.0 * floor
            );
        }
    }
}

mod budgets;
use budgets::{cost, paper, per_budget};
