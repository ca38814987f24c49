//! Register an adapter type from outside the library, then use it through the library's own
//! entry points: attach -> train -> merge/unmerge -> bypass form -> save/load -> LyCORIS full
//! diff and PEFT refusal -> inflate to 3D. Every step checks its numbers and the program exits
//! non-zero on the first that fails.
//!
//! `cargo run -p custom-adapter` (`-- --fixture DIR` also writes the files that
//! `scripts/fixtures/custom_full.py` checks with the real LyCORIS).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fixture = match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--fixture" => Some(PathBuf::from(dir)),
        other => {
            eprintln!("usage: custom-adapter [--fixture DIR]; got {other:?}");
            return ExitCode::from(2);
        }
    };
    match custom_adapter::walkthrough::run_with(fixture.as_deref()) {
        Ok(()) => {
            println!("every check passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
