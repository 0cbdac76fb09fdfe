//! `proxy-herd-bench`: a load generator that speaks the herd protocol to any
//! herd on this machine, and a bare baseline server to hold it against.
//! It is a program of its own, not part of the server library: it uses
//! the library only for the herd file, the protocol's parsers and
//! `server::bind_listener`.
//!
//! `main` parses [`Cli`], calls [`run`], and prints the [`Report`] as a
//! table or as JSON. The parts:
//!
//! - [`client`]: the protocol from a client's side, and reply checks.
//! - [`load`]: the closed-loop load (C connections, one request each in
//!   flight) behind `iamat`, `oneshot` and `whatsat`.
//! - [`member`]: the bench as a member of a herd, noting when each
//!   update's AT line reaches it.
//! - [`flood`]: flood latency at a steady rate, timed at the member.
//! - [`sustain`]: the herd under sustained load, measured at the far
//!   end: an update counts when it has crossed the herd, not when its
//!   reply came back.
//! - [`conns`]: thousands of held connections, and the server's memory.
//! - [`baseline`]: the bare thread-per-connection server every mode can
//!   be compared with (`--vs-baseline`).
//! - [`spawn`]: herds, `places-stub` and baselines started as separate
//!   processes on free loopback ports, so one command measures everything.
//! - [`stats`]: the percentiles of latencies.
//! - [`page`]: `--report DIR`, the run as a web page of SVG plots and
//!   as `results.json`.
//!
//! Every loop is bounded in count and in time, and all traffic stays on
//! loopback: `--addr` must be a loopback address.
#![forbid(unsafe_code)]

mod baseline;
mod client;
mod conns;
mod flood;
mod load;
mod member;
mod modes;
mod page;
mod spawn;
mod stats;
mod sustain;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::{Map, Value};

use stats::Latency;

const AFTER_HELP: &str = "\
Modes:
  iamat     C connections (-c), each sending IAMAT and waiting for its AT line
            (closed loop), for D seconds (-d): requests/s, p50/p99/p99.9
            latency, errors. On a spawned five-server herd (--servers 5) it also
            checks that every server ends up with every client's newest record.
  oneshot   The graders' pattern: a new connection per IAMAT, half-close, read
            to end-of-file. Same figures.
  whatsat   WHATSAT against a herd pointed at places-stub, then the same Places
            requests sent straight to the stub; the difference is the proxy's
            own cost. Also counts the HTTP connections the herd opened to the
            stub (keep-alive means a few, not one per request).
  flood     The bench joins the herd as a member linked to a far server, sends
            IAMATs to a near server at a steady rate (--rate) and times each
            update until its AT line reaches it; counts lost updates.
  sustain   The herd under sustained load, measured where it counts: the bench
            joins the five-server herd as a member linked to --far, loads --near
            with C closed-loop connections for D seconds, and times every update
            from its reply until its AT line reaches the bench. Reports the
            acknowledged rate, the propagated rate (updates that crossed the
            herd per second, the drain after the load included), the lag
            (p50/p99/max), the drain time, and the peak memory (VmHWM) of every
            server. --clients 0 makes every update a new client; N cycles
            through N clients. --vs-baseline adds the baseline's iamat rate.
  conns     Opens N connections (-n) and holds them, then one IAMAT on each:
            time to open all, time to answer all, and the server's memory per
            connection (VmRSS from /proc/PID/status; --pid, or the spawned herd).
  baseline  A bare thread-per-connection server inside the bench that answers
            each IAMAT with its AT line and nothing else (no store, no log, no
            flood). Alone, this mode measures it with the iamat load; with
            --serve-for it just serves, for other tools to measure.
  all       Every mode against a spawned herd and the baseline, with the
            README's settings (c=16,64; five servers; oneshot c=16; whatsat c=16;
            flood at --rate; sustain c=64 with --clients 0,100000; conns -n):
            one command for the whole table.

Targets:
  Without --addr the bench starts its own herd (--spawn-herd, the default):
  release proxy-herd processes (and places-stub for whatsat) from --bin-dir on
  free loopback ports, from a herd file it writes, logging into a temp folder.
  With --addr HOST:PORT it loads that server instead (whatsat then needs
  --stub-url; flood uses --herd FILE; conns uses --pid for memory).

--vs-baseline runs the same load against the baseline (a separate process) in
the same invocation and prints herd/baseline ratios. For flood the baseline is
a chain of baseline relays with as many hops; for whatsat the reference is
always the direct stub call.

Columns of the table (at most 100 wide; each row's notes follow it, indented):
  target    what was loaded: \"herd NAME (N srv)\" is our herd with N servers up,
            loaded at NAME; \"herd A->B\" loads A and counts arrivals at the
            bench's member linked to B; \"baseline\", \"stub direct\".
  setting   c=N: N closed-loop connections; n=N: connections held (conns);
            N/s: the flood rate; \"new\" or a number: sustain's clients.
  requests  requests answered correctly (flood: updates that arrived; conns:
            connections answered); errors: wrong or missing answers.
  per s     requests per second (conns: connections opened per second).
  p50 ... max ms  latency percentiles in milliseconds, request to answer
            (flood and sustain: from the reply to the arrival at the member).
  notes     figures of the mode: lost (updates that never arrived), hops and
            path (flood: links crossed), drain_s, peak_rss_mib, kib_per_conn...
The comparison lines give herd/reference ratios: above 1 for throughput is
better, above 1 for latency is worse. Machines are shared and noisy: a
warning is printed when repeated rounds of the same measurement disagree by
more than a third; compare ratios within one run, not rates across runs.
The last line says what was measured and why the exit status is what it is:
0 when every request was answered and nothing was lost, 2 otherwise.

Rounds and reports:
  --rounds N repeats the whole mode N times on fresh herds; every round is a
  row (its notes say round=N) and the warning above compares them.
  --report DIR writes DIR/index.html, one self-contained page (no scripts, no
  downloads) with SVG plots: requests/s against connections, latency and lag
  percentiles, memory; each herd in its own colour, the baseline grey, every
  round a dot and a bar from the lowest round to the highest. DIR/results.json
  holds every figure, the command line, the time and the core count.

Another herd:
  --herd-cmd 'python3 server.py {name}' --config herd.json starts a second herd
  (an asyncio one, a student's) and loads it right after ours, in the same run:
  iamat, oneshot and conns measure it; whatsat, flood and sustain need our
  Places stand-in or our peer port and say \"not measured\" for it.

Examples:
  proxy-herd-bench all --herd-cmd 'python3 server.py {name}' --config herd.json \\
      --rounds 3 --report out/
  proxy-herd-bench iamat -c 16,64 -d 10 --vs-baseline
  proxy-herd-bench iamat --servers 5 -c 16 --vs-baseline
  proxy-herd-bench flood --rate 200 -d 10 --vs-baseline
  proxy-herd-bench sustain -c 64 -d 10 --clients 0,100000 --vs-baseline
  proxy-herd-bench iamat --servers 5 --alone -c 16,64 --vs-baseline
  proxy-herd-bench conns -n 10000 --vs-baseline
  proxy-herd-bench all -d 10 --json > bench.json
  proxy-herd-bench iamat --addr 127.0.0.1:12000 -c 64";

/// Load generator and baseline for proxy herds (the protocol of README.md), on loopback.
///
/// Measures requests per second, latency percentiles, flood propagation
/// and memory per connection of a herd, and the same figures for a bare
/// thread-per-connection baseline, so the two can be compared in one run.
/// Progress goes to stderr, the summary table (or --json) to stdout. The
/// exit status is 2 when any measurement saw errors or lost updates.
#[derive(Parser, Debug, Clone)]
#[command(name = "proxy-herd-bench", version, after_long_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub mode: Mode,
    /// Options every mode takes.
    #[command(flatten)]
    pub opts: Options,
}

/// Options shared by every mode.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Load this server (its client port, loopback only) instead of
    /// starting a herd.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,

    /// Start the herd as separate proxy-herd processes from --bin-dir (the
    /// default when --addr is not given).
    #[arg(long, global = true, conflicts_with = "addr")]
    pub spawn_herd: bool,

    /// How many servers the spawned herd has: 1, or the built-in five
    /// (README.md, The protocol).
    #[arg(long, global = true, default_value_t = 1, value_name = "1|5",
          value_parser = parse_servers)]
    pub servers: usize,

    /// The server of a spawned herd to load (default: Riley, or Juzang,
    /// which has three neighbours, in the five-server herd).
    #[arg(long, global = true, value_name = "NAME")]
    pub target: Option<String>,

    /// Where proxy-herd, places-stub and proxy-herd-bench are (default:
    /// the folder of this program).
    #[arg(long, global = true, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// With --servers 5, start only the target server: its neighbours are
    /// in the herd file but down, so its links keep retrying meanwhile.
    #[arg(long, global = true)]
    pub alone: bool,

    /// Also run the same load against the baseline server and print the
    /// herd/baseline ratios.
    #[arg(long, global = true)]
    pub vs_baseline: bool,

    /// Concurrent connections; a comma-separated list runs each in turn.
    #[arg(short = 'c', long, global = true, value_delimiter = ',',
          default_values_t = [16usize], value_name = "C[,C...]")]
    pub connections: Vec<usize>,

    /// Seconds measured per run (flood: seconds of sending).
    #[arg(
        short = 'd',
        long,
        global = true,
        default_value_t = 5.0,
        value_name = "SECS"
    )]
    pub duration: f64,

    /// Seconds of load before measuring starts.
    #[arg(long, global = true, default_value_t = 0.5, value_name = "SECS")]
    pub warmup: f64,

    /// Seconds any connect, read or write may take before it counts as an
    /// error.
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECS")]
    pub timeout: f64,

    /// Print the report as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress lines on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Keep the spawned herd's folder (herd file and logs) instead of
    /// removing it.
    #[arg(long, global = true)]
    pub keep_logs: bool,

    /// Also start another herd (an asyncio one, a student's) from this
    /// command, once per server of --config, and measure it beside ours:
    /// {name}, {port} and {config} are replaced by the server's name, its
    /// client port and the herd file's path; the command runs in the
    /// current folder. iamat, oneshot and conns measure it; the other
    /// modes say why they do not.
    #[arg(long, global = true, value_name = "COMMAND", requires = "config")]
    pub herd_cmd: Option<String>,

    /// The herd file of --herd-cmd's herd: its servers, ports and links.
    #[arg(long, global = true, value_name = "HERD.json")]
    pub config: Option<PathBuf>,

    /// Run the whole mode this many times (1-20), each round on herds
    /// started afresh (with --addr, the same server each time); the table
    /// and the report show the spread between rounds.
    #[arg(long, global = true, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,

    /// Also write DIR/index.html (one self-contained page of SVG plots and
    /// tables) and DIR/results.json (every figure); DIR is created.
    #[arg(long, global = true, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

fn parse_servers(text: &str) -> Result<usize, String> {
    match text {
        "1" => Ok(1),
        "5" => Ok(5),
        _ => Err(
            "the spawned herd has 1 server or the built-in five (README.md, The protocol)".into(),
        ),
    }
}

/// The modes (see `--help` for what each measures).
#[derive(Subcommand, Debug, Clone)]
pub enum Mode {
    /// C closed-loop connections sending IAMATs for D seconds.
    Iamat,
    /// A new connection per IAMAT, half-close, read to end-of-file.
    Oneshot,
    /// WHATSAT through the herd vs. the same request straight to the stub.
    Whatsat(WhatsatArgs),
    /// Flood propagation latency, the bench joining the herd as a member.
    Flood(FloodArgs),
    /// Sustained load, counted when updates reach the far end of the herd.
    Sustain(SustainArgs),
    /// Many held connections: open time, answer time, memory per connection.
    Conns(ConnsArgs),
    /// The bare baseline server: measure it, or serve it (--serve-for).
    Baseline(BaselineArgs),
    /// Every mode, spawned herds, against the baseline.
    All(AllArgs),
}

/// Options of `whatsat`.
#[derive(Args, Debug, Clone)]
pub struct WhatsatArgs {
    /// The Nearby Search URL of the places-stub the herd at --addr uses
    /// (required with --addr; a spawned herd gets its own stub).
    #[arg(long, value_name = "URL")]
    pub stub_url: Option<String>,
    /// WHATSAT radius in kilometres.
    #[arg(long, default_value = "10", value_name = "KM")]
    pub radius: String,
    /// WHATSAT bound on places (1-20).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub bound: usize,
    /// Key for the direct stub calls (the stub takes any non-empty key).
    #[arg(long, default_value = spawn::STUB_KEY, value_name = "KEY")]
    pub api_key: String,
}

/// Options of `flood`.
#[derive(Args, Debug, Clone)]
pub struct FloodArgs {
    /// A herd file naming the bench (--me) as a server linked to --far;
    /// the herd must be running with it. Without it the bench spawns the
    /// five-server herd plus itself.
    #[arg(long, value_name = "HERD.json")]
    pub herd: Option<PathBuf>,
    /// The server the IAMATs go to.
    #[arg(long, default_value = "Riley", value_name = "NAME")]
    pub near: String,
    /// The server the bench is linked to.
    #[arg(long, default_value = "Campbell", value_name = "NAME")]
    pub far: String,
    /// The bench's own name in the herd file.
    #[arg(long, default_value = "Bench", value_name = "NAME")]
    pub me: String,
    /// Updates per second.
    #[arg(long, default_value_t = 200.0, value_name = "PER_SEC")]
    pub rate: f64,
}

/// Options of `sustain`.
#[derive(Args, Debug, Clone)]
pub struct SustainArgs {
    /// The server the load goes to.
    #[arg(long, default_value = "Riley", value_name = "NAME")]
    pub near: String,
    /// The server the bench is linked to (the farthest from --near).
    #[arg(long, default_value = "Campbell", value_name = "NAME")]
    pub far: String,
    /// Distinct clients, cycled through: 0 makes every update a new
    /// client. A comma-separated list runs each, on a fresh herd.
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 100_000],
          value_name = "N[,N...]")]
    pub clients: Vec<usize>,
    /// Seconds to wait after the load for every update to arrive.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub patience: f64,
}

/// Options of `conns`.
#[derive(Args, Debug, Clone)]
pub struct ConnsArgs {
    /// How many connections to open and hold.
    #[arg(short = 'n', long, default_value_t = 1000, value_name = "N")]
    pub count: usize,
    /// Process id of the server at --addr, for its memory.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
}

/// Options of `baseline`.
#[derive(Args, Debug, Clone)]
pub struct BaselineArgs {
    /// Only serve, for this many seconds (at most 86400), on --listen.
    #[arg(long, value_name = "SECS")]
    pub serve_for: Option<f64>,
    /// Where to serve with --serve-for.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// Relay: also write every AT line made or received to this address.
    #[arg(long, value_name = "HOST:PORT")]
    pub forward: Option<SocketAddr>,
}

/// Options of `all`.
#[derive(Args, Debug, Clone)]
pub struct AllArgs {
    /// Connections held by the conns step.
    #[arg(short = 'n', long, default_value_t = 10_000, value_name = "N")]
    pub count: usize,
    /// Updates per second of the flood step.
    #[arg(long, default_value_t = 200.0, value_name = "PER_SEC")]
    pub rate: f64,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The mode.
    pub mode: String,
    /// What was loaded: the herd (and which server), the baseline, the stub.
    pub target: String,
    /// The setting, e.g. `c=16`.
    pub setting: String,
    /// Requests answered correctly (flood: updates arrived; conns:
    /// connections answered).
    pub requests: u64,
    /// Errors: failed or wrong replies, failed connects.
    pub errors: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Requests per second.
    pub per_sec: f64,
    /// Latency percentiles, when the mode has them.
    pub latency: Option<Latency>,
    /// Figures particular to the mode (lost, open_s, kib_per_conn, ...).
    pub extra: Map<String, Value>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Which round of `--rounds` measured it, from 1.
    pub round: u32,
}

/// A herd measurement held against its reference.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The mode.
    pub mode: String,
    /// The setting both ran with.
    pub setting: String,
    /// The herd's target.
    pub herd: String,
    /// What it is compared with.
    pub against: String,
    /// Ratios herd/reference (and differences), by name.
    pub figures: Map<String, Value>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every run, in order.
    pub measurements: Vec<Measurement>,
    /// Herd vs. baseline (or vs. direct stub) figures.
    pub comparisons: Vec<Comparison>,
    /// What was asked for but not measured, and why (a mode the other
    /// herd of `--herd-cmd` cannot take part in).
    pub skipped: Vec<String>,
}

impl Report {
    /// Whether nothing was measured (`baseline --serve-for`).
    pub fn is_empty(&self) -> bool {
        self.measurements.is_empty()
    }

    /// Whether every measurement went without errors, lost updates or
    /// failed verification.
    pub fn clean(&self) -> bool {
        self.measurements.iter().all(|m| {
            m.errors == 0
                && m.extra.get("lost").and_then(Value::as_u64).unwrap_or(0) == 0
                && m.extra.get("verified").and_then(Value::as_bool) != Some(false)
        })
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The report as a table at most [`WIDTH`] columns wide:
    /// measurements (each with its notes on the lines below it), then
    /// comparisons, then warnings about rounds that disagree, then one
    /// line that says what was measured and what the exit status means.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", header());
        let rounds = self.measurements.iter().any(|m| m.round > 1);
        for m in &self.measurements {
            let _ = writeln!(out, "{}", row(m));
            let notes: Vec<String> = rounds
                .then(|| format!("round={}", m.round))
                .into_iter()
                .chain(m.extra.iter().map(|(k, v)| format!("{k}={}", show(v))))
                .chain(m.first_error.iter().map(|e| format!("first error: {e}")))
                .collect();
            out.push_str(&wrapped(&notes, "    ", " "));
        }
        if !self.comparisons.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "herd / reference, by mode and setting:");
            for c in &self.comparisons {
                let _ = writeln!(
                    out,
                    "{:<8} {:<11} {} against {}",
                    c.mode, c.setting, c.herd, c.against
                );
                let figures: Vec<String> = c
                    .figures
                    .iter()
                    .map(|(k, v)| format!("{k} {}", show(v)))
                    .collect();
                out.push_str(&wrapped(&figures, "    ", ",  "));
            }
        }
        for skipped in &self.skipped {
            let _ = writeln!(out, "not measured: {skipped}");
        }
        for warning in self.disagreements() {
            let _ = writeln!(out, "{warning}");
        }
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    /// Warnings for measurements repeated with the same mode, target and
    /// setting whose rates differ by more than a third.
    pub fn disagreements(&self) -> Vec<String> {
        let mut rounds: BTreeMap<(&str, &str, &str), Vec<f64>> = BTreeMap::new();
        for m in &self.measurements {
            rounds
                .entry((&m.mode, &m.target, &m.setting))
                .or_default()
                .push(m.per_sec);
        }
        rounds
            .into_iter()
            .filter(|(_, rates)| rates.len() > 1)
            .filter_map(|((mode, target, setting), rates)| {
                let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
                let high = rates.iter().copied().fold(0.0, f64::max);
                (low > 0.0 && high / low > 4.0 / 3.0).then(|| {
                    format!(
                        "warning: {} rounds of {mode} {target} {setting} range from {low:.0}/s \
                         to {high:.0}/s: the machine is noisy, compare ratios within one round",
                        rates.len()
                    )
                })
            })
            .collect()
    }

    /// One line: how many measurements of which modes, and why the exit
    /// status is 0 or 2.
    pub fn verdict(&self) -> String {
        let mut modes: Vec<&str> = Vec::new();
        for m in &self.measurements {
            if !modes.contains(&m.mode.as_str()) {
                modes.push(&m.mode);
            }
        }
        let errors: u64 = self.measurements.iter().map(|m| m.errors).sum();
        let lost: u64 = self
            .measurements
            .iter()
            .filter_map(|m| m.extra.get("lost").and_then(Value::as_u64))
            .sum();
        let unverified = self
            .measurements
            .iter()
            .filter(|m| m.extra.get("verified").and_then(Value::as_bool) == Some(false))
            .count();
        let what = format!(
            "{} measurement(s) of {}",
            self.measurements.len(),
            modes.join(", ")
        );
        if self.clean() {
            return format!("{what}: every request answered, nothing lost (exit status 0)");
        }
        // Which targets failed: with --herd-cmd, the other herd's errors
        // are its own, and the line should say so.
        let mut failed: Vec<String> = Vec::new();
        for m in &self.measurements {
            if m.errors > 0 || m.extra.get("lost").and_then(Value::as_u64).unwrap_or(0) > 0 {
                let name = format!("{} {}", m.target, m.mode);
                if !failed.contains(&name) {
                    failed.push(name);
                }
            }
        }
        let failed = if failed.is_empty() {
            String::new()
        } else {
            format!(", in {}", failed.join("; "))
        };
        format!(
            "{what}: {errors} error(s), {lost} update(s) lost, {unverified} flood check(s) \
             failed{failed} (exit status 2; the notes above say where)"
        )
    }
}

/// The widest line the table prints.
const WIDTH: usize = 100;

/// `items` on lines that start with `indent` and stay within [`WIDTH`],
/// joined by `sep`; nothing when there are none. An item too long for a
/// line of its own is cut, with `...`.
fn wrapped(items: &[String], indent: &str, sep: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for item in items {
        let item = if indent.len() + item.chars().count() > WIDTH {
            let kept: String = item.chars().take(WIDTH - indent.len() - 3).collect();
            format!("{kept}...")
        } else {
            item.clone()
        };
        if !line.is_empty()
            && indent.len() + line.chars().count() + sep.len() + item.chars().count() > WIDTH
        {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push_str(sep);
        }
        line.push_str(&item);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
    out
}

fn header() -> String {
    format!(
        "{:<8} {:<23} {:<11} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "mode",
        "target",
        "setting",
        "requests",
        "errors",
        "per s",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "max ms"
    )
}

/// A measurement's p50, p99, p99.9 and max latency in milliseconds with
/// two decimals, or `-` each when it has none: the same cells in the
/// table here and on the report page.
fn latency_ms(m: &Measurement) -> [String; 4] {
    let parts: [fn(&Latency) -> f64; 4] = [|l| l.p50_us, |l| l.p99_us, |l| l.p999_us, |l| l.max_us];
    parts.map(|f| {
        m.latency
            .as_ref()
            .map_or("-".to_string(), |l| format!("{:.2}", f(l) / 1000.0))
    })
}

fn row(m: &Measurement) -> String {
    let [p50, p99, p999, max] = latency_ms(m);
    let cut = |text: &str, width: usize| -> String { text.chars().take(width).collect() };
    format!(
        "{:<8} {:<23} {:<11} {:>8} {:>6} {:>7.0} {:>7} {:>7} {:>7} {:>7}",
        cut(&m.mode, 8),
        cut(&m.target, 23),
        cut(&m.setting, 11),
        m.requests,
        m.errors,
        m.per_sec,
        p50,
        p99,
        p999,
        max,
    )
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            // Two decimals, or four for a small ratio (an asyncio herd
            // can be a few thousandths of the baseline).
            Some(f) if n.is_f64() && f != 0.0 && f.abs() < 0.1 => format!("{f:.4}"),
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// What every mode needs: the options, where the binaries are, and a run
/// id that makes client ids unique.
pub(crate) struct Ctx {
    o: Options,
    bin_dir: PathBuf,
    run: String,
}

impl Ctx {
    fn new(o: &Options) -> Result<Ctx, String> {
        if let Some(addr) = o.addr {
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "--addr {addr}: this bench only loads servers on loopback (127.0.0.1, ::1)"
                ));
            }
        }
        let check = |what: &str, v: f64, min: f64, max: f64| {
            if v.is_finite() && v >= min && v <= max {
                Ok(())
            } else {
                Err(format!("{what} must be between {min} and {max}, not {v}"))
            }
        };
        check("--duration", o.duration, 0.01, 3600.0)?;
        check("--warmup", o.warmup, 0.0, 600.0)?;
        check("--timeout", o.timeout, 0.01, 600.0)?;
        if o.connections.is_empty() || o.connections.iter().any(|&c| c == 0 || c > 2000) {
            return Err("--connections must be between 1 and 2000".into());
        }
        // A folder the report cannot go to is found now, not after the run.
        if let Some(dir) = &o.report {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!("--report {}: cannot create the folder: {e}", dir.display())
            })?;
        }
        let bin_dir = match &o.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(PathBuf::from))
                .ok_or("cannot tell where this program is; pass --bin-dir")?,
        };
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let run = format!(
            "bench-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Ctx {
            o: o.clone(),
            bin_dir,
            run,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.o.timeout)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.o.duration)
    }

    fn progress(&self, line: std::fmt::Arguments<'_>) {
        if !self.o.quiet {
            eprintln!("{line}");
        }
    }

    /// A fresh prefix for client ids.
    fn ids(&self, what: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "{}-{what}{}",
            self.run,
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Notes, once, that the other herd of `--herd-cmd` is not measured
    /// by `mode`, and why.
    fn skip_other(&self, report: &mut Report, mode: &str, why: &str) {
        if self.o.herd_cmd.is_none() {
            return;
        }
        let note = format!("{mode} of the other herd (--herd-cmd): {why}");
        if !report.skipped.contains(&note) {
            self.progress(format_args!("  not measured: {note}"));
            report.skipped.push(note);
        }
    }

    /// Records a measurement and shows it as a progress line.
    fn record(&self, report: &mut Report, m: Measurement) {
        self.progress(format_args!("{}", row(&m)));
        report.measurements.push(m);
    }
}

/// Runs the mode the command line asks for.
pub fn run(cli: &Cli) -> Result<Report, String> {
    if let Mode::Baseline(BaselineArgs {
        serve_for: Some(secs),
        listen,
        forward,
    }) = &cli.mode
    {
        if !(secs.is_finite() && *secs > 0.0 && *secs <= 86_400.0) {
            return Err(format!(
                "--serve-for must be between 0 and 86400, not {secs}"
            ));
        }
        if !listen.ip().is_loopback() || forward.is_some_and(|f| !f.ip().is_loopback()) {
            return Err("the baseline only listens and forwards on loopback".into());
        }
        baseline::serve_for(*listen, *forward, Duration::from_secs_f64(*secs))?;
        return Ok(Report::default());
    }
    let ctx = Ctx::new(&cli.opts)?;
    let mut report = Report::default();
    ctx.progress(format_args!("{}", header()));
    let rounds = cli.opts.rounds;
    for round in 1..=rounds {
        if rounds > 1 {
            ctx.progress(format_args!("round {round} of {rounds}"));
        }
        let first = report.measurements.len();
        match &cli.mode {
            Mode::Iamat => modes::iamat(&ctx, false, &mut report)?,
            Mode::Oneshot => modes::iamat(&ctx, true, &mut report)?,
            Mode::Whatsat(args) => modes::whatsat(&ctx, args, &mut report)?,
            Mode::Flood(args) => modes::flood(&ctx, args, &mut report)?,
            Mode::Sustain(args) => modes::sustain(&ctx, args, &mut report)?,
            Mode::Conns(args) => modes::conns(&ctx, args, &mut report)?,
            Mode::Baseline(_) => modes::baseline(&ctx, &mut report)?,
            Mode::All(args) => modes::all(&ctx, args, &mut report)?,
        }
        for m in &mut report.measurements[first..] {
            m.round = round;
        }
    }
    Ok(report)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(report) => {
            if !report.is_empty() {
                if cli.opts.json {
                    print!("{}", report.json());
                } else {
                    println!();
                    print!("{}", report.table());
                }
            }
            // After the table, so a report that cannot be written loses
            // none of the figures.
            if let (Some(dir), false) = (&cli.opts.report, report.is_empty()) {
                match page::write(dir, &report, std::env::args()) {
                    Ok(index) => {
                        if !cli.opts.quiet {
                            eprintln!("report: {}", index.display());
                        }
                    }
                    Err(message) => {
                        eprintln!("proxy-herd-bench: --report {}: {message}", dir.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(message) => {
            eprintln!("proxy-herd-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
