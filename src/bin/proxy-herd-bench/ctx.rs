//! The context every mode runs in: the options, where the binaries are,
//! and the run's id.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cli::Options;
use crate::report::{row, Measurement, Report};

/// What every mode needs: the options, where the binaries are, and a run
/// id that makes client ids unique.
pub(crate) struct Ctx {
    pub(crate) o: Options,
    pub(crate) bin_dir: PathBuf,
    pub(crate) run: String,
}

impl Ctx {
    pub(crate) fn new(o: &Options) -> Result<Ctx, String> {
        if let Some(addr) = o.addr {
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "--addr {addr}: this bench only loads servers on loopback (127.0.0.1, ::1)"
                ));
            }
        }
        let check = |what: &str, v: f64, min: f64, max: f64| {
            if v.is_finite() && v >= min && v <= max {
                Ok(())
            } else {
                Err(format!("{what} must be between {min} and {max}, not {v}"))
            }
        };
        check("--duration", o.duration, 0.01, 3600.0)?;
        check("--warmup", o.warmup, 0.0, 600.0)?;
        check("--timeout", o.timeout, 0.01, 600.0)?;
        if o.connections.is_empty() || o.connections.iter().any(|&c| c == 0 || c > 2000) {
            return Err("--connections must be between 1 and 2000".into());
        }
        // A folder the report cannot go to is found now, not after the run.
        if let Some(dir) = &o.report {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!("--report {}: cannot create the folder: {e}", dir.display())
            })?;
        }
        let bin_dir = match &o.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(PathBuf::from))
                .ok_or("cannot tell where this program is; pass --bin-dir")?,
        };
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let run = format!(
            "bench-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Ctx {
            o: o.clone(),
            bin_dir,
            run,
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.o.timeout)
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.o.duration)
    }

    pub(crate) fn progress(&self, line: std::fmt::Arguments<'_>) {
        if !self.o.quiet {
            eprintln!("{line}");
        }
    }

    /// A fresh prefix for client ids.
    pub(crate) fn ids(&self, what: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "{}-{what}{}",
            self.run,
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Notes, once, that the other herd of `--herd-cmd` is not measured
    /// by `mode`, and why.
    pub(crate) fn skip_other(&self, report: &mut Report, mode: &str, why: &str) {
        if self.o.herd_cmd.is_none() {
            return;
        }
        let note = format!("{mode} of the other herd (--herd-cmd): {why}");
        if !report.skipped.contains(&note) {
            self.progress(format_args!("  not measured: {note}"));
            report.skipped.push(note);
        }
    }

    /// Records a measurement and shows it as a progress line.
    pub(crate) fn record(&self, report: &mut Report, m: Measurement) {
        self.progress(format_args!("{}", row(&m)));
        report.measurements.push(m);
    }
}
