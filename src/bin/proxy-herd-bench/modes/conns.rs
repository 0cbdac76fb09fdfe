//! `conns`: held connections, their open and answer times, and memory.

use crate::cli::ConnsArgs;
use crate::ctx::Ctx;
use crate::report::{Comparison, Measurement, Report};

use super::*;

fn conns_measurement(target: &str, n: usize, out: crate::conns::Outcome) -> Measurement {
    let mut extra = Map::new();
    extra.insert("opened".into(), json!(out.opened));
    extra.insert(
        "open_s".into(),
        json!((out.open_s * 1000.0).round() / 1000.0),
    );
    extra.insert(
        "answer_s".into(),
        json!((out.answer_s * 1000.0).round() / 1000.0),
    );
    if let (Some((rss0, _)), Some((rss1, threads))) = (out.before, out.after) {
        let per = (rss1 as f64 - rss0 as f64) / n.max(1) as f64 / 1024.0;
        extra.insert("kib_per_conn".into(), json!((per * 10.0).round() / 10.0));
        extra.insert(
            "rss_mib".into(),
            json!((rss1 as f64 / 1048576.0 * 10.0).round() / 10.0),
        );
        extra.insert("threads".into(), json!(threads));
    }
    Measurement {
        mode: "conns".into(),
        target: target.into(),
        setting: format!("n={n}"),
        requests: out.answered,
        errors: out.errors,
        seconds: out.answer_s,
        per_sec: out.answered as f64 / out.answer_s.max(1e-9),
        latency: None,
        extra,
        first_error: out.first_error,
        round: 1,
    }
}

/// `conns`: N held connections on the herd, then on the baseline.
pub(crate) fn conns(ctx: &Ctx, args: &ConnsArgs, report: &mut Report) -> Result<(), String> {
    if args.count == 0 || args.count > 100_000 {
        return Err("-n must be between 1 and 100000".into());
    }
    if let Some(limit) = crate::conns::open_files_limit() {
        if args.count + 64 > limit {
            return Err(format!(
                "-n {} needs more open files than this process may have ({limit}); raise it with ulimit -n",
                args.count
            ));
        }
    }
    let target = ctx.target(false)?;
    let pid = args.pid.or(target.pid);
    let progress = |a: std::fmt::Arguments<'_>| ctx.progress(a);
    ctx.progress(format_args!(
        "  conns {}: opening {}",
        target.label, args.count
    ));
    let out = crate::conns::measure(
        target.addr,
        args.count,
        pid,
        &ctx.ids("conns"),
        ctx.timeout(),
        &progress,
    );
    let m = conns_measurement(&target.label, args.count, out);
    ctx.record(report, m.clone());
    drop(target);
    let mut measured = vec![m];
    if let Some(other) = ctx.other_target()? {
        if let Some(caveat) = other.caveat.clone() {
            report.caveat(caveat);
        }
        ctx.progress(format_args!(
            "  conns {}: opening {}",
            other.label, args.count
        ));
        let out = crate::conns::measure(
            other.addr,
            args.count,
            other.pid,
            &ctx.ids("conns"),
            ctx.timeout(),
            &progress,
        );
        let theirs = conns_measurement(&other.label, args.count, out);
        ctx.record(report, theirs.clone());
        report
            .comparisons
            .push(conns_comparison(&measured[0], &theirs));
        measured.push(theirs);
    }
    if ctx.o.vs_baseline {
        let mut procs = Procs::new("baseline", false)?;
        let base = ctx.baseline(None, &mut procs)?;
        ctx.progress(format_args!("  conns baseline: opening {}", args.count));
        let out = crate::conns::measure(
            base.addr,
            args.count,
            Some(base.pid),
            &ctx.ids("conns"),
            ctx.timeout(),
            &progress,
        );
        let b = conns_measurement("baseline", args.count, out);
        ctx.record(report, b.clone());
        for m in &measured {
            report.comparisons.push(conns_comparison(m, &b));
        }
    }
    Ok(())
}

/// `conns` figures of `m` over those of `against`: time to open, time to
/// answer, memory per connection.
fn conns_comparison(m: &Measurement, against: &Measurement) -> Comparison {
    let mut figures = Map::new();
    let get = |m: &Measurement, k: &str| m.extra.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    for key in ["open_s", "answer_s", "kib_per_conn"] {
        figures.insert(key.into(), ratio(get(m, key), get(against, key)));
    }
    Comparison {
        mode: "conns".into(),
        setting: m.setting.clone(),
        herd: m.target.clone(),
        against: against.target.clone(),
        figures,
    }
}
