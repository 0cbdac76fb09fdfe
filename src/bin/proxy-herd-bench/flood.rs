//! Flood latency at a steady rate: the bench, a member of the herd
//! ([`super::member`]), times each update from the moment its IAMAT was
//! written to the near server until its AT line reaches it through the
//! far server. Each update is for a new client id (`<prefix>-<i>`).

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::client::{self, ClientClock, Conn};
use super::member::{client_and_time, key, Member};
use super::spawn::{self, READY_PATIENCE};

/// Most updates one run can time (a bound on memory).
const MAX_UPDATES: usize = 1_000_000;

/// What a flood run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Updates sent.
    pub sent: u64,
    /// Updates whose AT line reached the bench.
    pub arrived: u64,
    /// IAMATs whose reply was missing or wrong.
    pub errors: u64,
    /// Seconds spent sending.
    pub seconds: f64,
    /// Propagation latencies of the arrived updates, in nanoseconds.
    pub latencies: Vec<u64>,
    /// The first error seen.
    pub first_error: Option<String>,
}

/// Sends `rate` updates per second for `duration` to `near` and times
/// each until `receiver` has it. First waits (bounded) until a warm-up
/// update arrives, which proves the path is up.
pub fn measure(
    near: SocketAddr,
    receiver: &Member,
    prefix: &str,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> Result<Outcome, String> {
    let warm_line = spawn::iamat_once(near, &format!("{prefix}-warm"))?;
    let (warm_client, warm_time) = client_and_time(&warm_line).ok_or("no AT line")?;
    let warm = key(warm_client, warm_time);
    let deadline = Instant::now() + READY_PATIENCE;
    while receiver.arrived(warm).is_none() {
        if Instant::now() >= deadline {
            return Err(format!(
                "no AT line reached the bench ({}) within {READY_PATIENCE:?} of an IAMAT to {near}: \
                 is the bench linked to the far server in the herd file, and is the herd running with it?",
                receiver.addr()
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    let n = ((rate * duration.as_secs_f64()).round() as usize).clamp(1, MAX_UPDATES);
    let mut out = Outcome {
        sent: n as u64,
        ..Outcome::default()
    };
    let mut conn =
        Conn::open(near, timeout).map_err(|e| format!("cannot connect to {near}: {e}"))?;
    let mut clock = ClientClock::default();
    let mut sent_at = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let slot = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let id = format!("{prefix}-{i}");
        let time = clock.tick();
        let (line, tail) = client::iamat(&id, &time);
        sent_at.push((key(&id, &time), Instant::now()));
        let reply = conn
            .send(&line)
            .and_then(|()| conn.read_until(b"\n"))
            .map_err(|e| e.to_string())
            .and_then(|r| client::check_at(&r, &tail));
        if let Err(e) = reply {
            out.errors += 1;
            out.first_error.get_or_insert(e);
            if let Ok(fresh) = Conn::open(near, timeout) {
                conn = fresh;
            }
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + timeout.max(Duration::from_secs(2));
    loop {
        let arrivals = receiver.lock();
        let arrived: Vec<u64> = sent_at
            .iter()
            .filter_map(|(key, sent)| {
                let at = arrivals.get(key)?;
                Some(at.saturating_duration_since(*sent).as_nanos() as u64)
            })
            .collect();
        drop(arrivals);
        if arrived.len() == n || Instant::now() >= deadline {
            out.arrived = arrived.len() as u64;
            out.latencies = arrived;
            return Ok(out);
        }
        thread::sleep(Duration::from_millis(10));
    }
}
