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
//! Every update is named by its client id and client time, which the AT
//! line carries unchanged, so an arrival is matched to its IAMAT without
//! doubt. With a cycling population a client's older update may be
//! overtaken by a newer one before it is sent on, and a herd is right to
//! send only the newer: such updates count as superseded, not lost. What
//! must arrive is each client's newest update.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::client::{self, ClientClock, Conn};

/// Names one update: a hash of its client id and client time.
type Key = u64;

fn key(client: &str, time: &str) -> Key {
    let mut h = DefaultHasher::new();
    client.hash(&mut h);
    time.hash(&mut h);
    h.finish()
}

/// The client id and time of an AT line
/// (`AT server delta CLIENT location TIME`).
fn client_and_time(line: &str) -> Option<(&str, &str)> {
    let mut f = line.split_ascii_whitespace();
    (f.next() == Some("AT")).then_some(())?;
    let client = f.nth(2)?;
    let time = f.nth(1)?;
    Some((client, time))
}

/// The bench as a member of the herd: notes when each update first
/// reaches its peer port.
pub struct Member {
    addr: SocketAddr,
    arrivals: Arc<Mutex<HashMap<Key, Instant>>>,
    /// Arrivals of our updates so far (for progress lines).
    count: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Member {
    /// Accepts links on `listener`; notes updates of clients whose id
    /// starts with `prefix`.
    pub fn start(listener: TcpListener, prefix: &str) -> std::io::Result<Member> {
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let count = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = {
            let (arrivals, count, stopping) = (
                Arc::clone(&arrivals),
                Arc::clone(&count),
                Arc::clone(&stopping),
            );
            let prefix = format!("{prefix}-");
            thread::Builder::new()
                .name("bench member accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stopping.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let (arrivals, count, stopping) = (
                            Arc::clone(&arrivals),
                            Arc::clone(&count),
                            Arc::clone(&stopping),
                        );
                        let prefix = prefix.clone();
                        let _ = thread::Builder::new()
                            .stack_size(128 * 1024)
                            .spawn(move || {
                                read_link(stream, &prefix, &arrivals, &count, &stopping)
                            });
                    }
                })?
        };
        Ok(Member {
            addr,
            arrivals,
            count,
            stopping,
            accept: Some(accept),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Instant>> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = accept.join();
        }
    }
}

/// Most arrivals one run keeps (a bound on the bench's memory).
const MAX_ARRIVALS: usize = 20_000_000;

fn read_link(
    stream: TcpStream,
    prefix: &str,
    arrivals: &Mutex<HashMap<Key, Instant>>,
    count: &AtomicU64,
    stopping: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = String::new();
    while !stopping.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                let now = Instant::now();
                if let Some((client, time)) =
                    client_and_time(&line).filter(|(c, _)| c.starts_with(prefix))
                {
                    let mut arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                    if arrivals.len() < MAX_ARRIVALS {
                        arrivals.entry(key(client, time)).or_insert_with(|| {
                            count.fetch_add(1, Ordering::Relaxed);
                            now
                        });
                    }
                }
                line.clear();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

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
            let count = Arc::clone(&member.count);
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
                    let (a, r) = (acked.load(Ordering::Relaxed), count.load(Ordering::Relaxed));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An AT line's client and time are found whatever the server and
    /// location, and anything else is not an update.
    #[test]
    fn names_an_update() {
        assert_eq!(
            client_and_time("AT Riley +0.001 k-1 +1+2 17.5\n"),
            Some(("k-1", "17.5"))
        );
        assert_eq!(client_and_time("? AT x"), None);
        assert_ne!(key("a", "1"), key("a", "2"));
    }
}
