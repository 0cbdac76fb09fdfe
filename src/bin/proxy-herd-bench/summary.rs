//! The headline of a run: per step (mode and setting), each herd's mean
//! rate and p99 with the range over rounds, and the comparison said in
//! words. A teacher reads this first, at the top of the page and at the
//! end of the terminal output; the per-round rows stay below for whoever
//! wants them.
//!
//! One row model ([`Step`]), rendered as text ([`text`]) and as HTML
//! ([`html`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proxy_herd::places::html_escape as escape;

use crate::report::{Measurement, Report};

/// One figure over its rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread { mean, low, high })
    }
}

/// One herd (or the baseline) in one step.
#[derive(Debug, Clone)]
pub struct Side {
    /// The target as measured (`herd Juzang (5 srv)`, `other Bailey ...`).
    pub target: String,
    /// Requests (or what the mode counts) per second.
    pub rate: Spread,
    /// p99 latency in milliseconds, when the mode has one.
    pub p99_ms: Option<Spread>,
    pub rounds: usize,
}

/// One step of the run, each side's figures and the comparison.
#[derive(Debug, Clone)]
pub struct Step {
    pub mode: String,
    pub setting: String,
    pub ours: Option<Side>,
    pub theirs: Option<Side>,
    pub baseline: Option<Side>,
    /// The comparison in words.
    pub words: String,
}

/// Who a target is: ours, theirs (`--herd-cmd`), or the reference.
fn whose(target: &str) -> Option<usize> {
    if target.starts_with("herd") {
        Some(0)
    } else if target.starts_with("other") {
        Some(1)
    } else if target == "baseline" || target.starts_with("stub") || target.starts_with("relay") {
        Some(2)
    } else {
        None
    }
}

/// What the rate of `mode` counts, for the words.
fn unit(mode: &str) -> &'static str {
    match mode {
        "conns" => "connections opened per second",
        "flood" | "sustain" => "updates propagated per second",
        _ => "requests per second",
    }
}

/// "47x" with a sensible number of digits.
fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

/// The steps of a report, in the order they were first measured. A step
/// is one of our measurements (mode, setting and our target, so that the
/// one- and five-server iamat steps stay apart) with the other herd's
/// and the reference's measurements that followed it, over every round.
pub fn steps(report: &Report) -> Vec<Step> {
    type Key = (String, String, String);
    let mut order: Vec<Key> = Vec::new();
    let mut by: BTreeMap<(Key, usize), Vec<&Measurement>> = BTreeMap::new();
    let mut current: Option<Key> = None;
    for m in &report.measurements {
        let Some(who) = whose(&m.target) else {
            continue;
        };
        if who == 0 {
            current = Some((m.mode.clone(), m.setting.clone(), m.target.clone()));
        }
        let Some(key) = current
            .clone()
            .filter(|(mode, setting, _)| *mode == m.mode && *setting == m.setting)
        else {
            continue;
        };
        if !order.contains(&key) {
            order.push(key.clone());
        }
        by.entry((key, who)).or_default().push(m);
    }
    order
        .into_iter()
        .map(|key| {
            let side = |who: usize| -> Option<Side> {
                let ms = by.get(&(key.clone(), who))?;
                let target = ms[0].target.clone();
                let ms: Vec<&&Measurement> = ms.iter().filter(|m| m.target == target).collect();
                let rates: Vec<f64> = ms.iter().map(|m| m.per_sec).collect();
                let p99: Vec<f64> = ms
                    .iter()
                    .filter_map(|m| m.latency.as_ref().map(|l| l.p99_us / 1000.0))
                    .collect();
                Some(Side {
                    target,
                    rate: Spread::of(&rates)?,
                    p99_ms: Spread::of(&p99),
                    rounds: ms.len(),
                })
            };
            let (ours, theirs, baseline) = (side(0), side(1), side(2));
            let (mode, setting, _) = key;
            let words = words(&mode, ours.as_ref(), theirs.as_ref(), baseline.as_ref());
            Step {
                mode,
                setting,
                ours,
                theirs,
                baseline,
                words,
            }
        })
        .collect()
}

/// The comparison of a step in words: ours against theirs when both ran,
/// and ours against the baseline.
fn words(mode: &str, ours: Option<&Side>, theirs: Option<&Side>, base: Option<&Side>) -> String {
    let mut parts = Vec::new();
    if let (Some(o), Some(t)) = (ours, theirs) {
        if o.rate.mean > 0.0 && t.rate.mean > 0.0 {
            let r = o.rate.mean / t.rate.mean;
            parts.push(if r >= 1.0 {
                format!("theirs: {} fewer {}", times(r), unit(mode))
            } else {
                format!("theirs: {} more {}", times(1.0 / r), unit(mode))
            });
        }
        if let (Some(op), Some(tp)) = (&o.p99_ms, &t.p99_ms) {
            if op.mean > 0.0 && tp.mean > 0.0 {
                let r = tp.mean / op.mean;
                parts.push(if r >= 1.0 {
                    format!("p99 {} longer", times(r))
                } else {
                    format!("p99 {} shorter", times(1.0 / r))
                });
            }
        }
    }
    if let (Some(o), Some(b)) = (ours, base) {
        if b.rate.mean > 0.0 {
            parts.push(format!(
                "ours at {:.2}x the {}'s rate",
                o.rate.mean / b.rate.mean,
                b.target
            ));
        }
    }
    parts.join("; ")
}

fn rate(s: &Side) -> String {
    if s.rounds > 1 {
        format!(
            "{:.0}/s ({:.0}-{:.0})",
            s.rate.mean, s.rate.low, s.rate.high
        )
    } else {
        format!("{:.0}/s", s.rate.mean)
    }
}

fn p99(s: &Side) -> String {
    match &s.p99_ms {
        Some(p) if s.rounds > 1 => format!("p99 {:.2} ms ({:.2}-{:.2})", p.mean, p.low, p.high),
        Some(p) => format!("p99 {:.2} ms", p.mean),
        None => String::new(),
    }
}

/// The headline as text lines at most 100 wide: a line per step, its
/// sides indented below it.
pub fn text(steps: &[Step]) -> String {
    let mut out = String::from("In short (mean over rounds, lowest-highest in brackets):\n");
    for step in steps {
        let ours = step.ours.as_ref().map_or("", |o| o.target.as_str());
        let _ = writeln!(out, "{} {} {ours}", step.mode, step.setting);
        if !step.words.is_empty() {
            out.push_str(&crate::report::words_wrapped(&step.words, "  "));
        }
        for side in [&step.ours, &step.theirs, &step.baseline]
            .into_iter()
            .flatten()
        {
            let _ = writeln!(
                out,
                "    {:<26} {:<28} {}",
                side.target,
                rate(side),
                p99(side)
            );
        }
    }
    out
}

/// The headline as an HTML table.
pub fn html(steps: &[Step]) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>In short</h2>\n<table class=\"summary\"><tr><th>step</th><th>ours</th>\
         <th>theirs</th><th>baseline</th><th>in words</th></tr>\n",
    );
    let cell = |side: &Option<Side>| -> String {
        side.as_ref().map_or("<td></td>".into(), |s| {
            format!(
                "<td>{}<br>{}<br><small>{}</small></td>",
                escape(&rate(s)),
                escape(&p99(s)),
                escape(&s.target)
            )
        })
    };
    for step in steps {
        let _ = writeln!(
            out,
            "<tr><td>{} {}</td>{}{}{}<td>{}</td></tr>",
            escape(&step.mode),
            escape(&step.setting),
            cell(&step.ours),
            cell(&step.theirs),
            cell(&step.baseline),
            escape(&step.words)
        );
    }
    out.push_str(
        "</table>\n<p class=\"meta\">Each cell: the mean rate over the rounds (lowest-highest), \
         the p99 latency, and what was measured. For conns the rate is connections opened \
         per second; for flood and sustain, updates that crossed the herd per second.</p>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn m(target: &str, per_sec: f64, round: u32) -> Measurement {
        Measurement {
            mode: "iamat".into(),
            target: target.into(),
            setting: "c=16".into(),
            requests: 1,
            errors: 0,
            seconds: 1.0,
            per_sec,
            latency: None,
            extra: Map::new(),
            first_error: None,
            round,
        }
    }

    /// A step gathers each side's rounds, and the words say which herd
    /// is faster and by how much, whichever it is.
    #[test]
    fn steps_and_words() {
        let report = Report {
            measurements: vec![
                m("herd Riley (1 srv)", 100_000.0, 1),
                m("other Riley (1/5 up)", 2_000.0, 1),
                m("baseline", 125_000.0, 1),
                m("herd Riley (1 srv)", 120_000.0, 2),
                m("other Riley (1/5 up)", 3_000.0, 2),
                m("baseline", 125_000.0, 2),
            ],
            ..Report::default()
        };
        let steps = steps(&report);
        assert_eq!(steps.len(), 1);
        let ours = steps[0].ours.as_ref().unwrap();
        assert_eq!(
            ours.rate,
            Spread {
                mean: 110_000.0,
                low: 100_000.0,
                high: 120_000.0
            }
        );
        assert_eq!(ours.rounds, 2);
        assert!(
            steps[0]
                .words
                .starts_with("theirs: 44x fewer requests per second"),
            "{}",
            steps[0].words
        );
        assert!(steps[0]
            .words
            .ends_with("ours at 0.88x the baseline's rate"));
        let flipped = words(
            "iamat",
            steps[0].theirs.as_ref(),
            steps[0].ours.as_ref(),
            None,
        );
        assert!(flipped.starts_with("theirs: 44x more"), "{flipped}");
        let text = text(&steps);
        assert!(text.contains("110000/s (100000-120000)"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    }
}
