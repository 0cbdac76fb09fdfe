//! The bench as a member of a herd: it listens on its peer port, where a
//! server's link delivers AT lines, and notes when each update first
//! arrives.
//!
//! An update is named by its client id and client time, which its AT line
//! carries unchanged from the IAMAT, so an arrival is matched to the IAMAT
//! that caused it without doubt, even when a client updates many times.
//! Lines for clients outside the run (the resync a link sends when it
//! comes up) are ignored.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Names one update: a hash of its client id and client time.
pub type Key = u64;

pub fn key(client: &str, time: &str) -> Key {
    let mut h = DefaultHasher::new();
    client.hash(&mut h);
    time.hash(&mut h);
    h.finish()
}

/// The client id and time of an AT line
/// (`AT server delta CLIENT location TIME`).
pub fn client_and_time(line: &str) -> Option<(&str, &str)> {
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

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// When the update of this key first arrived, if it has.
    pub fn arrived(&self, key: Key) -> Option<Instant> {
        self.lock().get(&key).copied()
    }

    /// How many of our updates have arrived so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The arrivals, locked.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<Key, Instant>> {
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
