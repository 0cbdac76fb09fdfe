//! The page's plots: SVG drawn by `plotters`, each herd in a colour of
//! its own and the references grey, every round a dot and a bar from the
//! lowest round to the highest.

use std::collections::BTreeMap;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use serde_json::Value;

use crate::report::Report;

const WIDTH: u32 = 940;
const HEIGHT: u32 = 380;

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
pub(super) struct Palette(Vec<String>);

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
    pub(super) fn new(report: &Report) -> Palette {
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
pub(super) struct Plot {
    pub(super) svg: String,
    pub(super) legend: Vec<(String, RGBColor)>,
}

/// Requests per second against connections, a line per target.
pub(super) fn throughput(
    report: &Report,
    palette: &Palette,
    mode: &str,
) -> Result<Option<Plot>, String> {
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
pub(super) fn percentiles(
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
pub(super) fn bars(
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

#[cfg(test)]
mod tests {
    use super::*;

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
