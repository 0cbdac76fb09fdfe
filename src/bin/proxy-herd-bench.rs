//! `proxy-herd-bench MODE`: load generator and baseline for proxy herds.
//!
//! Thin on purpose: parse the command line, run [`proxy_herd::bench::run`],
//! print the report. See `proxy-herd-bench --help` for the modes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use proxy_herd::bench::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match bench::run(&cli) {
        Ok(report) => {
            if !report.is_empty() {
                if cli.opts.json {
                    print!("{}", report.json());
                } else {
                    println!();
                    print!("{}", report.table());
                }
            }
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(message) => {
            eprintln!("proxy-herd-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
