//! `proxy-herd-bench`: a load generator that speaks the herd protocol to any
//! herd on this machine, and a bare baseline server to hold it against.
//! It is a program of its own, not part of the server library: it uses
//! the library only for the herd file, the protocol's parsers and
//! `server::bind_listener`.
//!
//! `main` parses the command line ([`cli`]), calls [`run`], and prints
//! the [`Report`] as a table or as JSON. The parts:
//!
//! - [`cli`]: every mode and option, and the long help.
//! - [`check`]: `check`, grading a herd from outside, with transcripts.
//! - [`ctx`]: what every mode needs (options, binaries, a run id).
//! - [`modes`]: one file per mode: what it starts, runs and compares.
//! - [`report`]: the measurements, the terminal table and the verdict.
//! - [`summary`]: the headline: each step's herds side by side, in words.
//! - [`page`]: `--report DIR`, the run as a web page of SVG plots and
//!   as `results.json`.
//! - [`client`]: the protocol from a client's side, and reply checks.
//! - [`load`]: the closed-loop load (C connections, one request each in
//!   flight) behind `iamat`, `oneshot` and `whatsat`.
//! - [`member`]: the bench as a member of a herd, noting when each
//!   update's AT line reaches it.
//! - [`flood`]: flood latency at a steady rate, timed at the member.
//! - [`sustain`]: the herd under sustained load, measured at the far
//!   end: an update counts when it has crossed the herd, not when its
//!   reply came back.
//! - [`conns`]: thousands of held connections, and the server's memory.
//! - [`baseline`]: the bare thread-per-connection server every mode can
//!   be compared with (`--vs-baseline`).
//! - [`relay`]: a server of the bare relay herd, the ceiling `sustain
//!   --vs-ceiling` holds our herd against.
//! - [`spawn`]: herds, `places-stub` and baselines started as separate
//!   processes on free loopback ports, so one command measures everything.
//! - [`stats`]: the percentiles of latencies.
//!
//! Every loop is bounded in count and in time, and all traffic stays on
//! loopback: `--addr` must be a loopback address.
#![doc = include_str!("README.md")]
#![forbid(unsafe_code)]

mod baseline;
mod check;
mod cli;
mod client;
mod conns;
mod ctx;
mod flood;
mod load;
mod member;
mod modes;
mod page;
mod relay;
mod report;
mod spawn;
mod stats;
mod summary;
mod sustain;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{BaselineArgs, Cli, Mode};
use ctx::Ctx;
use report::{header, Report};

/// Runs the mode the command line asks for.
pub fn run(cli: &Cli) -> Result<Report, String> {
    if let Mode::Baseline(BaselineArgs {
        serve_for: Some(secs),
        listen,
        forward,
    }) = &cli.mode
    {
        if !(secs.is_finite() && *secs > 0.0 && *secs <= 86_400.0) {
            return Err(format!(
                "--serve-for must be between 0 and 86400, not {secs}"
            ));
        }
        if !listen.ip().is_loopback() || forward.is_some_and(|f| !f.ip().is_loopback()) {
            return Err("the baseline only listens and forwards on loopback".into());
        }
        baseline::serve_for(*listen, *forward, Duration::from_secs_f64(*secs))?;
        return Ok(Report::default());
    }
    if let Mode::Relay(args) = &cli.mode {
        if !(args.serve_for.is_finite() && args.serve_for > 0.0 && args.serve_for <= 86_400.0) {
            return Err(format!(
                "--serve-for must be between 0 and 86400, not {}",
                args.serve_for
            ));
        }
        relay::serve_for(
            &args.name,
            &args.herd,
            Duration::from_secs_f64(args.serve_for),
        )?;
        return Ok(Report::default());
    }
    let ctx = Ctx::new(&cli.opts)?;
    let mut report = Report::default();
    if let Mode::Check(args) = &cli.mode {
        if args.list {
            print!("{}", check::list());
            return Ok(report);
        }
        if cli.opts.rounds > 1 {
            return Err("check runs once; --rounds is for the speed modes".into());
        }
        check::refuse_load_options(&cli.opts, args)?;
        check::check(&ctx, args, &mut report)?;
        return Ok(report);
    }
    ctx.progress(format_args!("{}", header()));
    let rounds = cli.opts.rounds;
    for round in 1..=rounds {
        if rounds > 1 {
            ctx.progress(format_args!("round {round} of {rounds}"));
        }
        let first = report.measurements.len();
        match &cli.mode {
            Mode::Iamat => modes::iamat(&ctx, false, &mut report)?,
            Mode::Oneshot => modes::iamat(&ctx, true, &mut report)?,
            Mode::Whatsat(args) => modes::whatsat(&ctx, args, &mut report)?,
            Mode::Flood(args) => modes::flood(&ctx, args, &mut report)?,
            Mode::Sustain(args) => modes::sustain(&ctx, args, &mut report)?,
            Mode::Conns(args) => modes::conns(&ctx, args, &mut report)?,
            Mode::Baseline(_) => modes::baseline(&ctx, &mut report)?,
            Mode::All(args) => modes::all(&ctx, args, &mut report)?,
            Mode::Check(_) | Mode::Relay(_) => unreachable!("run above"),
        }
        for m in &mut report.measurements[first..] {
            m.round = round;
        }
    }
    Ok(report)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(report) => {
            if !report.is_empty() {
                if cli.opts.json {
                    print!("{}", report.json());
                } else {
                    println!();
                    print!("{}", report.table());
                }
            }
            // After the table, so a report that cannot be written loses
            // none of the figures.
            if let (Some(dir), false) = (&cli.opts.report, report.is_empty()) {
                match page::write(dir, &report, std::env::args()) {
                    Ok(index) => {
                        if !cli.opts.quiet {
                            eprintln!("report: {}", index.display());
                        }
                    }
                    Err(message) => {
                        eprintln!("proxy-herd-bench: --report {}: {message}", dir.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::from(report.exit_status())
        }
        Err(message) => {
            eprintln!("proxy-herd-bench: {message}");
            // check promises 2 when the herd could not be started (0 and
            // 1 are its verdicts); the other modes say 1.
            if matches!(cli.mode, Mode::Check(_)) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
