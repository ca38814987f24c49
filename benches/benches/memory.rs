//! Peak memory of one training step of the experiment CNN, per form: each configuration runs
//! in a fresh child process, which takes one warm-up step, resets its peak resident set
//! (`/proc/self/clear_refs`), takes one step and reports the growth of its peak over the
//! resident set before the step. Linux only. Output: JSON lines on stdout and
//! `$BENCH_OUT/memory.json`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

use benches::cnn::{self, Trainer};
use burn::tensor::Device;
use lora_conv::{ConvVariant, ForwardMode};

fn status(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn child(config: &str) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let base = cnn::config().init(&device);
    let measure = |step: &mut dyn FnMut() -> f32| {
        step();
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = status("VmRSS:").unwrap_or(0);
        step();
        let peak = status("VmHWM:").unwrap_or(0);
        peak.saturating_sub(before)
    };
    let bytes = if config == "full" {
        let mut t = Trainer::new(base, &device);
        measure(&mut || t.step())
    } else {
        let mut parts = config.split('-');
        let variant: ConvVariant = parts.next().unwrap().parse().unwrap();
        let rank: usize = parts.next().unwrap().trim_start_matches('r').parse().unwrap();
        let mode: ForwardMode = parts.next().unwrap().parse().unwrap();
        let model = cnn::adapted(&base, variant, rank, mode, &device).unwrap();
        let mut t = Trainer::new(model, &device);
        measure(&mut || t.step())
    };
    println!("{{\"config\": \"{config}\", \"peak_step_bytes\": {bytes}}}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(&args[pos + 1]);
        return;
    }
    let mut configs = vec!["full".to_string()];
    for variant in ConvVariant::ALL {
        for mode in [ForwardMode::WeightSpace, ForwardMode::Bypass, ForwardMode::Auto] {
            configs.push(format!("{variant}-r4-{mode}"));
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut lines = Vec::new();
    for config in configs {
        let out = Command::new(&exe).args(["--child", &config]).output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("{line}");
        lines.push(line);
    }
    let dir = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench-extra".into());
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(format!("{dir}/memory.json"), format!("[{}]\n", lines.join(",\n")));
    }
}
