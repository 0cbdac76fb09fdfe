//! What a run measured, and how it is said: the [`Report`] of
//! measurements and comparisons, its terminal table and its verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::check::{self, Scorecard};
use crate::stats::Latency;
use crate::summary;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The mode.
    pub mode: String,
    /// What was loaded: the herd (and which server), the baseline, the stub.
    pub target: String,
    /// The setting, e.g. `c=16`.
    pub setting: String,
    /// Requests answered correctly (flood: updates arrived; conns:
    /// connections answered).
    pub requests: u64,
    /// Errors: failed or wrong replies, failed connects.
    pub errors: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Requests per second.
    pub per_sec: f64,
    /// Latency percentiles, when the mode has them.
    pub latency: Option<Latency>,
    /// Figures particular to the mode (lost, open_s, kib_per_conn, ...).
    pub extra: Map<String, Value>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Which round of `--rounds` measured it, from 1.
    pub round: u32,
}

/// A herd measurement held against its reference.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The mode.
    pub mode: String,
    /// The setting both ran with.
    pub setting: String,
    /// The herd's target.
    pub herd: String,
    /// What it is compared with.
    pub against: String,
    /// Ratios herd/reference (and differences), by name.
    pub figures: Map<String, Value>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every run, in order.
    pub measurements: Vec<Measurement>,
    /// Herd vs. baseline (or vs. direct stub) figures.
    pub comparisons: Vec<Comparison>,
    /// What was asked for but not measured, and why (a mode the other
    /// herd of `--herd-cmd` cannot take part in).
    pub skipped: Vec<String>,
    /// Where what was compared differs (a herd of one against a server
    /// with its neighbours down), said beside the figures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
    /// `check`'s scorecards: ours, and the other herd's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scorecards: Vec<Scorecard>,
    /// Whether checks of our contract only decide the exit status too.
    #[serde(skip)]
    pub strict: bool,
}

impl Report {
    /// Whether nothing was measured (`baseline --serve-for`).
    pub fn is_empty(&self) -> bool {
        self.measurements.is_empty() && self.scorecards.is_empty()
    }

    /// Notes a caveat, once.
    pub fn caveat(&mut self, text: String) {
        if !self.caveats.contains(&text) {
            self.caveats.push(text);
        }
    }

    /// Whether every herd checked passed its checks (see
    /// [`Scorecard::passes`]).
    pub fn checks_pass(&self) -> bool {
        self.scorecards.iter().all(|c| c.passes(self.strict))
    }

    /// The exit status: 2 when a measurement saw errors or lost updates,
    /// 1 when a check failed, 0 otherwise.
    pub fn exit_status(&self) -> u8 {
        if !self.clean() {
            2
        } else if !self.checks_pass() {
            1
        } else {
            0
        }
    }

    /// The check's last line: the last herd's summary, and the exit
    /// status the checks give.
    pub fn check_verdict(&self) -> String {
        let Some(last) = self.scorecards.last() else {
            return String::new();
        };
        let failing: Vec<&str> = self
            .scorecards
            .iter()
            .filter(|c| !c.passes(self.strict))
            .map(|c| c.herd.as_str())
            .collect();
        let status = if failing.is_empty() {
            "exit status 0".to_string()
        } else {
            format!("exit status 1: {} failed", failing.join(" and "))
        };
        format!("{} ({status})", last.summary())
    }

    /// Whether every measurement went without errors, lost updates or
    /// failed verification.
    pub fn clean(&self) -> bool {
        self.measurements.iter().all(|m| {
            m.errors == 0
                && m.extra.get("lost").and_then(Value::as_u64).unwrap_or(0) == 0
                && m.extra.get("verified").and_then(Value::as_bool) != Some(false)
        })
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The report as a table at most [`WIDTH`] columns wide:
    /// measurements (each with its notes on the lines below it), then
    /// comparisons, then warnings about rounds that disagree, then one
    /// line that says what was measured and what the exit status means.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if !self.scorecards.is_empty() {
            out.push_str(&check::card::text(&self.scorecards));
            let _ = writeln!(out);
            for card in &self.scorecards[..self.scorecards.len() - 1] {
                let _ = writeln!(out, "{}", card.summary());
            }
            let _ = writeln!(out, "{}", self.check_verdict());
            if self.measurements.is_empty() {
                return out;
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{}", header());
        let rounds = self.measurements.iter().any(|m| m.round > 1);
        for m in &self.measurements {
            let _ = writeln!(out, "{}", row(m));
            let notes: Vec<String> = rounds
                .then(|| format!("round={}", m.round))
                .into_iter()
                .chain(m.extra.iter().map(|(k, v)| format!("{k}={}", show(v))))
                .chain(m.first_error.iter().map(|e| format!("first error: {e}")))
                .collect();
            out.push_str(&wrapped(&notes, "    ", " "));
        }
        if !self.comparisons.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "herd / reference, by mode and setting:");
            for c in &self.comparisons {
                let _ = writeln!(
                    out,
                    "{:<8} {:<11} {} against {}",
                    c.mode, c.setting, c.herd, c.against
                );
                let figures: Vec<String> = c
                    .figures
                    .iter()
                    .map(|(k, v)| format!("{k} {}", show(v)))
                    .collect();
                out.push_str(&wrapped(&figures, "    ", ",  "));
            }
        }
        for skipped in &self.skipped {
            let _ = writeln!(out, "not measured: {skipped}");
        }
        for caveat in &self.caveats {
            out.push_str(&words_wrapped(&format!("note: {caveat}"), ""));
        }
        let steps = summary::steps(self);
        if steps
            .iter()
            .any(|s| s.theirs.is_some() || s.baseline.is_some())
        {
            let _ = writeln!(out);
            out.push_str(&summary::text(&steps));
        }
        for warning in self.disagreements() {
            let _ = writeln!(out, "{warning}");
        }
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    /// Warnings for measurements repeated with the same mode, target and
    /// setting whose rates differ by more than a third.
    pub fn disagreements(&self) -> Vec<String> {
        let mut rounds: BTreeMap<(&str, &str, &str), Vec<f64>> = BTreeMap::new();
        let mut round_numbers: BTreeMap<(&str, &str, &str), BTreeSet<u32>> = BTreeMap::new();
        for m in &self.measurements {
            rounds
                .entry((&m.mode, &m.target, &m.setting))
                .or_default()
                .push(m.per_sec);
            round_numbers
                .entry((&m.mode, &m.target, &m.setting))
                .or_default()
                .insert(m.round);
        }
        rounds
            .into_iter()
            .filter(|(_, rates)| rates.len() > 1)
            .filter_map(|((mode, target, setting), rates)| {
                let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
                let high = rates.iter().copied().fold(0.0, f64::max);
                // The baseline runs twice a round in `all` (beside the one-
                // and the five-server herds): say runs, and rounds apart.
                let rounds = round_numbers[&(mode, target, setting)].len();
                let runs = if rates.len() == rounds {
                    format!("{rounds} rounds")
                } else {
                    format!("{} runs over {rounds} rounds", rates.len())
                };
                (low > 0.0 && high / low > 4.0 / 3.0).then(|| {
                    format!(
                        "warning: {runs} of {mode} {target} {setting} range from {low:.0}/s \
                         to {high:.0}/s: the machine is noisy, compare ratios within one round"
                    )
                })
            })
            .collect()
    }

    /// One line: how many measurements of which modes, and why the exit
    /// status is 0 or 2.
    pub fn verdict(&self) -> String {
        let mut modes: Vec<&str> = Vec::new();
        for m in &self.measurements {
            if !modes.contains(&m.mode.as_str()) {
                modes.push(&m.mode);
            }
        }
        let errors: u64 = self.measurements.iter().map(|m| m.errors).sum();
        let lost: u64 = self
            .measurements
            .iter()
            .filter_map(|m| m.extra.get("lost").and_then(Value::as_u64))
            .sum();
        let unverified = self
            .measurements
            .iter()
            .filter(|m| m.extra.get("verified").and_then(Value::as_bool) == Some(false))
            .count();
        let what = format!(
            "{} measurement(s) of {}",
            self.measurements.len(),
            modes.join(", ")
        );
        if self.clean() && !self.checks_pass() {
            return format!(
                "{what}: every request answered, nothing lost, but a check failed (exit status 1)"
            );
        }
        if self.clean() {
            return format!("{what}: every request answered, nothing lost (exit status 0)");
        }
        // Which targets failed: with --herd-cmd, the other herd's errors
        // are its own, and the line should say so.
        let mut failed: Vec<String> = Vec::new();
        for m in &self.measurements {
            if m.errors > 0 || m.extra.get("lost").and_then(Value::as_u64).unwrap_or(0) > 0 {
                let name = format!("{} {}", m.target, m.mode);
                if !failed.contains(&name) {
                    failed.push(name);
                }
            }
        }
        let failed = if failed.is_empty() {
            String::new()
        } else {
            format!(", in {}", failed.join("; "))
        };
        format!(
            "{what}: {errors} error(s), {lost} update(s) lost, {unverified} flood check(s) \
             failed{failed} (exit status 2; the notes above say where)"
        )
    }
}

/// A sentence on lines that start with `indent` and stay within
/// [`WIDTH`], broken between words.
pub(crate) fn words_wrapped(text: &str, indent: &str) -> String {
    let words: Vec<String> = text.split(' ').map(String::from).collect();
    wrapped(&words, indent, " ")
}

/// The widest line the table prints.
const WIDTH: usize = 100;

/// `items` on lines that start with `indent` and stay within [`WIDTH`],
/// joined by `sep`; nothing when there are none. An item too long for a
/// line of its own is cut, with `...`.
pub(crate) fn wrapped(items: &[String], indent: &str, sep: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for item in items {
        let item = if indent.len() + item.chars().count() > WIDTH {
            let kept: String = item.chars().take(WIDTH - indent.len() - 3).collect();
            format!("{kept}...")
        } else {
            item.clone()
        };
        if !line.is_empty()
            && indent.len() + line.chars().count() + sep.len() + item.chars().count() > WIDTH
        {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push_str(sep);
        }
        line.push_str(&item);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
    out
}

pub(crate) fn header() -> String {
    format!(
        "{:<8} {:<23} {:<11} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "mode",
        "target",
        "setting",
        "requests",
        "errors",
        "per s",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "max ms"
    )
}

/// A measurement's p50, p99, p99.9 and max latency in milliseconds with
/// two decimals, or `-` each when it has none: the same cells in the
/// table here and on the report page.
pub(crate) fn latency_ms(m: &Measurement) -> [String; 4] {
    let parts: [fn(&Latency) -> f64; 4] = [|l| l.p50_us, |l| l.p99_us, |l| l.p999_us, |l| l.max_us];
    parts.map(|f| {
        m.latency
            .as_ref()
            .map_or("-".to_string(), |l| format!("{:.2}", f(l) / 1000.0))
    })
}

pub(crate) fn row(m: &Measurement) -> String {
    let [p50, p99, p999, max] = latency_ms(m);
    let cut = |text: &str, width: usize| -> String { text.chars().take(width).collect() };
    format!(
        "{:<8} {:<23} {:<11} {:>8} {:>6} {:>7.0} {:>7} {:>7} {:>7} {:>7}",
        cut(&m.mode, 8),
        cut(&m.target, 23),
        cut(&m.setting, 11),
        m.requests,
        m.errors,
        m.per_sec,
        p50,
        p99,
        p999,
        max,
    )
}

pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            // Two decimals, or four for a small ratio (an asyncio herd
            // can be a few thousandths of the baseline).
            Some(f) if n.is_f64() && f != 0.0 && f.abs() < 0.1 => format!("{f:.4}"),
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}
