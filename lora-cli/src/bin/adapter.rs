//! Adapter files without a model: inspect, merge into a checkpoint, convert between formats.
//!
//! ```text
//! adapter inspect PATH [--json] [--base BASE.safetensors] [--prefix P]
//! adapter merge --base BASE.safetensors --adapter PATH --out MERGED.safetensors [--multiplier M]
//! adapter convert --adapter PATH --base BASE.safetensors --to peft|lycoris|native --out OUT
//!                 [--groups MODULE=G ...] [--full-diff]
//! ```
//!
//! PATH is a PEFT directory, a LyCORIS/kohya `.safetensors` file or a native adapter file; the
//! format is detected. BASE is a PyTorch-layout state dict. All of the maths is `lora-files`'.
//! Every failure prints one line naming the file, key and values and exits with status 1;
//! outputs are written atomically, so a failed run leaves none behind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lora_files::format::{self, ReadOptions};
use lora_files::{AdapterFile, FileError, Format, StateDict, merge};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Inspect, merge and convert PEFT, LyCORIS/kohya and native adapter files")]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// An extra LyCORIS/kohya key prefix (besides lycoris, lora_unet, lora_te1, lora_te2,
    /// lora_te); may be repeated.
    #[arg(long, global = true)]
    prefix: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The format and, per layer: module, algorithm, rank, alpha, scale, factor shapes and
    /// parameter count.
    Inspect {
        /// The adapter.
        path: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// A base state dict to resolve LyCORIS key stems to module paths.
        #[arg(long)]
        base: Option<PathBuf>,
    },
    /// Merge the adapter into BASE and write the merged state dict (same names, layouts and
    /// dtypes).
    Merge {
        /// The base state dict (PyTorch names and layouts).
        #[arg(long)]
        base: PathBuf,
        /// The adapter.
        #[arg(long)]
        adapter: PathBuf,
        /// Where to write the merged state dict.
        #[arg(long)]
        out: PathBuf,
        /// Strength of the adapter (1 = as trained; -1 subtracts it).
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        multiplier: f64,
    },
    /// Write the adapter in another format.
    Convert {
        /// The adapter.
        #[arg(long)]
        adapter: PathBuf,
        /// The base state dict the adapter belongs to (resolves and checks module paths).
        #[arg(long)]
        base: PathBuf,
        /// Target format: peft, lycoris (or kohya) or native, in any case.
        #[arg(long)]
        to: Format,
        /// Output: a directory for peft, a .safetensors file otherwise.
        #[arg(long)]
        out: PathBuf,
        /// A grouped conv's groups, as MODULE=G (a state dict does not record them; PEFT's
        /// layout for a grouped conv needs them); may be repeated.
        #[arg(long, value_name = "MODULE=G")]
        groups: Vec<String>,
        /// With --to lycoris: write the layers whose algorithm LyCORIS has no layout for (CP) as
        /// full diffs, their merged update; their factors are lost. Without it such a layer is
        /// refused.
        #[arg(long)]
        full_diff: bool,
    },
}

fn options(extra: &[String]) -> ReadOptions {
    let mut o = ReadOptions::default();
    o.prefixes.extend(extra.iter().cloned());
    o
}

fn load(
    path: &Path,
    base: Option<(&StateDict, &Path)>,
    options: &ReadOptions,
) -> Result<AdapterFile, FileError> {
    let mut adapter = format::read(path, options)?;
    if let Some((base, base_path)) = base {
        let base_file = base_path.display().to_string();
        merge::resolve_base(&mut adapter, base, &base_file, &options.prefixes)?;
    }
    Ok(adapter)
}

fn inspect(adapter: &AdapterFile, as_json: bool) -> String {
    let layers: Vec<_> = adapter
        .layers
        .iter()
        .map(|l| {
            json!({
                "module": l.module,
                "key": l.key_prefix,
                "algorithm": l.algorithm.name(),
                "rank": l.rank,
                "alpha": l.alpha,
                "scale": l.scale,
                "groups": l.groups,
                "dora": l.magnitude.as_ref().map(|m| format!("{:?}", m.layout)),
                "factors": l.factors.iter().map(|(n, f)| (n.clone(), json!(f.shape))).collect::<serde_json::Map<_, _>>(),
                "params": l.param_count(),
            })
        })
        .collect();
    if as_json {
        return json!({
            "path": adapter.source,
            "format": adapter.format.name(),
            "layers": layers,
            "replaced": adapter.replacements.keys().collect::<Vec<_>>(),
            "differences": adapter.diffs.keys().collect::<Vec<_>>(),
        })
        .to_string();
    }
    let mut out = format!("{} ({})\n", adapter.source, adapter.format.name());
    out += &format!(
        "{:<28} {:<8} {:>5} {:>8} {:>9} {:>8}  factors\n",
        "module", "algo", "rank", "alpha", "scale", "params"
    );
    for l in &adapter.layers {
        let shapes: Vec<String> = l
            .factors
            .iter()
            .map(|(n, f)| format!("{n} {:?}", f.shape))
            .chain(
                l.magnitude
                    .as_ref()
                    .map(|m| format!("magnitude {:?}", m.shape)),
            )
            .collect();
        out += &format!(
            "{:<28} {:<8} {:>5} {:>8} {:>9.4} {:>8}  {}\n",
            l.module,
            l.algorithm.name(),
            l.rank,
            l.alpha.map_or("-".to_string(), |a| format!("{a}")),
            l.scale,
            l.param_count(),
            shapes.join(", ")
        );
    }
    for key in adapter.replacements.keys() {
        out += &format!("replaces {key}\n");
    }
    for key in adapter.diffs.keys() {
        out += &format!("adds a difference to {key}\n");
    }
    out
}

/// Why a command failed: its exit status follows the class.
enum Failure {
    /// The command line (exit 2).
    Usage(String),
    /// A file (exit 1).
    File(FileError),
}

impl From<FileError> for Failure {
    fn from(e: FileError) -> Self {
        Failure::File(e)
    }
}

/// `path` as it will be resolved: canonical when it exists, else its canonical parent joined
/// with its name.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.map_or_else(|| Path::new(".").canonicalize(), Path::canonicalize);
    match (parent, path.file_name()) {
        (Ok(p), Some(name)) => p.join(name),
        _ => path.to_path_buf(),
    }
}

/// Refuse an `--out` that is one of the inputs (or inside a PEFT input directory).
fn refuse_overwrite(out: &Path, inputs: &[(&str, &Path)]) -> Result<(), Failure> {
    let target = resolved(out);
    for (flag, input) in inputs {
        let input = resolved(input);
        if target == input || target.starts_with(&input) && input.is_dir() {
            return Err(Failure::Usage(format!(
                "--out {} is the {flag} input {}; write to another path (the input is left as it is)",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Give the layers named in `--groups MODULE=G` their groups, checked against the layer.
fn set_groups(adapter: &mut AdapterFile, specs: &[String]) -> Result<(), Failure> {
    for spec in specs {
        let usage = |why: String| Failure::Usage(format!("--groups {spec}: {why}"));
        let (module, g) = spec
            .rsplit_once('=')
            .ok_or_else(|| usage("expected MODULE=G, e.g. block.3=2".into()))?;
        let g: usize = g
            .parse()
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| usage(format!("`{g}` is not a positive integer")))?;
        let names: Vec<String> = adapter.layers.iter().map(|l| l.module.clone()).collect();
        let layer = adapter
            .layers
            .iter_mut()
            .find(|l| l.module == module)
            .ok_or_else(|| {
                usage(format!(
                    "the adapter has no layer `{module}` (it has {names:?})"
                ))
            })?;
        let shape = layer.base_shape.clone().unwrap_or_default();
        if shape.len() < 3 || !shape[0].is_multiple_of(g) {
            return Err(usage(format!(
                "`{module}.weight` has shape {shape:?}; groups need a conv whose {} output \
                 channels they divide",
                shape.first().copied().unwrap_or(0)
            )));
        }
        layer.groups = g;
    }
    Ok(())
}

fn run(args: Args) -> Result<String, Failure> {
    let options = options(&args.prefix);
    match args.command {
        Command::Inspect { path, json, base } => {
            let dict = base.as_ref().map(|b| StateDict::read(b)).transpose()?;
            let adapter = load(&path, dict.as_ref().zip(base.as_deref()), &options)?;
            Ok(inspect(&adapter, json))
        }
        Command::Merge {
            base,
            adapter,
            out,
            multiplier,
        } => {
            if !multiplier.is_finite() {
                return Err(Failure::Usage(format!(
                    "--multiplier {multiplier}: must be a finite number"
                )));
            }
            refuse_overwrite(&out, &[("--base", &base), ("--adapter", &adapter)])?;
            let base_dict = StateDict::read(&base)?;
            let adapter = load(&adapter, Some((&base_dict, &base)), &options)?;
            let merged = merge::merge(
                &base_dict,
                &base.display().to_string(),
                &adapter,
                multiplier,
            )?;
            merged.write(&out)?;
            Ok(format!(
                "merged {} layer(s), {} replaced and {} changed entr(ies) into {}",
                adapter.layers.len(),
                adapter.replacements.len(),
                adapter.diffs.len(),
                out.display()
            ))
        }
        Command::Convert {
            adapter,
            base,
            to,
            out,
            groups,
            full_diff,
        } => {
            if full_diff && to != Format::Lycoris {
                return Err(Failure::Usage(format!(
                    "--full-diff writes LyCORIS full diffs; it needs --to lycoris, not --to {}",
                    to.name()
                )));
            }
            refuse_overwrite(&out, &[("--base", &base), ("--adapter", &adapter)])?;
            let base_dict = StateDict::read(&base)?;
            let mut adapter = load(&adapter, Some((&base_dict, &base)), &options)?;
            set_groups(&mut adapter, &groups)?;
            let base_file = base.display().to_string();
            let mut as_diffs = Vec::new();
            if to == Format::Lycoris {
                merge::replacements_to_diffs(&mut adapter, &base_dict, &base_file)?;
                if full_diff {
                    as_diffs = merge::layers_to_diffs(&mut adapter, &base_dict, &base_file, |l| {
                        !l.algorithm.lycoris_names()
                    })?;
                }
            } else {
                merge::diffs_to_replacements(&mut adapter, &base_dict, &base_file)?;
            }
            format::write(&adapter, to, &out)?;
            let lost = if as_diffs.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} layer(s) as full diffs, their factors lost: {}",
                    as_diffs.len(),
                    as_diffs.join(", ")
                )
            };
            Ok(format!(
                "wrote {} layer(s) as {} to {}{lost}",
                adapter.layers.len(),
                to.name(),
                out.display()
            ))
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(Failure::File(e)) => {
            eprintln!("adapter: {e}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("adapter: {e}");
            ExitCode::from(2)
        }
    }
}
