//! Ports for servers that tests start later: a herd file must name its
//! ports before anything binds them.
//!
//! The same rules as `proxy-herd-bench`'s own (its `spawn.rs`), kept here
//! rather than shared because the bench is a program of its own, not part
//! of the library the tests link.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback port nothing is using, for a server that will bind it
/// later (a herd file must name its ports before anything starts).
///
/// A port the kernel hands out (`bind` to port 0, then released) is
/// unsafe for this: until the server binds it, the kernel may give the
/// same port to any other socket's `connect()` or `bind(0)`, and then
/// the server cannot start. That happened once in CI. So the port comes
/// from below the kernel's ephemeral range, which it never hands out,
/// from a counter this process owns (so no two calls here agree) that
/// starts at an offset of its process id (so two processes seldom
/// meet), and only after a test bind shows it free.
pub fn free_port() -> Result<u16, String> {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (low, high) = unhanded_ports();
    if low >= high {
        return kernel_port();
    }
    let span = u32::from(high - low);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(337) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = low + (NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    kernel_port()
}

/// The ports [`free_port`] chooses from: above the default herd's
/// (12000–12004, peers 22000–22004) and below the kernel's ephemeral
/// range, read from `/proc` (Linux's default starts at 32768).
fn unhanded_ports() -> (u16, u16) {
    const LOW: u16 = 23000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (LOW, ephemeral_low.max(LOW))
}

/// A port from the kernel (bound to port 0, then released): the fallback
/// when the ephemeral range leaves no room below it.
fn kernel_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}
