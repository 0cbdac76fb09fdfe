//! The bench as a member of a herd: it listens on its peer port, where
//! the far server's link delivers AT lines, and times each update from
//! the moment its IAMAT was written to the near server until its AT line
//! arrives.
//!
//! Each update is for a new client id (`<prefix>-<i>`), so an arrival
//! names its update without doubt; lines for other clients (the resync a
//! link sends when it comes up) are ignored.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::client::{self, ClientClock, Conn};
use super::spawn::{self, READY_PATIENCE};

/// Receives AT lines on the bench's peer port and notes when each of
/// ours first arrived.
pub struct Receiver {
    addr: SocketAddr,
    prefix: String,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// Most updates one run can time (a bound on memory).
const MAX_UPDATES: usize = 1_000_000;

impl Receiver {
    /// Accepts links on `listener`; notes arrivals of client ids that
    /// start with `prefix`.
    pub fn start(listener: TcpListener, prefix: &str) -> std::io::Result<Receiver> {
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = {
            let arrivals = Arc::clone(&arrivals);
            let stopping = Arc::clone(&stopping);
            let prefix = format!("{prefix}-");
            thread::Builder::new()
                .name("bench peer accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stopping.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let arrivals = Arc::clone(&arrivals);
                        let stopping = Arc::clone(&stopping);
                        let prefix = prefix.clone();
                        let _ = thread::Builder::new()
                            .stack_size(128 * 1024)
                            .spawn(move || read_link(stream, &prefix, &arrivals, &stopping));
                    }
                })?
        };
        Ok(Receiver {
            addr,
            prefix: prefix.to_string(),
            arrivals,
            stopping,
            accept: Some(accept),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn arrived(&self, id: &str) -> Option<Instant> {
        self.lock().get(id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = accept.join();
        }
    }
}

/// Reads one link until it closes or the receiver stops.
fn read_link(
    stream: TcpStream,
    prefix: &str,
    arrivals: &Mutex<HashMap<String, Instant>>,
    stopping: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stopping.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                let now = Instant::now();
                if let Some(id) = client::at_client(&line).filter(|id| id.starts_with(prefix)) {
                    let mut arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                    if arrivals.len() < MAX_UPDATES {
                        arrivals.entry(id.to_string()).or_insert(now);
                    }
                }
                line.clear();
            }
            // Part of a line, or the read timed out: keep what came.
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
    receiver: &Receiver,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> Result<Outcome, String> {
    let warm = format!("{}-warm", receiver.prefix);
    spawn::iamat_once(near, &warm)?;
    let deadline = Instant::now() + READY_PATIENCE;
    while receiver.arrived(&warm).is_none() {
        if Instant::now() >= deadline {
            return Err(format!(
                "no AT line reached the bench ({}) within {READY_PATIENCE:?} of an IAMAT to {near}: \
                 is the bench linked to the far server in the herd file, and is the herd running with it?",
                receiver.addr
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
        let id = format!("{}-{i}", receiver.prefix);
        let (line, tail) = client::iamat(&id, &clock.tick());
        sent_at.push(Instant::now());
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
            .enumerate()
            .filter_map(|(i, sent)| {
                let at = arrivals.get(&format!("{}-{i}", receiver.prefix))?;
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
