//! The machine a run ran on, stamped on every record: the commit of the source, the CPU model,
//! the ISA extensions that matter for CPU training kernels, and the thread count.

use std::process::Command;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// ISA extensions worth knowing when comparing CPU timings, spelled as Linux's
/// `/proc/cpuinfo` spells them (x86 `flags`, Arm `Features`).
pub const ISA_OF_INTEREST: [&str; 16] = [
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
];

/// Where a run ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `git rev-parse HEAD` of the source checkout the binary was built from, with `-dirty`
    /// when tracked files differ from it; `None` without git or outside a checkout.
    pub commit: Option<String>,
    /// The CPU model (`/proc/cpuinfo`'s `model name`), `None` where it cannot be read.
    pub cpu: Option<String>,
    /// The extensions of [`ISA_OF_INTEREST`] this CPU has.
    pub isa: Vec<String>,
    /// Compute threads: `RAYON_NUM_THREADS` when set (burn's CPU backend runs on rayon's global
    /// pool), else the logical CPUs available to the process.
    pub threads: usize,
    /// Logical CPUs available to the process.
    pub logical_cpus: usize,
}

impl Machine {
    /// This machine, read once per process.
    pub fn current() -> Machine {
        static MACHINE: OnceLock<Machine> = OnceLock::new();
        MACHINE.get_or_init(Machine::read).clone()
    }

    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let logical_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(logical_cpus);
        Machine {
            commit: commit(),
            cpu: field(&cpuinfo, &["model name", "Model", "Hardware"]),
            isa: isa(&cpuinfo),
            threads,
            logical_cpus,
        }
    }
}

/// The first value of any of `keys` in `/proc/cpuinfo` text.
fn field(cpuinfo: &str, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| {
        cpuinfo.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

/// The extensions of interest named in the first `flags` (x86) or `Features` (Arm) line.
fn isa(cpuinfo: &str) -> Vec<String> {
    let present: Vec<&str> = cpuinfo
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            matches!(k.trim(), "flags" | "Features").then_some(v)
        })
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    ISA_OF_INTEREST
        .iter()
        .filter(|f| present.contains(f))
        .map(|f| f.to_string())
        .collect()
}

fn git(args: &[&str]) -> Option<String> {
    // `--no-optional-locks`: `status` must not refresh (and lock) the index of a checkout
    // other processes may be using.
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit() -> Option<String> {
    let head = git(&["rev-parse", "HEAD"]).filter(|h| !h.is_empty())?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_fields_and_flags() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu sse4_2 avx2 \
                    avx512f amx_tile avx512_bf16x\n\nprocessor\t: 1\nflags\t: avx2\n";
        assert_eq!(
            field(text, &["model name"]).as_deref(),
            Some("Some CPU @ 2.0GHz")
        );
        assert_eq!(field(text, &["nothing"]), None);
        assert_eq!(isa(text), vec!["sse4_2", "avx2", "avx512f", "amx_tile"]);
        assert_eq!(isa("Features\t: fp asimd sve\n"), vec!["asimd", "sve"]);
        let m = Machine::current();
        assert!(m.threads >= 1 && m.logical_cpus >= 1);
    }
}
