//! The server: two listeners, and a thread for every connection.
//!
//! ```text
//!   client port ── accept thread ──┬── connection thread (IAMAT, WHATSAT)
//!                                  └── connection thread ...
//!   peer port ──── accept thread ──┬── connection thread (AT from a neighbour)
//!                                  └── ...
//!   one link thread per neighbour (flood/link.rs), fed by a bounded channel
//! ```
//!
//! A connection thread reads lines, parses each with `protocol`, does
//! what it asks against the store, the flood and Places, and writes the
//! reply in one write. It blocks freely, in a read or in a Places
//! request, because it blocks nobody else: this is the
//! thread-per-connection design, where an asyncio server would run one
//! coroutine per connection on one event loop and `await` at the same
//! points.
//!
//! One file per part, in the order a line travels:
//! - `config`: what a server is told ([`ServerConfig`], [`Limits`]);
//! - `listen`: binding the ports, and the accept threads that admit
//!   connections within their limits and start a thread for each;
//! - `open`: the open connections, how many each client address holds,
//!   and which one a full client port closes to let a newcomer in;
//! - `handler`: a connection's life in its thread (a `Handler` holding
//!   its socket and line reader), and its one-write replies;
//! - `connection`: the line reader, and why a connection ended;
//! - `client`: what IAMAT and WHATSAT do;
//! - `peer`: what a neighbour's AT lines do, and the secret handshake;
//! - this file: the state the threads share, [`start`], and stopping.
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
//! their sockets, which are kept (shared with their threads) in a table,
//! so their threads see end-of-file and end; the link threads end when
//! the shutdown channel's sender is dropped.

mod client;
mod config;
mod connection;
mod handler;
mod listen;
mod open;
mod peer;
mod scrape;

pub use config::{
    default_max_peers, Limits, LimitsError, ServerConfig, DEFAULT_CLIENT_NICE,
    DEFAULT_LINE_TIMEOUT, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FUTURE,
    DEFAULT_MAX_LINE,
};
pub use listen::{bind_listener, Listeners, LISTEN_BACKLOG};

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::auth::HerdSecret;
use crate::flood::{self, Flood};
use crate::herd::{Herd, ServerSpec};
use crate::journal::{Journal, ReplayRules};
use crate::logging::{Episode, ServerLog};
use crate::metrics::{self, Metrics, Snapshot};
use crate::places::Places;
use crate::protocol::Nanos;
use crate::store::Store;
use connection::Port;
use listen::Admission;
use open::OpenConnections;

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
    open: OpenConnections,
    /// Each port's connections, within its limit.
    clients: Admission,
    peers: Admission,
    /// New clients refused at `max_clients`, reported once per episode.
    full: Episode,
    /// Connections closed to make room on a full client port, and lines
    /// that did not end within `--line-timeout`, each reported once per
    /// episode.
    evictions: Episode,
    line_timeouts: Episode,
    metrics: Metrics,
}

/// How often new clients refused at `--max-clients` are reported while
/// refusals go on.
const FULL_REPORTED_EVERY: Duration = Duration::from_secs(10);

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
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
    let metrics_addr = match &listeners.metrics {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    limits
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let store = Store::with_capacity(limits.max_clients);
    let metrics = Metrics::new();
    // Read the journal back before anyone is accepted, so the first
    // WHATSAT already sees every acknowledged update.
    let journal = match journal {
        Some(path) => {
            let rules = ReplayRules {
                max_future: limits.max_future,
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
    let max_connections = limits.max_connections;
    let max_peers = limits
        .max_peer_connections
        .unwrap_or_else(|| default_max_peers(neighbours.len()));
    let (flood, mut threads) = flood::start(
        &neighbours,
        flood::LinkContext {
            me: &name,
            store: &store,
            log: &log,
            secret: secret.as_ref(),
            metrics: &metrics,
            shutdown: &shutdown_rx,
        },
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
        open: OpenConnections::default(),
        clients: Admission::new(max_connections, "--max-connections"),
        peers: Admission::new(max_peers, "--max-peer-connections"),
        full: Episode::new(FULL_REPORTED_EVERY),
        evictions: Episode::new(FULL_REPORTED_EVERY),
        line_timeouts: Episode::new(FULL_REPORTED_EVERY),
        metrics,
    });
    if let Some(listener) = listeners.metrics {
        let shared = Arc::clone(&shared);
        shared.log.info(format_args!(
            "metrics on http://{}/metrics",
            listener.local_addr()?
        ));
        threads.push(
            thread::Builder::new()
                .name(format!("{} accept metrics", shared.name))
                .spawn(move || scrape::accept_loop(&shared, listener))?,
        );
    }
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
                .spawn(move || listen::accept_loop(&shared, listener, port))?,
        );
    }
    Ok(ServerHandle {
        shared,
        client_addr,
        peer_addr,
        metrics_addr,
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

    /// Where metrics are served, if they are (`--metrics-addr`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
        for addr in [
            Some(self.client_addr),
            Some(self.peer_addr),
            self.metrics_addr,
        ]
        .into_iter()
        .flatten()
        {
            // Wake the accept thread; it sees `stopping` and returns.
            let _ = TcpStream::connect_timeout(&crate::os::reachable(addr), Duration::from_secs(1));
        }
        drop(self.shutdown.take());
        for stream in self.shared.open.take_all() {
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

impl Shared {
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

    /// The figures a metrics scrape reads at the moment it asks.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            client_connections: self.clients.open(),
            peer_connections: self.peers.open(),
            threads: metrics::process_threads(),
            clients: self.store.len(),
            journal_bytes: self.journal.as_ref().map_or(0, Journal::size),
            journal_failures: self.journal.as_ref().map_or(0, Journal::failed_appends),
            log_lines_lost: self.log.lines_lost(),
            links: self.flood.links(),
        }
    }

    /// Whether a client time is too far ahead of `now` (`--max-future`).
    fn too_far_ahead(&self, time: Nanos, now: Nanos) -> bool {
        time - now > self.limits.max_future.as_nanos() as Nanos
    }
}
