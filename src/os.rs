//! What the herd asks of the operating system beyond sockets, in one
//! place: a thread's scheduling priority, the kernel's watch on a link
//! whose other end has vanished, and the address that reaches a listener
//! bound to every interface. Each is a few lines of `rustix` or
//! `socket2`; each has a reason the comments give.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Makes the kernel notice a link whose other end has vanished (a cable
/// cut, a host gone) rather than a process that exited, which closes its
/// sockets itself. Without this a cut link looks healthy: lines written
/// to it sit in the kernel's buffer, retransmitted for up to fifteen
/// minutes. Keepalive probes an idle link after a few seconds, and the
/// user timeout drops a link whose data stays unacknowledged, so the
/// watcher sees an error and the link reconnects and resyncs. Used on
/// both ends: on the accepting end it reaps connections from neighbours
/// that gave up on them.
pub fn detect_dead_peer(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    let _ = socket.set_tcp_keepalive(&keepalive);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket.set_tcp_user_timeout(Some(DEAD_PEER_TIMEOUT));
}

/// How long written data may stay unacknowledged before a link is
/// declared dead (Linux's `TCP_USER_TIMEOUT`).
pub const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(8);

/// Lowers the scheduling priority of the calling thread (a client
/// connection, or a journal rewrite) by `steps` nice values, so that on a
/// busy machine the threads that pass updates on (links and neighbours'
/// connections, which keep the default) run first. A server answers a
/// client only once its links have room for the update, but a relaying
/// server cannot make its
/// neighbours wait (see `flood`), and with two cores shared by dozens of
/// client threads a relay thread could wait a whole round of them before
/// it ran: under sustained load the far servers then lagged by hundreds
/// of milliseconds. At nice 10 a client thread gets about a tenth of the
/// CPU share of a relay thread when both want to run, and exactly as much
/// as before when nothing else does. `proxy-herd-bench sustain` measured
/// the difference (src/bin/proxy-herd-bench/README.md#performance).
///
/// Client connections do this only when they start while some link is
/// up: with no flood to protect, a lower priority would only let other
/// programs on the machine (a load generator, say) delay the replies.
/// A journal rewrite always does: its writing can always wait. (Not
/// while it reads the store, whose lock every thread needs: see
/// `journal::Inner::compact_now`.)
///
/// Linux keeps nice values per thread, and an unprivileged thread may
/// always lower its own priority. Elsewhere, or if the call fails, the
/// thread simply keeps its priority.
pub fn yield_to_the_flood(steps: i32) {
    if steps > 0 {
        let me = Some(rustix::thread::gettid());
        // Relative to the server's own priority, so a server started with
        // `nice` keeps its clients below its flood too.
        let own = rustix::process::getpriority_process(me).unwrap_or(0);
        let _ = rustix::process::setpriority_process(me, (own + steps).min(19));
    }
}

/// An address to connect to that reaches a listener bound to `addr`
/// (a listener on 0.0.0.0 is reached through loopback).
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
