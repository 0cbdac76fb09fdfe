//! `check`: grades a herd from outside, through its client ports only.
//!
//! Each check has a stable name (`group.what`), says whether the course's
//! protocol requires it or only our contract does (so a student's herd
//! is never failed for our extras), and ends as passed, failed with a
//! one-line reason, or not checked with the reason. Its transcript holds
//! every line sent and received, with the server and the time.
//!
//! - [`card`]: the scorecard, as the terminal's table and the page's.
//! - [`catalogue`]: the checks, their groups and what each proves.
//! - [`run`]: what every check is made of: asking, waiting until servers
//!   hold what they should, and whether WHATSAT may be asked at all.
//! - [`checks`]: how each check is done, but the kills;
//! - [`faults`]: one and two servers killed and started again.
//! - [`probe`]: connections that write the transcript.
//! - [`subject`]: the herd under check, its servers stopped and started.
//!
//! Flooding is seen the way a client sees it: the first line of a WHATSAT
//! reply at each server is the AT record it holds. The herd's own links
//! decide the path.

pub mod card;
mod catalogue;
mod checks;
mod faults;
mod probe;
mod run;
mod subject;

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use proxy_herd::herd::Herd;

use crate::cli::CheckArgs;
use crate::ctx::Ctx;
use crate::report::Report;

pub use catalogue::CATALOGUE;
pub use probe::Event;
use subject::Subject;

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The herd did what the check asks.
    Passed,
    /// It did not; the reason says what it did instead.
    Failed,
    /// The check could not be made; the reason says why.
    NotChecked,
    /// Not asked for (`--only`): left out of the tables and the counts.
    Skipped,
}

/// One check's outcome for one herd.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The stable name, `group.what`.
    pub name: String,
    /// Whether the course's protocol requires it (`false`: our contract
    /// only).
    pub course: bool,
    /// How it ended.
    pub status: Status,
    /// Why it failed or was not checked, in one line.
    pub reason: Option<String>,
    /// Milliseconds it took.
    pub ms: f64,
    /// What was sent and received.
    pub transcript: Vec<Event>,
}

/// Every check's outcome for one herd.
#[derive(Debug, Clone, Serialize)]
pub struct Scorecard {
    /// `proxy-herd` or `other`.
    pub herd: String,
    /// How it was started (the template, or our binaries).
    pub started: String,
    /// Its servers and their neighbours, as the checks expected them.
    pub topology: Vec<(String, Vec<String>)>,
    /// The outcomes, in the catalogue's order.
    pub outcomes: Vec<Outcome>,
}

impl Scorecard {
    /// How many checks ended with `status`, counting only course checks
    /// (`course` true) or only our contract's extras (false).
    pub fn count(&self, status: &Status, course: bool) -> usize {
        self.outcomes
            .iter()
            .filter(|o| &o.status == status && o.course == course)
            .count()
    }

    /// The names of the failed checks, course checks first.
    pub fn failures(&self, course: bool) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|o| o.status == Status::Failed && o.course == course)
            .map(|o| o.name.as_str())
            .collect()
    }

    /// Whether the herd passes: no course check failed; with `strict`,
    /// none of our contract's either, and every course check asked for
    /// was made (a herd whose flooding could not be watched has not shown
    /// that it floods).
    pub fn passes(&self, strict: bool) -> bool {
        self.failures(true).is_empty()
            && (!strict
                || (self.failures(false).is_empty() && self.count(&Status::NotChecked, true) == 0))
    }

    /// One line: how many passed, failed and were not checked, naming the
    /// failures.
    pub fn summary(&self) -> String {
        let part = |course: bool| {
            let failed = self.failures(course);
            format!(
                "{} passed, {} failed{}, {} not checked",
                self.count(&Status::Passed, course),
                failed.len(),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", failed.join(", "))
                },
                self.count(&Status::NotChecked, course),
            )
        };
        format!(
            "{}: course {}; our contract's extras {}",
            self.herd,
            part(true),
            part(false)
        )
    }
}

/// Checks our herd, and with `--herd-cmd` the other herd beside it, and
/// adds their scorecards to the report.
pub(crate) fn check(ctx: &Ctx, args: &CheckArgs, report: &mut Report) -> Result<(), String> {
    if ctx.o.addr.is_some() {
        return Err("check starts the herds it grades; it does not take --addr".into());
    }
    let settings = Settings::of(args)?;
    let shape = match &ctx.o.config {
        Some(config) => Herd::from_file(config).map_err(|e| format!("--config: {e}"))?,
        None => Herd::default_herd(),
    };
    let mut subjects = Vec::new();
    if !(args.other_only && ctx.o.herd_cmd.is_some()) {
        let ours = Subject::ours(&ctx.bin_dir, &shape, ctx.o.keep_logs)?;
        subjects.push((ours, "our release binaries".to_string()));
    }
    if let (Some(template), Some(config)) = (&ctx.o.herd_cmd, &ctx.o.config) {
        let other = Subject::other(&ctx.bin_dir, template, config, ctx.o.keep_logs)?;
        subjects.push((other, template.clone()));
    }
    for (mut subject, started) in subjects {
        ctx.progress(format_args!(
            "checking {} ({started}): {} servers",
            subject.label,
            subject.names().len()
        ));
        subject
            .start_all()
            .map_err(|e| format!("{}: could not start: {e}", subject.label))?;
        let outcomes = checks::run_all(&mut subject, &settings, &|line| {
            ctx.progress(format_args!("  {line}"))
        });
        if ctx.o.keep_logs {
            ctx.progress(format_args!("  logs kept in {}", subject.dir().display()));
        }
        let topology = subject
            .names()
            .into_iter()
            .map(|n| {
                let next = subject.neighbours(&n);
                (n, next)
            })
            .collect();
        let card = Scorecard {
            herd: subject.label.clone(),
            started,
            topology,
            outcomes,
        };
        ctx.progress(format_args!("  {}", card.summary()));
        report.scorecards.push(card);
    }
    report.strict = args.strict;
    Ok(())
}

/// The options of the load modes mean nothing to `check`: say so rather
/// than run as if they had been heard.
pub fn refuse_load_options(o: &crate::cli::Options, args: &CheckArgs) -> Result<(), String> {
    let mut given = Vec::new();
    if o.servers != 1 {
        given.push("--servers");
    }
    if o.alone {
        given.push("--alone");
    }
    if o.vs_baseline {
        given.push("--vs-baseline");
    }
    if o.target.is_some() {
        given.push("--target");
    }
    if o.connections != [16] {
        given.push("--connections");
    }
    if o.duration != 5.0 {
        given.push("--duration");
    }
    if o.warmup != 0.5 {
        given.push("--warmup");
    }
    if !given.is_empty() {
        return Err(format!(
            "check does not take {}: they set the load of the speed modes (the herd file \
             gives check its servers; --within and --reply-within its waits)",
            given.join(", ")
        ));
    }
    if args.other_only && o.herd_cmd.is_none() {
        return Err("--other-only needs --herd-cmd and --config: there is no other herd".into());
    }
    Ok(())
}

/// How the checks run: their deadlines and which of them.
pub struct Settings {
    /// How long a reply may take.
    pub reply: Duration,
    /// How long an update may take to reach every server it can.
    pub within: Duration,
    /// How long a restarted server may take to catch up.
    pub catch_up: Duration,
    /// Name prefixes to run; empty runs every check.
    pub only: Vec<String>,
    /// Poll with WHATSAT even when the herd does not use the Places
    /// stand-in it was given.
    pub real_places: bool,
}

impl Settings {
    fn of(args: &CheckArgs) -> Result<Settings, String> {
        let secs = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 600.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("{what} must be between 0 and 600 seconds, not {v}"))
            }
        };
        if args.only.iter().any(|p| p.trim().is_empty()) {
            return Err("--only: an empty name (a stray comma?) would match every check".into());
        }
        for prefix in &args.only {
            if !CATALOGUE
                .iter()
                .any(|c| c.name.starts_with(prefix.as_str()))
            {
                return Err(format!(
                    "--only {prefix}: no check's name starts so; `check --list` names them"
                ));
            }
        }
        Ok(Settings {
            reply: secs("--reply-within", args.reply_within)?,
            within: secs("--within", args.within)?,
            catch_up: secs("--catch-up-within", args.catch_up_within)?,
            only: args.only.clone(),
            real_places: args.real_places,
        })
    }

    /// Whether the check `name` is to run.
    pub fn wants(&self, name: &str) -> bool {
        let asked = |name: &str| self.only.iter().any(|p| name.starts_with(p.as_str()));
        // The other WHATSAT checks need what whatsat.reply learns.
        let needed = name == "whatsat.reply"
            && CATALOGUE
                .iter()
                .any(|c| c.name.starts_with("whatsat.") && asked(c.name));
        self.only.is_empty() || asked(name) || needed
    }
}

/// The catalogue as text, for `check --list`.
pub fn list() -> String {
    let mut out = String::new();
    for spec in CATALOGUE {
        let _ = writeln!(
            out,
            "{:<30} {:<6} {}",
            spec.name,
            if spec.course { "course" } else { "ours" },
            spec.proves
        );
    }
    out
}
