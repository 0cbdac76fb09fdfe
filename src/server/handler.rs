//! A connection's life, in its own thread: a [`Handler`] holds what the
//! thread needs (the socket, its line reader, the server's shared state)
//! and answers lines until the connection ends. What each line does is
//! in `client` and `peer`.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::connection::{Ended, LineError, Lines, Port};
use super::open::Conn;
use super::Shared;
use crate::flood::{Delivery, DELIVERY_CAP};
use crate::logging::LogLines;
use crate::os;
use crate::protocol::AtRecord;

/// How long a reply may wait for a client to make room for it.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most room a connection keeps for its next line: a long line's
/// room is given back, so a held connection keeps a client line's worth.
const KEPT_LINE: usize = 1024;

/// One connection being served.
pub(super) struct Handler<'a> {
    pub(super) shared: &'a Shared,
    pub(super) stream: &'a TcpStream,
    /// Its entry in the table of open connections, touched on every
    /// whole line (see `open`).
    conn: &'a Conn,
    pub(super) lines: Lines<&'a TcpStream>,
    /// The other end's address, for log lines.
    pub(super) peer: String,
    port: Port,
    /// AT lines learnt from a neighbour, stored but not yet journaled or
    /// passed on; see `Handler::pass_on`.
    pub(super) learnt: Vec<Arc<AtRecord>>,
    /// On the peer port, the neighbour this link says it is (its HELLO,
    /// or the name it proved with the herd secret): what it sends is not
    /// sent back to it.
    pub(super) from: Option<String>,
    /// On the peer port, the log lines of the burst being read, logged
    /// together when it is passed on (see `ServerLog::gather_line`).
    pub(super) said: LogLines,
    /// On the client port, the last update's way to the neighbours, to
    /// finish once its reply is written (see `Delivery::finish`).
    pub(super) delivering: Option<Delivery>,
}

/// Runs one connection to its end, keeping its socket in the table of
/// open connections meanwhile.
pub(super) fn serve(shared: &Shared, stream: TcpStream, from: SocketAddr, port: Port) {
    let peer = from.to_string();
    let address = (port == Port::Client).then(|| from.ip());
    let stream = Arc::new(stream);
    let (id, conn) = shared.open.add(Arc::clone(&stream), address);
    let kind = port.kind();
    // Checked after registering, so a shutdown that began meanwhile
    // either finds this socket in the table or is seen here.
    let how = if shared.stopping.load(Ordering::SeqCst) {
        Ended::Stopping
    } else {
        shared
            .log
            .info(format_args!("{peer} {kind} connection opened"));
        // TCP_NODELAY comes from the listener (see `bind_listener`).
        if port == Port::Peer {
            os::detect_dead_peer(&stream);
        }
        if port == Port::Client {
            if shared.flood.any_open() {
                os::yield_to_the_flood(shared.limits.client_nice);
            }
            if shared.limits.idle_timeout.is_some() {
                let _ = stream.set_read_timeout(shared.limits.idle_timeout);
            }
            // A client that never reads would otherwise hold its thread in
            // a blocked write for ever once its socket buffer is full.
            let _ = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        }
        let lines = match port {
            Port::Client => Lines::new(&*stream, shared.limits.max_line)
                .with_timeouts(shared.limits.idle_timeout, shared.limits.line_timeout),
            Port::Peer => Lines::new(&*stream, shared.limits.max_line),
        };
        let mut handler = Handler {
            shared,
            stream: &stream,
            conn: &conn,
            lines,
            peer: peer.clone(),
            port,
            learnt: Vec::new(),
            from: None,
            said: LogLines::default(),
            delivering: None,
        };
        let how = handler.run();
        // Everything owed has been written: let a half-closed client read
        // to end-of-file.
        let _ = stream.shutdown(Shutdown::Write);
        how
    };
    shared.open.remove(id);
    shared.admission(port).release();
    shared
        .log
        .info(format_args!("{peer} {kind} connection closed ({how})"));
}

impl Handler<'_> {
    /// Reads and answers lines until end-of-file or an error; says which.
    fn run(&mut self) -> Ended {
        if self.port == Port::Peer && self.shared.secret.is_some() {
            if let Err(why) = self.prove_neighbour() {
                return why;
            }
        }
        let how = self.serve_lines();
        self.pass_on();
        how
    }

    /// The loop of [`Handler::run`].
    fn serve_lines(&mut self) -> Ended {
        // Every line is read into this one buffer.
        let mut raw = Vec::new();
        loop {
            if raw.capacity() > KEPT_LINE {
                raw = Vec::new();
            }
            match self.next_line(&mut raw) {
                Ok(true) => {}
                Ok(false) => return Ended::EndOfInput,
                Err(how) => return how,
            }
            let reply = match self.port {
                Port::Client => match self.client_line(&raw) {
                    Ok(reply) => reply,
                    Err(how) => return how,
                },
                Port::Peer => self.peer_line(&raw),
            };
            if self.port == Port::Peer && !self.lines.ready() {
                // The burst is over and the next read may block: pass on
                // what it taught us before waiting. Then let the threads
                // that are ready to run go first: under load the
                // neighbour's link is among them, and the next read takes
                // a bigger burst (one wake-up for many lines). Idle, this
                // returns at once. Client connections do neither: they
                // learn nothing to pass on, and their clients wait.
                self.pass_on();
                thread::yield_now();
            }
            if let Some(reply) = reply {
                if let Err(e) = self.reply(&reply) {
                    return Ended::Write(e);
                }
            }
            if let Some(delivery) = self.delivering.take() {
                // The update found a link's queue full: it was answered
                // at once, and its connection waits here, before reading
                // the next line, until the link makes room for it. The
                // client gets no further ahead of the flood than if its
                // reply had waited, and its thread sleeps once instead of
                // twice (here, while its client reads the reply and
                // sends the next line, instead of before the reply and
                // again in `read`).
                delivery.finish(DELIVERY_CAP);
            }
        }
    }

    /// Reads the next line into `raw`; false at end-of-file. A line too
    /// long or a silent client ends the connection, and says so in the
    /// log.
    pub(super) fn next_line(&mut self, raw: &mut Vec<u8>) -> Result<bool, Ended> {
        match self.lines.read_line(raw) {
            Ok(line) => {
                // Only the client port makes room by idleness: a peer
                // line, the hot path, costs no clock read.
                if self.port == Port::Client {
                    self.conn.touch();
                }
                Ok(line)
            }
            Err(e) => Err(self.line_failed(e)),
        }
    }

    /// Why a connection ends when reading its next line failed, said in
    /// the log. Out of line, as the rare path it is: its log lines'
    /// arguments would otherwise deepen the stack of every connection
    /// (see `listen::CONNECTION_STACK`).
    #[cold]
    #[inline(never)]
    fn line_failed(&mut self, e: LineError) -> Ended {
        let shared = self.shared;
        // What was received before comes first in the log.
        shared.log.commit(&mut self.said);
        match e {
            LineError::LineTimeout => {
                shared.metrics.line_timeouts.inc();
                if let Some(n) = shared.line_timeouts.occurred() {
                    shared.log.warn(format_args!(
                        "{} began a line and did not end it within {} s (--line-timeout); \
                         closing the connection ({n} such since the last report)",
                        self.peer,
                        shared.limits.line_timeout.unwrap_or_default().as_secs_f64()
                    ));
                }
                Ended::LineTimeout
            }
            LineError::TooLong => {
                shared.log.warn(format_args!(
                    "{} sent a line longer than {} bytes; closing the connection",
                    self.peer, shared.limits.max_line
                ));
                Ended::LineTooLong
            }
            LineError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let idle = shared.limits.idle_timeout.unwrap_or_default();
                shared.log.warn(format_args!(
                    "{} sent nothing for {} s (--idle-timeout); closing the connection",
                    self.peer,
                    idle.as_secs_f64()
                ));
                Ended::IdleTimeout
            }
            LineError::Io(e) => Ended::Read(e),
        }
    }

    /// Writes a reply in one write, and logs it.
    fn reply(&mut self, reply: &str) -> io::Result<()> {
        // The lines received so far come first in the log.
        self.shared.log.commit(&mut self.said);
        let mut writer = self.stream;
        writer.write_all(reply.as_bytes())?;
        self.shared
            .log
            .line(&[&self.peer, " -> "], reply.trim_end_matches('\n'));
        Ok(())
    }
}

/// Decodes a received line. Not valid UTF-8 gives `Err` with the lossy
/// text, which src/protocol.md#lines makes an invalid line.
pub(super) fn decode(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|_| String::from_utf8_lossy(raw).into_owned())
}
