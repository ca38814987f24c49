//! The run record: one per finished run, one line of `runs.jsonl`, and the one builder every
//! study makes its records with (it stamps each with the machine that ran it).

use serde::{Deserialize, Serialize};

use super::machine::Machine;
use super::protocol::{Cell, Phase, Spec};
use crate::train::Trained;

/// JSON has no NaN or infinity: `serde_json` writes them as `null`, and these read `null` back
/// as NaN (a diverged run's loss, a sweep run's untested accuracy).
mod nan {
    use serde::{Deserialize, Deserializer};

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    }

    pub fn opt_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f64>>, D::Error> {
        Ok(Option::<Vec<Option<f64>>>::deserialize(d)?
            .map(|v| v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()))
    }
}

/// The rank an adapter got on one layer, and what it costs against the weight it adapts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRank {
    /// Parameter path of the adapted weight, e.g. `blocks.1.conv.weight`.
    pub path: String,
    /// The rank asked for.
    pub requested_rank: usize,
    /// The rank used (0: the layer is not adapted).
    pub rank: usize,
    /// Scalars in the adapted weight (bias excluded).
    pub weight_params: usize,
    /// Scalars in the adapter.
    pub adapter_params: usize,
    /// `adapter_params / weight_params`.
    #[serde(deserialize_with = "nan::f64")]
    pub share: f64,
    /// Why the rank is below the one asked for, if it is.
    pub capped: Option<String>,
    /// The forward form of this layer (`weight` or `bypass`).
    pub forward: String,
}

/// What a learning-rate sweep chose for a final run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrChoice {
    /// The grid searched.
    pub grid: Vec<f64>,
    /// Best validation accuracy reached at each rate of the grid (`NaN` for a diverged or
    /// missing sweep run).
    #[serde(deserialize_with = "nan::vec")]
    pub val_accuracy: Vec<f64>,
    /// Whether the chosen rate is the smallest or the largest of the grid (the optimum may lie
    /// outside it).
    pub at_grid_edge: bool,
    /// Steps of each sweep run.
    pub steps: usize,
}

/// One finished training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique key of the run within its experiment: reruns with the same `--out` skip it.
    pub id: String,
    /// `final` (reported) or `sweep` (learning-rate selection on validation data).
    pub phase: String,
    /// The task and data setting, e.g. `mnist-8000`.
    pub task: String,
    /// The method, e.g. `full`, `head`, `locon`.
    pub method: String,
    /// Adapter rank asked for, or `None` for methods without one.
    pub rank: Option<usize>,
    /// `weight` or `bypass` for adapters, `None` otherwise.
    pub forward: Option<String>,
    /// Seed: data order, head init and adapter init.
    pub seed: u64,
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// How the learning rate was chosen (final runs of swept cells).
    pub lr_choice: Option<LrChoice>,
    /// Training examples.
    pub train_examples: usize,
    /// Validation examples.
    pub val_examples: usize,
    /// Test examples.
    pub test_examples: usize,
    /// Parameters that receive gradients.
    pub trainable_params: usize,
    /// Parameters of the base network itself: no adapter, no buffers.
    pub base_params: usize,
    /// `trainable_params / base_params`.
    #[serde(deserialize_with = "nan::f64")]
    pub trainable_share: f64,
    /// Adapter parameters in total (0 for dense methods).
    pub adapter_params: usize,
    /// Adapter parameters divided by the parameters of the conv weights they adapt; `None` for
    /// dense methods.
    pub adapter_share_of_adapted: Option<f64>,
    /// Per adapted layer: rank, cost and capping.
    pub layers: Vec<LayerRank>,
    /// Test accuracy (balanced accuracy for the brain task) of the checkpoint chosen on
    /// validation data.
    #[serde(deserialize_with = "nan::f64")]
    pub test_accuracy: f64,
    /// Validation accuracy of that checkpoint (`NaN` when the run diverged before its first
    /// evaluation, or for a baseline without validation).
    #[serde(deserialize_with = "nan::f64")]
    pub val_accuracy: f64,
    /// Step of that checkpoint.
    pub best_step: usize,
    /// Training wall time (evaluation excluded; the device is synced before each clock read).
    #[serde(deserialize_with = "nan::f64")]
    pub train_seconds: f64,
    /// `steps / train_seconds`.
    #[serde(deserialize_with = "nan::f64")]
    pub steps_per_second: f64,
    /// Peak resident memory during the run, or `None` where it cannot be measured.
    pub peak_memory_bytes: Option<u64>,
    /// Whether a NaN or infinite loss stopped the run.
    pub diverged: bool,
    /// Mean training loss over each evaluation period.
    #[serde(deserialize_with = "nan::vec")]
    pub loss_curve: Vec<f64>,
    /// Validation accuracy at the end of each evaluation period.
    #[serde(deserialize_with = "nan::vec")]
    pub val_curve: Vec<f64>,
    /// The step at the end of each evaluation period.
    pub eval_steps: Vec<usize>,
    /// Test recall per class (brain task).
    #[serde(default, deserialize_with = "nan::opt_vec")]
    pub recall_per_class: Option<Vec<f64>>,
    /// Test confusion matrix, `[true][predicted]` (brain task).
    pub confusion: Option<Vec<Vec<usize>>>,
    /// The commit, CPU, ISA extensions and thread count of the machine that ran it (`None` in
    /// records written before it was recorded).
    #[serde(default)]
    pub machine: Option<Machine>,
}

impl RunRecord {
    /// The cell this run belongs to: its id without the phase, the seed and (for a sweep run)
    /// the rate, e.g. `elpv-112/tucker2/b3%` from `final/elpv-112/tucker2/b3%/s0`. Rows of a
    /// report are cells: two cells may share method and rank (one type at two budgets).
    ///
    /// An id not in the harness's `{phase}/{cell}/s{seed}` form (hand-made records) has no
    /// cell: the empty string.
    pub fn cell_key(&self) -> String {
        let Some(rest) = self.id.strip_prefix(&format!("{}/", self.phase)) else {
            return String::new();
        };
        let rest = match rest.rfind("/lr") {
            Some(i) if self.phase == "sweep" => &rest[..i],
            _ => rest,
        };
        let seed = format!("/s{}", self.seed);
        rest.strip_suffix(&seed).unwrap_or(rest).to_string()
    }
}

/// Adapter parameters over the parameters of the weights they adapt (layers with rank 0 are
/// not adapted and count in neither).
pub fn share_of_adapted(layers: &[LayerRank]) -> f64 {
    let adapted = layers.iter().filter(|l| l.rank > 0);
    let (a, w) = adapted.fold((0, 0), |(a, w), l| {
        (a + l.adapter_params, w + l.weight_params)
    });
    a as f64 / w.max(1) as f64
}

/// Who a record is: its id and the labels of its run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHead {
    /// Unique key within the study.
    pub id: String,
    /// Sweep or final.
    pub phase: Phase,
    /// Task, method, rank, form.
    pub labels: super::protocol::Labels,
    /// Seed.
    pub seed: u64,
    /// Optimizer steps (0 for a baseline that trains nothing).
    pub steps: usize,
    /// Learning rate (0 for a baseline).
    pub lr: f64,
    /// How the rate was chosen.
    pub lr_choice: Option<LrChoice>,
}

impl<C: Cell> Spec<C> {
    /// The head of this spec's record.
    pub fn head(&self) -> RunHead {
        RunHead {
            id: self.id(),
            phase: self.phase,
            labels: self.cell.labels(),
            seed: self.seed,
            steps: self.steps,
            lr: self.lr,
            lr_choice: self.lr_choice.clone(),
        }
    }
}

/// The one way to make a [`RunRecord`]: a head, then what is known about the run. What is not
/// set stays empty: no examples, no parameters, accuracies `NaN`, no time.
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    record: RunRecord,
}

impl RecordBuilder {
    /// A record of the run `head`, stamped with this machine.
    pub fn new(head: RunHead) -> Self {
        Self {
            record: RunRecord {
                id: head.id,
                phase: head.phase.name().into(),
                task: head.labels.task,
                method: head.labels.method,
                rank: head.labels.rank,
                forward: head.labels.forward,
                seed: head.seed,
                steps: head.steps,
                batch_size: 0,
                lr: head.lr,
                lr_choice: head.lr_choice,
                train_examples: 0,
                val_examples: 0,
                test_examples: 0,
                trainable_params: 0,
                base_params: 0,
                trainable_share: 0.0,
                adapter_params: 0,
                adapter_share_of_adapted: None,
                layers: Vec::new(),
                test_accuracy: f64::NAN,
                val_accuracy: f64::NAN,
                best_step: 0,
                train_seconds: 0.0,
                steps_per_second: 0.0,
                peak_memory_bytes: None,
                diverged: false,
                loss_curve: Vec::new(),
                val_curve: Vec::new(),
                eval_steps: Vec::new(),
                recall_per_class: None,
                confusion: None,
                machine: Some(Machine::current()),
            },
        }
    }

    /// Training and validation examples, and examples per step.
    pub fn data(mut self, train: usize, val: usize, batch_size: usize) -> Self {
        self.record.train_examples = train;
        self.record.val_examples = val;
        self.record.batch_size = batch_size;
        self
    }

    /// Trainable parameters, the base network's own parameters, and the adapted layers (none
    /// for methods without adapters): the shares and adapter totals follow from them.
    pub fn params(mut self, trainable: usize, base: usize, layers: Vec<LayerRank>) -> Self {
        let r = &mut self.record;
        r.trainable_params = trainable;
        r.base_params = base;
        r.trainable_share = trainable as f64 / base.max(1) as f64;
        r.adapter_params = layers.iter().map(|l| l.adapter_params).sum();
        r.adapter_share_of_adapted = (!layers.is_empty()).then(|| share_of_adapted(&layers));
        r.layers = layers;
        self
    }

    /// What training returned: the chosen checkpoint's validation score and step, the curves,
    /// the time and whether it diverged.
    pub fn trained<M>(mut self, t: &Trained<M>) -> Self {
        let r = &mut self.record;
        r.val_accuracy = t.val_score;
        r.best_step = t.best_step;
        r.train_seconds = t.seconds;
        r.steps_per_second = t.steps_done as f64 / t.seconds.max(1e-9);
        r.diverged = t.diverged;
        r.loss_curve.clone_from(&t.loss_curve);
        r.val_curve.clone_from(&t.val_curve);
        r.eval_steps.clone_from(&t.eval_steps);
        self
    }

    /// The test score on `examples` test examples, with per-class recall and the confusion
    /// matrix where the study records them. Sweep runs are never tested.
    pub fn tested(
        mut self,
        examples: usize,
        accuracy: f64,
        per_class: Option<(Vec<f64>, Vec<Vec<usize>>)>,
    ) -> Self {
        let r = &mut self.record;
        r.test_examples = examples;
        r.test_accuracy = accuracy;
        if let Some((recall, confusion)) = per_class {
            r.recall_per_class = Some(recall);
            r.confusion = Some(confusion);
        }
        self
    }

    /// Peak resident memory during the run, where measured.
    pub fn peak_memory(mut self, bytes: Option<u64>) -> Self {
        self.record.peak_memory_bytes = bytes;
        self
    }

    /// The record.
    pub fn build(self) -> RunRecord {
        self.record
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::harness::protocol::Labels;

    /// A record with the given id and accuracy, everything else filler.
    pub(crate) fn record(id: &str, method: &str, seed: u64, acc: f64) -> RunRecord {
        let head = RunHead {
            id: id.into(),
            phase: Phase::Final,
            labels: Labels {
                task: "t".into(),
                method: method.into(),
                rank: None,
                forward: None,
            },
            seed,
            steps: 10,
            lr: 1e-3,
            lr_choice: None,
        };
        let mut r = RecordBuilder::new(head)
            .data(8, 4, 4)
            .params(100, 100, vec![])
            .tested(4, acc, None)
            .build();
        r.val_accuracy = acc;
        r.best_step = 10;
        r.train_seconds = 1.0;
        r.steps_per_second = 10.0;
        r.loss_curve = vec![1.0];
        r.val_curve = vec![acc];
        r.eval_steps = vec![10];
        r
    }

    /// The builder derives the shares and totals from what it is given, and a record without a
    /// machine (written before it was recorded) still reads.
    #[test]
    fn builder_derives_shares_and_old_records_read() {
        let layer = |rank, adapter, weight| LayerRank {
            path: "p".into(),
            requested_rank: 4,
            rank,
            weight_params: weight,
            adapter_params: adapter,
            share: 0.0,
            capped: None,
            forward: "weight".into(),
        };
        let r = RecordBuilder::new(record("x", "m", 0, 0.5).head_for_test())
            .params(50, 200, vec![layer(2, 10, 100), layer(0, 0, 300)])
            .build();
        assert_eq!(r.adapter_params, 10);
        assert_eq!(r.trainable_share, 0.25);
        assert_eq!(r.adapter_share_of_adapted, Some(0.1));
        assert!(r.test_accuracy.is_nan() && r.machine.is_some());
        let mut v = serde_json::to_value(&r).unwrap();
        v.as_object_mut().unwrap().remove("machine");
        let old: RunRecord = serde_json::from_value(v).unwrap();
        assert_eq!(old.machine, None);
        // The cell of a run: the id without phase, seed and rate.
        let mut f = record("final/elpv-112/tucker2/b3%/s4", "tucker2", 4, 0.5);
        assert_eq!(f.cell_key(), "elpv-112/tucker2/b3%");
        f.phase = "sweep".into();
        f.id = "sweep/t/m/r4/s1000000/lr0.001".into();
        f.seed = 1_000_000;
        assert_eq!(f.cell_key(), "t/m/r4");
    }

    impl RunRecord {
        fn head_for_test(&self) -> RunHead {
            RunHead {
                id: self.id.clone(),
                phase: Phase::Final,
                labels: Labels {
                    task: self.task.clone(),
                    method: self.method.clone(),
                    rank: self.rank,
                    forward: self.forward.clone(),
                },
                seed: self.seed,
                steps: self.steps,
                lr: self.lr,
                lr_choice: None,
            }
        }
    }
}
