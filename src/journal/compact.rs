//! Rewriting the journal as one line per client (the store's newest
//! records): once at start, and by the compactor thread whenever the
//! journal has doubled since the last rewrite.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use super::Inner;
use crate::logging::ServerLog;
use crate::store::Store;

/// A journal is compacted while the server runs once it has grown to
/// twice its size after the last compaction, and is at least this big
/// (a small journal is not worth a rewrite).
pub const COMPACT_MIN_BYTES: u64 = 1024 * 1024;

/// How many nice values a compaction writes below the server's flood. A
/// rewrite is background work: on a busy machine the threads that flood
/// and answer run first. Five servers of a herd holding the same clients
/// rewrite at about the same moment, and at full priority that was a
/// burst of CPU the flood's lag showed (src/bin/proxy-herd-bench/README.md#performance).
const COMPACTOR_NICE: i32 = 10;

/// The rewrite at start, after replay: the journal becomes the store's
/// records, and what a compaction cut short (`leftover`) is merged in.
pub(super) fn compact_at_start(
    path: &Path,
    leftover: &Path,
    store: &Store,
    log: &ServerLog,
) -> io::Result<()> {
    match compact(path, store) {
        // Its lines are in the journal now.
        Ok(()) => {
            let _ = fs::remove_file(leftover);
        }
        // Without room for a second copy (a full disk), the journal
        // stays as it is: every line in it is still good, and the
        // compactor tries again once the server runs. Lines still in
        // `.compact` are not in the journal, though, and the running
        // compactor will reuse that name: then there is no safe way
        // on, so say why and stop.
        Err(e) if !leftover.exists() => {
            crate::logging::to_stderr(format_args!(
                "journal {}: not compacted at start ({e}); going on with it as it is",
                path.display()
            ));
            log.warn(format_args!(
                "journal {}: not compacted at start ({e}); going on with it as it is",
                path.display()
            ));
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot merge {} into the journal ({e}); free some space and start again",
                    leftover.display()
                ),
            ))
        }
    }
    Ok(())
}

impl Inner {
    /// Whether the journal has grown enough to be worth a rewrite: to
    /// twice its size after the last one, plus a share of that fixed by
    /// its path (up to a half), so that servers of one herd, which hold
    /// the same clients and grow alike, do not all rewrite at once.
    pub(super) fn due(&self) -> bool {
        let size = self.size.load(Ordering::Relaxed);
        let compacted = self.compacted.load(Ordering::Relaxed);
        size >= COMPACT_MIN_BYTES && size >= 2 * compacted + compacted / 64 * self.stagger
    }

    /// Rewrites the journal as the store's records while appends go on.
    ///
    /// Appends are first pointed at a new file, and only then is the store
    /// read: every record appended to the old file was stored before its
    /// append, so before the read, and the new file has it. The order of
    /// lines does not matter (replay keeps each client's newest). Then the
    /// new file takes the journal's name. If anything fails on the way,
    /// appends go back to the old file, which gets the store's records
    /// appended, so whatever went to the new file meanwhile is not lost,
    /// and the old journal stays whole.
    pub(super) fn compact_now(self: &Arc<Self>) {
        // Appends made during the last compaction may have asked for
        // another one that is no longer due.
        if !self.due() {
            return;
        }
        let began = Instant::now();
        let before = self.size.load(Ordering::Relaxed);
        let tmp = compact_path(&self.path);
        let new = match OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|f| {
                drop(f);
                OpenOptions::new().append(true).open(&tmp)
            }) {
            Ok(file) => Arc::new(file),
            Err(e) => {
                self.log.error(format_args!(
                    "journal compaction: cannot create {}: {e}; the journal keeps growing",
                    tmp.display()
                ));
                // Try again only after as much growth again.
                self.compacted.store(
                    self.size.load(Ordering::Relaxed).max(COMPACT_MIN_BYTES),
                    Ordering::Relaxed,
                );
                return;
            }
        };
        let old = std::mem::replace(&mut *self.file.write(), Arc::clone(&new));
        // Read at the flood's priority: while the store's lock is held
        // nothing can be stored, and a reader ten nice values down is
        // preempted by every busy thread of the machine. Reading the whole
        // table under one hold that way kept every connection of its
        // server waiting for 10-86 ms (67,000-320,000 records under
        // `proxy-herd-bench sustain`; 7-106 ms at the server's own
        // priority). The store is read a chunk at a time now
        // (`Store::snapshot`), and only the writing, which holds no lock,
        // runs below the flood.
        let records = self.store.snapshot();
        let count = records.len();
        let written = write_below_the_flood(&new, records).and_then(|bytes| {
            fs::rename(&tmp, &self.path)?;
            Ok(bytes)
        });
        match written {
            Ok(bytes) => {
                // Appends since the swap are in the file too.
                let size = new.metadata().map_or(bytes, |m| m.len());
                self.compacted.store(size, Ordering::Relaxed);
                self.size.store(size, Ordering::Relaxed);
                self.log.info(format_args!(
                    "journal compacted: {count} records, {before} -> {size} bytes in {} ms",
                    began.elapsed().as_millis()
                ));
            }
            Err(e) => {
                *self.file.write() = Arc::clone(&old);
                self.log.error(format_args!(
                    "journal compaction failed ({e}); the old journal is kept"
                ));
                // Appends made since the swap are in `.compact` alone. It
                // is deleted only once the store's records (which include
                // them) are in the old journal; until then a crash leaves
                // it for replay to read. On a full disk that waits for
                // space, retried every second: appends fail meanwhile, so
                // nothing is acknowledged that this could lose.
                let mut tries = 0u64;
                loop {
                    // After a failed try the file may end in a torn line:
                    // start on a line of our own (replay skips blank ones).
                    let fresh = if tries > 0 {
                        (&*old).write_all(b"\n")
                    } else {
                        Ok(())
                    };
                    match fresh.and_then(|()| write_below_the_flood(&old, self.store.snapshot())) {
                        Ok(_) => break,
                        Err(e) => {
                            self.torn.store(true, Ordering::SeqCst);
                            if tries == 0 {
                                self.log.error(format_args!(
                                    "journal compaction: cannot add the records to the old journal ({e}); \
                                     keeping {} and trying every second",
                                    tmp.display()
                                ));
                            }
                        }
                    }
                    // Nobody left to serve: the leftover stays for replay.
                    if Arc::strong_count(self) == 1 {
                        return;
                    }
                    tries += 1;
                    thread::sleep(std::time::Duration::from_secs(1));
                }
                let _ = fs::remove_file(&tmp);
                // Try again only after as much growth again.
                self.compacted.store(
                    self.size.load(Ordering::Relaxed).max(COMPACT_MIN_BYTES),
                    Ordering::Relaxed,
                );
            }
        }
    }
}

/// [`write_records`] on a thread of its own, [`COMPACTOR_NICE`] nice
/// values below the flood, which also drops the records (a reference
/// count each). A thread per compaction, since a thread can lower its
/// priority but not raise it again; if none can be started, the caller's
/// thread writes.
fn write_below_the_flood(
    file: &File,
    records: Vec<Arc<crate::protocol::AtRecord>>,
) -> io::Result<u64> {
    // Handed over through a lock so that a thread that cannot start
    // leaves them here to be written.
    let records = std::sync::Mutex::new(Some(records));
    let write = || {
        let records = records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        write_records(file, &records)
    };
    thread::scope(|scope| {
        let below = thread::Builder::new()
            .name("journal rewrite".into())
            .spawn_scoped(scope, || {
                crate::os::yield_to_the_flood(COMPACTOR_NICE);
                write()
            });
        match below.map(|thread| thread.join()) {
            Ok(Ok(written)) => written,
            Ok(Err(_)) => Err(io::Error::other("the journal rewrite panicked")),
            Err(_) => write(),
        }
    })
}

/// Appends records' lines to `file` in writes of a few hundred lines.
/// Returns the bytes written.
fn write_records(file: &File, records: &[Arc<crate::protocol::AtRecord>]) -> io::Result<u64> {
    let mut written = 0;
    for chunk in records.chunks(512) {
        let mut text = String::with_capacity(chunk.len() * 96);
        for record in chunk {
            text.push_str(&record.line);
            text.push('\n');
        }
        (&*file).write_all(text.as_bytes())?;
        written += text.len() as u64;
    }
    Ok(written)
}

/// Where a running compaction writes: `<journal>.compact`.
pub(super) fn compact_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".compact");
    PathBuf::from(name)
}

/// Rewrites the journal as the store's records, through a temporary file
/// and a rename, so a crash midway leaves the old journal whole, and a
/// failure (a full disk) leaves no temporary file behind.
fn compact(path: &Path, store: &Store) -> io::Result<()> {
    let mut text = String::new();
    for record in store.snapshot() {
        text.push_str(&record.line);
        text.push('\n');
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}
