//! One record per finished run, appended to `OUT/runs.jsonl` as the run ends, and files written
//! atomically (temp file, then rename), so a killed run loses at most the run in progress.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result, io};

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
    /// The method, e.g. `full`, `head`, `hf`.
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
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, flushed, then renamed
/// over `path`.
///
/// # Errors
/// I/O errors, naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let what = format!("writing {}", path.display());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(what.clone()))?;
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(what))
}

/// Read the records of a `runs.jsonl` (none if the file does not exist). A line that does not
/// parse is an error naming the file and line.
///
/// # Errors
/// I/O errors and malformed lines.
pub fn read_runs(path: &Path) -> Result<Vec<RunRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                ExpError::Input(format!(
                    "{} line {}: not a run record ({e}); move the file away to start afresh",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// The `runs.jsonl` of an output dir: records already there, and appends that rewrite the file
/// atomically.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    text: String,
    ids: BTreeSet<String>,
    records: Vec<RunRecord>,
}

impl RunLog {
    /// Open (or start) `dir/runs.jsonl`.
    ///
    /// # Errors
    /// As [`read_runs`].
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("runs.jsonl");
        let records = read_runs(&path)?;
        let mut log = Self {
            path,
            text: String::new(),
            ids: BTreeSet::new(),
            records: Vec::new(),
        };
        for r in records {
            log.push(r)?;
        }
        Ok(log)
    }

    fn push(&mut self, record: RunRecord) -> Result<()> {
        let line = serde_json::to_string(&record)
            .map_err(|e| ExpError::Input(format!("serialising run {}: {e}", record.id)))?;
        if self.ids.insert(record.id.clone()) {
            self.text.push_str(&line);
            self.text.push('\n');
            self.records.push(record);
        }
        Ok(())
    }

    /// Whether a run with this id is already recorded.
    pub fn has(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// The record with this id.
    pub fn get(&self, id: &str) -> Option<&RunRecord> {
        self.records.iter().find(|r| r.id == id)
    }

    /// Every record, in the order they were appended.
    pub fn records(&self) -> &[RunRecord] {
        &self.records
    }

    /// Append a finished run (a run already recorded under the same id is kept, not doubled)
    /// and rewrite the file atomically.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append(&mut self, record: RunRecord) -> Result<()> {
        self.push(record)?;
        write_atomic(&self.path, self.text.as_bytes())
    }

    /// Merge the records of other logs (shards) into this one, first come first kept, and
    /// rewrite the file.
    ///
    /// # Errors
    /// I/O errors.
    pub fn merge(&mut self, records: impl IntoIterator<Item = RunRecord>) -> Result<()> {
        for r in records {
            self.push(r)?;
        }
        write_atomic(&self.path, self.text.as_bytes())
    }
}

/// `--shard I/N`: slice `I` (0-based) of `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This slice.
    pub index: usize,
    /// Number of slices.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}`: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The items of this slice: item `k` belongs to slice `k mod N` (deterministic; the slices
    /// partition the items).
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % self.count == self.index)
            .map(|(_, t)| t)
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record with the given id and accuracy, everything else filler.
    pub(crate) fn record(id: &str, method: &str, seed: u64, acc: f64) -> RunRecord {
        RunRecord {
            id: id.into(),
            phase: "final".into(),
            task: "t".into(),
            method: method.into(),
            rank: None,
            forward: None,
            seed,
            steps: 10,
            batch_size: 4,
            lr: 1e-3,
            lr_choice: None,
            train_examples: 8,
            val_examples: 4,
            test_examples: 4,
            trainable_params: 100,
            base_params: 100,
            trainable_share: 1.0,
            adapter_params: 0,
            adapter_share_of_adapted: None,
            layers: vec![],
            test_accuracy: acc,
            val_accuracy: acc,
            best_step: 10,
            train_seconds: 1.0,
            steps_per_second: 10.0,
            peak_memory_bytes: None,
            diverged: false,
            loss_curve: vec![1.0],
            val_curve: vec![acc],
            eval_steps: vec![10],
            recall_per_class: None,
            confusion: None,
        }
    }

    #[test]
    fn log_appends_skips_duplicates_and_reloads() {
        let dir = std::env::temp_dir().join(format!("runlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = RunLog::open(&dir).unwrap();
        assert!(log.records().is_empty());
        // NaN (a diverged loss, an untested sweep run) survives the round trip as NaN.
        let mut nan = record("n", "full", 2, f64::NAN);
        nan.loss_curve = vec![1.0, f64::NAN];
        log.append(nan).unwrap();
        log.append(record("a", "full", 0, 0.5)).unwrap();
        log.append(record("b", "full", 1, 0.6)).unwrap();
        log.append(record("a", "full", 0, 0.9)).unwrap();
        let again = RunLog::open(&dir).unwrap();
        assert_eq!(again.records().len(), 3);
        let n = again.get("n").unwrap();
        assert!(n.test_accuracy.is_nan() && n.loss_curve[1].is_nan() && n.loss_curve[0] == 1.0);
        assert!(again.has("a") && again.has("b") && !again.has("c"));
        assert_eq!(again.get("a").unwrap().test_accuracy, 0.5);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("runs.jsonl")]);
        // A malformed line is an error, not silently dropped.
        std::fs::write(dir.join("runs.jsonl"), "{not json\n").unwrap();
        assert!(RunLog::open(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shards_partition_the_items() {
        let items: Vec<usize> = (0..11).collect();
        for n in 1..5 {
            let mut union: Vec<usize> = (0..n)
                .flat_map(|i| Shard { index: i, count: n }.select(items.clone()))
                .collect();
            union.sort_unstable();
            assert_eq!(union, items, "{n} shards");
        }
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
