//! `--report DIR`: the run as one self-contained web page of plots
//! (`index.html`) and every figure as JSON (`results.json`).
//!
//! The page is for people who would rather look than read a table: each
//! herd and the baseline in a colour of its own, throughput against
//! connections, latency and lag percentiles, and memory. A measurement
//! repeated over `--rounds` is drawn as its mean with a bar from the
//! lowest round to the highest and a dot per round, so the machine's
//! noise is on the picture, not hidden behind an average.
//!
//! The plots are SVG drawn by `plotters` without its font features: text
//! goes into the SVG as `<text>` and the browser picks the font, so
//! nothing here needs a system library. The page has no scripts and
//! loads nothing.

//!
//! This file writes the page and its tables; `plots` draws the SVG
//! plots; the check's scorecard is drawn by `check::card`.

mod plots;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use proxy_herd::places::html_escape as escape;
use serde::Serialize;

use crate::check::{self, Scorecard};
use crate::report::{latency_ms, show, Comparison, Measurement, Report};
use crate::summary;
use plots::{bars, percentiles, throughput, Palette};

/// The page's verdict: the check's when nothing was measured.
fn verdict(report: &Report) -> String {
    if report.measurements.is_empty() {
        report.check_verdict()
    } else {
        report.verdict()
    }
}

/// Writes `dir/index.html` and `dir/results.json`; returns the page's
/// path.
pub fn write(
    dir: &Path,
    report: &Report,
    command: impl Iterator<Item = String>,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the folder: {e}"))?;
    let meta = Meta {
        command: command.map(|a| quoted(&a)).collect::<Vec<_>>().join(" "),
        generated: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds: report
            .measurements
            .iter()
            .map(|m| m.round)
            .max()
            .unwrap_or(1),
    };
    let results = Results {
        meta: &meta,
        verdict: verdict(report),
        warnings: report.disagreements(),
        skipped: &report.skipped,
        measurements: &report.measurements,
        comparisons: &report.comparisons,
        scorecards: &report.scorecards,
    };
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())? + "\n";
    let json_path = dir.join("results.json");
    std::fs::write(&json_path, json)
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    let page = html(report, &meta)?;
    let index = dir.join("index.html");
    std::fs::write(&index, page).map_err(|e| format!("cannot write {}: {e}", index.display()))?;
    Ok(index)
}

/// What the run was, for both files.
#[derive(Serialize)]
struct Meta {
    /// The bench's command line.
    command: String,
    /// When the report was written (UTC).
    generated: String,
    /// Cores this process could use: the figures depend on it.
    cores: usize,
    /// Rounds measured.
    rounds: u32,
}

/// `results.json`.
#[derive(Serialize)]
struct Results<'a> {
    #[serde(flatten)]
    meta: &'a Meta,
    verdict: String,
    warnings: Vec<String>,
    skipped: &'a [String],
    measurements: &'a [Measurement],
    comparisons: &'a [Comparison],
    #[serde(skip_serializing_if = "<[Scorecard]>::is_empty")]
    scorecards: &'a [Scorecard],
}

fn html(report: &Report, meta: &Meta) -> Result<String, String> {
    let palette = Palette::new(report);
    let mut plots = Vec::new();
    for mode in ["iamat", "oneshot"] {
        if let Some(svg) = throughput(report, &palette, mode)? {
            plots.push(svg);
        }
    }
    for (modes, title) in [
        (&["iamat"][..], "IAMAT latency, request to reply"),
        (&["oneshot"][..], "One-shot latency, connect to end-of-file"),
        (
            &["whatsat"][..],
            "WHATSAT latency, through the herd and straight to the stub",
        ),
        (
            &["flood"][..],
            "Flood lag at a steady rate, reply to arrival at the far member",
        ),
        (
            &["sustain"][..],
            "Lag under sustained load, reply to arrival at the far member",
        ),
    ] {
        if let Some(svg) = percentiles(report, &palette, modes, title)? {
            plots.push(svg);
        }
    }
    if let Some(svg) = bars(
        report,
        &palette,
        "conns",
        "kib_per_conn",
        "Memory per held connection",
        "KiB per connection",
    )? {
        plots.push(svg);
    }
    if let Some(svg) = bars(
        report,
        &palette,
        "sustain",
        "peak_rss_mib",
        "Peak memory of the busiest server under sustained load",
        "MiB (VmHWM)",
    )? {
        plots.push(svg);
    }

    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>proxy-herd-bench report</title><style>{STYLE}</style></head><body>\n\
         <h1>proxy-herd-bench report</h1>\n"
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\"><code>{}</code><br>{} &middot; {} core(s) &middot; {} round(s)</p>",
        escape(&meta.command),
        escape(&meta.generated),
        meta.cores,
        meta.rounds
    );
    let clean = if report.exit_status() == 0 {
        "clean"
    } else {
        "dirty"
    };
    let _ = writeln!(
        out,
        "<p class=\"verdict {clean}\">{}</p>",
        escape(&verdict(report))
    );
    out.push_str(&summary::html(&summary::steps(report)));
    for caveat in &report.caveats {
        let _ = writeln!(out, "<p class=\"skipped\">Note: {}</p>", escape(caveat));
    }
    out.push_str(&check::card::html(&report.scorecards));
    let warnings = report.disagreements();
    if !warnings.is_empty() {
        let _ = writeln!(
            out,
            "<div class=\"warning\">The machine was noisy: the rounds of {} measurement(s) \
             differ by more than a third. Compare herds within a round.<ul>",
            warnings.len()
        );
        for line in &warnings {
            let line = line.strip_prefix("warning: ").unwrap_or(line);
            let line = line.split(": the machine is noisy").next().unwrap_or(line);
            let _ = writeln!(out, "<li>{}</li>", escape(line));
        }
        out.push_str("</ul></div>\n");
    }
    for line in &report.skipped {
        let _ = writeln!(
            out,
            "<p class=\"skipped\">Not measured: {}</p>",
            escape(line)
        );
    }
    if !report.measurements.is_empty() {
        let _ = writeln!(out, "<p>{READING}</p>");
    }
    for plot in &plots {
        let keys: String = plot
            .legend
            .iter()
            .map(|(label, c)| {
                format!(
                    "<span class=\"key\"><span class=\"swatch\" style=\"background:#{:02x}{:02x}{:02x}\"></span>{}</span>",
                    c.0,
                    c.1,
                    c.2,
                    escape(label)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<figure>{}<figcaption>{keys}</figcaption></figure>",
            plot.svg
        );
    }
    if !report.measurements.is_empty() {
        // Every round's rows, for whoever wants them, folded away: the
        // summary above is what most readers need.
        out.push_str(
            "<details><summary>Every ratio and every measurement, round by round</summary>\n",
        );
        out.push_str(&comparisons_table(&report.comparisons));
        out.push_str(&measurements_table(&report.measurements));
        out.push_str(
            "<p class=\"meta\">per s: requests per second; for conns, connections opened per \
             second; for flood and sustain, updates that crossed the herd per second.</p>\n</details>\n",
        );
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:980px;margin:1em auto;padding:0 1em;\
color:#222}code{font-size:90%}.meta{color:#555}.verdict{font-weight:bold;padding:.4em;\
border-radius:4px}.clean{background:#e3f4e3}.dirty{background:#fbe0e0}.warning{background:\
#fff4d6;padding:.3em;font-size:90%}.warning ul{margin:.3em 0}figure svg{max-width:100%;\
height:auto}.key{margin-right:1.2em;white-space:nowrap;font-size:90%}.swatch{display:\
inline-block;width:1.6em;height:.6em;margin-right:.4em}.skipped{color:#555}figure{margin:1.2em 0}table{border-collapse:\
collapse;font-size:85%;margin:1em 0}td,th{border-bottom:1px solid #ddd;padding:2px 6px;\
text-align:right}td:first-child,td:nth-child(2),td:nth-child(3),th{text-align:left}\
table.card td{text-align:left;vertical-align:top}.card .pass{background:#e3f4e3}.card .fail{\
background:#fbe0e0}.card .skip{background:#eee}.card pre{max-height:24em;max-width:60em;\
overflow:auto;font-size:85%;background:#fafafa}tr.group th{background:#f0f0f0}\
table{display:block;max-width:100%;overflow-x:auto}td{overflow-wrap:anywhere}\
table.summary td{text-align:left;vertical-align:top}";

const READING: &str = "Each herd has its own colour; the baseline (a bare \
thread-per-connection server that only answers IAMAT) and direct calls to the \
Places stand-in are grey. A line joins the mean of each measurement over its \
rounds; the bar through it runs from the lowest round to the highest and the \
dots are the rounds themselves. The machine is shared: compare herds within \
this run, not with another day's figures.";

fn comparisons_table(comparisons: &[Comparison]) -> String {
    if comparisons.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Ratios</h2>\n<p>herd / reference: above 1 is faster for throughput, \
         slower for latency.</p>\n<table><tr><th>mode</th><th>setting</th><th>herd</th>\
         <th>against</th><th>figures</th></tr>\n",
    );
    for c in comparisons {
        let figures: Vec<String> = c
            .figures
            .iter()
            .map(|(k, v)| format!("{k} {}", show(v)))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.mode),
            escape(&c.setting),
            escape(&c.herd),
            escape(&c.against),
            escape(&figures.join(", "))
        );
    }
    out.push_str("</table>\n");
    out
}

fn measurements_table(measurements: &[Measurement]) -> String {
    if measurements.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Every measurement</h2>\n<table><tr><th>mode</th><th>target</th><th>setting</th>\
         <th>round</th><th>requests</th><th>errors</th><th>per s</th><th>p50 ms</th>\
         <th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>notes</th></tr>\n",
    );
    for m in measurements {
        let [p50, p99, p999, max] = latency_ms(m);
        let notes: Vec<String> = m
            .extra
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .chain(m.first_error.iter().map(|e| format!("first error: {e}")))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            escape(&m.mode),
            escape(&m.target),
            escape(&m.setting),
            m.round,
            m.requests,
            m.errors,
            m.per_sec,
            p50,
            p99,
            p999,
            max,
            escape(&notes.join(" "))
        );
    }
    out.push_str("</table>\n");
    out
}

/// A word of a command line as a shell would need it, so the page's
/// command can be pasted back.
fn quoted(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,+@%{}".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A student's herd named with markup cannot break the page.
    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    /// Words with spaces or quotes come back quoted for a shell; plain
    /// ones as they are.
    #[test]
    fn command_words() {
        assert_eq!(quoted("--herd-cmd"), "--herd-cmd");
        assert_eq!(
            quoted("python3 server.py {name}"),
            "'python3 server.py {name}'"
        );
        assert_eq!(quoted("it's"), "'it'\\''s'");
        assert_eq!(quoted(""), "''");
    }
}
