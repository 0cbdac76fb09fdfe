//! `whatsat`: WHATSAT through the herd, then straight to the stub.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use proxy_herd::protocol;

use crate::cli::WhatsatArgs;
use crate::client;
use crate::ctx::Ctx;
use crate::load::Work;
use crate::report::Report;

use super::*;

/// The host and port of an `http://HOST:PORT/...` URL.
fn url_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("http://")?;
    rest.split('/').next()?.parse().ok()
}

/// `whatsat`: through the herd, then straight to the stub.
pub(crate) fn whatsat(ctx: &Ctx, args: &WhatsatArgs, report: &mut Report) -> Result<(), String> {
    let radius_m = protocol::parse_radius(&args.radius)
        .ok_or_else(|| format!("--radius {}: not a radius WHATSAT takes", args.radius))?;
    if !(1..=20).contains(&args.bound) {
        return Err(format!("--bound {} is not between 1 and 20", args.bound));
    }
    ctx.skip_other(
        report,
        "whatsat",
        "it needs a herd pointed at our Places stand-in",
    );
    let target = ctx.target(ctx.o.addr.is_none())?;
    let stub_url = match (&args.stub_url, &target.stub_url) {
        (Some(url), _) | (None, Some(url)) => url.clone(),
        (None, None) => {
            return Err("whatsat with --addr needs --stub-url: the stub the herd uses".into())
        }
    };
    let stub_addr = url_addr(&stub_url);
    if let Some(addr) = stub_addr {
        if !addr.ip().is_loopback() {
            return Err(format!(
                "--stub-url {stub_url}: the bench only talks to loopback"
            ));
        }
    } else {
        return Err(format!(
            "--stub-url {stub_url}: expected http://127.0.0.1:PORT/..."
        ));
    }
    let client = ctx.ids("whatsat");
    let at_line = spawn::iamat_once(target.addr, &client)?;
    let location = protocol::Location::parse(client::LOCATION).expect("valid");
    let line = format!("WHATSAT {client} {} {}\n", args.radius, args.bound);
    let direct_url = format!(
        "{stub_url}?location={}&radius={radius_m}&key={}",
        location.places_param(),
        args.api_key
    );
    let count_conns = |before: &BTreeSet<u16>| {
        stub_addr.map(|a| spawn::client_ports_of(a.port()).difference(before).count())
    };
    let stub_port = stub_addr.map_or(0, |a| a.port());
    for &c in &ctx.o.connections {
        let setting = format!("c={c}");
        let before = spawn::client_ports_of(stub_port);
        let work = Work::Whatsat {
            addr: target.addr,
            line: line.clone(),
            at_line: at_line.clone(),
        };
        let out = load::run(
            &work,
            &ctx.plan(format!("whatsat {} {setting}", target.label), c, "w"),
        );
        let mut herd = measurement("whatsat", &target.label, &setting, out);
        if let Some(n) = count_conns(&before) {
            herd.extra.insert("stub_conns_opened".into(), json!(n));
        }
        ctx.record(report, herd.clone());
        let before = spawn::client_ports_of(stub_port);
        let out = load::run(
            &Work::Http {
                url: direct_url.clone(),
            },
            &ctx.plan(format!("whatsat stub direct {setting}"), c, "w"),
        );
        let mut direct = measurement("whatsat", "stub direct", &setting, out);
        if let Some(n) = count_conns(&before) {
            direct.extra.insert("stub_conns_opened".into(), json!(n));
        }
        ctx.record(report, direct.clone());
        let mut cmp = compare(&herd, &direct, "stub direct");
        // What the proxy adds to a Places call. The two runs are
        // separate samples, so on a noisy machine the direct calls' tail
        // can come out the longer; an overhead is never negative, so
        // that reads as none.
        let diff = |f: fn(&Latency) -> f64| {
            json!((((lat(&herd, f) - lat(&direct, f)) * 10.0).round() / 10.0).max(0.0))
        };
        cmp.figures
            .insert("p50_overhead_us".into(), diff(|l| l.p50_us));
        cmp.figures
            .insert("p99_overhead_us".into(), diff(|l| l.p99_us));
        report.comparisons.push(cmp);
    }
    Ok(())
}
