//! The server loop: two listeners, and a thread for every connection.
//!
//! ```text
//!   client port ── accept thread ──┬── connection thread (IAMAT, WHATSAT)
//!                                  └── connection thread ...
//!   peer port ──── accept thread ──┬── connection thread (AT from a neighbour)
//!                                  └── ...
//!   one link thread per neighbour (flood/link.rs), fed by a bounded channel
//! ```
//!
//! A connection thread reads lines (`Lines`), parses each with
//! `protocol`, does what it asks against the store, the flood and Places,
//! and writes the reply in one write. It blocks freely, in a read or in a
//! Places request, because it blocks nobody else: this is the
//! thread-per-connection design, where an asyncio server would run one
//! coroutine per connection on one event loop and `await` at the same
//! points.
//!
//! [`start`] takes listeners that are already bound, so a test can bind
//! port 0, learn the real address, and start a server on it.
//!
//! Stopping: a blocking `accept` cannot be interrupted directly. Like
//! tiny-http, [`ServerHandle::shutdown`] sets a flag and then connects to
//! its own listeners, so each accept thread wakes, sees the flag and
//! returns, dropping its listener. We chose this over polling a
//! non-blocking listener on a timer because it costs nothing while the
//! server runs and stops at once. Open connections are shut down through
//! clones of their sockets kept in a table, so their threads see
//! end-of-file and end; the link threads end when the shutdown channel's
//! sender is dropped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::{self, HerdSecret};
use crate::flood::{self, Flood, DELIVERY_CAP, HANDSHAKE_TIMEOUT};
use crate::herd::{Herd, ServerSpec};
use crate::journal::{Journal, ReplayRules};
use crate::logging::{Episode, ServerLog};
use crate::places::{Places, PlacesConfig};
use crate::protocol::{self, now_nanos, AtRecord, ClientCommand, Escaped, Nanos, PeerCommand};
use crate::store::{Offered, Store};

/// The line limit of PROTOCOL.md §2.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// How many client connections may be open at once by default. Each costs
/// a thread and a file descriptor; the process's descriptor limit
/// (`ulimit -n`) must be above this for it to be reached.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// How far in the future a client time may be, by default: one day. One
/// IAMAT with a time far ahead would otherwise pin that client's location
/// for ever, since no later update could be newer.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(24 * 60 * 60);

/// How many clients the store holds at most, by default. A record costs
/// about half a kilobyte, so this is about 500 MiB: far more clients than
/// a class or a lab makes, and a bound on what a stranger inventing
/// client ids can make a server spend.
pub const DEFAULT_MAX_CLIENTS: usize = 1_000_000;

/// How much lower client connection threads run than the threads that
/// carry the flood, by default; see `yield_to_the_flood`.
pub const DEFAULT_CLIENT_NICE: i32 = 10;

/// The limits that keep one client from hurting the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest line accepted, in bytes without the `\n`; a longer line
    /// closes its connection.
    pub max_line: usize,
    /// Most client connections open at once; past it a new connection is
    /// closed at once, and the ones already open carry on.
    pub max_connections: usize,
    /// Most peer-port connections open at once, likewise; `None` means
    /// [`default_max_peers`] of the server's neighbours. Anyone who can
    /// reach the peer port can open connections there, and each costs a
    /// thread.
    pub max_peer_connections: Option<usize>,
    /// A client connection silent for this long is closed. `None` (the
    /// default) never closes one, so a person typing into `nc` is not cut
    /// off.
    pub idle_timeout: Option<Duration>,
    /// Client times further ahead of this server's clock are invalid.
    pub max_future: Duration,
    /// Most clients the store holds; past it an update for a new client
    /// is refused (known clients keep updating).
    pub max_clients: usize,
    /// How many nice values client connection threads run below the rest
    /// of the server (0 to 19; 0 keeps them level); see
    /// `yield_to_the_flood`.
    pub client_nice: i32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_peer_connections: None,
            idle_timeout: None,
            max_future: DEFAULT_MAX_FUTURE,
            max_clients: DEFAULT_MAX_CLIENTS,
            client_nice: DEFAULT_CLIENT_NICE,
        }
    }
}

/// Stack size of connection threads. Their deepest work is a Places
/// request (TLS included) and a JSON re-layout; 512 KiB leaves ample room,
/// and pages of it that are never touched cost no memory.
const CONNECTION_STACK: usize = 512 * 1024;

/// How long a reply may wait for a client to make room for it.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How much a connection reads at a time.
const READ_CHUNK: usize = 8 * 1024;

/// Everything a server needs besides its listeners.
pub struct ServerConfig {
    /// This server's name in the herd.
    pub name: String,
    /// The herd it belongs to.
    pub herd: Herd,
    /// How to reach Places.
    pub places: PlacesConfig,
    /// Limits on what clients may do.
    pub limits: Limits,
    /// Where new records are journaled before replies (`None`: nowhere,
    /// so a server with no neighbour up can lose acknowledged updates if
    /// it is killed).
    pub journal: Option<PathBuf>,
    /// With a herd secret, AT lines are accepted on the peer port only
    /// from links that prove they know it, and our links prove it.
    pub secret: Option<HerdSecret>,
    /// Where its log goes.
    pub log: ServerLog,
}

/// A server's two bound listeners.
pub struct Listeners {
    /// Where clients connect.
    pub client: TcpListener,
    /// Where neighbours' links connect.
    pub peer: TcpListener,
}

impl Listeners {
    /// Binds both ports of a server of the herd. Fails (port in use, bad
    /// host) before anything else has started.
    pub fn bind(spec: &ServerSpec) -> io::Result<Listeners> {
        let bind = |host: &str, port: u16, what: &str| {
            bind_listener((host, port)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {what} {host}:{port}: {e}"),
                )
            })
        };
        let client = bind(&spec.host, spec.port, "client port")?;
        let peer = bind(&spec.peer_host, spec.peer_port, "peer port")?;
        // Accepted links inherit it; see `flood::LINK_BUFFER`.
        let _ = socket2::SockRef::from(&peer).set_recv_buffer_size(flood::LINK_BUFFER);
        Ok(Listeners { client, peer })
    }
}

/// How many connections the kernel may queue for `accept()`. Rust's std
/// asks for 128, which a burst of connections overflows: each dropped
/// SYN then costs its client a one-second retransmit. The kernel caps
/// this at `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listener like `TcpListener::bind`, but with a deep backlog
/// ([`LISTEN_BACKLOG`]) and `TCP_NODELAY` set, which Linux passes on to
/// every accepted socket (replies are whole lines, so Nagle's delay only
/// costs latency). socket2 is used because std offers neither.
pub fn bind_listener(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addr.to_socket_addrs()? {
        let attempt = || -> io::Result<TcpListener> {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.set_nodelay(true)?;
            socket.bind(&addr.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            Ok(socket.into())
        };
        match attempt() {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What a running server shares between its threads.
struct Shared {
    name: String,
    herd: Herd,
    store: Store,
    flood: Flood,
    journal: Option<Journal>,
    secret: Option<HerdSecret>,
    places: Places,
    log: ServerLog,
    limits: Limits,
    stopping: AtomicBool,
    /// Open connections' sockets, shared with their threads so shutdown
    /// can close them (an `Arc` rather than `try_clone`, which would spend
    /// a second file descriptor on every connection).
    conns: Mutex<HashMap<u64, Arc<TcpStream>>>,
    /// How many client-port connections are open, for `max_connections`.
    clients: AtomicUsize,
    /// How many peer-port connections are open, and how many may be.
    peers: AtomicUsize,
    max_peers: usize,
    /// Refusals at either port's limit, reported once per episode.
    refused_clients: Episode,
    refused_peers: Episode,
    /// New clients refused at `max_clients`, reported once per episode.
    full: Episode,
    next_conn: AtomicU64,
}

/// Which listener a connection came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Client,
    Peer,
}

impl Port {
    /// "client" or "peer", for log lines.
    fn kind(self) -> &'static str {
        match self {
            Port::Client => "client",
            Port::Peer => "peer",
        }
    }
}

/// How often a refusal at a connection limit is reported while refusals
/// go on.
const REFUSALS_REPORTED_EVERY: Duration = Duration::from_secs(10);

/// The peer-port limit when `--max-peer-connections` is not given: four
/// per neighbour (a link that reconnects may briefly hold a second one,
/// and a neighbour's old connection lingers until found dead), and at
/// least eight.
pub fn default_max_peers(neighbours: usize) -> usize {
    (4 * neighbours).max(8)
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    /// Dropping it tells the link threads to end.
    shutdown: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts a server on bound listeners: an accept thread for each, and a
/// link thread for each neighbour.
pub fn start(config: ServerConfig, listeners: Listeners) -> io::Result<ServerHandle> {
    let ServerConfig {
        name,
        herd,
        places,
        limits,
        journal,
        secret,
        log,
    } = config;
    let client_addr = listeners.client.local_addr()?;
    let peer_addr = listeners.peer.local_addr()?;
    let store = Store::new();
    // Read the journal back before anyone is accepted, so the first
    // WHATSAT already sees every acknowledged update.
    let journal = match journal {
        Some(path) => {
            let rules = ReplayRules {
                max_future: limits.max_future,
                max_clients: limits.max_clients,
                max_line: limits.max_line,
            };
            let (journal, replay) =
                Journal::open(&path, &herd, &store, &rules, &log).map_err(|e| {
                    io::Error::new(e.kind(), format!("journal {}: {e}", path.display()))
                })?;
            log.info(format_args!(
                "journal {}: read {} lines ({} skipped), {} clients",
                path.display(),
                replay.lines,
                replay.skipped,
                replay.clients
            ));
            Some(journal)
        }
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded::<()>(0);
    let neighbours: Vec<ServerSpec> = herd.neighbours(&name).into_iter().cloned().collect();
    let max_peers = limits
        .max_peer_connections
        .unwrap_or_else(|| default_max_peers(neighbours.len()));
    let (flood, mut threads) = flood::start(
        &name,
        &neighbours,
        &store,
        &log,
        secret.as_ref(),
        &shutdown_rx,
    )?;
    log.info(format_args!(
        "{name} listening for clients on {client_addr} and for neighbours on {peer_addr}; neighbours: {}",
        if neighbours.is_empty() {
            "none".to_string()
        } else {
            neighbours
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let shared = Arc::new(Shared {
        name,
        herd,
        store,
        flood,
        journal,
        secret,
        places: Places::new(places),
        log,
        limits,
        stopping: AtomicBool::new(false),
        conns: Mutex::new(HashMap::new()),
        clients: AtomicUsize::new(0),
        peers: AtomicUsize::new(0),
        max_peers,
        refused_clients: Episode::new(REFUSALS_REPORTED_EVERY),
        refused_peers: Episode::new(REFUSALS_REPORTED_EVERY),
        full: Episode::new(REFUSALS_REPORTED_EVERY),
        next_conn: AtomicU64::new(0),
    });
    for (listener, port) in [
        (listeners.client, Port::Client),
        (listeners.peer, Port::Peer),
    ] {
        let shared = Arc::clone(&shared);
        let what = if port == Port::Client {
            "clients"
        } else {
            "peers"
        };
        threads.push(
            thread::Builder::new()
                .name(format!("{} accept {what}", shared.name))
                .spawn(move || accept_loop(&shared, listener, port))?,
        );
    }
    Ok(ServerHandle {
        shared,
        client_addr,
        peer_addr,
        shutdown: Some(shutdown_tx),
        threads,
    })
}

impl ServerHandle {
    /// Where clients connect.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Where neighbours connect.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// This server's store (tests look inside it).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// How many records each link holds waiting to be sent (queued, and
    /// kept behind), by neighbour.
    pub fn link_waiting(&self) -> Vec<(String, usize)> {
        self.shared.flood.waiting()
    }

    /// Stops the server: no new connections, open ones closed, links
    /// ended, threads joined, log flushed. The ports are free when it
    /// returns. Connection threads in the middle of a Places request end
    /// when it does.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        for addr in [self.client_addr, self.peer_addr] {
            // Wake the accept thread; it sees `stopping` and returns.
            let _ = TcpStream::connect_timeout(&reachable(addr), Duration::from_secs(1));
        }
        drop(self.shutdown.take());
        let open: Vec<Arc<TcpStream>> = self.shared.conns.lock().drain().map(|(_, s)| s).collect();
        for stream in open {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.shared
            .log
            .info(format_args!("{} stopped", self.shared.name));
        self.shared.log.flush();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An address to connect to that reaches a listener bound to `addr`
/// (a listener on 0.0.0.0 is reached through loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The first pause after a failed `accept`; it doubles up to
/// [`ACCEPT_PAUSE_MAX`], as Go's HTTP server does.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
/// The longest pause between failed `accept`s.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, port: Port) {
    let kind = port.kind();
    let failures = Episode::new(Duration::from_secs(1));
    let mut pause = ACCEPT_PAUSE_MIN;
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors and the like, which lasts until
                // connections close: wait, longer each time, and say so
                // at most once a second.
                if let Some(n) = failures.occurred() {
                    shared.log.error(format_args!(
                        "accept on the {kind} port failed {n} time(s) since the last report ({e}); \
                         retrying after {} ms",
                        pause.as_millis()
                    ));
                }
                shared.pause_unless_stopping(pause);
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                continue;
            }
        };
        pause = ACCEPT_PAUSE_MIN;
        if let Some(n) = failures.ended() {
            shared.log.warn(format_args!(
                "accepting on the {kind} port again ({n} more failure(s) since the last report)"
            ));
        }
        if !shared.admit(&stream, port) {
            continue;
        }
        if port == Port::Peer {
            shared.flood.poke();
        }
        let thread_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .stack_size(CONNECTION_STACK)
            .spawn(move || serve_connection(&thread_shared, stream, port));
        if let Err(e) = spawned {
            shared.release(port);
            shared
                .log
                .error(format_args!("cannot start a connection thread: {e}"));
        }
    }
}

/// Runs one connection to its end, keeping its socket in the table of
/// open connections meanwhile.
fn serve_connection(shared: &Shared, stream: TcpStream, port: Port) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let stream = Arc::new(stream);
    shared.conns.lock().insert(id, Arc::clone(&stream));
    let kind = port.kind();
    // Checked after registering, so a shutdown that began meanwhile
    // either finds this socket in the table or is seen here.
    let how = if shared.stopping.load(Ordering::SeqCst) {
        "server stopping".to_string()
    } else {
        shared
            .log
            .info(format_args!("{peer} {kind} connection opened"));
        let _ = stream.set_nodelay(true);
        if port == Port::Peer {
            flood::detect_dead_peer(&stream);
        }
        if port == Port::Client {
            if shared.flood.any_open() {
                yield_to_the_flood(shared.limits.client_nice);
            }
            let _ = stream.set_read_timeout(shared.limits.idle_timeout);
            // A client that never reads would otherwise hold its thread in
            // a blocked write for ever once its socket buffer is full.
            let _ = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        }
        let how = serve_lines(shared, &stream, &peer, port);
        // Everything owed has been written: let a half-closed client read
        // to end-of-file.
        let _ = stream.shutdown(Shutdown::Write);
        how
    };
    shared.conns.lock().remove(&id);
    shared.release(port);
    shared
        .log
        .info(format_args!("{peer} {kind} connection closed ({how})"));
}

/// Lowers the scheduling priority of the calling thread, a client
/// connection, by `steps` nice values, so that on a busy machine the
/// threads that pass updates on (links and neighbours' connections, which
/// keep the default) run first. A server answers a client only once its
/// links have room for the update, but a relaying server cannot make its
/// neighbours wait (see `flood`), and with two cores shared by dozens of
/// client threads a relay thread could wait a whole round of them before
/// it ran: under sustained load the far servers then lagged by hundreds
/// of milliseconds. At nice 10 a client thread gets about a tenth of the
/// CPU share of a relay thread when both want to run, and exactly as much
/// as before when nothing else does. `proxy-herd-bench sustain` measured
/// the difference (README, Performance).
///
/// Only connections that start while some link is up do this: with no
/// flood to protect, a lower priority would only let other programs on
/// the machine (a load generator, say) delay the replies.
///
/// Linux keeps nice values per thread, and an unprivileged thread may
/// always lower its own priority. Elsewhere, or if the call fails, the
/// thread simply keeps its priority.
fn yield_to_the_flood(steps: i32) {
    if steps > 0 {
        let me = Some(rustix::thread::gettid());
        // Relative to the server's own priority, so a server started with
        // `nice` keeps its clients below its flood too.
        let own = rustix::process::getpriority_process(me).unwrap_or(0);
        let _ = rustix::process::setpriority_process(me, (own + steps).min(19));
    }
}

/// Reads and answers lines until end-of-file or an error; says which.
fn serve_lines(shared: &Shared, stream: &TcpStream, peer: &str, port: Port) -> String {
    let mut lines = Lines::new(stream, shared.limits.max_line);
    let mut writer = stream;
    if let (Port::Peer, Some(secret)) = (port, &shared.secret) {
        if let Err(why) = challenge(shared, secret, stream, &mut lines) {
            shared.log.warn(format_args!(
                "{peer}: unproven link ({why}); closing it, nothing it sent was used"
            ));
            return "unproven link".into();
        }
    }
    // AT lines learnt from a neighbour, stored but not yet journaled or
    // passed on; see `Shared::pass_on`.
    let mut learnt = Vec::new();
    let how = serve_each_line(shared, &mut lines, &mut writer, peer, port, &mut learnt);
    shared.pass_on(&mut learnt);
    how
}

/// The loop of [`serve_lines`].
fn serve_each_line(
    shared: &Shared,
    lines: &mut Lines<&TcpStream>,
    writer: &mut &TcpStream,
    peer: &str,
    port: Port,
    learnt: &mut Vec<Arc<AtRecord>>,
) -> String {
    loop {
        let raw = match lines.next_line() {
            Ok(Some(raw)) => raw,
            Ok(None) => return "end of input".into(),
            Err(LineError::TooLong) => {
                shared.log.warn(format_args!(
                    "{peer} sent a line longer than {} bytes; closing the connection",
                    shared.limits.max_line
                ));
                return "line too long".into();
            }
            Err(LineError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let idle = shared.limits.idle_timeout.unwrap_or_default();
                shared.log.warn(format_args!(
                    "{peer} sent nothing for {} s (--idle-timeout); closing the connection",
                    idle.as_secs_f64()
                ));
                return "idle timeout".into();
            }
            Err(LineError::Io(e)) => return format!("read error: {e}"),
        };
        let reply = match port {
            Port::Client => match shared.client_line(&raw, peer) {
                Ok(reply) => reply,
                Err(why) => return why,
            },
            Port::Peer => shared.peer_line(&raw, peer, learnt),
        };
        if port == Port::Peer && !lines.ready() {
            // The burst is over and the next read may block: pass on what
            // it taught us before waiting. Then let the threads that are
            // ready to run go first: under load the neighbour's link is
            // among them, and the next read takes a bigger burst (one
            // wake-up for many lines). Idle, this returns at once. Client
            // connections do neither: they learn nothing to pass on, and
            // their clients wait.
            shared.pass_on(learnt);
            thread::yield_now();
        }
        if let Some(reply) = reply {
            if let Err(e) = writer.write_all(reply.as_bytes()) {
                return format!("write error: {e}");
            }
            shared.log.info(format_args!(
                "{peer} -> {}",
                Escaped(reply.trim_end_matches('\n'))
            ));
        }
    }
}

/// Challenges a new link to prove the herd secret; `Ok` with the proven
/// neighbour's name logged, or why not.
fn challenge(
    shared: &Shared,
    secret: &HerdSecret,
    stream: &TcpStream,
    lines: &mut Lines<&TcpStream>,
) -> Result<(), String> {
    let challenge = auth::new_challenge().map_err(|e| format!("no randomness: {e}"))?;
    let mut writer = stream;
    writer
        .write_all(auth::challenge_line(&challenge).as_bytes())
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let raw = match lines.next_line() {
        Ok(Some(raw)) => raw,
        Ok(None) => return Err("closed before proving anything".into()),
        Err(LineError::TooLong) => return Err("sent an over-long line".into()),
        Err(LineError::Io(e)) => return Err(format!("no proof in time ({e})")),
    };
    let text = String::from_utf8_lossy(&raw);
    let (name, proof) = auth::parse_proof(&text)
        .ok_or_else(|| format!("sent {:?} instead of a proof", Escaped(&text).to_string()))?;
    if !shared.herd.contains(name) || !secret.verify(&challenge, name, proof) {
        return Err(format!("wrong proof for {:?}", Escaped(name).to_string()));
    }
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    shared
        .log
        .info(format_args!("link from {name} proved the herd secret"));
    Ok(())
}

/// Decodes a received line. Not valid UTF-8 gives `Err` with the lossy
/// text, which PROTOCOL.md §2 makes an invalid line.
fn decode(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|_| String::from_utf8_lossy(raw).into_owned())
}

impl Shared {
    /// Counts a new connection in, or closes it at once if its port's
    /// limit of open connections is reached (`--max-connections`,
    /// `--max-peer-connections`). Refusals are logged once per episode.
    fn admit(&self, stream: &TcpStream, port: Port) -> bool {
        let (open, limit, refused, flag) = match port {
            Port::Client => (
                &self.clients,
                self.limits.max_connections,
                &self.refused_clients,
                "--max-connections",
            ),
            Port::Peer => (
                &self.peers,
                self.max_peers,
                &self.refused_peers,
                "--max-peer-connections",
            ),
        };
        if open.fetch_add(1, Ordering::SeqCst) < limit {
            if let Some(n) = refused.ended() {
                self.log.info(format_args!(
                    "{} connections admitted again ({n} more refused since the last report)",
                    port.kind()
                ));
            }
            return true;
        }
        open.fetch_sub(1, Ordering::SeqCst);
        if let Some(n) = refused.occurred() {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            self.log.warn(format_args!(
                "{peer} refused: {limit} {} connections already open ({flag}); \
                 {n} refused since the last report",
                port.kind()
            ));
        }
        let _ = stream.shutdown(Shutdown::Both);
        false
    }

    /// Counts a connection out when it ends.
    fn release(&self, port: Port) {
        match port {
            Port::Client => self.clients.fetch_sub(1, Ordering::SeqCst),
            Port::Peer => self.peers.fetch_sub(1, Ordering::SeqCst),
        };
    }

    /// Reports, once per episode, that an update for a new client was
    /// refused because the store holds `--max-clients` clients already.
    /// From a client, that update gets `?`; from a neighbour, it is
    /// dropped, so that client lives on the servers that had room, and
    /// this one answers WHATSAT about it with `?` until restarted with a
    /// higher limit (the resync then brings it).
    fn store_full(&self, peer: &str) {
        if let Some(n) = self.full.occurred() {
            self.log.warn(format_args!(
                "{peer}: update for a new client refused: {} clients stored (--max-clients); \
                 {n} refused since the last report",
                self.limits.max_clients
            ));
        }
    }

    /// Sleeps for `pause`, in short steps, returning early once the server
    /// is stopping, so that a shutdown is never held up by a long pause.
    fn pause_unless_stopping(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while !self.stopping.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    /// Whether a client time is too far ahead of `now` (`--max-future`).
    fn too_far_ahead(&self, time: Nanos, now: Nanos) -> bool {
        time - now > self.limits.max_future.as_nanos() as Nanos
    }

    /// Appends a record to the journal, if there is one. On failure the
    /// IAMAT that made or met the record gets no AT reply: an AT reply
    /// promises the update survives a crash, which this server cannot
    /// promise now. Its connection is closed instead, as if the server had
    /// gone, so the client knows to try again; `? <line>` would tell it
    /// the line was wrong, which it was not.
    fn journal(&self, record: &AtRecord) -> io::Result<()> {
        match &self.journal {
            Some(journal) => journal.append(&record.line),
            None => Ok(()),
        }
    }

    /// Handles one line from a client and returns the reply, if any, or
    /// why the connection must close instead.
    fn client_line(&self, raw: &[u8], peer: &str) -> Result<Option<String>, String> {
        let received = now_nanos();
        let (text, command) = match decode(raw) {
            Ok(text) => (Cow::Borrowed(text), protocol::parse_client_line(text)),
            Err(lossy) => (Cow::Owned(lossy), ClientCommand::Invalid),
        };
        self.log.info(format_args!("{peer} <- {}", Escaped(&text)));
        match command {
            ClientCommand::Blank => Ok(None),
            ClientCommand::Invalid => Ok(Some(protocol::invalid_reply(&text))),
            ClientCommand::IAmAt(update) if self.too_far_ahead(update.time, received) => {
                self.log.warn(format_args!(
                    "{peer}: client time more than {} s ahead (--max-future); invalid",
                    self.limits.max_future.as_secs()
                ));
                Ok(Some(protocol::invalid_reply(&text)))
            }
            ClientCommand::IAmAt(update) => {
                let record = AtRecord::new(&self.name, received, update);
                let reply = format!("{}\n", record.line);
                // The reply is a promise: before it goes out, the update is
                // in the journal and in the sockets of the links that are
                // up (PROTOCOL.md §5). The links are told first, so their
                // writes overlap the journal's.
                let journaled = match self.store.offer_within(record, self.limits.max_clients) {
                    Offered::New(stored) => {
                        // One cap for waiting on room and on the writes.
                        let began = Instant::now();
                        let delivery = self.flood.broadcast(&stored);
                        let journaled = self.journal(&stored);
                        delivery.wait(DELIVERY_CAP.saturating_sub(began.elapsed()));
                        journaled
                    }
                    // The newer record stored may not be journaled yet (its
                    // thread is between the store and the journal, or it
                    // waits in a neighbour's burst): journal it here too, so
                    // that this reply, like every AT reply, goes out only
                    // once its client's newest record is in the journal. A
                    // second copy is harmless: replay keeps the newest.
                    Offered::NotNewer(stored) => self.journal(&stored),
                    Offered::Full => {
                        self.store_full(peer);
                        return Ok(Some(protocol::invalid_reply(&text)));
                    }
                };
                if journaled.is_err() {
                    // No journal, no promise: hang up without an AT line
                    // (see `Shared::journal`).
                    return Err("the journal cannot be written".into());
                }
                Ok(Some(reply))
            }
            ClientCommand::WhatsAt(query) => {
                // The record is cloned out of the store; the Places call
                // below runs with no lock held.
                let Some(record) = self.store.get(&query.client) else {
                    return Ok(Some(protocol::invalid_reply(&text)));
                };
                let json = self.places.nearby(
                    &record.update.location,
                    query.radius_m,
                    query.bound,
                    &self.log,
                );
                Ok(Some(protocol::whatsat_reply(&record.line, &json)))
            }
        }
    }

    /// Handles one line from a neighbour: a valid AT is stored, and if it
    /// is new its line joins `learnt`, to be journaled and flooded on with
    /// the rest of its burst. It gets no reply.
    fn peer_line(&self, raw: &[u8], peer: &str, learnt: &mut Vec<Arc<AtRecord>>) -> Option<String> {
        let (text, command) = match decode(raw) {
            Ok(text) => (
                Cow::Borrowed(text),
                protocol::parse_peer_line(text, |s| self.herd.contains(s)),
            ),
            Err(lossy) => (Cow::Owned(lossy), PeerCommand::Invalid),
        };
        self.log.info(format_args!("{peer} <- {}", Escaped(&text)));
        match command {
            PeerCommand::Blank => None,
            PeerCommand::Invalid => Some(protocol::invalid_reply(&text)),
            PeerCommand::At(record) if self.too_far_ahead(record.update.time, now_nanos()) => {
                Some(protocol::invalid_reply(&text))
            }
            PeerCommand::At(record) => {
                match self.store.offer_within(record, self.limits.max_clients) {
                    Offered::New(stored) => learnt.push(stored),
                    Offered::NotNewer(_) => {}
                    // Not stored, so not passed on either: see `store_full`.
                    Offered::Full => self.store_full(peer),
                }
                None
            }
        }
    }

    /// Journals the AT lines learnt from a neighbour's burst in one write
    /// and queues them for the other neighbours. A link writes whatever
    /// has piled up in its queue at once, so lines arrive in bursts, and
    /// a burst costs one journal write instead of one per line. Nobody
    /// waits for a reply here, so the links are not waited for either.
    fn pass_on(&self, learnt: &mut Vec<Arc<AtRecord>>) {
        if learnt.is_empty() {
            return;
        }
        if let Some(journal) = &self.journal {
            // A failure is reported by the journal; nobody waits for a
            // reply here, and the neighbour that sent these holds them.
            let _ = journal.append_all(learnt.iter().map(|record| record.line.as_str()));
        }
        for record in learnt.drain(..) {
            self.flood.forward(&record);
        }
    }
}

/// Why reading a line failed.
#[derive(Debug)]
enum LineError {
    /// The line passed the limit before its `\n` arrived.
    TooLong,
    /// The socket failed.
    Io(io::Error),
}

/// Splits a byte stream into lines, however the bytes arrive: several
/// lines in one read, or one line over many. At end-of-file an
/// unterminated last line still counts (a client that half-closes after
/// its message without a `\n`, PROTOCOL.md §2).
struct Lines<R> {
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
}

impl<R: Read> Lines<R> {
    fn new(inner: R, max: usize) -> Lines<R> {
        Lines {
            inner,
            buf: Vec::new(),
            filled: 0,
            start: 0,
            scanned: 0,
            eof: false,
            max,
        }
    }

    /// Whether [`Lines::next_line`] can answer without reading: a whole
    /// line is buffered, or the end of input was seen.
    fn ready(&self) -> bool {
        self.eof || self.buf[self.scanned..self.filled].contains(&b'\n')
    }

    /// The next line without its `\n`, or `None` at end-of-file.
    fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        loop {
            let unread = &self.buf[self.scanned..self.filled];
            if let Some(i) = unread.iter().position(|&b| b == b'\n') {
                let end = self.scanned + i;
                if end - self.start > self.max {
                    return Err(LineError::TooLong);
                }
                let line = self.buf[self.start..end].to_vec();
                self.start = end + 1;
                self.scanned = self.start;
                return Ok(Some(line));
            }
            self.scanned = self.filled;
            if self.filled - self.start > self.max {
                return Err(LineError::TooLong);
            }
            if self.eof {
                if self.start == self.filled {
                    return Ok(None);
                }
                let line = self.buf[self.start..self.filled].to_vec();
                self.start = self.filled;
                return Ok(Some(line));
            }
            // Move the unfinished line to the front, make room, read more.
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.scanned -= self.start;
            self.start = 0;
            if self.buf.len() - self.filled < READ_CHUNK / 2 {
                self.buf.resize(self.filled + READ_CHUNK, 0);
            }
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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
