//! The closed-loop load: C connections, each with one request outstanding,
//! for a warm-up and then a measured window.
//!
//! Every worker thread owns one connection (or one HTTP agent) and loops:
//! send, wait for the whole reply, check it, record the latency. Only
//! requests that start and end inside the measured window count towards
//! requests per second and the percentiles; errors count whenever they
//! happen. A failed connection is counted as an error and reopened after
//! a short pause. Every loop ends at the window's end, and every read and
//! write has a timeout, so a run lasts at most warm-up + duration +
//! timeout.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{self, ClientClock, Conn};

/// What each request is.
#[derive(Debug, Clone)]
pub enum Work {
    /// IAMAT on a kept connection, read the AT line.
    Iamat { addr: SocketAddr },
    /// Connect, IAMAT, half-close, read to end-of-file: a new connection
    /// per request, as graders do.
    Oneshot { addr: SocketAddr },
    /// WHATSAT on a kept connection, read up to the blank line.
    Whatsat {
        addr: SocketAddr,
        /// The line sent, with its `\n`.
        line: String,
        /// The AT line the reply must start with.
        at_line: String,
    },
    /// GET a URL with a keep-alive HTTP client (one per worker).
    Http { url: String },
}

/// How a load runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Shown in progress lines.
    pub label: String,
    /// Prefix of client ids, unique per run, so records of earlier runs in
    /// a long-lived herd never make ours look old.
    pub id_prefix: String,
    /// Concurrent connections.
    pub conns: usize,
    /// Time before measuring starts.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Connect, read and write timeout.
    pub timeout: Duration,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

/// What a load measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered correctly inside the window.
    pub requests: u64,
    /// Failed or wrong replies, and failed connects, at any time.
    pub errors: u64,
    /// The window's length in seconds.
    pub seconds: f64,
    /// Latencies of the counted requests, in nanoseconds.
    pub latencies: Vec<u64>,
    /// For IAMAT work: each client id and the AT line of its last answered
    /// IAMAT, the record every server should end up holding.
    pub last_lines: Vec<(String, String)>,
    /// The first error, to show.
    pub first_error: Option<String>,
}

/// At most this many latencies are kept per worker (a bound on memory).
const MAX_SAMPLES_PER_WORKER: usize = 20_000_000;

#[derive(Default)]
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
}

#[derive(Default)]
struct WorkerOut {
    requests: u64,
    errors: u64,
    latencies: Vec<u64>,
    last: Option<(String, String)>,
    first_error: Option<String>,
}

/// Runs the load and returns what it measured.
pub fn run(work: &Work, plan: &Plan) -> Outcome {
    let live = Live::default();
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let outs: Vec<WorkerOut> = thread::scope(|scope| {
        let live = &live;
        if plan.progress {
            let label = plan.label.clone();
            let ticks = (plan.warmup + plan.duration + plan.timeout).as_secs() + 5;
            scope.spawn(move || {
                let mut last = 0;
                for tick in 1..=ticks {
                    if stop_rx
                        .recv_timeout(Duration::from_secs(1))
                        .is_err_and(|e| e.is_disconnected())
                    {
                        return;
                    }
                    let done = live.done.load(Ordering::Relaxed);
                    let phase = if Instant::now() < measure_from {
                        "warm-up"
                    } else {
                        "measuring"
                    };
                    eprintln!(
                        "  {label}: {tick:>3} s {phase:<9} {:>9} req/s  errors {}",
                        done - last,
                        live.errors.load(Ordering::Relaxed)
                    );
                    last = done;
                }
            });
        }
        let workers: Vec<_> = (0..plan.conns)
            .map(|idx| {
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        worker(work, plan, idx, measure_from, end, live)
                    })
                    .expect("spawn a load worker")
            })
            .collect();
        let outs = workers
            .into_iter()
            .map(|w| w.join().expect("load worker"))
            .collect();
        drop(stop_tx);
        outs
    });
    let mut outcome = Outcome {
        seconds: plan.duration.as_secs_f64(),
        ..Outcome::default()
    };
    for out in outs {
        outcome.requests += out.requests;
        outcome.errors += out.errors;
        outcome.latencies.extend(out.latencies);
        outcome.last_lines.extend(out.last);
        if outcome.first_error.is_none() {
            outcome.first_error = out.first_error;
        }
    }
    outcome
}

/// One connection's loop.
fn worker(
    work: &Work,
    plan: &Plan,
    idx: usize,
    measure_from: Instant,
    end: Instant,
    live: &Live,
) -> WorkerOut {
    let mut out = WorkerOut::default();
    let client = format!("{}-{idx}", plan.id_prefix);
    let mut clock = ClientClock::default();
    let mut conn: Option<Conn> = None;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(plan.timeout))
        .build()
        .into();
    while Instant::now() < end {
        let began = Instant::now();
        let result: Result<Option<String>, String> = match work {
            Work::Iamat { addr } => (|| {
                if conn.is_none() {
                    conn =
                        Some(Conn::open(*addr, plan.timeout).map_err(|e| format!("connect: {e}"))?);
                }
                let c = conn.as_mut().expect("just opened");
                let (line, tail) = client::iamat(&client, &clock.tick());
                c.send(&line).map_err(|e| format!("write: {e}"))?;
                let reply = c.read_until(b"\n").map_err(|e| format!("read: {e}"))?;
                client::check_at(&reply, &tail).map(Some)
            })(),
            Work::Oneshot { addr } => (|| {
                let mut c = Conn::open(*addr, plan.timeout).map_err(|e| format!("connect: {e}"))?;
                let (line, tail) = client::iamat(&client, &clock.tick());
                c.send(&line).map_err(|e| format!("write: {e}"))?;
                let reply = c.finish().map_err(|e| format!("read: {e}"))?;
                client::check_at(&reply, &tail).map(Some)
            })(),
            Work::Whatsat {
                addr,
                line,
                at_line,
            } => (|| {
                if conn.is_none() {
                    conn =
                        Some(Conn::open(*addr, plan.timeout).map_err(|e| format!("connect: {e}"))?);
                }
                let c = conn.as_mut().expect("just opened");
                c.send(line).map_err(|e| format!("write: {e}"))?;
                let reply = c.read_until(b"\n\n").map_err(|e| format!("read: {e}"))?;
                client::check_whatsat(&reply, at_line).map(|()| None)
            })(),
            Work::Http { url } => (|| {
                let mut response = agent.get(url).call().map_err(|e| format!("GET: {e}"))?;
                let mut body = String::new();
                response
                    .body_mut()
                    .as_reader()
                    .read_to_string(&mut body)
                    .map_err(|e| format!("body: {e}"))?;
                if body.contains("\"status\" : \"OK\"") {
                    Ok(None)
                } else {
                    Err(format!(
                        "unexpected Places answer: {:?}",
                        body.chars().take(200).collect::<String>()
                    ))
                }
            })(),
        };
        let finished = Instant::now();
        match result {
            Ok(at_line) => {
                if let Some(at_line) = at_line {
                    out.last = Some((client.clone(), at_line));
                }
                if began >= measure_from && finished <= end {
                    out.requests += 1;
                    if out.latencies.len() < MAX_SAMPLES_PER_WORKER {
                        out.latencies.push((finished - began).as_nanos() as u64);
                    }
                }
                live.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                out.errors += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
                out.first_error.get_or_insert(e);
                conn = None;
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    out
}
