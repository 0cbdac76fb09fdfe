//! Each mode: what it starts, what it runs, and what it compares. This
//! file holds what the modes share (the target under load, the ratios)
//! and `all`; each mode has a file of its own.

mod conns;
mod flood;
mod iamat;
mod sustain;
mod whatsat;

pub(crate) use conns::conns;
pub(crate) use flood::flood;
pub(crate) use iamat::{baseline, iamat};
pub(crate) use sustain::sustain;
pub(crate) use whatsat::whatsat;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use serde_json::{json, Map, Value};

use proxy_herd::herd::Herd;

use crate::cli::{AllArgs, ConnsArgs, FloodArgs, Options, SustainArgs, WhatsatArgs};
use crate::ctx::Ctx;
use crate::load::{self, Plan};
use crate::report::{Comparison, Measurement, Report};
use crate::spawn::{self, HerdPlan, Member, Procs, Server, SpawnedHerd, FIVE, FIVE_LINKS};
use crate::stats::Latency;

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
    /// How it differs from what it is compared with, said on the page.
    caveat: Option<String>,
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
                caveat: None,
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
            format!("herd {name} (1/{} up)", names.len())
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
            caveat: None,
        })
    }

    /// The other herd of `--herd-cmd`, started, with the server to load:
    /// `--target` if it has one of that name, else, like ours, the server
    /// with the most neighbours (Riley, then the first by name, among
    /// equals), so that both herds are loaded where the flood costs the
    /// most. It is that one server alone with `--servers 1` (its
    /// neighbours down: ours then runs as a herd of one, which the page
    /// says), and every server of `--config` with `--servers 5`.
    fn other_target(&self) -> Result<Option<Target>, String> {
        let (Some(template), Some(config)) = (&self.o.herd_cmd, &self.o.config) else {
            return Ok(None);
        };
        let file = Herd::from_file(config).map_err(|e| e.to_string())?;
        let names: Vec<&str> = file.servers().map(|s| s.name.as_str()).collect();
        let most = names
            .iter()
            .map(|n| file.neighbours(n).len())
            .max()
            .unwrap_or(0);
        let busiest: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| file.neighbours(n).len() == most)
            .collect();
        let name = self
            .o
            .target
            .as_deref()
            .filter(|t| names.contains(t))
            .or_else(|| busiest.iter().copied().find(|n| *n == "Riley"))
            .or_else(|| busiest.iter().min().copied())
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
            format!("other {name} (1/{} up)", names.len())
        } else {
            format!("other {name} ({} srv)", names.len())
        };
        let neighbours = file.neighbours(&name).len();
        let caveat = (alone && neighbours > 0 && self.o.servers == 1).then(|| {
            format!(
                "not like for like in the one-server steps: ours runs as a herd of one, \
                 theirs as {name} with its {neighbours} neighbour(s) down, which it may keep \
                 trying (compare --servers 5 --alone for ours in the same state)"
            )
        });
        Ok(Some(Target {
            label,
            addr: server.addr,
            pid: Some(server.pid),
            all: Vec::new(),
            stub_url: None,
            _herd: Some(herd),
            caveat,
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

/// `all`: every mode with the settings the table of
/// src/bin/proxy-herd-bench/README.md#performance uses, against the baseline.
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
    if args.check {
        crate::check::check(ctx, &crate::cli::CheckArgs::default(), report)?;
    }
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
        vs_ceiling: true,
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
