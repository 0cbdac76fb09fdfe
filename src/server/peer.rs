//! What a neighbour's lines do: a valid AT line newer than the stored
//! record is stored, journaled and passed on, a burst at a time. With a
//! herd secret, the connection first proves it (see `auth`).

use std::borrow::Cow;

use super::connection::Ended;
use super::handler::{decode, Handler};
use crate::auth::{self, HandshakeError};
use crate::protocol::{self, now_nanos, PeerCommand};
use crate::server::connection::LineError;
use crate::store::Offered;

impl Handler<'_> {
    /// Challenges the connection to prove the herd secret before any of
    /// its lines are used; an unproven one is logged and ended.
    pub(super) fn prove_neighbour(&mut self) -> Result<(), Ended> {
        let Some(secret) = self.shared.secret.clone() else {
            return Ok(());
        };
        let shared = self.shared;
        let stream = self.stream;
        let lines = &mut self.lines;
        let proven = auth::challenge(
            stream,
            &secret,
            |name| shared.herd.contains(name),
            || match lines.next_line() {
                Ok(Some(raw)) => Ok(raw),
                Ok(None) => Err(HandshakeError::Closed),
                Err(LineError::TooLong) => Err(HandshakeError::TooLong),
                Err(LineError::LineTimeout) => {
                    Err(HandshakeError::Silent(std::io::ErrorKind::TimedOut.into()))
                }
                Err(LineError::Io(e)) => Err(HandshakeError::Silent(e)),
            },
        );
        match proven {
            Ok(name) => {
                shared
                    .log
                    .info(format_args!("link from {name} proved the herd secret"));
                self.from = Some(name);
                Ok(())
            }
            Err(why) => {
                shared.log.warn(format_args!(
                    "{}: unproven link ({why}); closing it, nothing it sent was used",
                    self.peer
                ));
                Err(Ended::Unproven)
            }
        }
    }

    /// Handles one line from a neighbour: a valid AT is stored, and if it
    /// is new its line joins `learnt`, to be journaled and flooded on with
    /// the rest of its burst. It gets no reply.
    // Out of line: see `listen::CONNECTION_STACK`.
    #[inline(never)]
    pub(super) fn peer_line(&mut self, raw: &[u8]) -> Option<String> {
        let shared = self.shared;
        let peer = self.peer.as_str();
        let (lines, metrics) = (&shared.metrics.lines, &shared.metrics);
        let (text, command) = match decode(raw) {
            // Most of what a busy neighbour sends is a record the store
            // already holds, come by another path: the very bytes of the
            // stored line, so valid and not newer. Dropped here, before
            // the parse and its allocations, with the log line and counts
            // the parse would have given. (The one check skipped is
            // `--max-future`, which the stored line passed when it came.
            // Only a clock set back since could make the parse call it
            // invalid now, with a `?` reply.)
            Ok(text)
                if protocol::at_line_client(text)
                    .is_some_and(|client| shared.store.holds_line(client, text)) =>
            {
                shared
                    .log
                    .gather_line(&mut self.said, &[peer, " <- "], text);
                lines.at.inc();
                metrics.superseded.inc();
                return None;
            }
            Ok(text) => (
                Cow::Borrowed(text),
                protocol::parse_peer_line(text, |s| shared.herd.contains(s)),
            ),
            Err(lossy) => (Cow::Owned(lossy), PeerCommand::Invalid),
        };
        shared
            .log
            .gather_line(&mut self.said, &[peer, " <- "], &text);
        match command {
            PeerCommand::Blank => None,
            // With a herd secret the handshake proved who this is, and a
            // HELLO (a hint, never proof) does not overrule it.
            PeerCommand::Hello(_) if shared.secret.is_some() => None,
            PeerCommand::Hello(name) => {
                // Pass on what the connection taught so far under the
                // name it had, then take the new one.
                self.pass_on();
                self.from = Some(name);
                None
            }
            PeerCommand::Invalid => {
                lines.invalid.inc();
                Some(protocol::invalid_reply(&text))
            }
            PeerCommand::At(record) if shared.too_far_ahead(record.update.time, now_nanos()) => {
                lines.invalid.inc();
                Some(protocol::invalid_reply(&text))
            }
            PeerCommand::At(record) => {
                lines.at.inc();
                match shared.store.take(record) {
                    Offered::New(stored) => {
                        metrics.stored_from_peer.inc();
                        self.learnt.push(stored);
                    }
                    Offered::NotNewer(_) => metrics.superseded.inc(),
                    // Not stored, so not passed on either: see `store_full`.
                    Offered::Full => {
                        metrics.refused_full.inc();
                        shared.log.commit(&mut self.said);
                        shared.store_full(peer);
                    }
                }
                None
            }
        }
    }

    /// Logs the lines of a neighbour's burst, then journals the AT lines
    /// it taught in one write and queues them for the other neighbours. A link writes whatever
    /// has piled up in its queue at once, so lines arrive in bursts, and
    /// a burst costs one journal write instead of one per line. Nobody
    /// waits for a reply here, so the links are not waited for either.
    pub(super) fn pass_on(&mut self) {
        self.shared.log.commit(&mut self.said);
        if self.learnt.is_empty() {
            return;
        }
        if let Some(journal) = &self.shared.journal {
            // A failure is reported by the journal; nobody waits for a
            // reply here, and the neighbour that sent these holds them.
            let _ = journal.append_all(self.learnt.iter().map(|record| record.line.as_str()));
        }
        for record in self.learnt.drain(..) {
            self.shared.flood.forward(&record, self.from.as_deref());
        }
    }
}
