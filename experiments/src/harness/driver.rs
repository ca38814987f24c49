//! The driver: one function runs any study's plan into an output dir, one merges shards, one
//! regenerates the report from `runs.jsonl`.

use std::path::{Path, PathBuf};

use super::outdir::{Config, ConfigOf, OutDir, read_config};
use super::protocol::{self, choose};
use super::record::RunRecord;
use super::runlog::{RunLog, Shard, read_runs, write_atomic};
use super::{Env, Experiment, final_specs, run_count};
use crate::error::{ExpError, Result};
use crate::report::{self, Results, line, summarize_with};

/// What a process runs of the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// The slice of the plan's cells (`--shard I/N`); baselines run in slice 0.
    pub shard: Shard,
    /// Stop after preparing (e.g. to fill a pretraining cache that shards then share).
    pub prepare_only: bool,
}

/// Run a study's plan into `out`: check the plan, lock and check the dir, prepare (every data
/// file before any training), then for each cell of this shard its sweep, the rate chosen on
/// validation data, and its final runs. A run already in `out/runs.jsonl` is skipped (resume);
/// each finished run is appended as it ends. The report is regenerated from the whole log at
/// the end.
///
/// # Errors
/// Bad input (before any training), a dir in use by another process, missing data, the
/// study's errors, I/O errors.
pub fn run<E: Experiment>(plan: &E, env: &Env<'_>, out: &Path, options: RunOptions) -> Result<()> {
    plan.check()?;
    let existed = out.exists();
    let dir = OutDir::open(out)?;
    dir.check_plan(plan)?;
    let (cx, facts) = match plan.prepare(env) {
        Ok(prepared) => prepared,
        Err(e) => {
            // Missing or bad data: leave no empty output dir behind (one that was there
            // before, with its runs, stays).
            if !existed {
                drop(dir);
                let _ = std::fs::remove_dir_all(out);
            }
            return Err(e);
        }
    };
    let mut log = RunLog::open(&dir)?;
    let config = Config {
        plan: plan.clone(),
        experiment: E::NAME.to_string(),
        device: env.device_name.to_string(),
        data_dir: env.data.display().to_string(),
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        facts,
    };
    dir.write_config(&config)?;
    if options.prepare_only {
        return Ok(());
    }
    if options.shard.index == 0 {
        for record in plan.baselines(&cx)? {
            if !log.has(&record.id) {
                eprintln!("{}", line(&record));
                log.append(record)?;
            }
        }
    }
    let cells = options.shard.select(plan.cells());
    // Runs of the plan (grows by one per grid extension).
    let total = std::cell::Cell::new(cells.iter().map(|c| run_count(plan, c)).sum::<usize>());
    let mut done = 0usize;
    // Runs this process trained, and the time they took: the plan-level ETA.
    let (mut trained, clock) = (0usize, std::time::Instant::now());
    let mut step = |log: &mut RunLog, spec: &super::Spec<E::Cell>| -> Result<()> {
        done += 1;
        let id = spec.id();
        if !log.has(&id) {
            let record = plan.run(&cx, spec)?;
            trained += 1;
            if record.id != id {
                return Err(ExpError::Input(format!(
                    "{}: a run of spec {id} returned a record with id {}",
                    E::NAME,
                    record.id
                )));
            }
            let per_run = clock.elapsed().as_secs_f64() / trained as f64;
            let left = per_run * total.get().saturating_sub(done) as f64;
            eprintln!(
                "[{done}/{}] {} (plan eta {})",
                total.get(),
                line(&record),
                if left >= 90.0 {
                    format!("{:.0} min", left / 60.0)
                } else {
                    format!("{left:.0} s")
                }
            );
            log.append(record)?;
        }
        Ok(())
    };
    let proto = plan.protocol();
    for cell in &cells {
        // Sweep the grid; while the best rate sits at an edge and extensions are left, add
        // one rate beyond it and sweep that too (runs already logged are skipped).
        let mut grid = plan.lr_grid(cell).to_vec();
        let mut extensions = 0;
        // Each sweep run is stepped once, however often the grid grows (the counter and ETA).
        let mut stepped = std::collections::HashSet::new();
        let choice = loop {
            let sweep = protocol::sweep_specs(&proto, cell, &grid);
            for spec in &sweep {
                if stepped.insert(spec.id()) {
                    step(&mut log, spec)?;
                }
            }
            let ran: Vec<Option<&RunRecord>> = sweep.iter().map(|s| log.get(&s.id())).collect();
            let choice = choose(&grid, &ran, proto.sweep_steps());
            match protocol::extend(&grid, &choice.1, choice.0) {
                Some(longer) if extensions < proto.grid_extensions => {
                    grid = longer;
                    total.set(total.get() + 1);
                    extensions += 1;
                }
                _ => break choice,
            }
        };
        for spec in final_specs(plan, cell, &choice) {
            step(&mut log, &spec)?;
        }
    }
    write_report(&dir, &config, log.records())
}

/// Regenerate `results.json`, `report.md` and the plots of a locked dir from its records.
///
/// # Errors
/// I/O errors.
pub fn write_report<E: Experiment>(
    dir: &OutDir,
    config: &ConfigOf<E>,
    records: &[RunRecord],
) -> Result<()> {
    let spec = config.plan.report(config);
    let summary = summarize_with(records, &spec.reference, spec.intervals);
    let extra = config.plan.sections(config, &summary, records);
    let results = Results {
        experiment: E::NAME.to_string(),
        config: serde_json::to_value(config)
            .map_err(|e| ExpError::Input(format!("serialising config.json: {e}")))?,
        runs: records.to_vec(),
        summary,
    };
    let json = serde_json::to_string_pretty(&results)
        .map_err(|e| ExpError::Input(format!("serialising results.json: {e}")))?;
    write_atomic(&dir.path().join("results.json"), json.as_bytes())?;
    report::write(dir.path(), &spec, &results.summary, records, &extra)
}

/// Merge the runs of shard output dirs of one plan of `E` into `out` (first come first kept)
/// and write the report there. `out` may be one of `dirs`: merging a dir into itself
/// regenerates its report.
///
/// # Errors
/// Dirs of different plans, unreadable records, `out` in use or of another plan, I/O errors.
pub fn merge<E: Experiment>(out: &Path, dirs: &[PathBuf]) -> Result<usize> {
    let mut config: Option<ConfigOf<E>> = None;
    let mut records = Vec::new();
    for d in dirs {
        let c: ConfigOf<E> = read_config(d)?;
        match &config {
            Some(first) if first.plan != c.plan => {
                return Err(ExpError::Input(format!(
                    "{} ran a different plan from {}; only shards of one plan merge",
                    d.display(),
                    dirs.first()
                        .map_or(String::new(), |f| f.display().to_string())
                )));
            }
            Some(_) => {}
            None => config = Some(c),
        }
        records.extend(read_runs(&d.join("runs.jsonl"))?);
    }
    let config = config.ok_or_else(|| ExpError::Input("report: no shard dirs given".into()))?;
    let dir = OutDir::open(out)?;
    dir.check_plan(&config.plan)?;
    let mut log = RunLog::open(&dir)?;
    log.merge(records)?;
    dir.write_config(&config)?;
    write_report(&dir, &config, log.records())?;
    Ok(log.records().len())
}

/// Regenerate the report of one output dir from its `runs.jsonl` and `config.json`.
///
/// # Errors
/// As [`merge`].
pub fn regenerate<E: Experiment>(dir: &Path) -> Result<usize> {
    merge::<E>(dir, &[dir.to_path_buf()])
}
