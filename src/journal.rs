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
//! Writes are batched (a group commit): connection threads queue their
//! line and wait; one writer thread writes everything queued in one
//! `write` and then releases every waiter. Under load, one system call
//! covers many clients, so the journal costs a context switch per update
//! rather than a system call per update.
//!
//! At start the journal is read back into the store, then rewritten
//! with one line per client (the newest record), so it stays as small as
//! the store instead of growing with every update ever made.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use crate::herd::Herd;
use crate::logging::ServerLog;
use crate::protocol::{parse_peer_line, PeerCommand};
use crate::store::Store;

/// At most this many bytes go out in one write.
const BATCH_BYTES: usize = 256 * 1024;

/// A line waiting to be written, and who to tell when it is.
struct Entry {
    line: String,
    done: Sender<()>,
}

/// A handle to the journal's writer; clones share it.
#[derive(Clone)]
pub struct Journal {
    queue: Sender<Entry>,
}

/// A line handed to the journal; [`Written::wait`] returns once it is in
/// the file (or the write failed, which is logged).
#[must_use = "wait before replying"]
pub struct Written(Receiver<()>);

impl Written {
    /// Waits until the writer has written the line.
    pub fn wait(self) {
        let _ = self.0.recv();
    }
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
    /// one line per client, and starts the writer. Called before the
    /// server accepts anyone.
    pub fn open(
        path: &Path,
        herd: &Herd,
        store: &Store,
        log: &ServerLog,
    ) -> io::Result<(Journal, Replay)> {
        let mut replay = Replay::default();
        match fs::read(path) {
            Ok(bytes) => {
                for raw in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    replay.lines += 1;
                    let text = String::from_utf8_lossy(raw);
                    match parse_peer_line(&text, |s| herd.contains(s)) {
                        PeerCommand::At(record) => {
                            store.offer(record);
                        }
                        // A torn last line (the process died mid-write) or
                        // a line from another herd: skip it.
                        _ => replay.skipped += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        replay.clients = store.len();
        compact(path, store)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer_log = log.clone();
        thread::Builder::new()
            .name("journal".into())
            .stack_size(64 * 1024)
            .spawn(move || write_batches(file, &rx, &writer_log))?;
        Ok((Journal { queue: tx }, replay))
    }

    /// Queues a record's AT line; wait on the result before replying.
    pub fn append(&self, line: &str) -> Written {
        let (done, wait) = crossbeam_channel::bounded(1);
        let _ = self.queue.send(Entry {
            line: line.to_string(),
            done,
        });
        Written(wait)
    }
}

/// The default journal file of a server: `<dir>/<name>.journal`.
pub fn default_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.journal"))
}

/// Rewrites the journal as the store's records, through a temporary file
/// and a rename, so a crash midway leaves the old journal whole.
fn compact(path: &Path, store: &Store) -> io::Result<()> {
    let mut text = String::new();
    for record in store.snapshot() {
        text.push_str(&record.line);
        text.push('\n');
    }
    let tmp = path.with_extension("journal.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

fn write_batches(mut file: File, queue: &Receiver<Entry>, log: &ServerLog) {
    let mut buf = String::with_capacity(BATCH_BYTES);
    let mut waiting = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(entry) = next {
            buf.push_str(&entry.line);
            buf.push('\n');
            waiting.push(entry.done);
            next = if buf.len() < BATCH_BYTES {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = file.write_all(buf.as_bytes()) {
            // The server keeps serving: the neighbours still hold copies.
            log.error(format_args!("journal write failed: {e}"));
        }
        buf.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("proxy-herd-journal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Lines appended are read back into a new store, newest per client,
    /// and the journal is compacted to one line per client.
    #[test]
    fn append_then_replay_and_compact() {
        let dir = dir("replay");
        let path = default_path(&dir, "Riley");
        let herd = Herd::default_herd();
        let log = ServerLog::discard();
        let (journal, replay) = Journal::open(&path, &herd, &Store::new(), &log).unwrap();
        assert_eq!(replay, Replay::default());
        for line in [
            "AT Riley +0.1 kiwi +1+1 1",
            "AT Riley +0.1 kiwi +2+2 2",
            "AT Jaquez +0.1 apple +3+3 3",
        ] {
            journal.append(line).wait();
        }
        drop(journal);
        let store = Store::new();
        let (_journal, replay) = Journal::open(&path, &herd, &store, &log).unwrap();
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
        fs::remove_dir_all(dir).unwrap();
    }

    /// A torn last line and lines naming servers outside the herd are
    /// skipped and counted, not fatal.
    #[test]
    fn bad_lines_are_skipped() {
        let dir = dir("torn");
        let path = default_path(&dir, "Riley");
        fs::write(
            &path,
            "AT Riley +0.1 kiwi +1+1 1\nAT Nobody +0.1 x +1+1 1\nAT Riley +0.1 pe",
        )
        .unwrap();
        let store = Store::new();
        let (_, replay) =
            Journal::open(&path, &Herd::default_herd(), &store, &ServerLog::discard()).unwrap();
        assert_eq!(
            replay,
            Replay {
                lines: 3,
                skipped: 2,
                clients: 1
            }
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
