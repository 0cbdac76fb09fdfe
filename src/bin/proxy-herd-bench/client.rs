//! The client side of the protocol, as the bench speaks it: connections
//! that read replies up to a terminator, IAMAT lines with ever-increasing
//! client times, and the checks that a reply is the one owed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The location every bench IAMAT sends (UCLA, the example of src/protocol.md#iamat-here-i-am).
pub const LOCATION: &str = "+34.068930-118.445127";

/// The largest reply read; a longer one is an error, never a bigger buffer.
const MAX_REPLY: usize = 1 << 20;

/// A client connection that reads replies up to a terminator.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects with `timeout` for the connect, every read and every write,
    /// and Nagle off (one small request at a time, like the graders').
    pub fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes the whole message in one call.
    pub fn send(&mut self, message: &str) -> io::Result<()> {
        self.stream.write_all(message.as_bytes())
    }

    /// Reads until the received bytes contain `end`, and returns them up to
    /// and including it; bytes after it stay for the next call.
    pub fn read_until(&mut self, end: &[u8]) -> io::Result<String> {
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(end.len());
            if let Some(i) = find(&self.buf[from..], end) {
                let cut = from + i + end.len();
                let reply: Vec<u8> = self.buf.drain(..cut).collect();
                return String::from_utf8(reply)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply not UTF-8"));
            }
            searched = self.buf.len();
            if self.buf.len() > MAX_REPLY {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply longer than 1 MiB without its end",
                ));
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Half-closes (no more requests) and reads everything up to
    /// end-of-file: the graders' way of taking a reply.
    pub fn finish(mut self) -> io::Result<String> {
        self.stream.shutdown(Shutdown::Write)?;
        let mut rest = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
            if rest.len() > MAX_REPLY {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply longer than 1 MiB",
                ));
            }
        }
        String::from_utf8(rest)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply not UTF-8"))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Client times for one client: the wall clock in nanoseconds, but
/// always later than the previous one, so every IAMAT is newer than the
/// last and gets stored and flooded.
#[derive(Debug, Default)]
pub struct ClientClock {
    last: u128,
}

impl ClientClock {
    /// The next time, as POSIX seconds with nine decimals.
    pub fn tick(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        self.last = now.max(self.last + 1);
        format!(
            "{}.{:09}",
            self.last / 1_000_000_000,
            self.last % 1_000_000_000
        )
    }
}

/// An IAMAT line (with its `\n`) and the tail its AT reply must end with.
pub fn iamat(client: &str, time: &str) -> (String, String) {
    (
        format!("IAMAT {client} {LOCATION} {time}\n"),
        format!(" {client} {LOCATION} {time}\n"),
    )
}

/// Checks an IAMAT reply: one AT line whose last three fields are the
/// IAMAT's. Returns the AT line without its `\n`.
pub fn check_at(reply: &str, tail: &str) -> Result<String, String> {
    let fields = reply.split_ascii_whitespace().count();
    if reply.starts_with("AT ")
        && reply.ends_with(tail)
        && fields == 6
        && reply.matches('\n').count() == 1
    {
        Ok(reply.trim_end_matches('\n').to_string())
    } else {
        Err(format!("unexpected reply to IAMAT: {reply:?}"))
    }
}

/// Checks a WHATSAT reply: the expected AT line, a Places answer with
/// status OK, and the blank line that ends it.
pub fn check_whatsat(reply: &str, at_line: &str) -> Result<(), String> {
    let ok = reply.len() > at_line.len()
        && reply.starts_with(at_line)
        && reply[at_line.len()..].starts_with("\n{")
        && reply.ends_with("}\n\n")
        && reply.contains("\"status\" : \"OK\"");
    if ok {
        Ok(())
    } else {
        let shown: String = reply.chars().take(300).collect();
        Err(format!("unexpected reply to WHATSAT: {shown:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client times strictly increase and have nine decimals.
    #[test]
    fn clock_increases() {
        let mut c = ClientClock::default();
        let a = c.tick();
        let b = c.tick();
        assert!(proxy_herd::protocol::parse_time(&a) < proxy_herd::protocol::parse_time(&b));
        assert_eq!(a.split('.').nth(1).unwrap().len(), 9);
    }

    /// The reply checks accept the owed reply and refuse anything else.
    #[test]
    fn checks() {
        let (line, tail) = iamat("k", "1.5");
        assert!(line.starts_with("IAMAT k +34"));
        let good = format!("AT Riley +0.1{tail}");
        assert_eq!(check_at(&good, &tail).unwrap(), good.trim_end());
        assert!(check_at("? IAMAT k\n", &tail).is_err());
        assert!(check_at(&format!("{good}{good}"), &tail).is_err());
        let at = "AT R +0.1 k +1+2 3";
        assert!(check_whatsat(&format!("{at}\n{{\n   \"status\" : \"OK\"\n}}\n\n"), at).is_ok());
        assert!(check_whatsat(
            &format!("{at}\n{{\n   \"status\" : \"UNKNOWN_ERROR\"\n}}\n\n"),
            at
        )
        .is_err());
    }
}
