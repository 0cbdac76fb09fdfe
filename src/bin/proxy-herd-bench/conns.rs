//! Many held connections: open N, then one IAMAT on each, and read the
//! server's memory before and after.
//!
//! "Open" is the time until every `connect` returned, which on Linux
//! means the handshake is done and the connection sits in the listen
//! queue (or was accepted). "Answer" is the time from writing the first
//! IAMAT until the last reply was read; it includes the server accepting
//! and starting a thread for each connection it had not yet taken.
//! Memory is VmRSS of the server process, once before opening and once
//! with every connection open and answered; the difference over N is the
//! memory per connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::{self, ClientClock, Conn};
use super::spawn::memory_of;

/// The longest the opening may take in all, past which the rest is
/// skipped and counted as errors.
const OPEN_BUDGET: Duration = Duration::from_secs(120);

/// What a conns run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Connections opened.
    pub opened: u64,
    /// Connections whose IAMAT was answered correctly.
    pub answered: u64,
    /// Failed connects, writes, reads or wrong replies.
    pub errors: u64,
    /// Seconds to open them all.
    pub open_s: f64,
    /// Seconds from the first IAMAT until every reply was read.
    pub answer_s: f64,
    /// The server's VmRSS and thread count before opening.
    pub before: Option<(u64, u64)>,
    /// The same, with every connection open and answered.
    pub after: Option<(u64, u64)>,
    /// The first error seen.
    pub first_error: Option<String>,
}

/// How many files this process may open (the soft limit).
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Opens `n` connections to `addr`, one IAMAT on each, and measures.
pub fn measure(
    addr: SocketAddr,
    n: usize,
    pid: Option<u32>,
    prefix: &str,
    timeout: Duration,
    progress: &dyn Fn(std::fmt::Arguments<'_>),
) -> Outcome {
    let mut out = Outcome {
        before: pid.and_then(memory_of),
        ..Outcome::default()
    };
    let fail = |out: &mut Outcome, e: String| {
        out.errors += 1;
        out.first_error.get_or_insert(e);
    };
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        if start.elapsed() > OPEN_BUDGET {
            fail(
                &mut out,
                format!("opening took over {OPEN_BUDGET:?}; {} not opened", n - i),
            );
            break;
        }
        match Conn::open(addr, timeout) {
            Ok(c) => conns.push(c),
            Err(e) => fail(&mut out, format!("connect {i}: {e}")),
        }
        if (i + 1) % 2000 == 0 {
            progress(format_args!(
                "  conns: {} open after {:.2} s",
                i + 1,
                start.elapsed().as_secs_f64()
            ));
        }
    }
    out.open_s = start.elapsed().as_secs_f64();
    out.opened = conns.len() as u64;
    let start = Instant::now();
    let mut tails = Vec::with_capacity(conns.len());
    for (i, conn) in conns.iter_mut().enumerate() {
        let (line, tail) = client::iamat(&format!("{prefix}-{i}"), &ClientClock::default().tick());
        match conn.send(&line) {
            Ok(()) => tails.push(Some(tail)),
            Err(e) => {
                tails.push(None);
                fail(&mut out, format!("write {i}: {e}"));
            }
        }
    }
    for (i, (conn, tail)) in conns.iter_mut().zip(&tails).enumerate() {
        let Some(tail) = tail else { continue };
        match conn.read_until(b"\n") {
            Ok(reply) => match client::check_at(&reply, tail) {
                Ok(_) => out.answered += 1,
                Err(e) => fail(&mut out, e),
            },
            Err(e) => fail(&mut out, format!("read {i}: {e}")),
        }
    }
    out.answer_s = start.elapsed().as_secs_f64();
    out.after = pid.and_then(memory_of);
    drop(conns);
    out
}
