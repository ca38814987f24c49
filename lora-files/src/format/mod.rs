//! Reading and writing the three formats, and telling them apart.

use std::path::Path;

use crate::adapter::{AdapterFile, Format};
use crate::algorithm::Registry;
use crate::error::{FileError, Result, io};
use crate::state_dict::StateDict;

pub mod lycoris;
pub mod native;
pub mod peft;
mod peft_config;
pub(crate) mod peft_groups;

/// The format of `path`: a directory with `adapter_config.json` is PEFT; a `.safetensors` file
/// whose metadata says so is native; any other `.safetensors` file is LyCORIS/kohya.
///
/// # Errors
/// [`FileError::Io`] naming `path` when it is neither, saying what the file is when that is
/// clear (a PEFT adapter's own weights or config file, whose directory is what to pass; a JSON
/// file; an empty file; a file without a safetensors header) and what was expected.
pub fn detect(path: &Path) -> Result<Format> {
    if path.is_dir() {
        if path.join(peft::CONFIG).is_file() {
            return Ok(Format::Peft);
        }
        return Err(io(
            path.display(),
            format!("a directory without {}: not a PEFT adapter", peft::CONFIG),
        ));
    }
    check_file_kind(path)?;
    let dict = StateDict::read(path)?;
    if dict.metadata.contains_key(native::METADATA_KEY) {
        Ok(Format::Native)
    } else {
        Ok(Format::Lycoris)
    }
}

/// What an adapter path may be, for error messages.
const EXPECTED: &str = "expected a PEFT adapter directory (adapter_config.json and \
                        adapter_model.safetensors), a LyCORIS/kohya .safetensors file or a \
                        native adapter file";

/// Refuse, by what they are, files that cannot be adapters before reading them as safetensors.
fn check_file_kind(path: &Path) -> Result<()> {
    let refuse = |what: String| Err(io(path.display(), format!("{what}; {EXPECTED}")));
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // the reader names the missing file
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let in_peft_dir = parent.is_some_and(|p| p.join(peft::CONFIG).is_file());
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    if in_peft_dir
        && let (Some(dir), Some(name)) = (parent, &name)
        && (name == peft::CONFIG || name.starts_with("adapter_model."))
    {
        return refuse(format!(
            "this is the `{name}` of the PEFT adapter in {}: pass that directory instead",
            dir.display()
        ));
    }
    if meta.len() == 0 {
        return refuse("an empty file (0 bytes)".into());
    }
    let mut head = [0u8; 9];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    if head.first() == Some(&b'{') {
        return refuse("a JSON file, not an adapter".into());
    }
    if read < 9 || head[8] != b'{' {
        return refuse(format!(
            "not a safetensors file ({} bytes, no JSON header after the 8-byte length)",
            meta.len()
        ));
    }
    Ok(())
}

/// Options for reading.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The algorithms to recognise.
    pub registry: Registry,
    /// LyCORIS/kohya key prefixes, tried longest first (`lycoris`, `lora_unet`, `lora_te1`,
    /// `lora_te2`, `lora_te` by default).
    pub prefixes: Vec<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            registry: Registry::builtin(),
            prefixes: ["lycoris", "lora_unet", "lora_te1", "lora_te2", "lora_te"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// Read an adapter in any format, detected from the files.
///
/// # Errors
/// Any [`FileError`] the format's reader returns.
pub fn read(path: &Path, options: &ReadOptions) -> Result<AdapterFile> {
    match detect(path)? {
        Format::Peft => peft::read(path),
        Format::Native => native::read(path, &options.registry),
        Format::Lycoris => lycoris::read(path, options),
    }
}

/// Write `adapter` in `format` at `path` (a directory for PEFT, a file otherwise). The base's
/// module paths are needed for nothing but the checks the writer makes.
///
/// # Errors
/// [`FileError::Inexpressible`] naming the layer when the format cannot hold it;
/// [`FileError::Io`] when writing fails (the old files are then left as they were).
pub fn write(adapter: &AdapterFile, format: Format, path: &Path) -> Result<()> {
    match format {
        Format::Peft => {
            refuse_diffs(adapter, format)?;
            peft::write(adapter, path)
        }
        Format::Lycoris => lycoris::write(adapter, "lycoris", path),
        Format::Native => {
            refuse_diffs(adapter, format)?;
            native::write(adapter, path)
        }
    }
}

/// Refuse an adapter holding whole-tensor differences (LyCORIS full) for a format that holds
/// replacements.
pub(crate) fn refuse_diffs(adapter: &AdapterFile, format: Format) -> Result<()> {
    match adapter.diffs.keys().next() {
        None => Ok(()),
        Some(key) => Err(FileError::Inexpressible {
            layer: key.clone(),
            algorithm: "full (diff)".to_string(),
            format: format.name().to_string(),
            why: "this format holds replaced tensors, not differences, so a base is needed: \
                  convert with --base (adapter convert does this) or call \
                  merge::diffs_to_replacements first"
                .to_string(),
        }),
    }
}

pub(crate) fn refuse_inexpressible(
    layer: &crate::adapter::LayerAdapter,
    format: Format,
    why: impl Into<String>,
) -> FileError {
    FileError::Inexpressible {
        layer: layer.module.clone(),
        algorithm: layer.algorithm.name().to_string(),
        format: format.name().to_string(),
        why: why.into(),
    }
}
