//! The outside type in a LyCORIS file. LyCORIS has no layout for a type it does not know, so
//! each of its layers is written as LyCORIS's `full` module: the difference `scale·ΔW` from
//! the base weight. The real LyCORIS loads that file and computes the same outputs
//! (`scripts/fixtures/custom_full.py`, checked against `tests/fixtures/lycoris-full/`), but the
//! file holds the update, not the low-rank form: the separable factors are lost, and reading it
//! back gives differences, not a trainable adapter.

use std::path::Path;

use lora_files::format;
use lora_files::{AdapterFile, FileError, Format, StateDict, merge};

/// Write `file` to a LyCORIS file at `out`: its layers LyCORIS has no layout for, and any
/// whole-tensor replacements, as full diffs from `base` (named `base_file` in errors); returns
/// the adapted modules written as diffs.
///
/// # Errors
/// As [`merge::replacements_to_diffs`], [`merge::layers_to_diffs`] and [`format::write`];
/// nothing is written then.
pub fn write(
    file: &AdapterFile,
    base: &StateDict,
    base_file: &str,
    out: &Path,
) -> Result<Vec<String>, FileError> {
    let mut full = file.clone();
    merge::replacements_to_diffs(&mut full, base, base_file)?;
    let moved =
        merge::layers_to_diffs(&mut full, base, base_file, |l| !l.algorithm.lycoris_names())?;
    format::write(&full, Format::Lycoris, out)?;
    Ok(moved)
}
