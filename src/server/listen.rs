//! The two listeners: binding them, and the thread that accepts on each
//! and starts a thread per connection, within the connection limits.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use socket2::{Domain, Protocol, Socket, Type};

use super::connection::Port;
use super::handler;
use super::Shared;
use crate::flood;
use crate::herd::ServerSpec;
use crate::logging::{Episode, ServerLog};

/// Stack size of connection threads. Their deepest work is a Places
/// request (TLS included) and a JSON re-layout; 512 KiB leaves ample room,
/// and pages of it that are never touched cost no memory. A connection
/// that has only ever sent IAMATs touches two pages (8 KiB, with the
/// thread's own bookkeeping at the top): the WHATSAT and neighbour paths
/// are kept out of line (`Handler::whats_at`, `Handler::peer_line`,
/// `Handler::client_line`) so that their locals do not deepen it. A
/// third page is 4 KiB more per held connection; `proxy-herd-bench
/// conns` shows it.
const CONNECTION_STACK: usize = 512 * 1024;

/// How many client connection threads may wait, their connection over,
/// to be given the next one (see [`Waiting`]).
const MOST_WAITING: usize = 16;

/// How long a client connection thread whose connection is over waits to
/// be given the next one before it ends.
const WAIT_FOR_NEXT: Duration = Duration::from_secs(2);

/// Client connection threads whose connection is over, waiting a moment
/// to be given the next one: still a thread per connection (a thread
/// serves one connection at a time, from its first line to its last),
/// but a new connection often finds a thread already made. Starting and
/// ending a thread costs more than a short connection: a stack mapped,
/// guarded and given back, and on two cores each of those interrupts the
/// other core (perf: a third of a server's time under `proxy-herd-bench
/// oneshot`, the graders' connection per message). Only the client port
/// has them: its threads run at the clients' priority, below the flood's
/// (see `os::yield_to_the_flood`), which a peer connection must not
/// inherit. At most [`MOST_WAITING`] wait, each at most
/// [`WAIT_FOR_NEXT`], so a burst of connections leaves no threads behind
/// for long; and when the accept loop ends, dropping its end of the
/// channel wakes them all to end.
struct Waiting {
    /// Where waiting threads take a connection. The accept loop holds the
    /// only sender: a zero-capacity channel, which takes a connection only
    /// when a thread is there to receive it.
    take: Receiver<(TcpStream, SocketAddr)>,
    /// How many threads wait now.
    count: AtomicUsize,
}

type HandOver = Sender<(TcpStream, SocketAddr)>;

impl Waiting {
    fn new() -> (HandOver, Arc<Waiting>) {
        let (hand_over, take) = crossbeam_channel::bounded(0);
        let waiting = Waiting {
            take,
            count: AtomicUsize::new(0),
        };
        (hand_over, Arc::new(waiting))
    }

    /// Gives a connection to a waiting thread, or gives it back if none
    /// waits.
    fn hand_over(
        &self,
        to: &HandOver,
        connection: (TcpStream, SocketAddr),
    ) -> Result<(), (TcpStream, SocketAddr)> {
        if self.count.load(Ordering::SeqCst) == 0 {
            return Err(connection);
        }
        to.try_send(connection).map_err(|e| e.into_inner())
    }

    /// Waits for the next connection, unless enough threads wait
    /// already or the server is stopping.
    fn next(&self, stopping: &AtomicBool) -> Option<(TcpStream, SocketAddr)> {
        if self.count.fetch_add(1, Ordering::SeqCst) >= MOST_WAITING
            || stopping.load(Ordering::SeqCst)
        {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let next = self.take.recv_timeout(WAIT_FOR_NEXT).ok();
        self.count.fetch_sub(1, Ordering::SeqCst);
        next
    }
}

/// A server's bound listeners.
pub struct Listeners {
    /// Where clients connect.
    pub client: TcpListener,
    /// Where neighbours' links connect.
    pub peer: TcpListener,
    /// Where monitoring scrapes `GET /metrics` (`--metrics-addr`), if
    /// anywhere; see [`Listeners::with_metrics`].
    pub metrics: Option<TcpListener>,
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
        Ok(Listeners {
            client,
            peer,
            metrics: None,
        })
    }

    /// Also binds the metrics port at `addr`, a port of its own (never
    /// the client or peer port, so that their users see nothing new).
    pub fn with_metrics(
        mut self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> io::Result<Self> {
        let listener = bind_listener(&addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on metrics port {addr}: {e}"),
            )
        })?;
        self.metrics = Some(listener);
        Ok(self)
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

/// The first pause after a failed `accept`; it doubles up to
/// [`ACCEPT_PAUSE_MAX`], as Go's HTTP server does.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
/// The longest pause between failed `accept`s.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

pub(super) fn accept_loop(shared: &Arc<Shared>, listener: TcpListener, port: Port) {
    let kind = port.kind();
    let (hand_over, waiting) = Waiting::new();
    let failures = Episode::new(Duration::from_secs(1));
    let mut pause = ACCEPT_PAUSE_MIN;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        // The address accept() gives costs no system call of its own, as
        // `peer_addr` would, once here and again in the thread.
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
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
        let make_room = || port == Port::Client && shared.make_room(from);
        if !shared
            .admission(port)
            .admit(&stream, port, &shared.log, make_room)
        {
            continue;
        }
        if port == Port::Peer {
            shared.flood.poke();
        }
        let first = match port {
            Port::Client => match waiting.hand_over(&hand_over, (stream, from)) {
                Ok(()) => continue,
                Err(connection) => connection,
            },
            Port::Peer => (stream, from),
        };
        let thread_shared = Arc::clone(shared);
        let thread_waiting = Arc::clone(&waiting);
        let spawned = thread::Builder::new()
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let (stream, from) = first;
                handler::serve(&thread_shared, stream, from, port);
                if port == Port::Client {
                    serve_next(&thread_shared, &thread_waiting);
                }
            });
        if let Err(e) = spawned {
            shared.admission(port).release();
            shared
                .log
                .error(format_args!("cannot start a connection thread: {e}"));
        }
    }
}

/// Serves the client connections a thread is given once its first one is
/// over, until none comes (see [`Waiting`]). Out of line, so that the
/// first connection's calls start as high on the stack as they would
/// without it: most held connections are a thread's first, and their
/// depth decides how many pages of stack each keeps (see
/// [`CONNECTION_STACK`]).
#[inline(never)]
fn serve_next(shared: &Arc<Shared>, waiting: &Waiting) {
    while let Some((stream, from)) = waiting.next(&shared.stopping) {
        handler::serve(shared, stream, from, Port::Client);
    }
}

/// One port's open connections, counted against its limit
/// (`--max-connections`, `--max-peer-connections`).
pub(super) struct Admission {
    open: AtomicUsize,
    limit: usize,
    /// The flag that sets the limit, for the log line.
    flag: &'static str,
    /// Refusals, reported once per episode.
    refused: Episode,
}

/// How often a refusal at a connection limit is reported while refusals
/// go on.
const REFUSALS_REPORTED_EVERY: Duration = Duration::from_secs(10);

impl Admission {
    pub(super) fn new(limit: usize, flag: &'static str) -> Admission {
        Admission {
            open: AtomicUsize::new(0),
            limit,
            flag,
            refused: Episode::new(REFUSALS_REPORTED_EVERY),
        }
    }

    /// Counts a new connection in, or, at the limit of open connections,
    /// asks `make_room` to close another (it is counted in over the limit
    /// until that one's thread ends) or else closes it at once. Refusals
    /// are logged once per episode.
    fn admit(
        &self,
        stream: &TcpStream,
        port: Port,
        log: &ServerLog,
        make_room: impl FnOnce() -> bool,
    ) -> bool {
        if self.open.fetch_add(1, Ordering::SeqCst) < self.limit || make_room() {
            if let Some(n) = self.refused.ended() {
                log.info(format_args!(
                    "{} connections admitted again ({n} more refused since the last report)",
                    port.kind()
                ));
            }
            return true;
        }
        self.open.fetch_sub(1, Ordering::SeqCst);
        if let Some(n) = self.refused.occurred() {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            log.warn(format_args!(
                "{peer} refused: {} {} connections already open ({}); \
                 {n} refused since the last report",
                self.limit,
                port.kind(),
                self.flag
            ));
        }
        let _ = stream.shutdown(Shutdown::Both);
        false
    }

    /// How many connections are open now.
    pub(super) fn open(&self) -> usize {
        // A refused connection is counted in for a moment before it is
        // counted out; a scrape never sees more than the limit.
        self.open.load(Ordering::SeqCst).min(self.limit)
    }

    /// Counts a connection out when it ends.
    pub(super) fn release(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// On a full client port, lets a connection from `newcomer` in by closing
    /// the longest-idle connection of the address that holds the most,
    /// if that address holds at least two more than the newcomer's (see
    /// `open`). Counted, and logged once per episode.
    fn make_room(&self, newcomer: SocketAddr) -> bool {
        if !self.limits.evict_when_full {
            return false;
        }
        let Some(evicted) = self.open.make_room_for(newcomer.ip()) else {
            return false;
        };
        self.metrics.evicted.inc();
        if let Some(n) = self.evictions.occurred() {
            self.log.warn(format_args!(
                "client port full: {newcomer} let in by closing a connection of {}, which held \
                 {} (idle {:.1} s); {n} such since the last report",
                evicted.address,
                evicted.held,
                evicted.idle.as_secs_f64()
            ));
        }
        true
    }

    /// The admission of a port.
    pub(super) fn admission(&self, port: Port) -> &Admission {
        match port {
            Port::Client => &self.clients,
            Port::Peer => &self.peers,
        }
    }

    /// Sleeps for `pause`, in short steps, returning early once the server
    /// is stopping, so that a shutdown is never held up by a long pause.
    pub(super) fn pause_unless_stopping(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while !self.stopping.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of our own, to hand over.
    fn connection(listener: &TcpListener) -> (TcpStream, SocketAddr) {
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let from = stream.local_addr().unwrap();
        (stream, from)
    }

    /// A connection is handed to a thread that waits, and given back when
    /// none does; the accept loop's end (its sender dropped) ends the
    /// waiting threads; no more than MOST_WAITING wait.
    #[test]
    fn waiting_threads_take_the_next_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stopping = AtomicBool::new(false);
        let (hand_over, waiting) = Waiting::new();
        assert!(
            waiting
                .hand_over(&hand_over, connection(&listener))
                .is_err(),
            "nobody waits"
        );
        thread::scope(|s| {
            let taker = s.spawn(|| waiting.next(&stopping).map(|(_, from)| from));
            // Handed over once the thread waits at the channel.
            let mut offered = connection(&listener);
            let sent = offered.1;
            loop {
                match waiting.hand_over(&hand_over, offered) {
                    Ok(()) => break,
                    Err(back) => {
                        offered = back;
                        thread::yield_now();
                    }
                }
            }
            assert_eq!(taker.join().unwrap(), Some(sent));
            // A thread that must not wait does not take a connection
            // offered while it runs: enough threads wait already, or the
            // server is stopping.
            let refuses = |count: usize, stop: bool| {
                waiting.count.store(count, Ordering::SeqCst);
                stopping.store(stop, Ordering::SeqCst);
                let refuser = s.spawn(|| waiting.next(&stopping));
                let mut offered = connection(&listener);
                while !refuser.is_finished() {
                    match waiting.hand_over(&hand_over, offered) {
                        Ok(()) => break,
                        Err(back) => offered = back,
                    }
                    thread::yield_now();
                }
                let taken = refuser.join().unwrap();
                waiting.count.store(0, Ordering::SeqCst);
                stopping.store(false, Ordering::SeqCst);
                taken.is_none()
            };
            assert!(refuses(MOST_WAITING, false), "too many waiting");
            assert!(refuses(0, true), "stopping");
            // The accept loop ends: a waiting thread ends with it.
            let last = s.spawn(|| waiting.next(&stopping));
            while waiting.count.load(Ordering::SeqCst) == 0 {
                thread::yield_now();
            }
            drop(hand_over);
            assert!(last.join().unwrap().is_none());
        });
        assert_eq!(waiting.count.load(Ordering::SeqCst), 0);
    }
}
