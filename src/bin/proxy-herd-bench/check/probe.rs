//! The check's side of a conversation: connections that write every line
//! sent and received into a transcript, with the server and the time.
//!
//! A teacher reading why a check failed wants to see what the herd was
//! told and what it said, in order, as `nc` would have shown it. Every
//! check keeps one [`Transcript`]; every [`Probe`] it opens writes to it.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The longest reply read from one connection; more is an error, never a
/// bigger buffer.
const MAX_REPLY: usize = 1 << 20;

/// The longest text one transcript event keeps; the rest is summarised
/// (an overlong line the check sends is 70,000 bytes).
const MAX_EVENT_TEXT: usize = 240;

/// The most events one transcript keeps; a check that polls a server for
/// seconds notes only its first and last answers anyway.
const MAX_EVENTS: usize = 2_000;

/// One line of a transcript.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the check started.
    pub ms: f64,
    /// The server talked to, or empty for the check's own notes.
    pub server: String,
    /// `>` sent, `<` received, `#` a note (a kill, a restart, a wait).
    pub dir: &'static str,
    /// The line, without its `\n`; bytes that are not printable UTF-8
    /// shown as `\xNN`.
    pub text: String,
}

/// What one check sent, received and did, in order.
#[derive(Clone)]
pub struct Transcript(Rc<RefCell<Inner>>);

struct Inner {
    start: Instant,
    events: Vec<Event>,
    /// While muted (polling), sends and receives are not written.
    muted: bool,
}

impl Transcript {
    /// An empty transcript whose clock starts now.
    pub fn new() -> Transcript {
        Transcript(Rc::new(RefCell::new(Inner {
            start: Instant::now(),
            events: Vec::new(),
            muted: false,
        })))
    }

    fn push(&self, server: &str, dir: &'static str, text: String, always: bool) {
        let mut inner = self.0.borrow_mut();
        if (inner.muted && !always) || inner.events.len() >= MAX_EVENTS {
            return;
        }
        let ms = (inner.start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        inner.events.push(Event {
            ms,
            server: server.to_string(),
            dir,
            text,
        });
    }

    /// A note of the check's own: what it is about to do or has seen.
    pub fn note(&self, text: impl Into<String>) {
        self.push("", "#", text.into(), true);
    }

    /// Bytes sent to `server`, a line an event.
    fn sent(&self, server: &str, bytes: &[u8]) {
        for line in lines(bytes) {
            self.push(server, ">", line, false);
        }
    }

    /// Bytes received from `server`, a line an event.
    fn received(&self, server: &str, bytes: &[u8]) {
        for line in lines(bytes) {
            self.push(server, "<", line, false);
        }
    }

    /// Runs `f` without writing its traffic (a poll of many asks); the
    /// caller notes what the poll found.
    pub fn muted<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = std::mem::replace(&mut self.0.borrow_mut().muted, true);
        let out = f();
        self.0.borrow_mut().muted = was;
        out
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.borrow().events.clone()
    }
}

/// `bytes` as printable lines: split at `\n`, each cut to
/// [`MAX_EVENT_TEXT`] characters with its length said, bytes that are
/// not UTF-8 or are control characters escaped.
fn lines(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for line in body.split(|&b| b == b'\n') {
        let mut text = String::new();
        for chunk in line.utf8_chunks() {
            for ch in chunk.valid().chars() {
                if ch.is_control() && ch != '\t' {
                    text.push_str(&ch.escape_default().to_string());
                } else {
                    text.push(ch);
                }
            }
            for b in chunk.invalid() {
                text.push_str(&format!("\\x{b:02x}"));
            }
        }
        if text.chars().count() > MAX_EVENT_TEXT {
            let kept: String = text.chars().take(MAX_EVENT_TEXT).collect();
            text = format!("{kept}... ({} bytes in all)", line.len());
        }
        out.push(text);
    }
    out
}

/// A client connection to one server whose traffic goes to a transcript.
pub struct Probe {
    stream: TcpStream,
    server: String,
    log: Transcript,
    /// Bytes received and not yet returned.
    pending: Vec<u8>,
    /// What an unfinished reply held when it failed.
    partial: Vec<u8>,
    timeout: Duration,
}

impl Probe {
    /// Connects to `server` at `addr`; every later read waits at most
    /// `timeout` for its reply.
    pub fn open(
        log: &Transcript,
        server: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Probe, String> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("cannot connect to {server} ({addr}): {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Probe {
            stream,
            server: server.to_string(),
            log: log.clone(),
            pending: Vec::new(),
            partial: Vec::new(),
            timeout,
        })
    }

    /// Writes `bytes` in one write.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> Result<(), String> {
        let bytes = bytes.as_ref();
        self.log.sent(&self.server, bytes);
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("cannot write to {}: {e}", self.server))
    }

    /// Closes the sending side (a half-close, as graders' clients do).
    pub fn shut_write(&mut self) -> Result<(), String> {
        self.log.note(format!("half-close to {}", self.server));
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("cannot half-close to {}: {e}", self.server))
    }

    /// Reads until `end` has arrived and returns everything up to and
    /// including it. Fails on end-of-file, a reset, or `timeout`.
    pub fn until(&mut self, end: &[u8]) -> Result<String, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(at) = find(&self.pending, end) {
                let reply: Vec<u8> = self.pending.drain(..at + end.len()).collect();
                self.log.received(&self.server, &reply);
                return Ok(String::from_utf8_lossy(&reply).into_owned());
            }
            match self.read_more(deadline)? {
                0 => {
                    let got = std::mem::take(&mut self.pending);
                    if !got.is_empty() {
                        self.log.received(&self.server, &got);
                    }
                    self.partial = got.clone();
                    return Err(format!(
                        "{} closed the connection{}",
                        self.server,
                        if got.is_empty() {
                            " without a reply".to_string()
                        } else {
                            format!(" after an unfinished reply of {} bytes", got.len())
                        }
                    ));
                }
                _ => continue,
            }
        }
    }

    /// Everything up to `end`, or what came before the time ran out
    /// or the connection closed.
    pub fn up_to(&mut self, end: &[u8]) -> String {
        match self.until(end) {
            Ok(text) => text,
            Err(_) => String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned(),
        }
    }

    /// One reply line, without its `\n`.
    pub fn line(&mut self) -> Result<String, String> {
        self.until(b"\n")
            .map(|l| l.trim_end_matches('\n').to_string())
    }

    /// Everything until the server closes the connection.
    pub fn until_closed(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + self.timeout;
        while self.read_more(deadline)? > 0 {}
        let got = std::mem::take(&mut self.pending);
        if !got.is_empty() {
            self.log.received(&self.server, &got);
        }
        self.log.note(format!("end-of-file from {}", self.server));
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    /// One read into `pending`, waiting until `deadline`; 0 at end-of-file.
    fn read_more(&mut self, deadline: Instant) -> Result<usize, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let _ = self.stream.set_read_timeout(Some(left));
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                if self.pending.len() > MAX_REPLY {
                    return Err(format!(
                        "{} sent more than {MAX_REPLY} bytes without the reply's end",
                        self.server
                    ));
                }
                Ok(n)
            }
            // A reset is how a server that closed without reading all
            // we sent looks from here: the end, as for end-of-file.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.timed_out())
            }
            Err(e) => Err(format!("reading from {}: {e}", self.server)),
        }
    }

    fn timed_out(&mut self) -> String {
        let got = std::mem::take(&mut self.pending);
        if !got.is_empty() {
            self.log.received(&self.server, &got);
        }
        let shown = got.len();
        self.partial = got;
        format!(
            "no {}reply from {} within {:.1} s",
            if shown == 0 { "" } else { "complete " },
            self.server,
            self.timeout.as_secs_f64()
        )
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Transcript lines escape what a terminal would garble and cut what
    /// would flood the page, saying how long it was.
    #[test]
    fn lines_are_printable_and_bounded() {
        assert_eq!(lines(b"AT a\nAT b\n"), vec!["AT a", "AT b"]);
        assert_eq!(lines(b"IAMAT \xff x"), vec!["IAMAT \\xff x"]);
        assert_eq!(lines(b"a\x01b"), vec!["a\\u{1}b"]);
        let long = vec![b'x'; 1000];
        let shown = &lines(&long)[0];
        assert!(shown.ends_with("... (1000 bytes in all)"), "{shown}");
    }

    /// A muted poll writes nothing, and notes are kept even then.
    #[test]
    fn muted_keeps_notes_only() {
        let log = Transcript::new();
        log.muted(|| {
            log.sent("A", b"hidden\n");
            log.note("kept");
        });
        log.sent("A", b"shown\n");
        let texts: Vec<String> = log.events().into_iter().map(|e| e.text).collect();
        assert_eq!(texts, vec!["kept", "shown"]);
    }
}
