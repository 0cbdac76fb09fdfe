//! `flood`: propagation latency at a steady rate, through the herd and
//! through a chain of baseline relays.

use std::collections::{BTreeSet, VecDeque};

use crate::cli::FloodArgs;
use crate::ctx::Ctx;
use crate::member;
use crate::report::Report;

use super::*;

/// Links from `from` to `to`, not passing through `avoid`.
pub(super) fn hops(herd: &Herd, from: &str, to: &str, avoid: &str) -> Option<usize> {
    let mut seen = BTreeSet::from([from.to_string()]);
    let mut queue = VecDeque::from([(from.to_string(), 0)]);
    while let Some((name, d)) = queue.pop_front() {
        if name == to {
            return Some(d);
        }
        for n in herd.neighbours(&name) {
            if n.name != avoid && seen.insert(n.name.clone()) {
                queue.push_back((n.name.clone(), d + 1));
            }
        }
    }
    None
}

fn flood_measurement(
    target: &str,
    setting: &str,
    hops: usize,
    out: crate::flood::Outcome,
) -> Measurement {
    let mut extra = Map::new();
    extra.insert("sent".into(), json!(out.sent));
    extra.insert("lost".into(), json!(out.sent - out.arrived));
    extra.insert("hops".into(), json!(hops));
    Measurement {
        mode: "flood".into(),
        target: target.into(),
        setting: setting.into(),
        requests: out.arrived,
        errors: out.errors,
        seconds: out.seconds,
        per_sec: out.sent as f64 / out.seconds.max(1e-9),
        latency: Latency::from_nanos(out.latencies),
        extra,
        first_error: out.first_error,
        round: 1,
    }
}

/// `flood`: propagation latency through the herd, then (with
/// `--vs-baseline`) through a chain of baseline relays with as many hops.
pub(crate) fn flood(ctx: &Ctx, args: &FloodArgs, report: &mut Report) -> Result<(), String> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100_000.0) {
        return Err(format!(
            "--rate must be between 0 and 100000, not {}",
            args.rate
        ));
    }
    ctx.skip_other(
        report,
        "flood",
        "the bench joins our herd through a peer port, which the protocol leaves to each herd",
    );
    let (listener, near, herd, label, _spawned) = match &args.herd {
        Some(file) => {
            let herd = Herd::from_file(file).map_err(|e| e.to_string())?;
            let me = herd.server(&args.me).map_err(|e| e.to_string())?.clone();
            let near = herd.server(&args.near).map_err(|e| e.to_string())?.clone();
            herd.server(&args.far).map_err(|e| e.to_string())?;
            if !herd.neighbours(&me.name).iter().any(|n| n.name == args.far) {
                return Err(format!(
                    "{}: {} is not linked to {}",
                    file.display(),
                    me.name,
                    args.far
                ));
            }
            let addr: SocketAddr = format!("{}:{}", near.host, near.port)
                .parse()
                .map_err(|_| format!("{}: host {} is not an IP address", near.name, near.host))?;
            if !addr.ip().is_loopback() {
                return Err(format!("{}: the bench only talks to loopback", near.name));
            }
            let listener = TcpListener::bind((me.host.as_str(), me.peer_port)).map_err(|e| {
                format!(
                    "cannot listen on {}'s peer port {}:{}: {e}",
                    me.name, me.host, me.peer_port
                )
            })?;
            (listener, addr, herd, format!("herd {}", args.near), None)
        }
        None => {
            if ctx.o.addr.is_some() {
                return Err("flood with --addr needs --herd FILE (naming the bench)".into());
            }
            for name in [&args.near, &args.far] {
                if !FIVE.contains(&name.as_str()) {
                    return Err(format!("{name} is not in the five-server herd"));
                }
            }
            let (listener, spawned) = ctx.five_with_member(&args.me, &args.far)?;
            let near = spawned.servers[&args.near].addr;
            let herd = spawned.herd.clone();
            (
                listener,
                near,
                herd,
                format!("herd {}", args.near),
                Some(spawned),
            )
        }
    };
    let hop_count = hops(&herd, &args.near, &args.far, &args.me)
        .ok_or_else(|| format!("{} cannot reach {} in the herd", args.near, args.far))?;
    let setting = format!("{}/s", args.rate);
    let path = format!("{}->{} {hop_count} hops +1", args.near, args.far);
    let prefix = ctx.ids("flood");
    let receiver = member::Member::start(listener, &prefix).map_err(|e| e.to_string())?;
    ctx.progress(format_args!(
        "  flood {path}: {} updates at {}/s",
        (args.rate * ctx.o.duration).round(),
        args.rate
    ));
    let out = crate::flood::measure(
        near,
        &receiver,
        &prefix,
        args.rate,
        ctx.duration(),
        ctx.timeout(),
    )?;
    let mut m = flood_measurement(&label, &setting, hop_count + 1, out);
    m.extra.insert("path".into(), json!(path));
    ctx.record(report, m.clone());
    drop(receiver);
    if ctx.o.vs_baseline {
        let mut procs = Procs::new("relays", false)?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let prefix = ctx.ids("flood");
        let receiver = member::Member::start(listener, &prefix).map_err(|e| e.to_string())?;
        let mut next = receiver.addr();
        for _ in 0..=hop_count {
            next = ctx.baseline(Some(next), &mut procs)?.addr;
        }
        let out = crate::flood::measure(
            next,
            &receiver,
            &prefix,
            args.rate,
            ctx.duration(),
            ctx.timeout(),
        )?;
        let b = flood_measurement(
            &format!("baseline relays x{}", hop_count + 1),
            &setting,
            hop_count + 1,
            out,
        );
        ctx.record(report, b.clone());
        let mut figures = Map::new();
        figures.insert(
            "p50".into(),
            ratio(lat(&m, |l| l.p50_us), lat(&b, |l| l.p50_us)),
        );
        figures.insert(
            "p99".into(),
            ratio(lat(&m, |l| l.p99_us), lat(&b, |l| l.p99_us)),
        );
        report.comparisons.push(Comparison {
            mode: "flood".into(),
            setting,
            herd: m.target.clone(),
            against: "baseline".into(),
            figures,
        });
    }
    Ok(())
}
