//! Parameter counts and rank bounds of every registered adapter type for one layer.
//!
//! `cargo run -p lora-cli --bin bounds -- --in S --out T --kernel 3x3 --rank R [--groups G] [--json]`

use std::process::ExitCode;

use clap::Parser;
use lora_conv::bounds::{
    closed_form, full_count, max_rank, max_rank_tucker2_below_locon, param_count, rank_limit,
};
use lora_conv::{ConvGeometry, ConvVariant};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Parameter counts and rank bounds of LoCon, Tucker-2 and CP conv LoRA")]
struct Args {
    /// Input channels s.
    #[arg(long = "in")]
    in_channels: usize,
    /// Output channels t.
    #[arg(long = "out")]
    out_channels: usize,
    /// Kernel size: K (Conv1d), KxK (Conv2d) or KxKxK (Conv3d); sides may differ, e.g. 1x3.
    #[arg(long, value_parser = parse_kernel)]
    kernel: Kernel,
    /// Adapter rank r.
    #[arg(long)]
    rank: usize,
    /// Groups g (s and t must be multiples of g).
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Kernel sizes, one per spatial axis.
#[derive(Debug, Clone)]
struct Kernel(Vec<usize>);

/// `3`, `3x3` or `3x3x3` -> the kernel sizes (one per spatial axis).
fn parse_kernel(s: &str) -> Result<Kernel, String> {
    let sizes: Vec<usize> = s
        .split(['x', 'X'])
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            format!("bad kernel `{s}`: expected K, KxK or KxKxK with positive integers")
        })?;
    if sizes.is_empty() || sizes.len() > 3 || sizes.contains(&0) {
        return Err(format!(
            "bad kernel `{s}`: expected 1 to 3 positive sizes, like 3, 3x3 or 3x3x3"
        ));
    }
    Ok(Kernel(sizes))
}

fn check(args: &Args) -> Result<ConvGeometry, String> {
    let (s, t, g) = (args.in_channels, args.out_channels, args.groups);
    if s == 0 || t == 0 {
        return Err(format!("--in and --out must be positive (got {s} and {t})"));
    }
    if g == 0 || s % g != 0 || t % g != 0 {
        return Err(format!(
            "--groups {g} must divide both --in {s} and --out {t}"
        ));
    }
    if args.rank == 0 {
        return Err("--rank must be at least 1".into());
    }
    Ok(ConvGeometry {
        groups: g,
        ..ConvGeometry::new(s, t, args.kernel.0.clone())
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let geometry = match check(&args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let r = args.rank;
    let full = full_count(&geometry);
    let count = |v| param_count(v, &geometry, r);
    let max = |v| max_rank(v, &geometry);
    let variants = ConvVariant::all();
    if args.json {
        let by_name = |f: &dyn Fn(ConvVariant) -> usize| {
            variants
                .iter()
                .map(|&v| (v.name().to_string(), json!(f(v))))
                .collect::<serde_json::Map<_, _>>()
        };
        let mut out = by_name(&count);
        out.insert("full".into(), json!(full));
        out.insert("max_rank".into(), json!(by_name(&max)));
        out.insert(
            "rank_limit".into(),
            json!(by_name(&|v| rank_limit(v, &geometry))),
        );
        println!("{}", serde_json::Value::Object(out));
        return ExitCode::SUCCESS;
    }
    let kernel: Vec<String> = geometry.kernel.iter().map(ToString::to_string).collect();
    let cf = closed_form(&geometry);
    println!(
        "Conv{}d {} -> {}, kernel {}, groups {}: full kernel has {full} parameters",
        geometry.dims(),
        geometry.in_channels,
        geometry.out_channels,
        kernel.join("x"),
        geometry.groups
    );
    println!();
    println!(
        "{:<9} {:>14} {:>10} {:>16} {:>14} {:>16}",
        "variant",
        format!("params @ r={r}"),
        "of full",
        "max rank < full",
        "closed form",
        "stricter bound"
    );
    // The closed forms exist for the three decompositions (see lora_conv::bounds).
    let closed = |v: ConvVariant| match v.name() {
        "locon" => (Some(cf.locon), Some(cf.locon_strict)),
        "tucker2" => (Some(cf.tucker2), Some(cf.tucker2_strict)),
        "cp" => (Some(cf.cp), None),
        _ => (None, None),
    };
    let mut past = Vec::new();
    for v in variants {
        let (closed, strict) = closed(v);
        let shown = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("r < {x:.2}"));
        if count(v) >= full {
            past.push(v.name());
        }
        println!(
            "{:<9} {:>14} {:>9.2}% {:>16} {:>14} {:>16}",
            v.name(),
            count(v),
            100.0 * count(v) as f64 / full as f64,
            max(v),
            shown(closed),
            shown(strict),
        );
    }
    if !past.is_empty() {
        println!();
        println!(
            "At rank {r}, {} {} at or past break-even (as many parameters as the kernel): not \
             low-rank.",
            past.join(", "),
            if past.len() == 1 { "is" } else { "are" }
        );
    }
    println!();
    println!(
        "Tucker-2 has fewer parameters than LoCon up to rank {} (r < s/g·(K-1)/K = {:.2}).",
        max_rank_tucker2_below_locon(&geometry),
        cf.tucker2_below_locon
    );
    ExitCode::SUCCESS
}
