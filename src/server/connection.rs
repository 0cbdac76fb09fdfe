//! A connection's bytes: which port it came from, the line reader every
//! connection reads through, and why a connection ended.

use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How much a connection reads at a time, at most: a neighbour's burst
/// of AT lines comes in reads this big.
const READ_CHUNK: usize = 8 * 1024;

/// How much a new connection reads at first. A client's lines are about
/// a hundred bytes, and a quiet connection keeps its buffer for as long
/// as it is open: thousands of held connections would each keep 8 KiB
/// they never use (heaptrack showed this buffer as the biggest heap block
/// a held connection keeps). A read that fills the buffer's free room
/// doubles the next one, up to [`READ_CHUNK`], so a neighbour's bursts
/// soon read as before.
const FIRST_READ: usize = 256;

/// Which listener a connection came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Port {
    Client,
    Peer,
}

impl Port {
    /// "client" or "peer", for log lines.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Port::Client => "client",
            Port::Peer => "peer",
        }
    }
}

/// Why a connection ended, for the log line that says it closed.
#[derive(Debug)]
pub(super) enum Ended {
    /// The other side closed its end.
    EndOfInput,
    /// A line longer than `--max-line`.
    LineTooLong,
    /// Nothing for `--idle-timeout`.
    IdleTimeout,
    /// A line begun and not ended within `--line-timeout`.
    LineTimeout,
    Read(io::Error),
    Write(io::Error),
    /// A peer connection that did not prove the herd secret.
    Unproven,
    /// The server was stopping when the connection arrived.
    Stopping,
    /// An update could not be journaled, so it gets no AT reply.
    JournalFailed,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::EndOfInput => f.write_str("end of input"),
            Ended::LineTooLong => f.write_str("line too long"),
            Ended::IdleTimeout => f.write_str("idle timeout"),
            Ended::LineTimeout => f.write_str("line timeout"),
            Ended::Read(e) => write!(f, "read error: {e}"),
            Ended::Write(e) => write!(f, "write error: {e}"),
            Ended::Unproven => f.write_str("unproven link"),
            Ended::Stopping => f.write_str("server stopping"),
            Ended::JournalFailed => f.write_str("the journal cannot be written"),
        }
    }
}

/// Why reading a line failed.
#[derive(Debug)]
pub(super) enum LineError {
    /// The line passed the limit before its `\n` arrived.
    TooLong,
    /// The line began longer ago than the line timeout and has not ended.
    LineTimeout,
    /// The socket failed.
    Io(io::Error),
}

/// Splits a byte stream into lines, however the bytes arrive: several
/// lines in one read, or one line over many. At end-of-file an
/// unterminated last line still counts (a client that half-closes after
/// its message without a `\n`, src/protocol.md#lines).
pub(super) struct Lines<R> {
    inner: R,
    /// Bytes read so far live in `buf[..filled]`; the rest of `buf` is
    /// room for the next read. It is zeroed once when it grows, never per
    /// read (a 16 KiB `memset` per read showed up in profiles).
    buf: Vec<u8>,
    filled: usize,
    /// Where the next line starts in `buf`.
    start: usize,
    /// How far `buf` has been searched for `\n` already.
    scanned: usize,
    eof: bool,
    max: usize,
    /// How much the next read may take (see [`FIRST_READ`]).
    chunk: usize,
    /// How long a read may wait when no line is under way
    /// (`--idle-timeout`).
    idle: Option<Duration>,
    /// How long a line may take from its first byte to its `\n`
    /// (`--line-timeout`).
    line_limit: Option<Duration>,
    /// When the unfinished line in the buffer began to arrive.
    line_began: Option<Instant>,
    /// When the last read returned bytes (kept only with a line limit).
    last_read: Option<Instant>,
    /// The wait the source was last told to use.
    waiting: Option<Duration>,
}

/// What [`Lines`] reads from: bytes, and a way to bound how long the
/// next reads may wait.
pub(super) trait Source: Read {
    /// Bounds how long each read may block (`None`: for ever).
    fn wait_at_most(&mut self, limit: Option<Duration>) -> io::Result<()>;
}

impl Source for &TcpStream {
    fn wait_at_most(&mut self, limit: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(limit)
    }
}

impl<R: Source> Lines<R> {
    pub(super) fn new(inner: R, max: usize) -> Lines<R> {
        Lines {
            inner,
            buf: Vec::new(),
            filled: 0,
            start: 0,
            scanned: 0,
            eof: false,
            max,
            chunk: FIRST_READ,
            idle: None,
            line_limit: None,
            line_began: None,
            last_read: None,
            waiting: None,
        }
    }

    /// Reads wait at most `idle` between lines, and a line must end
    /// within `line_limit` of its first byte: a client that trickles a
    /// line a byte at a time cannot hold its connection for ever, while
    /// `nc`, which sends a whole line when Enter is pressed, never meets
    /// the limit however slowly a person types.
    pub(super) fn with_timeouts(
        mut self,
        idle: Option<Duration>,
        line_limit: Option<Duration>,
    ) -> Lines<R> {
        self.idle = idle;
        self.line_limit = line_limit;
        self
    }

    /// How long the next read may wait: until the line under way is due,
    /// or the idle timeout when none is.
    fn next_wait(&mut self) -> Option<Duration> {
        let Some(limit) = self.line_limit else {
            return self.idle;
        };
        if self.filled == self.start {
            self.line_began = None;
            return self.idle;
        }
        let began = *self
            .line_began
            .get_or_insert_with(|| self.last_read.unwrap_or_else(Instant::now));
        // A zero timeout means "for ever" to the socket: wait at least 1 ms.
        let left = limit
            .saturating_sub(began.elapsed())
            .max(Duration::from_millis(1));
        Some(self.idle.map_or(left, |idle| idle.min(left)))
    }

    /// Whether the line under way has been arriving for longer than the
    /// line limit.
    fn line_overdue(&self) -> bool {
        match (self.line_limit, self.line_began) {
            (Some(limit), Some(began)) => self.filled > self.start && began.elapsed() >= limit,
            _ => false,
        }
    }

    /// Whether [`Lines::next_line`] can answer without reading: a whole
    /// line is buffered, or the end of input was seen.
    pub(super) fn ready(&self) -> bool {
        self.eof || self.buf[self.scanned..self.filled].contains(&b'\n')
    }

    /// The next line without its `\n`, or `None` at end-of-file.
    pub(super) fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        let mut line = Vec::new();
        Ok(self.read_line(&mut line)?.then_some(line))
    }

    /// Puts the next line, without its `\n`, in `line` (replacing what it
    /// held) and says whether there was one: false at end-of-file. A
    /// connection reads every line into the same `Vec`, so a line costs
    /// a copy and no allocation.
    pub(super) fn read_line(&mut self, line: &mut Vec<u8>) -> Result<bool, LineError> {
        line.clear();
        loop {
            let unread = &self.buf[self.scanned..self.filled];
            if let Some(i) = unread.iter().position(|&b| b == b'\n') {
                let end = self.scanned + i;
                if end - self.start > self.max {
                    return Err(LineError::TooLong);
                }
                line.extend_from_slice(&self.buf[self.start..end]);
                self.start = end + 1;
                self.scanned = self.start;
                self.line_began = None;
                return Ok(true);
            }
            self.scanned = self.filled;
            if self.filled - self.start > self.max {
                return Err(LineError::TooLong);
            }
            if self.eof {
                if self.start == self.filled {
                    return Ok(false);
                }
                line.extend_from_slice(&self.buf[self.start..self.filled]);
                self.start = self.filled;
                return Ok(true);
            }
            // Move the unfinished line to the front, make room, read more.
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.scanned -= self.start;
            self.start = 0;
            if self.buf.len() - self.filled < self.chunk / 2 {
                self.buf.resize(self.filled + self.chunk, 0);
            }
            let wait = self.next_wait();
            if wait != self.waiting {
                self.inner.wait_at_most(wait).map_err(LineError::Io)?;
                self.waiting = wait;
            }
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if self.filled + n == self.buf.len() {
                        self.chunk = (self.chunk * 2).min(READ_CHUNK);
                    }
                    self.filled += n;
                    if self.line_limit.is_some() {
                        self.last_read = Some(Instant::now());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && self.line_overdue() =>
                {
                    return Err(LineError::LineTimeout)
                }
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes in the given pieces, one per read,
    /// like a client writing in several writes.
    struct Pieces(Vec<Vec<u8>>);

    impl Source for Pieces {
        fn wait_at_most(&mut self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            out[..piece.len()].copy_from_slice(&piece);
            Ok(piece.len())
        }
    }

    fn lines(pieces: &[&str], max: usize) -> Vec<Result<String, String>> {
        let mut reader = Lines::new(
            Pieces(pieces.iter().map(|p| p.as_bytes().to_vec()).collect()),
            max,
        );
        let mut out = Vec::new();
        loop {
            match reader.next_line() {
                Ok(Some(l)) => out.push(Ok(String::from_utf8(l).unwrap())),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(format!("{e:?}")));
                    return out;
                }
            }
        }
    }

    /// Several lines in one read come out one by one.
    #[test]
    fn many_lines_one_read() {
        assert_eq!(
            lines(&["a\nb\n\nc\n"], 100),
            [Ok("a"), Ok("b"), Ok(""), Ok("c")].map(|r| r.map(String::from))
        );
    }

    /// One line over several reads comes out whole.
    #[test]
    fn one_line_many_reads() {
        assert_eq!(
            lines(&["IAM", "AT x", " +1+2 3", "\n"], 100),
            [Ok("IAMAT x +1+2 3".to_string())]
        );
    }

    /// An unterminated last line before end-of-file still counts.
    #[test]
    fn unterminated_last_line() {
        assert_eq!(
            lines(&["a\nb"], 100),
            [Ok("a".to_string()), Ok("b".to_string())]
        );
    }

    /// A line over the limit is an error, exactly past the limit.
    #[test]
    fn limit() {
        assert_eq!(lines(&["12345\n"], 5), [Ok("12345".to_string())]);
        assert_eq!(lines(&["123456\n"], 5)[0], Err("TooLong".to_string()));
        assert_eq!(
            lines(&["123", "456", "7"], 5)[0],
            Err("TooLong".to_string())
        );
        // Without a newline at all, the limit applies too.
        assert_eq!(lines(&["1234567"], 5)[0], Err("TooLong".to_string()));
    }
}
