//! The studies of this crate, by name: what `compare report` dispatches on to merge shard
//! dirs or regenerate a report. Adding a study adds one line to [`STUDIES`].

use std::path::{Path, PathBuf};

use crate::error::{ExpError, Result};
use crate::harness::outdir::experiment_of;
use crate::harness::{self, Experiment};
use crate::{compare, elpv, inflate3d};

/// Merge shard dirs of one plan into an output dir and write its report.
pub type Merge = fn(&Path, &[PathBuf]) -> Result<usize>;

/// Every study: its name (`config.json`'s `experiment`) and its merge.
pub const STUDIES: [(&str, Merge); 3] = [
    (compare::Plan::NAME, harness::merge::<compare::Plan>),
    (inflate3d::Plan::NAME, harness::merge::<inflate3d::Plan>),
    (elpv::Plan::NAME, harness::merge::<elpv::Plan>),
];

/// Merge the runs of shard output dirs (of one plan, of any study) into `out` and write the
/// report there; `out` may be one of `dirs` (the report is then regenerated in place).
///
/// # Errors
/// No dirs, a dir that is not an output dir, a study this binary does not know, and
/// [`harness::merge`]'s errors.
pub fn merge(out: &Path, dirs: &[PathBuf]) -> Result<usize> {
    let first = dirs
        .first()
        .ok_or_else(|| ExpError::Input("report: no shard dirs given".into()))?;
    let name = experiment_of(first)?;
    let (_, merge) = STUDIES.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        ExpError::Input(format!(
            "{}: study `{name}` is not one of {:?}",
            first.display(),
            STUDIES.map(|(n, _)| n)
        ))
    })?;
    merge(out, dirs)
}
