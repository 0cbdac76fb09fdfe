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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use proxy_herd::places::html_escape as escape;
use serde::Serialize;
use serde_json::Value;

use crate::check::{Scorecard, Status, CATALOGUE};
use crate::report::{latency_ms, show, Comparison, Measurement, Report};
use crate::summary;

/// The page's verdict: the check's when nothing was measured.
fn verdict(report: &Report) -> String {
    if report.measurements.is_empty() {
        report.check_verdict()
    } else {
        report.verdict()
    }
}

/// The check's scorecard: a row per check, grouped, a column per herd;
/// each cell opens to its transcript.
fn scorecard_table(cards: &[Scorecard]) -> String {
    if cards.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Correctness</h2>\n<p>Each check talks to the herd's client ports only, a \
         connection per question as graders do; flooding is seen as the first line of a \
         WHATSAT reply at each server. <b>course</b>: the course's protocol asks for it; \
         <b>ours</b>: this project's contract only, shown but not held against a \
         student's herd. Open a cell for its transcript: each line sent (&gt;) and \
         received (&lt;), with the server and the milliseconds since the check began.</p>\n",
    );
    for card in cards {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(&card.summary()));
    }
    out.push_str("<table class=\"card\"><tr><th>check</th><th>needs</th>");
    for card in cards {
        let _ = write!(out, "<th>{}</th>", escape(&card.herd));
    }
    out.push_str("</tr>\n");
    let mut group = "";
    for (i, spec) in CATALOGUE.iter().enumerate() {
        let this = spec.name.split('.').next().unwrap_or("");
        if this != group {
            group = this;
            let _ = writeln!(
                out,
                "<tr class=\"group\"><th colspan=\"{}\">{}</th></tr>",
                cards.len() + 2,
                escape(group)
            );
        }
        let _ = write!(
            out,
            "<tr><td title=\"{}\">{}</td><td>{}</td>",
            escape(spec.proves),
            escape(spec.name),
            if spec.course { "course" } else { "ours" }
        );
        for card in cards {
            let Some(o) = card.outcomes.get(i) else {
                out.push_str("<td></td>");
                continue;
            };
            let (class, word) = match o.status {
                Status::Passed => ("pass", "pass"),
                Status::Failed => ("fail", "FAIL"),
                Status::NotChecked => ("skip", "not checked"),
            };
            let reason = o
                .reason
                .as_ref()
                .map(|r| format!(": {}", escape(r)))
                .unwrap_or_default();
            let transcript: String = o
                .transcript
                .iter()
                .map(|e| {
                    format!(
                        "{:>9.1} {:<10} {} {}\n",
                        e.ms,
                        escape(&e.server),
                        escape(e.dir),
                        escape(&e.text)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<td class=\"{class}\"><details><summary>{word}{reason}</summary>\
                 <pre>{transcript}</pre></details></td>"
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
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

/// Mean, lowest and highest of one figure over its rounds, and each.
struct Spread {
    mean: f64,
    low: f64,
    high: f64,
    each: Vec<f64>,
}

impl Spread {
    fn of(each: Vec<f64>) -> Spread {
        let mean = each.iter().sum::<f64>() / each.len().max(1) as f64;
        let low = each.iter().copied().fold(f64::INFINITY, f64::min);
        let high = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Spread {
            mean,
            low,
            high,
            each,
        }
    }
}

/// Colours by target, in order of appearance; the baseline and the
/// direct stub calls are always grey, the reference every herd is held
/// against.
struct Palette(Vec<String>);

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 120, 20),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const REFERENCE: RGBColor = RGBColor(90, 90, 90);

impl Palette {
    fn new(report: &Report) -> Palette {
        let mut targets: Vec<String> = Vec::new();
        for m in &report.measurements {
            if !is_reference(&m.target) && !targets.contains(&m.target) {
                targets.push(m.target.clone());
            }
        }
        Palette(targets)
    }

    fn of(&self, target: &str) -> RGBColor {
        if is_reference(target) {
            return REFERENCE;
        }
        let i = self.0.iter().position(|t| t == target).unwrap_or(0);
        COLOURS[i % COLOURS.len()]
    }
}

fn is_reference(target: &str) -> bool {
    target.starts_with("baseline") || target == "stub direct"
}

/// The number in a setting such as `c=16` or `c=64 new`.
fn connections(setting: &str) -> Option<f64> {
    setting
        .strip_prefix("c=")?
        .split(' ')
        .next()?
        .parse::<f64>()
        .ok()
}

/// One plot: its SVG, and its legend (drawn in HTML under the plot, so
/// it never hides a point).
struct Plot {
    svg: String,
    legend: Vec<(String, RGBColor)>,
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
    out.push_str(&scorecard_table(&report.scorecards));
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

const WIDTH: u32 = 940;
const HEIGHT: u32 = 380;

/// Requests per second against connections, a line per target.
fn throughput(report: &Report, palette: &Palette, mode: &str) -> Result<Option<Plot>, String> {
    // target -> connections -> rates over rounds
    let mut series: BTreeMap<&str, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for m in report.measurements.iter().filter(|m| m.mode == mode) {
        if let Some(c) = connections(&m.setting) {
            series
                .entry(&m.target)
                .or_default()
                .entry(c as u64)
                .or_default()
                .push(m.per_sec);
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    let cs: Vec<f64> = series
        .values()
        .flat_map(|s| s.keys().map(|&c| c as f64))
        .collect();
    let (c_low, c_high) = (
        cs.iter().copied().fold(f64::INFINITY, f64::min),
        cs.iter().copied().fold(0.0, f64::max),
    );
    let mut ticks = cs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let top = series
        .values()
        .flat_map(|s| s.values().flatten())
        .copied()
        .fold(0.0, f64::max)
        * 1.15;
    let low = series
        .values()
        .flat_map(|s| s.values().flatten())
        .copied()
        .filter(|&r| r > 0.0)
        .fold(f64::INFINITY, f64::min);
    let title = format!("{mode}: requests per second against connections (closed loop)");
    let x = ((c_low / 1.6).max(0.5)..c_high * 1.6)
        .log_scale()
        .with_key_points(ticks);
    // An asyncio herd can answer a few hundredths of what the baseline
    // does: on a linear axis it would be a line on the floor.
    let svg = if low.is_finite() && top / low > 20.0 {
        draw(|root| {
            throughput_chart(
                root,
                &title,
                x,
                (low / 2.0..top * 2.0).log_scale(),
                "requests per second (log scale)",
                &series,
                palette,
            )
        })?
    } else {
        draw(|root| {
            throughput_chart(
                root,
                &title,
                x,
                0.0..top.max(1.0),
                "requests per second",
                &series,
                palette,
            )
        })?
    };
    let legend = series
        .keys()
        .map(|t| (t.to_string(), palette.of(t)))
        .collect();
    Ok(Some(Plot { svg, legend }))
}

/// The throughput plot on the axes it is given.
fn throughput_chart<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x: X,
    y: Y,
    y_desc: &str,
    series: &BTreeMap<&str, BTreeMap<u64, Vec<f64>>>,
    palette: &Palette,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = builder(root, title)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("connections (log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&|c| format!("{c:.0}"))
        .y_label_formatter(&|r| format!("{r:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (target, points) in series {
        let colour = palette.of(target);
        let spreads: Vec<(f64, Spread)> = points
            .iter()
            .map(|(&c, rates)| (c as f64, Spread::of(rates.clone())))
            .collect();
        draw_rounds(&mut chart, colour, &spreads, true)?;
    }
    Ok(())
}

/// Each point's rounds: a line through the means (when `joined`), a bar
/// from the lowest round to the highest, and a dot per round.
fn draw_rounds<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    colour: RGBColor,
    spreads: &[(f64, Spread)],
    joined: bool,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if joined {
        chart
            .draw_series(LineSeries::new(
                spreads.iter().map(|(x, s)| (*x, s.mean)),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(
            spreads
                .iter()
                .filter(|(_, s)| s.each.len() > 1)
                .map(|(x, s)| ErrorBar::new_vertical(*x, s.low, s.mean, s.high, colour, 8)),
        )
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(spreads.iter().flat_map(|(x, s)| {
            s.each
                .iter()
                .map(move |&y| Circle::new((*x, y), 3, colour.filled()))
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Latency percentiles (p50, p99, p99.9, max) of the modes named, a line
/// per target and setting, on a log scale.
fn percentiles(
    report: &Report,
    palette: &Palette,
    modes: &[&str],
    title: &str,
) -> Result<Option<Plot>, String> {
    type Key<'a> = (&'a str, &'a str);
    let mut series: BTreeMap<Key<'_>, Vec<[f64; 4]>> = BTreeMap::new();
    let mut order: Vec<Key<'_>> = Vec::new();
    for m in report
        .measurements
        .iter()
        .filter(|m| modes.contains(&m.mode.as_str()))
    {
        let Some(l) = &m.latency else { continue };
        let key = (m.target.as_str(), m.setting.as_str());
        if !order.contains(&key) {
            order.push(key);
        }
        series
            .entry(key)
            .or_default()
            .push([l.p50_us, l.p99_us, l.p999_us, l.max_us].map(|us| us / 1000.0));
    }
    if series.is_empty() {
        return Ok(None);
    }
    let all = series.values().flatten().flatten().copied();
    let (low, high) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v.max(1e-3)), hi.max(v))
    });
    let names = ["p50", "p99", "p99.9", "max"];
    let mut legend = Vec::new();
    let svg = draw(|root| {
        let mut chart = builder(root, title)
            .build_cartesian_2d(-0.3f64..3.3, (low / 2.0..high * 2.0).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && (0.0..4.0).contains(&i) {
                    names[i as usize].to_string()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|ms| format!("{ms}"))
            .y_desc("milliseconds (log scale)")
            .draw()
            .map_err(|e| e.to_string())?;
        // Settings of one target after its first are drawn lighter.
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for key in &order {
            let rounds = &series[key];
            let nth = seen.entry(key.0).or_default();
            let base = palette.of(key.0);
            let colour = lighter(base, *nth);
            *nth += 1;
            let spreads: Vec<(f64, Spread)> = (0..4)
                .map(|i| (i as f64, Spread::of(rounds.iter().map(|r| r[i]).collect())))
                .collect();
            legend.push((format!("{} {}", key.0, key.1), colour));
            draw_rounds(&mut chart, colour, &spreads, true)?;
        }
        Ok(())
    })?;
    Ok(Some(Plot { svg, legend }))
}

/// A colour moved `nth` steps towards white, so one target's settings
/// share a hue.
fn lighter(c: RGBColor, nth: usize) -> RGBColor {
    let f = 1.0 - 0.3 * (nth.min(2) as f64);
    let mix = |v: u8| (255.0 - (255.0 - f64::from(v)) * f) as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// One bar per target and setting for the figure `key` of `mode`'s notes.
fn bars(
    report: &Report,
    palette: &Palette,
    mode: &str,
    key: &str,
    title: &str,
    unit: &str,
) -> Result<Option<Plot>, String> {
    let mut groups: Vec<(String, String, Vec<f64>)> = Vec::new();
    for m in report.measurements.iter().filter(|m| m.mode == mode) {
        let Some(v) = m.extra.get(key).and_then(Value::as_f64) else {
            continue;
        };
        let label = format!("{} {}", m.target, m.setting);
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => g.2.push(v),
            None => groups.push((label, m.target.clone(), vec![v])),
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let top = groups
        .iter()
        .flat_map(|g| g.2.iter())
        .copied()
        .fold(0.0, f64::max)
        * 1.2;
    let n = groups.len();
    let svg = draw(|root| {
        let mut chart = builder(root, title)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0.0..top.max(1.0))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < n {
                    groups[i as usize].0.clone()
                } else {
                    String::new()
                }
            })
            .y_desc(unit)
            .draw()
            .map_err(|e| e.to_string())?;
        let spreads: Vec<(f64, Spread, RGBColor)> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (i as f64, Spread::of(g.2.clone()), palette.of(&g.1)))
            .collect();
        chart
            .draw_series(spreads.iter().map(|(x, s, colour)| {
                Rectangle::new(
                    [(x - 0.3, 0.0), (x + 0.3, s.mean)],
                    colour.mix(0.8).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        let spreads: Vec<(f64, Spread)> = spreads.into_iter().map(|(x, s, _)| (x, s)).collect();
        draw_rounds(&mut chart, BLACK, &spreads, false)
    })?;
    let mut legend: Vec<(String, RGBColor)> = Vec::new();
    for g in &groups {
        if !legend.iter().any(|(t, _)| *t == g.1) {
            legend.push((g.1.clone(), palette.of(&g.1)));
        }
    }
    Ok(Some(Plot { svg, legend }))
}

/// Every plot's frame: its title, margins and room for the axes' labels.
fn builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    builder
}

/// Runs `f` on a fresh SVG drawing area and returns the SVG text.
fn draw(
    f: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        f(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

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

    /// The spread keeps every round, and the mean lies between the ends.
    #[test]
    fn spread_of_rounds() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.low, s.mean, s.high), (1.0, 2.0, 3.0));
        assert_eq!(s.each.len(), 3);
    }

    /// The connection count comes from either form of setting.
    #[test]
    fn settings() {
        assert_eq!(connections("c=16"), Some(16.0));
        assert_eq!(connections("c=64 new"), Some(64.0));
        assert_eq!(connections("n=1000"), None);
    }
}
