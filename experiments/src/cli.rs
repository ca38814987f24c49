//! Command-line pieces shared by the binaries.

use std::path::PathBuf;

use lora_core::DeviceSpec;

/// Parse `--device` (`cpu`, `wgpu[:N]`, `cuda[:N]`) for clap.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse::<DeviceSpec>().map_err(|e| e.to_string())
}

/// The shared `main` of the experiment binaries: resolve the device (training on its autodiff
/// form), track process memory only on the CPU, run, and print where the report is. Errors
/// (missing data with its fetch command, a backend not compiled in) go to stderr with a
/// non-zero exit, never a panic.
pub fn run_experiment(
    spec: &DeviceSpec,
    out: &std::path::Path,
    run: impl FnOnce(&burn::tensor::Device) -> crate::error::Result<crate::report::Results>,
) -> std::process::ExitCode {
    let device = match spec.device() {
        Ok(d) => d.autodiff(),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    crate::train::track_memory(matches!(spec, DeviceSpec::Cpu));
    match run(&device) {
        Ok(results) => {
            println!(
                "{} runs; report: {}",
                results.runs.len(),
                out.join("report.md").display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
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
    /// Output dir (results.json, report.md, plots); `results/<binary>` by default.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seeds per configuration.
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
}
