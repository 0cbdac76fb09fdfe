//! What a client's lines do: IAMAT stores, floods and journals an update
//! before its AT reply; WHATSAT asks Places about a client's location.

use std::borrow::Cow;
use std::io;
use std::time::Instant;

use super::connection::Ended;
use super::handler::{decode, Handler};
use super::Shared;
use crate::flood::DELIVERY_CAP;
use crate::protocol::{self, now_nanos, AtRecord, ClientCommand};
use crate::store::Offered;

impl Handler<'_> {
    /// Handles one line from a client and returns the reply, if any, or
    /// why the connection must close instead.
    // Out of line: see `listen::CONNECTION_STACK`.
    #[inline(never)]
    pub(super) fn client_line(&mut self, raw: &[u8]) -> Result<Option<String>, Ended> {
        let shared = self.shared;
        let peer = self.peer.as_str();
        let received = now_nanos();
        let (text, command) = match decode(raw) {
            Ok(text) => (Cow::Borrowed(text), protocol::parse_client_line(text)),
            Err(lossy) => (Cow::Owned(lossy), ClientCommand::Invalid),
        };
        shared.log.line(&[peer, " <- "], &text);
        let lines = &shared.metrics.lines;
        match command {
            ClientCommand::Blank => Ok(None),
            ClientCommand::Invalid => {
                lines.invalid.inc();
                Ok(Some(protocol::invalid_reply(&text)))
            }
            ClientCommand::IAmAt(update) if shared.too_far_ahead(update.time, received) => {
                lines.invalid.inc();
                shared.log.warn(format_args!(
                    "{peer}: client time more than {} s ahead (--max-future); invalid",
                    shared.limits.max_future.as_secs()
                ));
                Ok(Some(protocol::invalid_reply(&text)))
            }
            ClientCommand::IAmAt(update) => {
                let record = AtRecord::new(&shared.name, received, update);
                let reply = format!("{}\n", record.line);
                // The reply is a promise: before it goes out, the update is
                // in the journal and in the sockets of the links that are
                // up (src/protocol.md#flooding). The links are told first, so their
                // writes overlap the journal's.
                let journaled = match shared.store.take(record) {
                    Offered::New(stored) => {
                        lines.iamat.inc();
                        shared.metrics.stored_from_client.inc();
                        // One cap for waiting on room and on the writes.
                        let began = Instant::now();
                        let mut delivery = shared.flood.broadcast(&stored);
                        let journaled = shared.journal(&stored);
                        delivery.wait(DELIVERY_CAP.saturating_sub(began.elapsed()));
                        // Finished after the reply: see `Handler::serve_lines`.
                        self.delivering = Some(delivery);
                        journaled
                    }
                    // The newer record stored may not be journaled yet (its
                    // thread is between the store and the journal, or it
                    // waits in a neighbour's burst): journal it here too, so
                    // that this reply, like every AT reply, goes out only
                    // once its client's newest record is in the journal. A
                    // second copy is harmless: replay keeps the newest.
                    Offered::NotNewer(stored) => {
                        lines.iamat.inc();
                        shared.metrics.superseded.inc();
                        shared.journal(&stored)
                    }
                    Offered::Full => {
                        lines.invalid.inc();
                        shared.metrics.refused_full.inc();
                        shared.store_full(peer);
                        return Ok(Some(protocol::invalid_reply(&text)));
                    }
                };
                if journaled.is_err() {
                    // No journal, no promise: hang up without an AT line
                    // (see `Shared::journal`).
                    return Err(Ended::JournalFailed);
                }
                Ok(Some(reply))
            }
            ClientCommand::WhatsAt(query) => Ok(Some(self.whats_at(&query, &text))),
        }
    }

    /// The reply to a WHATSAT. Not inlined into `client_line`: a Places
    /// request's locals would otherwise deepen every IAMAT's stack too
    /// (see `listen::CONNECTION_STACK`).
    #[inline(never)]
    fn whats_at(&self, query: &protocol::WhatsAt, text: &str) -> String {
        let shared = self.shared;
        let lines = &shared.metrics.lines;
        // The record is cloned out of the store; the Places call below
        // runs with no lock held.
        let Some(record) = shared.store.get(&query.client) else {
            lines.invalid.inc();
            return protocol::invalid_reply(text);
        };
        lines.whatsat.inc();
        let answer = shared.places.nearby(
            &record.update.location,
            query.radius_m,
            query.bound,
            &shared.log,
        );
        shared.metrics.places_request(answer.failed, answer.seconds);
        protocol::whatsat_reply(&record.line, &answer.json)
    }
}

impl Shared {
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
}
