//! `runs.jsonl`, the one log of finished runs an output dir holds: read it, append to it (each
//! append rewrites the file atomically, so a killed run loses at most the run in progress), and
//! slice a plan into shards.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::outdir::OutDir;
use super::record::RunRecord;
use crate::error::{ExpError, Result, io};

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
    /// Open (or start) the `runs.jsonl` of a locked output dir: only the process holding the
    /// dir's lock writes its log.
    ///
    /// # Errors
    /// As [`read_runs`].
    pub fn open(dir: &OutDir) -> Result<Self> {
        let path = dir.path().join("runs.jsonl");
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
mod tests {
    use super::*;
    use crate::harness::record::tests::record;

    #[test]
    fn log_appends_skips_duplicates_and_reloads() {
        let dir = std::env::temp_dir().join(format!("runlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = OutDir::open(&dir).unwrap();
        let mut log = RunLog::open(&out).unwrap();
        assert!(log.records().is_empty());
        // NaN (a diverged loss, an untested sweep run) survives the round trip as NaN.
        let mut nan = record("n", "full", 2, f64::NAN);
        nan.loss_curve = vec![1.0, f64::NAN];
        log.append(nan).unwrap();
        log.append(record("a", "full", 0, 0.5)).unwrap();
        log.append(record("b", "full", 1, 0.6)).unwrap();
        log.append(record("a", "full", 0, 0.9)).unwrap();
        let again = RunLog::open(&out).unwrap();
        assert_eq!(again.records().len(), 3);
        let n = again.get("n").unwrap();
        assert!(n.test_accuracy.is_nan() && n.loss_curve[1].is_nan() && n.loss_curve[0] == 1.0);
        assert!(again.has("a") && again.has("b") && !again.has("c"));
        assert_eq!(again.get("a").unwrap().test_accuracy, 0.5);
        // No temp file is left behind (beside the log, only the dir's lock file).
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != super::super::outdir::LOCK_FILE)
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("runs.jsonl")]);
        // A malformed line is an error, not silently dropped.
        std::fs::write(dir.join("runs.jsonl"), "{not json\n").unwrap();
        assert!(RunLog::open(&out).is_err());
        drop(out);
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
