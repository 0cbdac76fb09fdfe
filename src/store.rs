//! The client store: the newest location record of every client.
//!
//! One hash table behind a `parking_lot::RwLock`, shared by every
//! connection thread and every link sender through a cheap-to-clone
//! [`Store`] handle. A read-write lock rather than a mutex because most
//! work is reading (WHATSAT look-ups, copies of records the herd already
//! holds, and the full snapshot each link sends when it comes up) and
//! readers need not wait for each other. parking_lot's lock is small,
//! fast when uncontended, and does not poison, so a panicking thread
//! cannot take the store down with it.
//!
//! Every critical section is a few lines of table work. Records are held
//! as `Arc<AtRecord>` so that a reader clones a pointer under the lock
//! and does its slow work (a Places call, a socket write) after letting
//! go.
//!
//! Why not `std::collections::HashMap<String, _>`: a table grows by
//! moving every entry into one twice the size, under the write lock, and
//! to find an entry's new place `HashMap` hashes its key again, which
//! means following the key's pointer to its text, a cache miss per
//! client. With 115,000 clients that held every thread of a server for
//! tens of milliseconds, and since all servers of a herd hold about the
//! same clients they all paused together: `proxy-herd-bench sustain`
//! saw the flood's lag jump to 240 ms at exactly 57,000 and 115,000
//! clients. hashbrown's `HashTable` (the table inside std's `HashMap`)
//! lets each slot keep its hash beside the record, so growing only moves
//! 16-byte slots, and the client's name need not be stored twice: it is
//! the record's own. The hash is std's keyed SipHash (`RandomState`), so
//! a stranger choosing client names cannot make them collide.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};
use parking_lot::{RwLock, RwLockReadGuard};

use crate::protocol::AtRecord;

/// How many of the table's buckets [`Store::snapshot`] copies each time
/// it holds the lock: up to 3,584 records, about a tenth of a
/// millisecond (11,440 records took 0.28 ms in a busy herd).
const SNAPSHOT_CHUNK: usize = 4096;

/// What [`Store::offer_within`] did with a record.
#[derive(Debug)]
pub enum Offered {
    /// It was stored: flood it.
    New(Arc<AtRecord>),
    /// The store holds this record or a newer one of its client: that
    /// one.
    NotNewer(Arc<AtRecord>),
    /// A new client, and the store is full.
    Full,
}

/// A client's record and the hash of its client's name.
struct Slot {
    hash: u64,
    record: Arc<AtRecord>,
}

/// Whether a slot holds `client`'s record: the kept hash first, so the
/// name is read only on a likely match.
fn is_client(hash: u64, client: &str) -> impl Fn(&Slot) -> bool + Copy + '_ {
    move |slot| slot.hash == hash && slot.record.update.client == client
}

/// A handle to the store; clones share the same records.
///
/// Records are replaced, never removed: a client, once stored, keeps its
/// bucket in the table until the table grows. [`Store::snapshot`] depends
/// on it (a table with removed entries may also rehash in place, moving
/// records without growing), so a removal must come with another way for
/// the snapshot to see records move.
#[derive(Clone)]
pub struct Store {
    /// Hashes client names; the same keys in every clone.
    hasher: RandomState,
    records: Arc<RwLock<HashTable<Slot>>>,
    /// The most clients it takes (`--max-clients`); past it a record of
    /// a new client is refused, from a client, a neighbour or the journal
    /// alike.
    capacity: usize,
}

impl Default for Store {
    fn default() -> Store {
        Store::with_capacity(usize::MAX)
    }
}

impl Store {
    /// An empty store with no bound but memory.
    pub fn new() -> Store {
        Store::default()
    }

    /// An empty store that holds at most `capacity` clients.
    pub fn with_capacity(capacity: usize) -> Store {
        Store {
            hasher: RandomState::default(),
            records: Arc::default(),
            capacity,
        }
    }

    /// Offers a record within the store's capacity: kept if newer than
    /// the stored one for its client (see [`Store::offer`]), refused
    /// (`Offered::Full`) if its client is new and the store is full.
    pub fn take(&self, record: AtRecord) -> Offered {
        self.offer_within(record, self.capacity)
    }

    /// Offers a record. It is kept if it is newer than the stored one for
    /// the same client (src/protocol.md#iamat-here-i-am), and then returned so the caller
    /// can flood it; an older or identical record changes nothing and
    /// gives `None`, which is what ends a flood.
    pub fn offer(&self, record: AtRecord) -> Option<Arc<AtRecord>> {
        match self.offer_within(record, usize::MAX) {
            Offered::New(stored) => Some(stored),
            Offered::NotNewer(_) | Offered::Full => None,
        }
    }

    /// Like [`Store::offer`], but a record of a client the store does not
    /// know yet is refused when it already holds `max_clients` clients.
    /// Known clients always update.
    pub fn offer_within(&self, record: AtRecord, max_clients: usize) -> Offered {
        let client = record.update.client.as_str();
        // Hashed before any lock is taken.
        let hash = self.hasher.hash_one(client);
        let same = is_client(hash, client);
        // Most records a busy herd offers are copies it already holds (the
        // flood reaches each server by several paths), so look first under
        // the shared lock, which readers hold together, and take the
        // exclusive one only to change something.
        if let Some(old) = self.records.read().find(hash, same) {
            if !record.is_newer_than(&old.record) {
                return Offered::NotNewer(Arc::clone(&old.record));
            }
        }
        let mut records = self.records.write();
        let full = records.len() >= max_clients;
        let (stored, replaced) = match records.entry(hash, same, |slot| slot.hash) {
            Entry::Occupied(old) if !record.is_newer_than(&old.get().record) => {
                return Offered::NotNewer(Arc::clone(&old.get().record))
            }
            Entry::Occupied(mut old) => {
                let stored = Arc::new(record);
                let replaced = std::mem::replace(&mut old.get_mut().record, Arc::clone(&stored));
                (stored, Some(replaced))
            }
            Entry::Vacant(_) if full => return Offered::Full,
            Entry::Vacant(slot) => {
                let stored = Arc::new(record);
                slot.insert(Slot {
                    hash,
                    record: Arc::clone(&stored),
                });
                (stored, None)
            }
        };
        // The old record is freed after the lock is released.
        drop(records);
        drop(replaced);
        Offered::New(stored)
    }

    /// The stored record of a client, if any.
    pub fn get(&self, client: &str) -> Option<Arc<AtRecord>> {
        let hash = self.hasher.hash_one(client);
        self.records
            .read()
            .find(hash, is_client(hash, client))
            .map(|slot| Arc::clone(&slot.record))
    }

    /// Whether the stored record of `client` is exactly this AT line: a
    /// copy of what the store holds, which a flood delivers to each server
    /// by several paths. Such a line would parse into the stored record
    /// and be dropped as not newer, so a neighbour's connection asks this
    /// first and spares the parse (see `server::peer`).
    pub fn holds_line(&self, client: &str, line: &str) -> bool {
        let hash = self.hasher.hash_one(client);
        // An AT line names its client, so the same line is the same
        // client: the line is compared, not the name too. That spares a
        // read of the name, a cache miss in a store of 100,000 clients,
        // on the flood's commonest path.
        self.records
            .read()
            .find(hash, |slot| slot.hash == hash && slot.record.line == line)
            .is_some()
    }

    /// Every record, for a link that has just come up or a journal
    /// rewrite: each client's record as stored when the snapshot began,
    /// or a newer one.
    ///
    /// Copying a few hundred thousand pointers takes milliseconds, and
    /// nothing can be stored meanwhile; on a busy two-core machine the
    /// copying thread is preempted too. Copied under one hold, a
    /// rewrite's snapshot of 67,000-320,000 records kept every connection
    /// of its server waiting for 7-106 ms under `proxy-herd-bench sustain`
    /// even at the server's own priority. So the table is read
    /// `SNAPSHOT_CHUNK` buckets at a time, letting waiting writers in
    /// between. That is safe because records never leave the table nor
    /// move within it, except when it grows (see [`Store`]): a newer
    /// record takes its client's bucket (the caller has opened its own
    /// way to records stored from now on: the link's queue, the new
    /// journal file), and a new client takes a free one. When the table
    /// has grown meanwhile, its records have moved, and the copy starts
    /// over.
    pub fn snapshot(&self) -> Vec<Arc<AtRecord>> {
        self.snapshot_between_chunks(|| {})
    }

    /// [`Store::snapshot`], calling `between` each time the lock is let
    /// go, which is how a test makes writers come in at those moments.
    fn snapshot_between_chunks(&self, mut between: impl FnMut()) -> Vec<Arc<AtRecord>> {
        let mut records = Vec::new();
        'whole: loop {
            // Room allocated before the lock is taken, with some to spare
            // for records stored meanwhile.
            records.reserve(self.len() + 1024);
            let mut table = self.records.read();
            let buckets = table.num_buckets();
            let mut from = 0;
            while from < buckets {
                let to = (from + SNAPSHOT_CHUNK).min(buckets);
                records.extend(
                    (from..to)
                        .filter_map(|bucket| table.get_bucket(bucket))
                        .map(|slot| Arc::clone(&slot.record)),
                );
                from = to;
                if from < buckets {
                    RwLockReadGuard::unlocked_fair(&mut table, &mut between);
                    if table.num_buckets() != buckets {
                        // Let go before the copy is dropped: a reference
                        // count each, and the records replaced meanwhile
                        // freed.
                        drop(table);
                        records.clear();
                        continue 'whole;
                    }
                }
            }
            return records;
        }
    }

    /// How many clients have a record.
    pub fn len(&self) -> usize {
        self.records.read().len()
    }

    /// Whether no client has a record yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_peer_line, PeerCommand};

    fn at(line: &str) -> AtRecord {
        match parse_peer_line(line, |_| true) {
            PeerCommand::At(at) => at,
            other => panic!("{other:?}"),
        }
    }

    /// A newer record replaces an older one and is returned for flooding;
    /// the older one offered afterwards changes nothing.
    #[test]
    fn newer_replaces_older() {
        let store = Store::new();
        let old = at("AT A +0.1 kiwi +1+2 100");
        let new = at("AT B +0.1 kiwi +3+4 200");
        assert!(store.offer(old.clone()).is_some());
        assert!(store.offer(new.clone()).is_some());
        assert!(store.offer(old).is_none());
        assert_eq!(store.get("kiwi").unwrap().line, new.line);
        assert_eq!(store.len(), 1);
    }

    /// The same record offered twice is stored once: a flood that comes
    /// back around stops here.
    #[test]
    fn duplicate_is_dropped() {
        let store = Store::new();
        let rec = at("AT A +0.1 kiwi +1+2 100");
        assert!(store.offer(rec.clone()).is_some());
        assert!(store.offer(rec).is_none());
    }

    /// A store of 20,000 clients (`old0`..), snapshotted while `between`
    /// stores more each time the lock is let go; checks every old client
    /// is in the copy exactly once. Returns how many times the lock was
    /// let go, and the table's bucket counts before and after.
    fn snapshot_while(mut between: impl FnMut(&Store, usize)) -> (usize, usize, usize) {
        let store = Store::new();
        for i in 0..20_000 {
            store.offer(at(&format!("AT A +0.1 old{i} +1+2 1")));
        }
        let before = store.records.read().num_buckets();
        let mut calls = 0;
        let records = store.snapshot_between_chunks(|| {
            calls += 1;
            between(&store, calls);
        });
        let mut clients: Vec<&str> = records.iter().map(|r| r.update.client.as_str()).collect();
        let all = clients.len();
        clients.sort_unstable();
        clients.dedup();
        assert_eq!(clients.len(), all, "each client once");
        for i in 0..20_000 {
            let client = format!("old{i}");
            assert!(clients.binary_search(&client.as_str()).is_ok(), "{client}");
        }
        let after = store.records.read().num_buckets();
        (calls, before, after)
    }

    /// Writers let in between every two chunks (new clients, within the
    /// table's room, and newer records of old ones) move nothing: the
    /// copy goes on where it was, and has every old client once.
    #[test]
    fn snapshot_while_storing() {
        let (calls, before, after) = snapshot_while(|store, call| {
            for i in 0..100 {
                store.offer(at(&format!("AT A +0.1 new{call}-{i} +1+2 1")));
            }
            for i in (call..20_000).step_by(97) {
                store.offer(at(&format!("AT A +0.1 old{i} +1+2 {}", call + 1)));
            }
        });
        assert_eq!(after, before, "the table did not grow");
        assert_eq!(
            calls,
            before / SNAPSHOT_CHUNK - 1,
            "once between each two chunks"
        );
    }

    /// When the table grows between two chunks, its records move: the
    /// copy starts over, and still has every old client once.
    #[test]
    fn snapshot_while_the_table_grows() {
        let (calls, before, after) = snapshot_while(|store, call| {
            if call == 1 {
                for i in 0..40_000 {
                    store.offer(at(&format!("AT A +0.1 new{i} +1+2 1")));
                }
            }
        });
        assert!(after > before, "the table grew");
        assert_eq!(
            calls,
            after / SNAPSHOT_CHUNK,
            "one pause after the old table's first chunk, then a pass over the new table"
        );
    }

    /// Only the exact line the store holds for its client is a copy:
    /// another line of that client (newer, older, from another server, or
    /// spaced otherwise), or of a client the store does not know, is not.
    #[test]
    fn holds_only_the_stored_line() {
        let store = Store::new();
        store.offer(at("AT A +0.1 kiwi +1+2 100"));
        assert!(store.holds_line("kiwi", "AT A +0.1 kiwi +1+2 100"));
        assert!(!store.holds_line("kiwi", "AT A +0.1 kiwi +1+2 101"));
        assert!(!store.holds_line("kiwi", "AT A +0.1 kiwi +1+2 99"));
        assert!(!store.holds_line("kiwi", "AT B +0.1 kiwi +1+2 100"));
        assert!(!store.holds_line("kiwi", "AT A +0.1 kiwi +1+2 100 "));
        assert!(!store.holds_line("apple", "AT A +0.1 kiwi +1+2 100"));
        assert!(!store.holds_line("apple", "AT A +0.1 apple +1+2 100"));
    }

    /// Two records with the same client time settle on the greater line
    /// whichever arrives first, so every server ends up agreeing.
    #[test]
    fn ties_converge() {
        let a = at("AT Alpha +0.1 kiwi +1+2 100");
        let b = at("AT Beta +0.2 kiwi +1+2 100");
        for order in [[&a, &b], [&b, &a]] {
            let store = Store::new();
            for rec in order {
                store.offer((*rec).clone());
            }
            assert_eq!(store.get("kiwi").unwrap().line, b.line);
        }
    }

    /// A full store refuses new clients and keeps updating known ones,
    /// its own capacity or one given for the offer alike.
    #[test]
    fn full_store_refuses_only_new_clients() {
        let bounded = Store::with_capacity(1);
        assert!(matches!(
            bounded.take(at("AT A +0.1 kiwi +1+2 100")),
            Offered::New(_)
        ));
        assert!(matches!(
            bounded.take(at("AT A +0.1 apple +1+2 100")),
            Offered::Full
        ));
        assert!(matches!(
            bounded.take(at("AT A +0.1 kiwi +1+2 200")),
            Offered::New(_)
        ));
        let store = Store::new();
        assert!(matches!(
            store.offer_within(at("AT A +0.1 kiwi +1+2 100"), 1),
            Offered::New(_)
        ));
        assert!(matches!(
            store.offer_within(at("AT A +0.1 apple +1+2 100"), 1),
            Offered::Full
        ));
        assert!(matches!(
            store.offer_within(at("AT A +0.1 kiwi +1+2 200"), 1),
            Offered::New(_)
        ));
        assert!(matches!(
            store.offer_within(at("AT A +0.1 kiwi +1+2 150"), 1),
            Offered::NotNewer(_)
        ));
        assert_eq!(store.len(), 1);
    }

    /// Through many growths of the table (each moves every slot by its
    /// kept hash) every client is still found with its own record, and a
    /// newer record replaces the old one in place.
    #[test]
    fn every_client_is_found_after_the_table_grows() {
        let store = Store::new();
        for i in 0..20_000 {
            assert!(store
                .offer(at(&format!("AT A +0.1 c{i} +1+2 100")))
                .is_some());
        }
        assert!(store.offer(at("AT A +0.1 c7 +1+2 200")).is_some());
        assert_eq!(store.len(), 20_000);
        for i in 0..20_000 {
            let time = if i == 7 { 200 } else { 100 };
            assert_eq!(
                store.get(&format!("c{i}")).unwrap().line,
                format!("AT A +0.1 c{i} +1+2 {time}")
            );
        }
        assert!(store.get("c20000").is_none());
    }

    /// The snapshot holds one record per client, the newest.
    #[test]
    fn snapshot_has_every_client() {
        let store = Store::new();
        store.offer(at("AT A +0.1 kiwi +1+2 100"));
        store.offer(at("AT A +0.1 kiwi +1+2 150"));
        store.offer(at("AT A +0.1 apple +1+2 100"));
        let mut lines: Vec<_> = store.snapshot().iter().map(|r| r.line.clone()).collect();
        lines.sort();
        assert_eq!(
            lines,
            ["AT A +0.1 apple +1+2 100", "AT A +0.1 kiwi +1+2 150"]
        );
    }
}
