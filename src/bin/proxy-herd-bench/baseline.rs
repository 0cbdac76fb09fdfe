//! The baseline: the barest thread-per-connection server that speaks
//! enough of the protocol to be measured like the herd.
//!
//! It answers each IAMAT line with its AT line and does nothing else: no
//! store, no log, no flooding, no Places. It parses lines with the herd's
//! own [`proxy_herd::protocol`] code, so the difference between the
//! two is what the herd does *besides* parsing and replying. Every
//! connection gets a thread with a 64 KiB stack and a 4 KiB read buffer.
//!
//! For the `flood` comparison a baseline can also be a relay: given
//! `--forward ADDR`, it writes every AT line it makes (before replying) and
//! every AT line it receives to one connection to ADDR. A chain of relays
//! is the barest form of a flood across the same number of hops.
//!
//! The bench runs it as a separate process (`proxy-herd-bench baseline
//! --serve-for SECS`), like the herd's servers, so both pay the same
//! costs of crossing processes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proxy_herd::protocol::{self, AtRecord, ClientCommand};

/// The name in the baseline's AT lines.
pub const NAME: &str = "Baseline";

const STACK: usize = 64 * 1024;
const READ_BUF: usize = 4096;
/// The longest line kept; past it the connection is closed.
const MAX_LINE: usize = 64 * 1024;

/// A running baseline server.
pub struct Baseline {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Baseline {
    /// Serves on a bound listener, forwarding AT lines to `forward` if
    /// given (connecting to it first, for up to `patience`).
    pub fn start(
        listener: TcpListener,
        forward: Option<SocketAddr>,
        patience: Duration,
    ) -> io::Result<Baseline> {
        let addr = listener.local_addr()?;
        let forward = match forward {
            Some(to) => {
                let stream = connect_patiently(to, patience)?;
                stream.set_nodelay(true)?;
                Some(Arc::new(Mutex::new(stream)))
            }
            None => None,
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = {
            let stopping = Arc::clone(&stopping);
            thread::Builder::new()
                .name("baseline accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stopping.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else {
                            thread::sleep(Duration::from_millis(10));
                            continue;
                        };
                        let forward = forward.clone();
                        let _ = thread::Builder::new()
                            .stack_size(STACK)
                            .spawn(move || serve(stream, forward.as_deref()));
                    }
                })?
        };
        Ok(Baseline {
            addr,
            stopping,
            accept: Some(accept),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (open connections end when their clients close).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(accept) = self.accept.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = accept.join();
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Connects, retrying every 20 ms for up to `patience`.
fn connect_patiently(to: SocketAddr, patience: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One connection: read, answer every complete line, write the answers
/// of one read in one write; at end-of-file answer the last unterminated
/// line and close.
fn serve(mut stream: TcpStream, forward: Option<&Mutex<TcpStream>>) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; READ_BUF];
    let mut pending: Vec<u8> = Vec::new();
    let mut out = String::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let eof = n == 0;
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(i) = pending[start..].iter().position(|&b| b == b'\n') {
            answer(&pending[start..start + i], &mut out, forward);
            start += i + 1;
        }
        if eof && start < pending.len() {
            answer(&pending[start..], &mut out, forward);
            start = pending.len();
        }
        pending.drain(..start);
        if !out.is_empty() {
            if stream.write_all(out.as_bytes()).is_err() {
                return;
            }
            out.clear();
        }
        if eof || pending.len() > MAX_LINE {
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

/// Appends the answer to one line to `out`.
fn answer(raw: &[u8], out: &mut String, forward: Option<&Mutex<TcpStream>>) {
    let received = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as protocol::Nanos;
    let Ok(text) = std::str::from_utf8(raw) else {
        out.push_str(&protocol::invalid_reply(&String::from_utf8_lossy(raw)));
        return;
    };
    match protocol::parse_client_line(text) {
        ClientCommand::Blank => {}
        ClientCommand::IAmAt(update) => {
            let record = AtRecord::new(NAME, received, update);
            let line = format!("{}\n", record.line);
            relay(forward, &line);
            out.push_str(&line);
        }
        _ if forward.is_some() && text.starts_with("AT ") => {
            relay(forward, &format!("{}\n", text.trim()));
        }
        _ => out.push_str(&protocol::invalid_reply(text)),
    }
}

/// Passes a line on to the next relay. The one place in the crate where a
/// lock is held across a socket write, on purpose: the baseline is the
/// bare minimum, and a sender thread (the herd's way of keeping locks off
/// I/O) would add the very hand-off whose cost the baseline exists to
/// leave out. The lock keeps concurrent lines from interleaving.
fn relay(forward: Option<&Mutex<TcpStream>>, line: &str) {
    if let Some(forward) = forward {
        let mut stream = forward.lock().unwrap_or_else(|e| e.into_inner());
        let _ = stream.write_all(line.as_bytes());
    }
}

/// Serves on `listen` for `serve_for` (the `baseline --serve-for` mode).
pub fn serve_for(
    listen: SocketAddr,
    forward: Option<SocketAddr>,
    serve_for: Duration,
) -> Result<(), String> {
    let listener = proxy_herd::server::bind_listener(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let baseline = Baseline::start(listener, forward, Duration::from_secs(10))
        .map_err(|e| format!("cannot start the baseline: {e}"))?;
    eprintln!(
        "proxy-herd-bench: baseline serving on {} for {} s{}",
        baseline.addr(),
        serve_for.as_secs_f64(),
        forward.map_or(String::new(), |f| format!(", forwarding AT lines to {f}"))
    );
    thread::sleep(serve_for);
    baseline.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// An IAMAT gets exactly its AT line; an invalid line gets `? `; a
    /// half-closed last line is still answered before end-of-file.
    #[test]
    fn answers_like_the_herd() {
        let baseline = Baseline::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        let mut s = TcpStream::connect(baseline.addr()).unwrap();
        s.write_all(b"IAMAT k +1+2 3\nnope\nIAMAT k +1+2 4")
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("AT Baseline +") && lines[0].ends_with(" k +1+2 3"));
        assert_eq!(lines[1], "? nope");
        assert!(lines[2].ends_with(" k +1+2 4"));
    }

    /// A relay forwards the AT line it makes and the AT lines it gets.
    #[test]
    fn relays() {
        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Baseline::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            Some(sink.local_addr().unwrap()),
            Duration::from_secs(5),
        )
        .unwrap();
        let (forwarded, _) = sink.accept().unwrap();
        let mut s = TcpStream::connect(relay.addr()).unwrap();
        s.write_all(b"IAMAT k +1+2 3\nAT X +0.1 j +1+2 3\n")
            .unwrap();
        let mut r = io::BufReader::new(forwarded);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.ends_with(" k +1+2 3\n"), "{line}");
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "AT X +0.1 j +1+2 3\n");
    }
}
