//! An output dir, locked for one writer, and its `config.json`: the typed plan it holds runs
//! of, with what the study learned while preparing.

use std::fs::{File, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Experiment;
use super::runlog::write_atomic;
use crate::error::{ExpError, Result, io};

/// The lock file of an output dir. Held (`flock`) by the one process writing to the dir for as
/// long as it runs; the OS drops the lock when that process exits or is killed, so a killed
/// run leaves the file but never a held lock.
pub const LOCK_FILE: &str = ".lock";

/// `config.json`: the plan, typed, and what every run of it shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config<P, F> {
    /// The plan.
    pub plan: P,
    /// The study's name ([`Experiment::NAME`]).
    pub experiment: String,
    /// The device the runs trained on.
    pub device: String,
    /// The data dir.
    pub data_dir: String,
    /// The `experiments` crate version.
    pub crate_version: String,
    /// What the study learned while preparing (pretraining result, class counts, ...), as
    /// top-level fields of the file.
    #[serde(flatten)]
    pub facts: F,
}

/// The configuration of an experiment `E`.
pub type ConfigOf<E> = Config<E, <E as Experiment>::Facts>;

/// An output dir this process writes to, holding its lock.
#[derive(Debug)]
pub struct OutDir {
    path: PathBuf,
    _lock: File,
}

impl OutDir {
    /// Create `path` if needed, check that files can be written there, and take its lock.
    ///
    /// # Errors
    /// [`ExpError::Input`] for a dir that cannot be created or written; [`ExpError::Busy`]
    /// when another process holds the lock.
    pub fn open(path: &Path) -> Result<OutDir> {
        let cannot = |e: std::io::Error| {
            ExpError::Input(format!(
                "--out {}: cannot write there ({e})",
                path.display()
            ))
        };
        std::fs::create_dir_all(path)
            .and_then(|()| {
                let probe = path.join(format!(".write-test-{}", std::process::id()));
                std::fs::write(&probe, b"")?;
                std::fs::remove_file(probe)
            })
            .map_err(cannot)?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(cannot)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                return Err(ExpError::Busy {
                    dir: path.to_path_buf(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(io(format!("locking {}", lock_path.display()))(e));
            }
        }
        // Who holds it, for the message a second process prints.
        let note = format!("pid {}", std::process::id());
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| lock.write_all(note.as_bytes()))
            .map_err(io(format!("writing {}", lock_path.display())))?;
        Ok(OutDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse a dir holding runs of another plan (or of another study).
    ///
    /// # Errors
    /// [`ExpError::Input`] naming the dir.
    pub fn check_plan<E: Experiment>(&self, plan: &E) -> Result<()> {
        #[derive(Deserialize)]
        struct Stored<P> {
            plan: P,
            experiment: Option<String>,
        }
        let path = self.path.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ExpError::Input(format!("{}: not a config file ({e})", path.display())))?;
        let same = serde_json::from_value::<Stored<E>>(value).is_ok_and(|old| {
            old.plan == *plan && old.experiment.is_none_or(|name| name == E::NAME)
        });
        if same {
            Ok(())
        } else {
            Err(ExpError::Input(format!(
                "{} holds runs of a different plan (see its config.json); use another --out, \
                 or move it away to start afresh",
                self.path.display()
            )))
        }
    }

    /// Write `config.json` (atomically).
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_config<P: Serialize, F: Serialize>(&self, config: &Config<P, F>) -> Result<()> {
        let path = self.path.join("config.json");
        let text = serde_json::to_string_pretty(config)
            .map_err(|e| ExpError::Input(format!("serialising {}: {e}", path.display())))?;
        write_atomic(&path, text.as_bytes())
    }
}

fn read_text(dir: &Path) -> Result<(PathBuf, String)> {
    let path = dir.join("config.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(e) => Err(ExpError::Input(format!(
            "{}: {e} (not an experiment output dir?)",
            path.display()
        ))),
    }
}

/// Read the `config.json` of `dir` as the configuration of a study with plan `P` and facts `F`.
///
/// # Errors
/// [`ExpError::Input`] naming the file when it is missing or is not that study's.
pub fn read_config<P: DeserializeOwned, F: DeserializeOwned>(dir: &Path) -> Result<Config<P, F>> {
    let (path, text) = read_text(dir)?;
    serde_json::from_str(&text).map_err(|e| {
        ExpError::Input(format!(
            "{}: not a config of this study ({e})",
            path.display()
        ))
    })
}

/// The study whose runs `dir` holds (the `experiment` field of its `config.json`).
///
/// # Errors
/// [`ExpError::Input`] naming the file.
pub fn experiment_of(dir: &Path) -> Result<String> {
    #[derive(Deserialize)]
    struct Header {
        experiment: String,
    }
    let (path, text) = read_text(dir)?;
    serde_json::from_str::<Header>(&text)
        .map(|h| h.experiment)
        .map_err(|e| ExpError::Input(format!("{}: {e}", path.display())))
}
