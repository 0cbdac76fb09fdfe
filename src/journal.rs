//! The journal: every record the store takes, appended to a file before
//! the client hears back, and read back when the server starts.
//!
//! An AT reply is a promise that the update will not be lost. Neighbours
//! hold a copy once flooding has reached them, but a server with no
//! neighbour up, killed right after replying, would otherwise take the
//! update with it. So every new record goes to `<Name>.journal` first.
//!
//! The threat is the process dying (a crash, `kill -9`), not the machine:
//! a `write` puts the bytes in the kernel's page cache, which outlives the
//! process, so no `fsync` is needed, and none is done. A power cut can
//! still lose the last seconds of updates.
//!
//! Each connection thread appends its own line with one `write` to the
//! file, opened in append mode; Linux makes each such append atomic, so
//! lines from many threads never interleave. No lock of ours is held
//! during the write (one is taken only to copy the file's handle, which a
//! compaction may swap).
//! This is the simplest design we tried and the fastest, because without
//! `fsync` there is nothing expensive for a batch to share. Measured with
//! `proxy-herd-bench iamat -c 16` against one server on the same run of a
//! quiet 2-core machine:
//!
//! | journal | IAMAT/s | p99 |
//! |---|---|---|
//! | none (`--no-journal`) | 100,474 | 440 µs |
//! | each thread appends its line (this code) | 79,454 | 520 µs |
//! | group commit: the first waiting thread writes everyone's lines | 77,788 | 3,567 µs |
//!
//! The group commit saved system calls but made threads queue on a
//! condition variable and wake in herds. An earlier version with a
//! dedicated writer thread (two wake-ups per update) was slower still.
//!
//! At start the journal is read back into the store, a line at a time,
//! checked as a neighbour's line would be, then rewritten with one line
//! per client (the newest record). While the server runs, a compactor
//! thread rewrites it the same way whenever it has doubled since the last
//! rewrite (and passed [`COMPACT_MIN_BYTES`]), so a server that runs for
//! weeks keeps a journal of about the size of its store. Appends never
//! wait for a compaction: they are pointed at the new file before the
//! store is read (see `Inner::compact_now`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::Sender;
use parking_lot::RwLock;

use crate::herd::Herd;
use crate::logging::{Episode, ServerLog};
use crate::protocol::{parse_peer_line, PeerCommand};
use crate::store::{Offered, Store};

/// A handle to the journal file; clones share it.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

/// What the handles and the compactor thread share.
struct Inner {
    path: PathBuf,
    /// The file appends go to. A compaction swaps it for the new file;
    /// the lock covers cloning or swapping the `Arc`, never a write, and
    /// appending threads share it (only a compaction takes it alone).
    file: RwLock<Arc<File>>,
    /// Bytes in the current file: its size after the last compaction plus
    /// what was appended since.
    size: AtomicU64,
    /// The size right after the last compaction: about the live set.
    compacted: AtomicU64,
    /// Wakes the compactor thread.
    wake: Sender<()>,
    /// Set when an append failed, so the next one starts a fresh line.
    torn: AtomicBool,
    /// Set while appends fail; `failures` counts them for the reports.
    failing: AtomicBool,
    failures: Episode,
    /// Every failed append since start, for the metrics.
    failed_total: AtomicU64,
    /// 0 to 31 sixty-fourths of the compacted size added to the rewrite
    /// threshold, from the path (see `Inner::due`).
    stagger: u64,
    store: Store,
    log: ServerLog,
}

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

/// What reading a journal back found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Lines read.
    pub lines: usize,
    /// Of those, lines that were not a valid AT line of this herd.
    pub skipped: usize,
    /// Clients in the store afterwards.
    pub clients: usize,
}

impl Journal {
    /// Reads the journal at `path` (if any) into `store`, compacts it to
    /// one line per client, and starts the compactor thread. Called before
    /// the server accepts anyone.
    pub fn open(
        path: &Path,
        herd: &Herd,
        store: &Store,
        rules: &ReplayRules,
        log: &ServerLog,
    ) -> io::Result<(Journal, Replay)> {
        let mut replay = Replay::default();
        // Lines replay does not take go to `<journal>.rejected` as they are
        // met, so memory follows the store, not the file, however much of
        // it is bad.
        let mut aside = Aside::new(rejected_path(path));
        // A server killed while compacting leaves `.compact` holding what
        // was appended since the compaction began: read it too.
        let leftover = compact_path(path);
        for source in [&leftover, &path.to_path_buf()] {
            let file = match File::open(source) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(in_file(source, e)),
            };
            // Streamed a line at a time: memory follows the store, not the
            // file.
            let now = crate::protocol::now_nanos();
            let mut reader = BufReader::with_capacity(64 * 1024, file);
            let mut line = Vec::new();
            loop {
                let next = next_line(&mut reader, &mut line, rules.max_line, &mut aside)
                    .map_err(|e| in_file(source, e))?;
                let raw = match next {
                    Next::End => break,
                    Next::TooLong => {
                        // Already copied aside, piece by piece.
                        replay.lines += 1;
                        replay.skipped += 1;
                        continue;
                    }
                    Next::Line if line.is_empty() => continue,
                    Next::Line => &line[..],
                };
                replay.lines += 1;
                let text = String::from_utf8_lossy(raw);
                // Checked like a line from a neighbour: a torn last line
                // (the process died mid-write), a line from another herd,
                // a time too far ahead (which would pin its client for
                // ever), or a new client past the limit.
                let kept = match parse_peer_line(&text, |s| herd.contains(s)) {
                    PeerCommand::At(record)
                        if record.update.time - now <= rules.max_future.as_nanos() as i128 =>
                    {
                        !matches!(store.offer_within(record, rules.max_clients), Offered::Full)
                    }
                    _ => false,
                };
                if !kept {
                    replay.skipped += 1;
                    aside.put(raw)?;
                    aside.put(b"\n")?;
                }
            }
        }
        if aside.finish()? {
            // Kept aside, never deleted: a person may want them back.
            log.warn(format_args!(
                "journal {}: {} line(s) not replayed, kept in {}",
                path.display(),
                replay.skipped,
                aside.path.display()
            ));
        }
        replay.clients = store.len();
        match compact(path, store) {
            // Its lines are in the journal now.
            Ok(()) => {
                let _ = fs::remove_file(&leftover);
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
        let file = OpenOptions::new().append(true).open(path)?;
        let size = file.metadata()?.len();
        let (wake, woken) = crossbeam_channel::bounded(1);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            file: RwLock::new(Arc::new(file)),
            size: AtomicU64::new(size),
            compacted: AtomicU64::new(size),
            wake,
            torn: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            failed_total: AtomicU64::new(0),
            stagger: path
                .as_os_str()
                .as_encoded_bytes()
                .iter()
                .fold(7u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                % 32,
            failures: Episode::new(std::time::Duration::from_secs(10)),
            store: store.clone(),
            log: log.clone(),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("journal compactor".into())
            .spawn(move || {
                // Ends when the last handle is gone, which drops `wake`.
                while woken.recv().is_ok() {
                    let Some(inner) = weak.upgrade() else { return };
                    inner.compact_now();
                }
            })?;
        Ok((Journal { inner }, replay))
    }

    /// Appends a record's AT line; when this returns `Ok`, the line is in
    /// the kernel's hands. See [`Journal::append_all`] for failures.
    pub fn append(&self, line: &str) -> io::Result<()> {
        self.append_all(std::iter::once(line))
    }

    /// Appends several AT lines with one `write`, which Linux keeps whole
    /// against other threads' appends. A neighbour's link delivers lines
    /// in bursts, so its connection thread journals a burst at once.
    ///
    /// A failed append (a full disk, most often) is reported once per
    /// episode, on stderr and in the log, with a count, and its recovery
    /// once. The write may have left part of a line behind, so the next
    /// append starts with a newline: the torn part stays a line of its
    /// own, which replay sets aside, instead of swallowing the next one.
    pub fn append_all<'a>(&self, lines: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let inner = &self.inner;
        // Room for one typical AT line and its newline; a burst grows it.
        let mut entry = String::with_capacity(256);
        for line in lines {
            entry.push_str(line);
            entry.push('\n');
        }
        if entry.is_empty() {
            return Ok(());
        }
        if inner.torn.swap(false, Ordering::SeqCst) {
            entry.insert(0, '\n');
        }
        let file = Arc::clone(&inner.file.read());
        if let Err(e) = (&*file).write_all(entry.as_bytes()) {
            inner.torn.store(true, Ordering::SeqCst);
            inner.failing.store(true, Ordering::SeqCst);
            inner.failed_total.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = inner.failures.occurred() {
                let message = format!(
                    "journal {}: {n} append(s) failed since the last report ({e}); \
                     updates are not acknowledged until it can be written",
                    inner.path.display()
                );
                crate::logging::to_stderr(format_args!("{message}"));
                inner.log.error(format_args!("{message}"));
            }
            return Err(e);
        }
        if inner.failing.load(Ordering::Relaxed) && inner.failing.swap(false, Ordering::SeqCst) {
            let n = inner.failures.ended().unwrap_or(0);
            let message = format!(
                "journal {}: appends work again ({n} more failed since the last report)",
                inner.path.display()
            );
            crate::logging::to_stderr(format_args!("{message}"));
            inner.log.warn(format_args!("{message}"));
        }
        inner.size.fetch_add(entry.len() as u64, Ordering::Relaxed);
        if inner.due() {
            let _ = inner.wake.try_send(());
        }
        Ok(())
    }

    /// How many bytes the journal file holds now (for tests, logs and
    /// metrics).
    pub fn size(&self) -> u64 {
        self.inner.size.load(Ordering::Relaxed)
    }

    /// How many appends have failed since the journal was opened.
    pub fn failed_appends(&self) -> u64 {
        self.inner.failed_total.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// Whether the journal has grown enough to be worth a rewrite: to
    /// twice its size after the last one, plus a share of that fixed by
    /// its path (up to a half), so that servers of one herd, which hold
    /// the same clients and grow alike, do not all rewrite at once.
    fn due(&self) -> bool {
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
    fn compact_now(self: &Arc<Self>) {
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
                crate::flood::yield_to_the_flood(COMPACTOR_NICE);
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
fn compact_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".compact");
    PathBuf::from(name)
}

/// What replay accepts, like a live line.
#[derive(Debug, Clone)]
pub struct ReplayRules {
    /// Times further ahead of the clock than this are refused.
    pub max_future: std::time::Duration,
    /// New clients past this many are refused.
    pub max_clients: usize,
    /// Longer lines are refused (and never held in memory whole).
    pub max_line: usize,
}

impl Default for ReplayRules {
    /// Nothing refused but malformed lines and strangers' lines.
    fn default() -> ReplayRules {
        ReplayRules {
            max_future: std::time::Duration::MAX,
            max_clients: usize::MAX,
            max_line: crate::protocol::MAX_LINE,
        }
    }
}

/// An error about `path`, saying which file.
fn in_file(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Where replay keeps the lines it did not take: beside the journal,
/// `<journal>.rejected`.
pub fn rejected_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".rejected");
    PathBuf::from(name)
}

/// The default journal file of a server: `<dir>/<name>.journal`.
pub fn default_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.journal"))
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

/// Where replay keeps the lines it skips: `<journal>.rejected`, opened
/// (appending) at the first one.
struct Aside {
    path: PathBuf,
    out: Option<io::BufWriter<File>>,
}

impl Aside {
    fn new(path: PathBuf) -> Aside {
        Aside { path, out: None }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        let out = match &mut self.out {
            Some(out) => out,
            None => self.out.insert(io::BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| in_file(&self.path, e))?,
            )),
        };
        out.write_all(bytes).map_err(|e| in_file(&self.path, e))
    }

    /// Flushes; whether anything was put aside.
    fn finish(&mut self) -> io::Result<bool> {
        match &mut self.out {
            Some(out) => out
                .flush()
                .map(|()| true)
                .map_err(|e| in_file(&self.path, e)),
            None => Ok(false),
        }
    }
}

/// What [`next_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// A line (possibly empty, possibly unterminated at the end).
    Line,
    /// A line longer than the limit: copied aside whole, with its `\n`.
    TooLong,
    /// The end of the file.
    End,
}

/// Reads the next line into `line` without its `\n`. A line longer than
/// `max` bytes is not kept in memory (a journal that lost its newlines
/// would otherwise be read whole): it goes to `aside` in pieces as it is
/// read.
fn next_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
    aside: &mut Aside,
) -> io::Result<Next> {
    line.clear();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => {
                    aside.put(b"\n")?;
                    Next::TooLong
                }
                (false, true) => Next::End,
                (false, false) => Next::Line,
            });
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let piece = &buf[..newline.unwrap_or(buf.len())];
        if !too_long && line.len() + piece.len() > max {
            too_long = true;
            aside.put(line)?;
            line.clear();
        }
        if too_long {
            aside.put(piece)?;
        } else {
            line.extend_from_slice(piece);
        }
        let used = piece.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            if too_long {
                aside.put(b"\n")?;
                return Ok(Next::TooLong);
            }
            return Ok(Next::Line);
        }
    }
}

/// A fresh folder for a test, removed when the test ends.
#[cfg(test)]
fn dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("proxy-herd-journal-{tag}-"))
        .tempdir()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the journal at `path` into `store` with no limits, as the
    /// tests want it.
    fn open(path: &Path, store: &Store) -> (Journal, Replay) {
        Journal::open(
            path,
            &Herd::default_herd(),
            store,
            &ReplayRules::default(),
            &ServerLog::discard(),
        )
        .unwrap()
    }

    /// Lines appended are read back into a new store, newest per client,
    /// and the journal is compacted to one line per client.
    #[test]
    fn append_then_replay_and_compact() {
        let tmp = dir("replay");
        let dir = tmp.path();
        let path = default_path(dir, "Riley");
        let (journal, replay) = open(&path, &Store::new());
        assert_eq!(replay, Replay::default());
        for line in [
            "AT Riley +0.1 kiwi +1+1 1",
            "AT Riley +0.1 kiwi +2+2 2",
            "AT Jaquez +0.1 apple +3+3 3",
        ] {
            journal.append(line).unwrap();
        }
        drop(journal);
        let store = Store::new();
        let (_journal, replay) = open(&path, &store);
        assert_eq!(
            replay,
            Replay {
                lines: 3,
                skipped: 0,
                clients: 2
            }
        );
        assert_eq!(store.get("kiwi").unwrap().line, "AT Riley +0.1 kiwi +2+2 2");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    /// After a failed append, which may have left part of a line, the
    /// next append starts on a line of its own instead of finishing the
    /// torn one.
    #[test]
    fn an_append_after_a_failure_starts_a_new_line() {
        let tmp = dir("torn-next");
        let dir = tmp.path();
        let path = default_path(dir, "Riley");
        let (journal, _) = open(&path, &Store::new());
        // What a write cut short by a full disk leaves.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"AT Riley +0.1 to")
            .unwrap();
        journal.inner.torn.store(true, Ordering::SeqCst);
        journal.append("AT Riley +0.1 kiwi +1+1 1").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "AT Riley +0.1 to\nAT Riley +0.1 kiwi +1+1 1\n"
        );
        drop(journal);
        let store = Store::new();
        let (_, replay) = open(&path, &store);
        assert_eq!(replay.skipped, 1);
        assert!(store.get("kiwi").is_some());
    }

    /// A server killed during a compaction leaves `.compact` holding what
    /// was appended since it began; the next start reads it as well as
    /// the journal, and removes it once the journal holds its lines.
    #[test]
    fn a_compaction_cut_short_loses_nothing() {
        let tmp = dir("cut-short");
        let dir = tmp.path();
        let path = default_path(dir, "Riley");
        fs::write(&path, "AT Riley +0.1 kiwi +1+1 1\n").unwrap();
        fs::write(compact_path(&path), "AT Riley +0.1 apple +1+1 2\n").unwrap();
        let store = Store::new();
        let (_journal, replay) = open(&path, &store);
        assert_eq!(replay.clients, 2);
        assert!(store.get("apple").is_some() && store.get("kiwi").is_some());
        assert!(!compact_path(&path).exists());
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    /// A torn last line and lines naming servers outside the herd are
    /// skipped and counted, not fatal.
    #[test]
    fn bad_lines_are_skipped() {
        let tmp = dir("torn");
        let dir = tmp.path();
        let path = default_path(dir, "Riley");
        fs::write(
            &path,
            "AT Riley +0.1 kiwi +1+1 1\nAT Nobody +0.1 x +1+1 1\nAT Riley +0.1 pe",
        )
        .unwrap();
        let store = Store::new();
        let (_, replay) = open(&path, &store);
        assert_eq!(
            replay,
            Replay {
                lines: 3,
                skipped: 2,
                clients: 1
            }
        );
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    /// A journal whose middle lost its newlines (a line far past the
    /// limit) replays the good lines around it, and the long line is kept
    /// aside whole.
    #[test]
    fn an_overlong_line_goes_aside_whole() {
        let tmp = dir("long");
        let dir = tmp.path();
        let path = default_path(dir, "Riley");
        let long = "x".repeat(300_000);
        fs::write(
            &path,
            format!("AT Riley +0.1 kiwi +1+1 1\n{long}\nAT Riley +0.1 pear +1+1 2\n"),
        )
        .unwrap();
        let store = Store::new();
        let rules = ReplayRules {
            max_line: 1000,
            ..ReplayRules::default()
        };
        let (_, replay) = Journal::open(
            &path,
            &Herd::default_herd(),
            &store,
            &rules,
            &ServerLog::discard(),
        )
        .unwrap();
        assert_eq!(
            replay,
            Replay {
                lines: 3,
                skipped: 1,
                clients: 2
            }
        );
        assert_eq!(
            fs::read_to_string(rejected_path(&path)).unwrap(),
            format!("{long}\n")
        );
    }

    /// A start-up compaction that cannot write its copy (here its
    /// temporary name is taken by a folder) leaves the journal as it was,
    /// and the server starts with every record.
    #[test]
    fn a_failed_startup_compaction_keeps_the_journal() {
        let tmp = dir("nocompact");
        let dir = tmp.path();
        let path = default_path(dir, "Riley");
        let text = "AT Riley +0.1 kiwi +1+1 1\nAT Riley +0.1 kiwi +1+1 2\n";
        fs::write(&path, text).unwrap();
        fs::create_dir(dir.join("Riley.journal.tmp")).unwrap();
        let store = Store::new();
        let (journal, replay) = Journal::open(
            &path,
            &Herd::default_herd(),
            &store,
            &ReplayRules::default(),
            &ServerLog::discard(),
        )
        .unwrap();
        assert_eq!(replay.clients, 1);
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "not rewritten");
        journal.append("AT Riley +0.1 kiwi +1+1 3").unwrap();
        assert!(fs::read_to_string(&path).unwrap().ends_with("+1+1 3\n"));
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;

    /// Many threads appending at once, line by line or in bursts of
    /// three, lose no line and mix no two lines, and every append has
    /// reached the file when it returns.
    #[test]
    fn concurrent_appends_are_whole_and_complete() {
        let tmp = tempfile::Builder::new()
            .prefix("proxy-herd-journal-group-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let path = default_path(dir, "Riley");
        let (journal, _) = Journal::open(
            &path,
            &Herd::default_herd(),
            &Store::new(),
            &ReplayRules::default(),
            &ServerLog::discard(),
        )
        .unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let (journal, path) = (journal.clone(), &path);
                s.spawn(move || {
                    for i in 0..500 {
                        let line = format!("AT Riley +0.1 t{t}c{i} +1+1 {i}");
                        if t % 2 == 0 {
                            journal.append(&line).unwrap();
                        } else if i % 3 == 2 {
                            let burst =
                                [i - 2, i - 1].map(|j| format!("AT Riley +0.1 t{t}c{j} +1+1 {j}"));
                            journal
                                .append_all(burst.iter().map(|l| l.as_str()).chain([line.as_str()]))
                                .unwrap();
                        } else if i == 499 {
                            let before = format!("AT Riley +0.1 t{t}c498 +1+1 498");
                            journal
                                .append_all([before.as_str(), line.as_str()])
                                .unwrap();
                        } else {
                            continue;
                        }
                        if i % 100 == 0 {
                            // Already in the file, not merely queued.
                            let text = fs::read_to_string(path).unwrap();
                            assert!(text.contains(&format!("{line}\n")));
                        }
                    }
                });
            }
        });
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4000);
        assert!(text
            .lines()
            .all(|l| l.starts_with("AT Riley +0.1 t") && l.split(' ').count() == 6));
    }
}
