//! Command-line pieces shared by the binaries.

use std::path::{Path, PathBuf};

use lora_core::DeviceSpec;

use crate::harness::Shard;

/// Parse `--device`: `cpu` (or `flex`), `wgpu`, `wgpu:N`, `cuda` or `cuda:N`, case-insensitive.
///
/// # Errors
/// A message naming what was given and the accepted forms.
pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (name, index) = match lower.split_once(':') {
        Some((name, index)) => {
            let index = index
                .parse::<usize>()
                .map_err(|_| format!("bad device index `{index}` in `{s}`"))?;
            (name, Some(index))
        }
        None => (lower.as_str(), None),
    };
    match (name, index) {
        ("cpu" | "flex", None) => Ok(DeviceSpec::Cpu),
        ("wgpu", index) => Ok(DeviceSpec::Wgpu(index)),
        ("cuda", index) => Ok(DeviceSpec::Cuda(index.unwrap_or(0))),
        _ => Err(format!(
            "unknown device `{s}`; expected cpu, wgpu[:N] or cuda[:N]"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_form_parses_and_round_trips() {
        let cases = [
            ("cpu", DeviceSpec::Cpu),
            ("CPU", DeviceSpec::Cpu),
            ("flex", DeviceSpec::Cpu),
            ("wgpu", DeviceSpec::Wgpu(None)),
            ("wgpu:1", DeviceSpec::Wgpu(Some(1))),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ];
        for (text, spec) in cases {
            assert_eq!(parse_device(text), Ok(spec), "{text}");
            assert_eq!(parse_device(&spec.to_string()), Ok(spec));
        }
        for (bad, named) in [
            ("tpu", "`tpu`"),
            ("cpu:1", "`cpu:1`"),
            ("wgpu:x", "`x`"),
            ("", "``"),
        ] {
            let err = parse_device(bad).err().unwrap_or_default();
            assert!(err.contains(named), "{bad:?}: {err}");
        }
    }
}

/// A list of positive integers, `32-32-64` or `32,32,64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List(pub Vec<usize>);

/// Parse a [`List`] for clap.
///
/// # Errors
/// A message naming the bad item.
pub fn parse_list(s: &str) -> Result<List, String> {
    s.split([',', '-'])
        .map(|item| {
            item.trim().parse::<usize>().map_err(|_| {
                format!("`{item}` in `{s}` is not a whole number (e.g. 32-32-64-64-128)")
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(List)
}

/// The shared `main` of the experiment binaries: resolve the device (training on its autodiff
/// form), track process memory only on the CPU, run, and print where the report is. Errors
/// (bad input, missing data with its fetch command, a backend not compiled in) go to stderr
/// with a non-zero exit, never a panic.
pub fn run_experiment(
    spec: &DeviceSpec,
    out: &Path,
    run: impl FnOnce(&burn::tensor::Device) -> crate::error::Result<()>,
) -> std::process::ExitCode {
    quiet_headless_wgpu(spec);
    let device = match spec.device() {
        Ok(d) => d.autodiff(),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    crate::train::track_memory(matches!(spec, DeviceSpec::Cpu));
    match run(&device) {
        Ok(()) => {
            let report = out.join("report.md");
            if report.is_file() {
                println!("report: {}", report.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Give a headless wgpu run a private `XDG_RUNTIME_DIR` when the environment has none, before
/// any device exists. Mesa's Vulkan drivers (lavapipe on a CPU-only box) probe for a Wayland
/// display while enumerating adapters, and libwayland prints "XDG_RUNTIME_DIR is invalid or not
/// set" once per probe (four times per run) when the variable is missing; with an empty dir
/// (`$TMPDIR/lora-xdg-runtime`, mode 0700) the probe finds no display and says nothing. Does
/// nothing for other devices, or when the variable already names an absolute path. Call it
/// first thing in `main`, while the process has one thread.
pub fn quiet_headless_wgpu(spec: &DeviceSpec) {
    if !matches!(spec, DeviceSpec::Wgpu(_)) {
        return;
    }
    let set = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| Path::new(&v).is_absolute());
    if set {
        return;
    }
    // One dir for every run (not one per process, which would litter the temp dir); the probe
    // only needs the variable to name a directory, and connects to nothing in it.
    let dir = std::env::temp_dir().join("lora-xdg-runtime");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    // SAFETY: called from `main` before any thread is spawned (no device, no thread pool
    // exists yet), so no other thread can read the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

/// The `report` subcommand every study binary has: merge the shard dirs (of one plan, of any
/// study) into `out`, print where the report is, and exit 0; or print the error and exit 1.
pub fn report_command(out: &Path, dirs: &[PathBuf]) -> std::process::ExitCode {
    match crate::studies::merge(out, dirs) {
        Ok(n) => {
            println!("{n} runs; report: {}", out.join("report.md").display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Command-line overrides of a profile's plan.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--widths`.
    pub widths: Option<Vec<usize>>,
    /// `--pool-after`, 0-based.
    pub pool_after: Option<Vec<usize>>,
    /// `--pretrain-epochs`.
    pub pretrain_epochs: Option<usize>,
    /// `--steps`.
    pub steps: Option<usize>,
    /// `--batch`.
    pub batch: Option<usize>,
    /// `--seeds`.
    pub seeds: Option<usize>,
    /// `--ranks`.
    pub ranks: Option<Vec<usize>>,
    /// `--train-bn`.
    pub train_norm: bool,
    /// `--variants`.
    pub variants: Option<Vec<lora_conv::ConvVariant>>,
}

/// The arguments both experiment binaries take.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// `cpu`, `wgpu[:N]` or `cuda[:N]`.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// A small smoke configuration (minutes on 2 CPU cores).
    #[arg(long)]
    pub quick: bool,
    /// Data dir, as filled by scripts/fetch-data.sh.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Output dir (runs.jsonl, results.json, report.md, plots); `results/<binary>` by default.
    /// A rerun with the same dir skips the runs already in its runs.jsonl.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seeds per configuration, paired across methods [default: 5; 2 with --quick].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Run slice I (0-based) of N of the plan, e.g. `--shard 2/8`; merge the shards' output
    /// dirs with the `report` subcommand of `compare`.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Conv widths, e.g. `32-32-64-64-128` (the reference CNN; the default profile uses
    /// `16-16-32-32-64` to fit about an hour on 2 CPU cores).
    #[arg(long, value_parser = parse_list)]
    pub widths: Option<List>,
    /// 1-based indices of the convs followed by a 2x2 max pool, e.g. `1,3`.
    #[arg(long, value_parser = parse_list)]
    pub pool_after: Option<List>,
    /// Pretraining epochs on Fashion-MNIST.
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    /// Fine-tuning budget in optimizer steps, the same for every method.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Fine-tuning batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Adapter ranks, e.g. `1,4,16`.
    #[arg(long, value_parser = parse_list)]
    pub ranks: Option<List>,
    /// Adapter types, by registered name: e.g. `locon,tucker2,cp,loha,lokr`
    /// [default: locon,tucker2,cp].
    #[arg(long, value_delimiter = ',')]
    pub variants: Option<Vec<lora_conv::ConvVariant>>,
    /// Also run each adapter variant with the batch norms' gamma and beta trainable.
    #[arg(long)]
    pub train_bn: bool,
    /// Where the pretrained checkpoint is cached [default: the output dir for `compare`,
    /// results/compare for `inflate3d`]. Point shards at one shared dir to pretrain once.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

impl CommonArgs {
    /// The plan overrides the flags ask for.
    ///
    /// # Errors
    /// A 0 in `--pool-after` (indices are 1-based).
    pub fn overrides(&self) -> Result<Overrides, String> {
        let pool_after = match &self.pool_after {
            Some(List(p)) => Some(
                p.iter()
                    .map(|&i| {
                        i.checked_sub(1)
                            .ok_or_else(|| "--pool-after: conv indices are 1-based".to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(Overrides {
            widths: self.widths.as_ref().map(|l| l.0.clone()),
            pool_after,
            pretrain_epochs: self.pretrain_epochs,
            steps: self.steps,
            batch: self.batch,
            seeds: self.seeds,
            ranks: self.ranks.as_ref().map(|l| l.0.clone()),
            train_norm: self.train_bn,
            variants: self.variants.clone(),
        })
    }
}
