//! Reading a journal back into the store at start, a line at a time,
//! each checked as a neighbour's line would be; what it cannot take goes
//! aside to `<journal>.rejected`, never deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::Replay;
use crate::herd::Herd;
use crate::logging::ServerLog;
use crate::protocol::{parse_peer_line, PeerCommand};
use crate::store::{Offered, Store};

/// Reads the journal at `path`, and first what a compaction cut short
/// left in `leftover`, into `store`.
pub(super) fn read_back(
    path: &Path,
    leftover: &Path,
    herd: &Herd,
    store: &Store,
    rules: &ReplayRules,
    log: &ServerLog,
) -> io::Result<Replay> {
    let mut replay = Replay::default();
    // Lines replay does not take go to `<journal>.rejected` as they are
    // met, so memory follows the store, not the file, however much of
    // it is bad.
    let mut aside = Aside::new(rejected_path(path));
    // A server killed while compacting leaves `.compact` holding what
    for source in [leftover, path] {
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
                    !matches!(store.take(record), Offered::Full)
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
    Ok(replay)
}

/// What replay accepts, like a live line. New clients past the store's
/// capacity ([`crate::store::Store::with_capacity`]) are refused too.
#[derive(Debug, Clone)]
pub struct ReplayRules {
    /// Times further ahead of the clock than this are refused.
    pub max_future: std::time::Duration,
    /// Longer lines are refused (and never held in memory whole).
    pub max_line: usize,
}

impl Default for ReplayRules {
    /// Nothing refused but malformed lines and strangers' lines.
    fn default() -> ReplayRules {
        ReplayRules {
            max_future: std::time::Duration::MAX,
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
mod replay_tests {
    use super::super::{default_path, dir, Journal};
    use super::*;
    use std::fs;

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
