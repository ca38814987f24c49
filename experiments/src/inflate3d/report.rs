//! `inflate3d`'s report: its design in prose (within-subject transfer on one brain, or
//! cross-template transfer), and its own sections: every network against the baselines, the
//! labelling procedure's agreement with a reference, per-class recall, confusion matrices.

use std::fmt::Write as _;

use lora_conv::ConvGeometry;
use lora_conv::bounds::full_count;
use serde::{Deserialize, Serialize};

use super::exec::base_params_3d;
use super::plan::Plan;
use crate::data::brain::tissue::Agreement;
use crate::data::brain::{BrainLabel, TestBrain};
use crate::harness::ConfigOf;
use crate::harness::record::RunRecord;
use crate::report::{Intervals, ReportSpec, SummaryRow, tables};

/// What `inflate3d` learns while preparing, stored in `config.json` beside the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The task name.
    pub task: String,
    /// The class names.
    pub classes: Vec<String>,
    /// Training patches per class.
    pub train_class_counts: Vec<usize>,
    /// Validation patches per class.
    pub val_class_counts: Vec<usize>,
    /// Test patches per class.
    pub test_class_counts: Vec<usize>,
    /// Patches dropped at the midline.
    pub dropped_midline: usize,
    /// Training-hemisphere patches dropped in the guard band around the slab.
    pub dropped_guard: usize,
    /// World y range of the validation slab (mm).
    pub slab_y_mm: [f32; 2],
    /// Fashion-MNIST test accuracy of the pretrained 2D CNN.
    pub pretrain_test_accuracy: f64,
    /// The pretrained checkpoint.
    pub pretrain_checkpoint: String,
    /// Where the test patches came from (absent in runs before the cross-template mode:
    /// within-subject).
    #[serde(default)]
    pub test_brain: TestBrain,
    /// The labelling procedure's agreement with a reference, where there is one.
    #[serde(default)]
    pub labelling: Vec<Agreement>,
}

/// The report's frame.
pub fn spec(plan: &Plan, config: &ConfigOf<Plan>) -> ReportSpec {
    let cnn = plan.cnn();
    let geometries: Vec<ConvGeometry> = cnn
        .channels()
        .into_iter()
        .map(|(i, o)| ConvGeometry::new(i, o, vec![plan.depth, 3, 3]))
        .collect();
    let convs: usize = geometries.iter().map(full_count).sum();
    let head = cnn.widths.last().copied().unwrap_or(1) * cnn.classes + cnn.classes;
    ReportSpec {
        title: "inflate3d: 2D -> 3D inflation plus conv LoRA on brain MRI".into(),
        intro: describe(plan, config),
        reference: "inflated-full".into(),
        variants: plan
            .variants
            .iter()
            .map(|v| format!("inflated-{v}"))
            .collect(),
        break_even_share: (convs + head) as f64 / base_params_3d(&cnn, plan.depth).max(1) as f64,
        tasks: vec![plan.task().into()],
        intervals: Intervals::Student,
        plotted_form: "weight".into(),
    }
}

/// The report's opening paragraphs: the study's design.
pub fn describe(plan: &Plan, config: &ConfigOf<Plan>) -> String {
    let f = &config.facts;
    let cnn = plan.cnn();
    let p = &plan.patches;
    let label = match p.label {
        BrainLabel::Lobe => "by the lobe of the AAL region at the centre".to_string(),
        BrainLabel::Tissue => "by local appearance: the tercile of the mean T1 intensity of the \
             central 4³ voxels, thresholds from the training patches"
            .to_string(),
        BrainLabel::Segment => "as CSF, grey or white matter by one procedure applied to each \
             brain alone: three k-means clusters of the brain's block-averaged T1 intensities, \
             each voxel to the nearest, the patch to the most frequent class of its central 4³ \
             voxels"
            .to_string(),
    };
    let mode = match f.test_brain {
        TestBrain::Colin27Right => format!(
            "**This is within-subject transfer on one brain** (`--test-brain colin27-right`): \
             one T1 image (Colin27, `ch2.nii.gz`) and one atlas (AAL), training on the left \
             hemisphere and testing on the right hemisphere of the same subject. It says nothing \
             about generalisation to other subjects.\n\n\
             Task: cubic patches of {}³ voxels at {} mm (block-averaged from the 1 mm T1), \
             centres every {} mm at AAL-labelled brain voxels (background centres dropped), \
             labelled {label}. The right-hemisphere patches are mirrored along x, so train and \
             test have the same orientation. Patches touching the midline are dropped ({}).",
            p.size,
            p.factor,
            p.stride * p.factor,
            f.dropped_midline,
        ),
        TestBrain::Icbm152 => format!(
            "**This is cross-template transfer** (`--test-brain icbm152`): training on one \
             brain-extracted T1 (Colin27, `ch2bet.nii.gz`: one subject scanned 27 times), testing \
             on the ICBM152 2009a symmetric T1 (the non-linear average of 152 brains, from \
             nilearn 0.14.1), resampled onto Colin27's 1 mm grid. Both templates live in MNI \
             space, so this is transfer between two templates, not between subjects, and where \
             a patch is already says much of what it shows: the position-only baseline is \
             expected to be strong.\n\n\
             Task: cubic patches of {}³ voxels at {} mm (block-averaged from 1 mm), centres every \
             {} mm inside each brain{}, labelled {label}. The test centres sit half a stride off \
             the training centres on each axis, so no test patch repeats a training position. \
             Each brain is z-scored with its own patches' statistics (no label is read).",
            p.size,
            p.factor,
            p.stride * p.factor,
            if p.label == BrainLabel::Lobe {
                " and inside the AAL atlas"
            } else {
                ""
            },
        ),
    };
    format!(
        "Profile `{}` on `{}`. {mode} Validation: a coronal slab of the training patches \
         (centres at world y {:?} mm, between the {:.0}% and {:.0}% quantiles), with a guard \
         band of {} patch side(s) on each side dropped from training ({} patches){}. Class \
         counts: train {:?}, validation {:?}, test {:?}. Metric: **balanced accuracy** (chance \
         1/{}).\n\n\
         The 2D net is `compare`'s (widths {:?}), pretrained on Fashion-MNIST (test accuracy \
         {:.4}), with a fresh {}-class head (the same head init for every method of a seed). \
         Methods: `scratch3d` (3x3x3 CNN of the same shape from scratch), `slice2d` (the 2D net \
         fine-tuned on each patch's centre slice), `inflated-full` (centre-mode inflation, depth \
         kernel {}, everything trained), `inflated-<variant>` (fresh conv LoRA on the inflated \
         convs, head trained); baselines `majority` (the most frequent training class) and \
         `position-1nn` (the label of the nearest training patch centre: no image content at \
         all). Every run: {} steps of batch {}, the rate chosen per (method, rank) on the \
         validation slab from {:?} (dense) or {:?} (adapters){} with {} steps per sweep run, \
         the best validation checkpoint tested; {} seeds.\n\n",
        plan.profile,
        config.device,
        f.slab_y_mm,
        plan.val_slab.0 * 100.0,
        plan.val_slab.1 * 100.0,
        plan.val_guard,
        f.dropped_guard,
        if plan.val_guard >= 1.0 {
            ", so no voxel is in both"
        } else {
            "; validation patches at the slab's edges share voxels with neighbouring training \
             patches, which only the learning-rate and checkpoint choices see (the test set \
             shares none)"
        },
        f.train_class_counts,
        f.val_class_counts,
        f.test_class_counts,
        plan.classes().len(),
        cnn.widths,
        f.pretrain_test_accuracy,
        plan.classes().len(),
        plan.depth,
        plan.steps,
        plan.batch_size,
        plan.lr_grid_dense,
        plan.lr_grid_adapter,
        match plan.grid_extensions {
            0 => String::new(),
            n => format!(
                ", the grid growing by one geometric step past an edge its best rate sits at, \
                 up to {n} time(s)"
            ),
        },
        plan.sweep_steps(),
        plan.seeds.len(),
    )
}

/// Baselines against the networks, the labelling procedure's agreement, per-class recall and
/// confusion matrices.
pub fn sections(
    plan: &Plan,
    facts: &Facts,
    summary: &[SummaryRow],
    records: &[RunRecord],
) -> String {
    let classes = plan.classes();
    let mut md = String::from("## Against the baselines\n\n");
    let value = |name: &str| summary.iter().find(|r| r.method == name).map(|r| r.mean);
    let (maj, pos) = (value("majority"), value("position-1nn"));
    let _ = writeln!(
        md,
        "Majority: {}; position-only nearest neighbour: {}. The baselines train nothing, so they \
         score the same test patches identically at every seed: each network's paired difference \
         to a baseline is its per-seed score minus the baseline's, and its 95% CI (Student t \
         over seeds) is the network's interval shifted. The intervals cover the spread over \
         seeds on this one test set, not the sampling of test brains.\n",
        maj.map_or("not run".into(), |v| format!("{v:.4}")),
        pos.map_or("not run".into(), |v| format!("{v:.4}"))
    );
    if let (Some(maj), Some(pos)) = (maj, pos) {
        let diff = |r: &SummaryRow, b: f64| match r.ci95 {
            Some([lo, hi]) => format!("{:+.4} [{:+.4}, {:+.4}]", r.mean - b, lo - b, hi - b),
            None => format!("{:+.4} (one seed)", r.mean - b),
        };
        md.push_str(
            "| method | rank | balanced accuracy | minus majority | minus position-1nn | against position-1nn |\n|---|---|---|---|---|---|\n",
        );
        for r in summary.iter().filter(|r| r.steps > 0) {
            let verdict = match r.ci95 {
                Some([lo, _]) if lo > pos => "better",
                Some([_, hi]) if hi < pos => "**worse**",
                Some(_) => "undecided",
                None => "no interval",
            };
            let _ = writeln!(
                md,
                "| `{}` | {} | {:.4} | {} | {} | {verdict} |",
                r.method,
                r.rank.map_or("-".into(), |x| x.to_string()),
                r.mean,
                diff(r, maj),
                diff(r, pos),
            );
        }
        let beaten = summary
            .iter()
            .any(|r| r.steps > 0 && r.ci95.is_some_and(|[lo, _]| lo > pos));
        let decidable = summary.iter().any(|r| r.steps > 0 && r.ci95.is_some());
        if !decidable {
            md.push_str("\nWith one seed there are no intervals, so whether a network beats the position-only baseline is not decided here.\n");
        } else if !beaten {
            md.push_str("\n**No network beats the position-only baseline**: on this task the label is predicted at least as well from where a patch is as from what it shows.\n");
        }
    }
    if !facts.labelling.is_empty() {
        md.push_str("\n## The labelling procedure against a reference\n\n");
        for a in &facts.labelling {
            let _ = writeln!(
                md,
                "{}: on {} test patches the procedure's label equals the reference's for \
                 {:.1}% of them (Cohen's kappa {:.3}); its intensity thresholds on this brain \
                 were {:.1} and {:.1}. The reference labels a patch by the most frequent of \
                 CSF (1 - grey - white), grey and white probability over its central 4³ voxels.\n",
                a.what,
                a.patches,
                100.0 * a.accuracy,
                a.kappa,
                a.thresholds[0],
                a.thresholds[1]
            );
            let names = crate::data::brain::tissue::SEGMENTS;
            md.push_str("| reference \\ procedure | csf | grey | white |\n|---|---|---|---|\n");
            for (k, row) in a.confusion.iter().enumerate() {
                let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
                let _ = writeln!(
                    md,
                    "| {} | {} |",
                    names.get(k).unwrap_or(&"?"),
                    cells.join(" | ")
                );
            }
        }
    }
    md.push_str("\n## Per-class test recall (mean over seeds)\n\n");
    md.push_str(&tables::recall_table(summary, records, classes));
    md.push_str(
        "\n## Confusion matrices (test, summed over seeds; rows true, columns predicted)\n\n",
    );
    md.push_str(&tables::confusion_tables(summary, records, classes));
    md
}
