//! One neighbour's link thread: connect, resync, then send what its queue
//! and its behind-map hold, until the connection fails; then again.
//!
//! A link's life:
//! 1. connect; on failure wait (50 ms, doubling to 2 s) and try again;
//! 2. open the queue, then send every record the store holds (the
//!    resync): anything stored after the queue opened is queued too, and
//!    anything stored before is in the store;
//! 3. send queued records, and those that fell behind, until the
//!    connection fails or the neighbour closes it; close the queue, throw
//!    away what it holds (the next resync covers it), and go back to 1.
//!
//! A neighbour never answers a valid AT line, so a dead neighbour would
//! otherwise go unnoticed until the next write, and the first write to a
//! dead socket "succeeds" into the void. A small reader thread per link
//! therefore waits for the neighbour's end-of-file (or a `?` reply, which
//! it logs) and tells the sender at once, so the link reconnects and
//! resyncs as soon as the neighbour is back.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::{LinkState, Outgoing, LINK_BUFFER};
use crate::auth::{self, HerdSecret};
use crate::logging::{Episode, LogLines, ServerLog};
use crate::metrics::LinkMetrics;
use crate::os::detect_dead_peer;
use crate::protocol::{AtRecord, Escaped};
use crate::store::Store;

/// The most of one line from a neighbour the link's watcher reads at a
/// time.
const WATCH_LINE: u64 = 4096;

/// The first wait after a failed connect; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between connection attempts ("a few seconds").
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A neighbour that accepts but does not read would block a write for
/// ever; past this the link is dropped and later resynced.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many records go out in one write.
pub const BATCH: usize = 256;

/// One neighbour's sender.
pub(super) struct Link {
    /// This server's name, for the proof.
    pub(super) me: String,
    pub(super) secret: Option<HerdSecret>,
    pub(super) neighbour: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) queue: Receiver<Outgoing>,
    /// What it shares with the threads that feed it.
    pub(super) state: Arc<LinkState>,
    /// Wakes a backoff early (see `Flood::poke`), or the connected link
    /// when records fell behind.
    pub(super) poke: Receiver<()>,
    pub(super) store: Store,
    pub(super) log: ServerLog,
    pub(super) metrics: LinkMetrics,
    pub(super) shutdown: Receiver<()>,
    /// Where a batch's log lines are gathered, kept between batches.
    pub(super) said: RefCell<LogLines>,
}

/// Why a connected link stopped.
enum Ended {
    /// The link failed; reconnect.
    Broken,
    /// The server is shutting down.
    Shutdown,
}

impl Link {
    pub(super) fn run(self) {
        let mut backoff = MIN_BACKOFF;
        let mut was_down_logged = false;
        loop {
            match self.connect() {
                Ok(stream) => {
                    let connected = Instant::now();
                    // A poke from before this connection is stale.
                    while self.poke.try_recv().is_ok() {}
                    was_down_logged = false;
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    self.log
                        .info(format_args!("link to {} ({peer}) up", self.neighbour));
                    let ended = self.serve(stream);
                    self.close();
                    // Only a link that stayed up starts its backoff over: a
                    // neighbour that accepts and closes at once (its peer
                    // port full, another secret) would otherwise be
                    // reconnected, and resynced, every 50 ms.
                    if connected.elapsed() >= MAX_BACKOFF {
                        backoff = MIN_BACKOFF;
                    }
                    self.log
                        .info(format_args!("link to {} ({peer}) down", self.neighbour));
                    if let Ended::Shutdown = ended {
                        return;
                    }
                }
                Err(e) => {
                    // Log the first failure of a run, not every retry.
                    if !was_down_logged {
                        self.log.warn(format_args!(
                            "link to {} at {}:{} cannot connect ({e}); retrying",
                            self.neighbour, self.host, self.port
                        ));
                        was_down_logged = true;
                    }
                }
            }
            if !self.wait(backoff) {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        let mut last = std::io::Error::other("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Closes the queue and throws away what it holds: the resync of the
    /// next connection covers all of it.
    fn close(&self) {
        let state = &self.state;
        state.open.store(false, Ordering::SeqCst);
        state.up.store(false, Ordering::SeqCst);
        state.writing.store(false, Ordering::SeqCst);
        state.stalled.store(false, Ordering::SeqCst);
        while self.queue.try_recv().is_ok() {}
        drop(state.take_behind());
        // Clients waiting for room see the queue closed and stop waiting.
        state.made_room();
    }

    /// Waits out a backoff, emptying the queue of records that were
    /// queued just as the link closed. Returns false if the server is
    /// shutting down.
    fn wait(&self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        loop {
            select! {
                recv(self.shutdown) -> _ => return false,
                recv(self.poke) -> _ => return true,
                recv(self.queue) -> line => if line.is_err() { return false },
                default(deadline.saturating_duration_since(Instant::now())) => return true,
            }
        }
    }

    /// Resyncs, then sends queued records until the link ends.
    fn serve(&self, stream: TcpStream) -> Ended {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(LINK_BUFFER);
        detect_dead_peer(&stream);
        if let Some(secret) = &self.secret {
            if let Err(why) = auth::prove(&stream, secret, &self.me) {
                self.log.warn(format_args!(
                    "link to {}: cannot prove the herd secret ({why})",
                    self.neighbour
                ));
                let _ = stream.shutdown(Shutdown::Both);
                return Ended::Broken;
            }
        } else if let Err(e) = (&stream).write_all(format!("HELLO {}\n", self.me).as_bytes()) {
            // Without a secret, the opening line says who we are, so that
            // the neighbour does not send our records back to us.
            self.log.warn(format_args!(
                "link to {}: cannot say HELLO ({e})",
                self.neighbour
            ));
            return Ended::Broken;
        }
        self.metrics.connects.inc();
        let closed = self.watch(&stream);
        // Open the queue, then read the store: a record stored from now on
        // is queued, and one stored before is in the snapshot. The fence
        // pairs with the one in `Flood::send`, so that a sender that still
        // saw the queue closed stored its record before our snapshot.
        self.state.taken_at.store(super::clock(), Ordering::Relaxed);
        self.state.open.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // Stray records from before are in the snapshot too.
        while self.queue.try_recv().is_ok() {}
        drop(self.state.take_behind());
        let snapshot = self.store.snapshot();
        let mut writer = &stream;
        let ended = 'serve: {
            for chunk in snapshot.chunks(BATCH) {
                if !self.send(&mut writer, chunk) {
                    break 'serve Ended::Broken;
                }
            }
            drop(snapshot);
            self.metrics.resyncs.inc();
            self.state.up.store(true, Ordering::SeqCst);
            let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
            loop {
                select! {
                    recv(self.shutdown) -> _ => break 'serve Ended::Shutdown,
                    recv(closed) -> _ => break 'serve Ended::Broken,
                    // Records fell behind: taken below.
                    recv(self.poke) -> _ => {}
                    recv(self.queue) -> first => {
                        let Ok(first) = first else { break 'serve Ended::Shutdown };
                        self.state.writing.store(true, Ordering::SeqCst);
                        if first.ack.is_none() {
                            // Nobody waits on this record: let the threads
                            // that are ready to run go first. Under load
                            // they are the ones queueing more records for
                            // this link, so the write below carries them
                            // too, and the neighbour wakes once for all.
                            // On an idle machine nothing else is ready and
                            // this returns at once.
                            thread::yield_now();
                        }
                        batch.push(first);
                    }
                }
                // Everything queued now is taken below: the queue holds
                // at most a batch, and one of it is already in `batch`.
                let taken = super::clock();
                while batch.len() < BATCH {
                    match self.queue.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                self.state.made_room();
                self.state.writing.store(true, Ordering::SeqCst);
                if !self.send(&mut writer, &batch) {
                    break 'serve Ended::Broken;
                }
                // Those that found the queue full go out after the batch
                // they were behind, in batches of their own.
                let behind = self.state.take_behind();
                self.state.taken_at.store(taken, Ordering::Relaxed);
                for chunk in behind.chunks(BATCH) {
                    if !self.send(&mut writer, chunk) {
                        break 'serve Ended::Broken;
                    }
                }
                self.state.stalled.store(false, Ordering::SeqCst);
                // Idle again before any waiting reply hears back, so that
                // a client's next update, sent right after its reply,
                // finds this link idle and waits for it too.
                self.state.writing.store(false, Ordering::SeqCst);
                for outgoing in batch.drain(..) {
                    if let Some(ack) = outgoing.ack {
                        ack.written();
                    }
                }
            }
        };
        // Wakes the watcher thread, which then ends.
        let _ = stream.shutdown(Shutdown::Both);
        if let Ended::Broken = ended {
            self.metrics.disconnects.inc();
        }
        ended
    }

    /// Writes records' AT lines in one write and logs each. False if the
    /// write failed.
    fn send<R: Borrow<AtRecord>>(&self, writer: &mut &TcpStream, records: &[R]) -> bool {
        if records.is_empty() {
            return true;
        }
        let mut buf = String::new();
        for record in records {
            buf.push_str(&record.borrow().line);
            buf.push('\n');
        }
        match writer.write_all(buf.as_bytes()) {
            Ok(()) => {
                self.metrics.sent.inc_by(records.len() as u64);
                // One write, one moment: its lines go to the log together.
                let mut said = self.said.borrow_mut();
                for record in records {
                    self.log.gather_line(
                        &mut said,
                        &["link ", &self.neighbour, " -> "],
                        &record.borrow().line,
                    );
                }
                self.log.commit(&mut said);
                true
            }
            Err(e) => {
                self.log.warn(format_args!(
                    "link to {}: write failed ({e})",
                    self.neighbour
                ));
                false
            }
        }
    }

    /// Starts the reader that notices the neighbour closing the link. The
    /// returned channel is closed when it does.
    fn watch(&self, stream: &TcpStream) -> Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let Ok(read_half) = stream.try_clone() else {
            return rx; // tx dropped: counts as closed, and we reconnect.
        };
        let log = self.log.clone();
        let neighbour = self.neighbour.clone();
        let spawned = thread::Builder::new()
            .name(format!("watch {neighbour}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _tx = tx; // dropped on return: the sender sees `closed`.
                let mut reader = BufReader::new(read_half);
                let mut line = String::new();
                // A neighbour has nothing to say on our link but `?` lines
                // (src/protocol.md#flooding); whatever it sends is read in bounded
                // pieces and logged at most every 10 s.
                let said = Episode::new(Duration::from_secs(10));
                loop {
                    match (&mut reader).take(WATCH_LINE).read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) => {
                            if let Some(n) = said.occurred() {
                                log.warn(format_args!(
                                    "link {neighbour} <- {} ({n} line(s) since the last report)",
                                    Escaped(line.trim_end_matches('\n'))
                                ));
                            }
                        }
                        Err(e) => {
                            // Our own shutdown of the socket ends here
                            // too, as end-of-file; an error is the link
                            // failing (keepalive or user timeout).
                            log.warn(format_args!("link to {neighbour}: {e}"));
                            break;
                        }
                    }
                    line.clear();
                }
            });
        if spawned.is_err() {
            self.log.error(format_args!("cannot start link watcher"));
        }
        rx
    }
}
