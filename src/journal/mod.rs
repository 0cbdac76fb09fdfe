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

//!
//! The parts: this file appends (and opens, replays and starts the
//! compactor in [`Journal::open`]); `replay` reads a journal back into
//! the store, setting aside what it cannot take; `compact` rewrites it
//! as one line per client, at start and whenever it has doubled.

mod compact;
mod replay;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::Sender;
use parking_lot::RwLock;

use crate::herd::Herd;
use crate::logging::{Episode, ServerLog};
use crate::store::Store;

pub use compact::COMPACT_MIN_BYTES;
use compact::{compact_at_start, compact_path};
pub use replay::{rejected_path, ReplayRules};

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
        // A server killed while compacting leaves `.compact` holding what
        // was appended since the compaction began: replay reads it too.
        let leftover = compact_path(path);
        let replay = replay::read_back(path, &leftover, herd, store, rules, log)?;
        compact_at_start(path, &leftover, store, log)?;
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

/// The default journal file of a server: `<dir>/<name>.journal`.
pub fn default_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.journal"))
}

#[cfg(test)]
pub(crate) fn dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("proxy-herd-journal-{tag}-"))
        .tempdir()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
mod group_tests {
    use super::*;
    use std::fs;

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
