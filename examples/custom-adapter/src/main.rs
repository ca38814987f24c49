//! Register an adapter type from outside the library, then use it through the library's own
//! entry points: attach -> train -> merge/unmerge -> bypass form -> save/load -> inflate to 3D.
//! Every step checks its numbers and the program exits non-zero on the first that fails.
//!
//! `cargo run -p custom-adapter`

use std::process::ExitCode;

fn main() -> ExitCode {
    match custom_adapter::walkthrough::run() {
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
