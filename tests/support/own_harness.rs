//! A harness for the tests that need root (`harness = false` in
//! Cargo.toml): where such a test cannot run it says so in a banner and
//! reports "1 not run", never a pass; an environment variable turns "not
//! run" into a failure for a CI that must run it. It reads the arguments
//! cargo test passes on, so filters and `--list` work as for the other
//! test binaries, and prints a libtest-like summary as its last line.

use std::process::ExitCode;

/// How a run ended.
pub enum Outcome {
    Passed,
    Failed(String),
    NotRun(String),
}

/// What `main` was asked to do by the arguments cargo test passes on.
enum Mode {
    Run,
    List,
    FilteredOut,
}

/// Runs the test called `name` unless the arguments filter it out.
/// `require` names the variable that, set to 1, makes "not run" a
/// failure; `needs` says what the test needs, for the banner.
pub fn main(name: &str, require: &str, needs: &str, run: impl FnOnce() -> Outcome) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match mode(name, &args) {
        Mode::List => {
            println!("{name}: test");
            return ExitCode::SUCCESS;
        }
        Mode::FilteredOut => {
            println!("{name}: 0 passed, 0 failed, 1 filtered out");
            return ExitCode::SUCCESS;
        }
        Mode::Run => {}
    }
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Outcome::Failed(format!("panicked: {message}"))
        });
    let required = std::env::var(require).is_ok_and(|v| v == "1");
    match outcome {
        Outcome::Passed => {
            println!("{name}: 1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Outcome::Failed(reason) => {
            println!("{name}: FAILED: {reason}");
            println!("{name}: 0 passed, 1 failed");
            ExitCode::FAILURE
        }
        Outcome::NotRun(reason) => {
            let banner = "!".repeat(72);
            let title = name.to_uppercase();
            println!("{banner}\n!!! {title} TEST NOT RUN: {needs} ({reason})\n!!! It did NOT pass; it did not run at all.\n{banner}");
            if required {
                println!("{name}: {require}=1, so not running is a failure");
                println!("{name}: 0 passed, 1 failed");
                ExitCode::FAILURE
            } else {
                println!("{name}: 0 passed, 0 failed, 1 not run");
                ExitCode::SUCCESS
            }
        }
    }
}

/// Reads the arguments libtest would take, so `cargo test FILTER`,
/// `cargo test -- --list` and friends work across all test binaries:
/// a filter that does not match this test skips it, unknown flags are
/// ignored.
fn mode(name: &str, args: &[String]) -> Mode {
    // libtest flags that take a value as the next argument.
    const WITH_VALUE: [&str; 7] = [
        "--test-threads",
        "--skip",
        "--format",
        "--color",
        "--logfile",
        "--shuffle-seed",
        "-Z",
    ];
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let (mut list, mut exact, mut ignored_only) = (false, false, false);
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        match arg {
            "--list" => list = true,
            "--exact" => exact = true,
            "--ignored" => ignored_only = true,
            "--skip" => {
                if let Some(s) = args.get(i + 1) {
                    skips.push(s.clone());
                }
                i += 1;
            }
            a if WITH_VALUE.contains(&a) => i += 1,
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
        i += 1;
    }
    let matches = |pattern: &String| {
        if exact {
            pattern == name
        } else {
            name.contains(pattern.as_str())
        }
    };
    let selected = (filters.is_empty() || filters.iter().any(matches))
        && !skips.iter().any(|s| name.contains(s.as_str()))
        && !ignored_only;
    match (list, selected) {
        (true, true) => Mode::List,
        (true, false) => Mode::FilteredOut,
        (false, true) => Mode::Run,
        (false, false) => Mode::FilteredOut,
    }
}
