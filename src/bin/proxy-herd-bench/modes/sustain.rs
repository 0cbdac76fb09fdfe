//! `sustain`: sustained load counted at the far end of the herd.

use crate::cli::SustainArgs;
use crate::ctx::Ctx;
use crate::load::Work;
use crate::member;
use crate::report::Report;

use super::flood::hops;
use super::*;

/// `sustain`: a fresh five-server herd per setting, the bench a member
/// linked to `--far`, closed-loop load on `--near`; then, with
/// `--vs-baseline`, the baseline's iamat rate at the same connections.
pub(crate) fn sustain(ctx: &Ctx, args: &SustainArgs, report: &mut Report) -> Result<(), String> {
    if ctx.o.addr.is_some() {
        return Err("sustain spawns its own herd; it does not take --addr".into());
    }
    for name in [&args.near, &args.far] {
        if !FIVE.contains(&name.as_str()) {
            return Err(format!("{name} is not in the five-server herd"));
        }
    }
    if args.near == args.far {
        return Err("--near and --far must be different servers".into());
    }
    if !(args.patience.is_finite() && args.patience >= 0.0 && args.patience <= 3600.0) {
        return Err(format!(
            "--patience must be between 0 and 3600, not {}",
            args.patience
        ));
    }
    ctx.skip_other(
        report,
        "sustain",
        "the bench joins our herd through a peer port, which the protocol leaves to each herd",
    );
    let me = "Bench";
    let mut procs = Procs::new("baseline", false)?;
    let mut base: Option<Server> = None;
    for &c in &ctx.o.connections {
        let mut base_rate = None;
        for &population in &args.clients {
            let (listener, spawned) = ctx.five_with_member(me, &args.far)?;
            let hop_count = hops(&spawned.herd, &args.near, &args.far, me)
                .ok_or_else(|| format!("{} cannot reach {}", args.near, args.far))?;
            let prefix = ctx.ids("sustain");
            let member = member::Member::start(listener, &prefix).map_err(|e| e.to_string())?;
            let who = if population == 0 {
                "every update a new client".to_string()
            } else {
                format!("{population} clients cycling")
            };
            ctx.progress(format_args!(
                "  sustain {}->{} ({} hops to the bench): c={c}, {who}, {} s",
                args.near,
                args.far,
                hop_count + 1,
                ctx.o.duration
            ));
            let (out, peaks) = load(ctx, args, c, population, prefix, &spawned, member);
            drop(spawned);
            let setting = if population == 0 {
                format!("c={c} new")
            } else {
                format!("c={c} {population}")
            };
            let mut m = sustain_measurement(
                &format!("herd {}->{}", args.near, args.far),
                &setting,
                out,
                &peaks,
            );
            if ctx.o.vs_baseline {
                if base.is_none() {
                    base = Some(ctx.baseline(None, &mut procs)?);
                }
                if base_rate.is_none() {
                    let addr = base.as_ref().expect("started").addr;
                    let out = load::run(
                        &Work::Iamat { addr },
                        &ctx.plan(format!("iamat baseline c={c}"), c, "base"),
                    );
                    let b = measurement("iamat", "baseline", &format!("c={c}"), out);
                    base_rate = Some(b.per_sec);
                    ctx.record(report, b);
                }
                let rate = base_rate.expect("measured");
                let mut figures = Map::new();
                figures.insert("propagated".into(), ratio(m.per_sec, rate));
                figures.insert(
                    "acknowledged".into(),
                    ratio(m.extra["acked_per_s"].as_f64().unwrap_or(0.0), rate),
                );
                m.extra.insert("vs_baseline".into(), ratio(m.per_sec, rate));
                report.comparisons.push(Comparison {
                    mode: "sustain".into(),
                    setting: setting.clone(),
                    herd: m.target.clone(),
                    against: "baseline".into(),
                    figures,
                });
            }
            let relay = if args.vs_ceiling {
                Some(ceiling(ctx, args, c, population, &setting, &mut m, report)?)
            } else {
                None
            };
            // Ours first, then the ceiling it was held against: the
            // summary reads a step as ours and what follows it.
            ctx.record(report, m);
            if let Some(relay) = relay {
                ctx.record(report, relay);
            }
        }
    }
    Ok(())
}

/// The same load on the bare relay herd (see `relay`), recorded, and
/// ours held against it: propagated rate over the ceiling's. Its lag is
/// unbounded (no flow control) and is shown, not compared.
fn ceiling(
    ctx: &Ctx,
    args: &SustainArgs,
    c: usize,
    population: usize,
    setting: &str,
    ours: &mut Measurement,
    report: &mut Report,
) -> Result<Measurement, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let peer_port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let serve_for = ((ctx.o.warmup + ctx.o.duration) * 4.0 + args.patience + 120.0).min(86_400.0);
    let relays = spawn::start_relay_herd(
        &ctx.bin_dir,
        Member {
            name: "Bench".into(),
            peer_port,
            link_to: args.far.clone(),
        },
        Duration::from_secs_f64(serve_for),
        ctx.o.keep_logs,
    )?;
    let prefix = ctx.ids("ceiling");
    let member = member::Member::start(listener, &prefix).map_err(|e| e.to_string())?;
    ctx.progress(format_args!(
        "  sustain on the bare relay herd {}->{}: c={c}, {} s",
        args.near, args.far, ctx.o.duration
    ));
    let (out, peaks) = load(ctx, args, c, population, prefix, &relays, member);
    drop(relays);
    let relay = sustain_measurement(
        &format!("relay {}->{}", args.near, args.far),
        setting,
        out,
        &peaks,
    );
    let mut figures = Map::new();
    figures.insert("propagated".into(), ratio(ours.per_sec, relay.per_sec));
    ours.extra
        .insert("vs_ceiling".into(), ratio(ours.per_sec, relay.per_sec));
    report.comparisons.push(Comparison {
        mode: "sustain".into(),
        setting: setting.to_string(),
        herd: ours.target.clone(),
        against: relay.target.clone(),
        figures,
    });
    Ok(relay)
}

/// The sustained load on `herd`'s `--near`, counted at `member`; what
/// came of it, and every server's peak memory.
fn load(
    ctx: &Ctx,
    args: &SustainArgs,
    c: usize,
    population: usize,
    prefix: String,
    herd: &SpawnedHerd,
    member: member::Member,
) -> (crate::sustain::Outcome, Vec<(String, u64)>) {
    let plan = crate::sustain::Plan {
        conns: c,
        duration: ctx.duration(),
        population,
        prefix,
        timeout: ctx.timeout(),
        patience: Duration::from_secs_f64(args.patience),
        progress: !ctx.o.quiet,
    };
    let out = crate::sustain::run(herd.servers[&args.near].addr, &member, &plan);
    let peaks = herd
        .servers
        .iter()
        .map(|(name, s)| (name.clone(), crate::sustain::peak_rss(s.pid).unwrap_or(0)))
        .collect();
    drop(member);
    (out, peaks)
}

fn sustain_measurement(
    target: &str,
    setting: &str,
    out: crate::sustain::Outcome,
    peaks: &[(String, u64)],
) -> Measurement {
    let mut extra = Map::new();
    let round = |x: f64| (x * 100.0).round() / 100.0;
    extra.insert(
        "acked_per_s".into(),
        json!((out.acked as f64 / out.seconds.max(1e-9)).round()),
    );
    extra.insert(
        "during_load_per_s".into(),
        json!((out.arrived_during_load as f64 / out.seconds.max(1e-9)).round()),
    );
    extra.insert("drain_s".into(), json!(round(out.drain_seconds)));
    extra.insert("superseded".into(), json!(out.superseded));
    extra.insert("lost".into(), json!(out.missing));
    let mib = |b: u64| (b as f64 / 1048576.0).round() as u64;
    let max_peak = peaks.iter().map(|(_, b)| *b).max().unwrap_or(0);
    extra.insert("peak_rss_mib".into(), json!(mib(max_peak)));
    extra.insert(
        "peak_rss_each_mib".into(),
        json!(peaks
            .iter()
            .map(|(n, b)| format!("{n}:{}", mib(*b)))
            .collect::<Vec<_>>()
            .join(",")),
    );
    Measurement {
        mode: "sustain".into(),
        target: target.into(),
        setting: setting.into(),
        requests: out.arrived,
        errors: out.errors,
        seconds: out.propagated_seconds,
        per_sec: out.arrived as f64 / out.propagated_seconds.max(1e-9),
        latency: Latency::from_nanos(out.lags),
        extra,
        first_error: out.first_error,
        round: 1,
    }
}
