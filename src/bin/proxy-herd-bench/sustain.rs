//! Sustained load, measured where users feel it: at the far end of the
//! herd.
//!
//! A reply to an IAMAT says the update was taken, not that the herd has
//! it. A herd that acknowledges faster than it floods looks fast to a
//! closed-loop load and yet answers WHATSAT at a far server with stale
//! locations. So this mode joins the herd as a member linked to the
//! server farthest from the one it loads, loads that one closed-loop, and
//! counts an update only when its AT line reaches the member.
//!
//! Updates are matched to arrivals by client id and client time (see
//! [`super::member`]). With a cycling population a client's older update may be
//! overtaken by a newer one before it is sent on, and a herd is right to
//! send only the newer: such updates count as superseded, not lost. What
//! must arrive is each client's newest update.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{self, ClientClock, Conn};
use super::member::{key, Key, Member};

/// How a sustained run loads the herd.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Concurrent closed-loop connections.
    pub conns: usize,
    /// How long the load lasts.
    pub duration: Duration,
    /// Distinct clients, cycled through; 0 makes every update a new client.
    pub population: usize,
    /// Client id prefix, unique to the run.
    pub prefix: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
    /// How long to wait, after the load, for the herd to deliver.
    pub patience: Duration,
    /// Progress lines on stderr, one a second.
    pub progress: bool,
}

/// What a sustained run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// IAMATs answered correctly.
    pub acked: u64,
    /// Failed or wrong replies.
    pub errors: u64,
    /// The first error seen.
    pub first_error: Option<String>,
    /// Length of the load, in seconds.
    pub seconds: f64,
    /// Distinct acknowledged updates that reached the member.
    pub arrived: u64,
    /// Of those, how many arrived while the load ran.
    pub arrived_during_load: u64,
    /// Seconds from the start of the load to the last arrival (at least
    /// the load's length).
    pub propagated_seconds: f64,
    /// Seconds from the end of the load until the member had every
    /// client's newest update (or until it gave up waiting).
    pub drain_seconds: f64,
    /// Updates overtaken by a newer one for the same client that arrived.
    pub superseded: u64,
    /// Clients whose newest acknowledged update never arrived.
    pub missing: u64,
    /// Lag of each arrived update, from its reply to its arrival, in ns.
    pub lags: Vec<u64>,
}

/// What a worker sent: each update's key, its client's slot, and when
/// its reply came.
#[derive(Default)]
struct Sent {
    updates: Vec<(Key, u32, Instant)>,
    errors: u64,
    first_error: Option<String>,
}

/// Loads `near` closed-loop per `plan` and measures what reaches `member`.
pub fn run(near: SocketAddr, member: &Member, plan: &Plan) -> Outcome {
    let per_worker = if plan.population == 0 {
        0
    } else {
        (plan.population / plan.conns).max(1)
    };
    let acked = AtomicU64::new(0);
    let start = Instant::now();
    let end = start + plan.duration;
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let sent: Vec<Sent> = thread::scope(|scope| {
        let acked = &acked;
        if plan.progress {
            let secs = plan.duration.as_secs() + plan.patience.as_secs() + 2;
            scope.spawn(move || {
                let (mut last_acked, mut last_arrived) = (0, 0);
                for tick in 1..=secs {
                    if stop_rx
                        .recv_timeout(Duration::from_secs(1))
                        .is_err_and(|e| e.is_disconnected())
                    {
                        return;
                    }
                    let (a, r) = (acked.load(Ordering::Relaxed), member.count());
                    let phase = if Instant::now() < end { "load" } else { "drain" };
                    eprintln!(
                        "  sustain: {tick:>3} s {phase:<5} acknowledged {:>7}/s  reached the member {:>7}/s",
                        a - last_acked,
                        r - last_arrived
                    );
                    (last_acked, last_arrived) = (a, r);
                }
            });
        }
        let workers: Vec<_> = (0..plan.conns)
            .map(|w| {
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || worker(near, plan, w, per_worker, end, acked))
                    .expect("spawn a load worker")
            })
            .collect();
        let sent: Vec<Sent> = workers
            .into_iter()
            .map(|w| w.join().expect("load worker"))
            .collect();
        wait_delivered(member, &sent, end + plan.patience);
        drop(stop_tx);
        sent
    });
    summarize(member, &sent, start, end, plan)
}

/// One closed-loop connection.
fn worker(
    near: SocketAddr,
    plan: &Plan,
    w: usize,
    per_worker: usize,
    end: Instant,
    acked: &AtomicU64,
) -> Sent {
    let mut out = Sent::default();
    let mut clock = ClientClock::default();
    let mut conn: Option<Conn> = None;
    let mut i: usize = 0;
    while Instant::now() < end {
        let slot = if per_worker == 0 { i } else { i % per_worker };
        i += 1;
        let client = format!("{}-{w}-{slot}", plan.prefix);
        let time = clock.tick();
        let result = (|| {
            if conn.is_none() {
                conn = Some(Conn::open(near, plan.timeout).map_err(|e| format!("connect: {e}"))?);
            }
            let c = conn.as_mut().expect("just opened");
            let (line, tail) = client::iamat(&client, &time);
            c.send(&line).map_err(|e| format!("write: {e}"))?;
            let reply = c.read_until(b"\n").map_err(|e| format!("read: {e}"))?;
            client::check_at(&reply, &tail)
        })();
        match result {
            Ok(_) => {
                let now = Instant::now();
                out.updates.push((key(&client, &time), slot as u32, now));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
                conn = None;
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    out
}

/// The key of every client's newest acknowledged update.
fn newest(sent: &[Sent]) -> Vec<Key> {
    let mut keys = Vec::new();
    for worker in sent {
        let mut last: HashMap<u32, Key> = HashMap::new();
        for &(key, slot, _) in &worker.updates {
            last.insert(slot, key);
        }
        keys.extend(last.into_values());
    }
    keys
}

/// Waits until every client's newest update has arrived, or `deadline`.
fn wait_delivered(member: &Member, sent: &[Sent], deadline: Instant) {
    let wanted = newest(sent);
    loop {
        let arrivals = member.lock();
        let done = wanted.iter().all(|k| arrivals.contains_key(k));
        drop(arrivals);
        if done || Instant::now() >= deadline {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn summarize(member: &Member, sent: &[Sent], start: Instant, end: Instant, plan: &Plan) -> Outcome {
    let arrivals = member.lock();
    let mut out = Outcome {
        seconds: plan.duration.as_secs_f64(),
        ..Outcome::default()
    };
    let mut last_arrival = end;
    for worker in sent {
        out.acked += worker.updates.len() as u64;
        out.errors += worker.errors;
        if out.first_error.is_none() {
            out.first_error = worker.first_error.clone();
        }
        for &(key, _, replied) in &worker.updates {
            match arrivals.get(&key) {
                Some(&at) => {
                    out.arrived += 1;
                    if at <= end {
                        out.arrived_during_load += 1;
                    }
                    last_arrival = last_arrival.max(at);
                    out.lags
                        .push(at.saturating_duration_since(replied).as_nanos() as u64);
                }
                None => out.superseded += 1,
            }
        }
    }
    let newest = newest(sent);
    out.missing = newest.iter().filter(|k| !arrivals.contains_key(k)).count() as u64;
    out.superseded -= out.missing;
    if out.missing > 0 {
        out.first_error.get_or_insert(format!(
            "{} clients' newest updates never reached the member",
            out.missing
        ));
        last_arrival = last_arrival.max(end + plan.patience);
    }
    out.propagated_seconds = last_arrival.duration_since(start).as_secs_f64();
    out.drain_seconds = last_arrival.duration_since(end).as_secs_f64();
    out
}

/// Peak resident memory (VmHWM) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(
        line["VmHWM:".len()..]
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()?
            * 1024,
    )
}
