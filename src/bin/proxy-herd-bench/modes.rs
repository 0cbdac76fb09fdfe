//! Each mode: what it starts, what it runs, and what it compares.

use std::collections::{BTreeSet, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use serde_json::{json, Map, Value};

use proxy_herd::herd::Herd;
use proxy_herd::protocol;

use super::load::{self, Plan, Work};
use super::member;
use super::spawn::{self, HerdPlan, Member, Procs, Server, SpawnedHerd, FIVE, FIVE_LINKS};
use super::stats::Latency;
use super::{
    conns, flood, sustain, AllArgs, ConnsArgs, Ctx, FloodArgs, Measurement, Report, SustainArgs,
    WhatsatArgs,
};
use super::{Comparison, Options};

/// The server under load, and what came with it.
struct Target {
    /// How the table names it.
    label: String,
    addr: SocketAddr,
    pid: Option<u32>,
    /// Every server of a spawned multi-server herd, to verify flooding.
    all: Vec<(String, SocketAddr)>,
    stub_url: Option<String>,
    /// Keeps a spawned herd running.
    _herd: Option<SpawnedHerd>,
}

impl Ctx {
    /// The server to load: `--addr`, or a herd spawned for this mode.
    fn target(&self, stub: bool) -> Result<Target, String> {
        if let Some(addr) = self.o.addr {
            return Ok(Target {
                label: addr.to_string(),
                addr,
                pid: None,
                all: Vec::new(),
                stub_url: None,
                _herd: None,
            });
        }
        let (names, links): (&[&str], &[(&str, &str)]) = if self.o.servers == 5 {
            (&FIVE, &FIVE_LINKS)
        } else {
            (&["Riley"], &[])
        };
        let name = self
            .o
            .target
            .clone()
            .unwrap_or_else(|| if names.len() == 5 { "Juzang" } else { "Riley" }.to_string());
        if !names.contains(&name.as_str()) {
            return Err(format!(
                "--target {name}: the spawned herd has {}",
                names.join(", ")
            ));
        }
        self.progress(format_args!(
            "starting a herd of {} proxy-herd process(es){} from {}",
            names.len(),
            if stub { " and places-stub" } else { "" },
            self.bin_dir.display()
        ));
        let herd = spawn::start_herd(
            &self.bin_dir,
            HerdPlan {
                names,
                links,
                member: None,
                stub,
                only: self.o.alone.then_some(name.as_str()),
            },
            self.o.keep_logs,
        )?;
        let server = herd.servers[&name].clone();
        let all = if names.len() > 1 && !self.o.alone {
            herd.servers
                .iter()
                .map(|(n, s)| (n.clone(), s.addr))
                .collect()
        } else {
            Vec::new()
        };
        let label = if self.o.alone && names.len() > 1 {
            format!("herd {name} (1 of {} up)", names.len())
        } else {
            format!("herd {name} ({} srv)", names.len())
        };
        Ok(Target {
            label,
            addr: server.addr,
            pid: Some(server.pid),
            all,
            stub_url: herd.stub_url.clone(),
            _herd: Some(herd),
        })
    }

    /// The other herd of `--herd-cmd`, started, with the server to load:
    /// `--target` if it has one of that name, else Riley if it has one,
    /// else its first server by name. Like ours, it is that one server
    /// alone with `--servers 1` (its neighbours down), and every server of
    /// `--config` with `--servers 5`.
    fn other_target(&self) -> Result<Option<Target>, String> {
        let (Some(template), Some(config)) = (&self.o.herd_cmd, &self.o.config) else {
            return Ok(None);
        };
        let file = Herd::from_file(config).map_err(|e| e.to_string())?;
        let names: Vec<&str> = file.servers().map(|s| s.name.as_str()).collect();
        let name = [self.o.target.as_deref(), Some("Riley")]
            .into_iter()
            .flatten()
            .find(|n| names.contains(n))
            .or_else(|| names.iter().min().copied())
            .ok_or("--config names no server")?
            .to_string();
        let alone = self.o.servers == 1 || self.o.alone;
        self.progress(format_args!(
            "starting the other herd{}: {template}",
            if alone {
                format!(", {name} alone")
            } else {
                String::new()
            }
        ));
        let only = alone.then_some(name.as_str());
        let herd = spawn::start_command_herd(template, config, only, self.o.keep_logs)?;
        let server = herd.servers[&name].clone();
        let label = if alone && names.len() > 1 {
            format!("other {name} (1 of {} up)", names.len())
        } else {
            format!("other {name} ({} srv)", names.len())
        };
        Ok(Some(Target {
            label,
            addr: server.addr,
            pid: Some(server.pid),
            all: Vec::new(),
            stub_url: None,
            _herd: Some(herd),
        }))
    }

    /// A baseline process serving long enough for this invocation.
    fn baseline(&self, forward: Option<SocketAddr>, procs: &mut Procs) -> Result<Server, String> {
        let runs = self.o.connections.len() as f64 * 2.0 + 4.0;
        let serve_for =
            ((self.o.warmup + self.o.duration + self.o.timeout) * runs + 600.0).min(86_400.0);
        spawn::start_baseline(
            &self.bin_dir,
            procs,
            forward,
            Duration::from_secs_f64(serve_for),
        )
    }

    fn plan(&self, label: String, conns: usize, ids: &str) -> Plan {
        Plan {
            label,
            id_prefix: self.ids(ids),
            conns,
            warmup: Duration::from_secs_f64(self.o.warmup),
            duration: self.duration(),
            timeout: self.timeout(),
            progress: !self.o.quiet,
        }
    }

    /// The five-server herd with the bench as a member named `me`, linked
    /// to `far`; the listener is the bench's peer port.
    fn five_with_member(&self, me: &str, far: &str) -> Result<(TcpListener, SpawnedHerd), String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let peer_port = listener.local_addr().map_err(|e| e.to_string())?.port();
        self.progress(format_args!(
            "starting the five-server herd with the bench as {me} linked to {far}"
        ));
        let spawned = spawn::start_herd(
            &self.bin_dir,
            HerdPlan {
                names: &FIVE,
                links: &FIVE_LINKS,
                member: Some(Member {
                    name: me.into(),
                    peer_port,
                    link_to: far.into(),
                }),
                stub: false,
                only: None,
            },
            self.o.keep_logs,
        )?;
        Ok((listener, spawned))
    }

    /// A context running `all`'s steps with other options.
    fn with(&self, o: Options) -> Ctx {
        Ctx {
            o,
            bin_dir: self.bin_dir.clone(),
            run: self.run.clone(),
        }
    }
}

fn measurement(mode: &str, target: &str, setting: &str, out: load::Outcome) -> Measurement {
    Measurement {
        mode: mode.into(),
        target: target.into(),
        setting: setting.into(),
        requests: out.requests,
        errors: out.errors,
        seconds: out.seconds,
        per_sec: out.requests as f64 / out.seconds,
        latency: Latency::from_nanos(out.latencies),
        extra: Map::new(),
        first_error: out.first_error,
        round: 1,
    }
}

/// `a / b` to four decimals (the table shows two, or four below 0.1),
/// or null when `b` is 0.
fn ratio(a: f64, b: f64) -> Value {
    if b > 0.0 {
        json!((a / b * 10_000.0).round() / 10_000.0)
    } else {
        Value::Null
    }
}

fn lat(m: &Measurement, f: fn(&Latency) -> f64) -> f64 {
    m.latency.as_ref().map_or(0.0, f)
}

/// Throughput and latency ratios of two closed-loop runs.
fn compare(herd: &Measurement, base: &Measurement, against: &str) -> Comparison {
    let mut figures = Map::new();
    figures.insert("throughput".into(), ratio(herd.per_sec, base.per_sec));
    figures.insert(
        "p50".into(),
        ratio(lat(herd, |l| l.p50_us), lat(base, |l| l.p50_us)),
    );
    figures.insert(
        "p99".into(),
        ratio(lat(herd, |l| l.p99_us), lat(base, |l| l.p99_us)),
    );
    Comparison {
        mode: herd.mode.clone(),
        setting: herd.setting.clone(),
        herd: herd.target.clone(),
        against: against.into(),
        figures,
    }
}

/// `iamat` and `oneshot`.
pub(super) fn iamat(ctx: &Ctx, oneshot: bool, report: &mut Report) -> Result<(), String> {
    let mode = if oneshot { "oneshot" } else { "iamat" };
    let target = ctx.target(false)?;
    let other = ctx.other_target()?;
    let work = |addr| {
        if oneshot {
            Work::Oneshot { addr }
        } else {
            Work::Iamat { addr }
        }
    };
    let mut procs = Procs::new("baseline", false)?;
    let mut base: Option<Server> = None;
    for &c in &ctx.o.connections {
        let setting = format!("c={c}");
        let out = load::run(
            &work(target.addr),
            &ctx.plan(format!("{mode} {} {setting}", target.label), c, mode),
        );
        let expected = out.last_lines.clone();
        let mut herd = measurement(mode, &target.label, &setting, out);
        if !target.all.is_empty() {
            let missing = spawn::converge(&target.all, &expected, Duration::from_secs(10));
            herd.extra
                .insert("verified".into(), json!(missing.is_empty()));
            herd.extra.insert(
                "flooded".into(),
                json!(format!(
                    "{}/{} servers x {} clients",
                    target.all.len()
                        - missing
                            .iter()
                            .map(|m| m.split(' ').next())
                            .collect::<BTreeSet<_>>()
                            .len(),
                    target.all.len(),
                    expected.len()
                )),
            );
            if let Some(first) = missing.first() {
                herd.first_error
                    .get_or_insert(format!("not flooded: {first}"));
            }
        }
        ctx.record(report, herd.clone());
        // The other herd, under the same load right after ours.
        let theirs = match &other {
            Some(other) => {
                let out = load::run(
                    &work(other.addr),
                    &ctx.plan(format!("{mode} {} {setting}", other.label), c, mode),
                );
                let m = measurement(mode, &other.label, &setting, out);
                ctx.record(report, m.clone());
                report.comparisons.push(compare(&herd, &m, &other.label));
                Some(m)
            }
            None => None,
        };
        if ctx.o.vs_baseline {
            if base.is_none() {
                base = Some(ctx.baseline(None, &mut procs)?);
            }
            let addr = base.as_ref().expect("started").addr;
            let out = load::run(
                &work(addr),
                &ctx.plan(format!("{mode} baseline {setting}"), c, mode),
            );
            let b = measurement(mode, "baseline", &setting, out);
            ctx.record(report, b.clone());
            report.comparisons.push(compare(&herd, &b, "baseline"));
            if let Some(theirs) = &theirs {
                report.comparisons.push(compare(theirs, &b, "baseline"));
            }
        }
    }
    Ok(())
}

/// `baseline` without `--serve-for`: the iamat load on the baseline.
pub(super) fn baseline(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let mut procs = Procs::new("baseline", false)?;
    let base = ctx.baseline(None, &mut procs)?;
    for &c in &ctx.o.connections {
        let setting = format!("c={c}");
        let out = load::run(
            &Work::Iamat { addr: base.addr },
            &ctx.plan(format!("iamat baseline {setting}"), c, "base"),
        );
        ctx.record(report, measurement("iamat", "baseline", &setting, out));
    }
    Ok(())
}

/// The host and port of an `http://HOST:PORT/...` URL.
fn url_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("http://")?;
    rest.split('/').next()?.parse().ok()
}

/// `whatsat`: through the herd, then straight to the stub.
pub(super) fn whatsat(ctx: &Ctx, args: &WhatsatArgs, report: &mut Report) -> Result<(), String> {
    let radius_m = protocol::parse_radius(&args.radius)
        .ok_or_else(|| format!("--radius {}: not a radius of README, WHATSAT", args.radius))?;
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
    let location = protocol::Location::parse(super::client::LOCATION).expect("valid");
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
        let diff = |f: fn(&Latency) -> f64| {
            json!(((lat(&herd, f) - lat(&direct, f)) * 10.0).round() / 10.0)
        };
        cmp.figures
            .insert("p50_overhead_us".into(), diff(|l| l.p50_us));
        cmp.figures
            .insert("p99_overhead_us".into(), diff(|l| l.p99_us));
        report.comparisons.push(cmp);
    }
    Ok(())
}

/// Links from `from` to `to`, not passing through `avoid`.
fn hops(herd: &Herd, from: &str, to: &str, avoid: &str) -> Option<usize> {
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

fn flood_measurement(target: &str, setting: &str, hops: usize, out: flood::Outcome) -> Measurement {
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
pub(super) fn flood(ctx: &Ctx, args: &FloodArgs, report: &mut Report) -> Result<(), String> {
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
    let out = flood::measure(
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
        let out = flood::measure(
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

fn conns_measurement(target: &str, n: usize, out: conns::Outcome) -> Measurement {
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
pub(super) fn conns(ctx: &Ctx, args: &ConnsArgs, report: &mut Report) -> Result<(), String> {
    if args.count == 0 || args.count > 100_000 {
        return Err("-n must be between 1 and 100000".into());
    }
    if let Some(limit) = conns::open_files_limit() {
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
    let out = conns::measure(
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
        ctx.progress(format_args!(
            "  conns {}: opening {}",
            other.label, args.count
        ));
        let out = conns::measure(
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
        let out = conns::measure(
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

/// `sustain`: a fresh five-server herd per setting, the bench a member
/// linked to `--far`, closed-loop load on `--near`; then, with
/// `--vs-baseline`, the baseline's iamat rate at the same connections.
pub(super) fn sustain(ctx: &Ctx, args: &SustainArgs, report: &mut Report) -> Result<(), String> {
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
            let plan = sustain::Plan {
                conns: c,
                duration: ctx.duration(),
                population,
                prefix,
                timeout: ctx.timeout(),
                patience: Duration::from_secs_f64(args.patience),
                progress: !ctx.o.quiet,
            };
            let out = sustain::run(spawned.servers[&args.near].addr, &member, &plan);
            let peaks: Vec<(String, u64)> = spawned
                .servers
                .iter()
                .map(|(name, s)| (name.clone(), sustain::peak_rss(s.pid).unwrap_or(0)))
                .collect();
            drop(member);
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
            ctx.record(report, m);
        }
    }
    Ok(())
}

fn sustain_measurement(
    target: &str,
    setting: &str,
    out: sustain::Outcome,
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

/// `all`: every mode with the settings the README's Performance table uses, against the baseline.
pub(super) fn all(ctx: &Ctx, args: &AllArgs, report: &mut Report) -> Result<(), String> {
    if ctx.o.addr.is_some() {
        return Err("all spawns its own herds; it does not take --addr".into());
    }
    let step = |servers: usize, connections: Vec<usize>| {
        ctx.with(Options {
            servers,
            connections,
            vs_baseline: true,
            target: None,
            ..ctx.o.clone()
        })
    };
    iamat(&step(1, vec![16, 64]), false, report)?;
    iamat(&step(5, vec![16, 64]), false, report)?;
    iamat(&step(1, vec![16]), true, report)?;
    let w = WhatsatArgs {
        stub_url: None,
        radius: "10".into(),
        bound: 5,
        api_key: spawn::STUB_KEY.into(),
    };
    whatsat(&step(1, vec![16]), &w, report)?;
    let f = FloodArgs {
        herd: None,
        near: "Riley".into(),
        far: "Campbell".into(),
        me: "Bench".into(),
        rate: args.rate,
    };
    flood(&step(5, vec![1]), &f, report)?;
    let sustained = SustainArgs {
        near: "Riley".into(),
        far: "Campbell".into(),
        clients: vec![0, 100_000],
        patience: 60.0,
    };
    sustain(&step(5, vec![64]), &sustained, report)?;
    conns(
        &step(1, vec![1]),
        &ConnsArgs {
            count: args.count,
            pid: None,
        },
        report,
    )?;
    Ok(())
}
