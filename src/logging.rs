//! The server log: `<Name>.log`, one line per event, built with fern.
//!
//! Each server owns its logger as a value ([`ServerLog`]) instead of
//! installing a global one with `fern::Dispatch::apply`. A process can
//! then hold several servers, each writing its own file, which is how the
//! integration tests run a whole herd in one test binary; the `proxy-herd`
//! binary simply owns one.
//!
//! fern filters and formats events; the formatted lines then go to a
//! [`BatchWriter`], which appends them to a buffer shared with one writer
//! thread per log file (a copy under a lock, nothing else). That thread
//! writes whatever has piled up in one `write`, so a busy server makes
//! one system call for many lines instead of one per line, and no
//! connection thread ever waits on the disk or on a file lock.
//! [`ServerLog::flush`] waits until the writer has written everything
//! logged before it: the server calls it on shutdown and on SIGINT or
//! SIGTERM, so every line already logged is in the file when the process
//! exits (src/protocol.md#log-and-life-cycle). A `kill -9` can lose the last few
//! milliseconds of log lines; it cannot lose a stored location, which
//! never depends on the log.
//!
//! The lines the protocol asks for, every line received and sent, are
//! most of the log: about twenty an update across a five-server herd.
//! They skip fern and go to the same buffer already formatted
//! ([`ServerLog::line`]), and a neighbour's burst or a link's batch is
//! logged at once, all its lines with one time ([`ServerLog::gather_line`]):
//! 80-110 ns a line against 175 through fern, on this project's 2-core
//! machine.
//!
//! A log that runs for a week stays within bounds two ways. SIGHUP makes
//! the `proxy-herd` binary call [`ServerLog::reopen`], so logrotate can
//! rename the file and signal, and the server goes on in a new file of
//! the old name. Or the writer rotates by itself ([`LogFiles`],
//! `--log-max-bytes` and `--log-keep`): past the size, `<Name>.log`
//! becomes `<Name>.log.1`, older ones move up by one, and the oldest
//! beyond the number kept is deleted. A write that fails (a full disk)
//! loses its lines but never stops the server: the failure is reported on
//! standard error at once and then at most every ten seconds with a count,
//! and the count of lines lost is written into the log when writes work
//! again.
//!
//! A line looks like
//! ```text
//! 2026-11-24T20:31:07.412331Z INFO  127.0.0.1:51234 <- IAMAT kiwi +34.06-118.44 1621464827.9
//! 2026-11-24T20:31:07.412367Z INFO  127.0.0.1:51234 -> AT Riley +0.2 kiwi +34.06-118.44 1621464827.9
//! ```
//! `<-` is a line received, `->` a line sent; control characters inside a
//! line (the newlines of a WHATSAT reply) are escaped so one event is one
//! line of the file.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use log::{Level, LevelFilter, Log, Record};

use crate::protocol::Escaped;

/// A handle to one server's log; clones write to the same file.
#[derive(Clone)]
pub struct ServerLog {
    sink: Arc<dyn Log>,
    /// The writer behind `sink`, for lines gathered by [`LogLines`];
    /// `None` for a log that discards.
    lines: Option<Arc<BatchWriter>>,
    /// The writer thread's queue, for [`ServerLog::reopen`]; `None` for a
    /// log that discards.
    writer: Option<Sender<ToWriter>>,
    /// Lines lost to failed writes since start, for the metrics.
    lost: Arc<AtomicU64>,
}

/// How big a log file may grow, and how many old ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogFiles {
    /// Past this many bytes the file is rotated; `None`: never (an outside
    /// rotation with SIGHUP can still bound it).
    pub max_bytes: Option<u64>,
    /// How many rotated files (`<Name>.log.1` and up) are kept.
    pub keep: usize,
}

/// Old log files kept when `--log-keep` is not given.
pub const DEFAULT_LOG_KEEP: usize = 5;

impl ServerLog {
    /// Opens (appending, creating the folder if needed) `dir/<name>.log`,
    /// rotated as `files` says.
    pub fn to_file(dir: &Path, name: &str, files: LogFiles) -> io::Result<(ServerLog, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.log"));
        let file = open_log(&path)?;
        let lost = Arc::new(AtomicU64::new(0));
        let writer = BatchWriter::start(file, path.clone(), files, name, Arc::clone(&lost))?;
        let control = writer.queue.clone();
        let writer = Arc::new(writer);
        let (_, sink) = fern::Dispatch::new()
            .level(LevelFilter::Info)
            .format(|out, message, record| {
                out.finish(format_args!(
                    "{} {:<5} {}",
                    Stamp::now(),
                    record.level(),
                    message
                ))
            })
            .chain(Box::new(ToBatch(Arc::clone(&writer))) as Box<dyn Log>)
            .into_log();
        Ok((
            ServerLog {
                sink: Arc::from(sink),
                lines: Some(writer),
                writer: Some(control),
                lost,
            },
            path,
        ))
    }

    /// A log that drops everything, for tests that do not look at logs.
    pub fn discard() -> ServerLog {
        let (_, sink) = fern::Dispatch::new().level(LevelFilter::Off).into_log();
        ServerLog {
            sink: Arc::from(sink),
            lines: None,
            writer: None,
            lost: Arc::default(),
        }
    }

    /// Writes what is pending to the current file, then closes it and
    /// opens the log's path anew: after logrotate renamed the file, the
    /// next lines go to a new file of the old name. Returns once done.
    pub fn reopen(&self) {
        if let Some(writer) = &self.writer {
            let (done, wait) = crossbeam_channel::bounded(1);
            if writer.send(ToWriter::Reopen(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }

    /// How many lines failed writes have lost since the log was opened.
    pub fn lines_lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    fn write(&self, level: Level, args: fmt::Arguments<'_>) {
        self.sink
            .log(&Record::builder().level(level).args(args).build());
    }

    /// An ordinary event: a line in or out, a connection, a link.
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.write(Level::Info, args);
    }

    /// Something off that the server carries on through.
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.write(Level::Warn, args);
    }

    /// A failure (a Places error, a failed write).
    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.write(Level::Error, args);
    }

    /// Adds a line received or sent to `lines`, as [`ServerLog::info`]
    /// would log it: the pieces of `head` as they are, then `text` as
    /// [`Escaped`] shows it, with the time of the first line gathered
    /// since the last [`ServerLog::commit`]. For the lines of a burst a
    /// neighbour's read brought, or of a batch a link writes: they share
    /// one moment, and gathering them skips, per line, the clock, the
    /// time's formatting, fern's dispatch and the lock of the shared
    /// buffer. Most lines need no escaping, and then no formatting
    /// machinery runs at all.
    pub fn gather_line(&self, lines: &mut LogLines, head: &[&str], text: &str) {
        if self.lines.is_none() {
            return;
        }
        if lines.count == 0 {
            lines.stamp.clear();
            let _ = write!(lines.stamp, "{} {:<5} ", Stamp::now(), Level::Info);
        }
        lines.text.push_str(&lines.stamp);
        push_line(&mut lines.text, head, text);
        lines.count += 1;
    }

    /// Logs one line received or sent at once, as [`ServerLog::gather_line`]
    /// and [`ServerLog::commit`] would: a client's line and its reply.
    /// Formatted in the thread's scratch buffer, the one fern's lines use,
    /// so a connection's thread keeps one buffer, not two.
    pub fn line(&self, head: &[&str], text: &str) {
        let Some(writer) = &self.lines else { return };
        with_scratch(|out| {
            let _ = write!(out, "{} {:<5} ", Stamp::now(), Level::Info);
            push_line(out, head, text);
            writer.push(out, 1);
        });
    }

    /// Hands the lines gathered in `lines` to the log, in order, and
    /// empties it.
    pub fn commit(&self, lines: &mut LogLines) {
        if lines.count == 0 {
            return;
        }
        if let Some(writer) = &self.lines {
            writer.push(&lines.text, lines.count);
        }
        lines.text.clear();
        lines.count = 0;
        if lines.text.capacity() > GATHER_KEPT {
            lines.text = String::new();
        }
    }

    /// Pushes anything buffered to the file (called on shutdown).
    pub fn flush(&self) {
        self.sink.flush();
    }
}

/// Log lines one thread gathers with [`ServerLog::gather_line`] and hands to
/// the log at once with [`ServerLog::commit`]; reused, so gathering
/// allocates nothing once warm.
#[derive(Default)]
pub struct LogLines {
    text: String,
    /// How many lines `text` holds.
    count: u64,
    /// The time and level every line of this gathering begins with.
    stamp: String,
}

/// The most room a [`LogLines`] keeps between gatherings: a resync's
/// batch of a few hundred lines, not the megabytes of a huge one.
const GATHER_KEPT: usize = 256 * 1024;

/// Appends the pieces of `head`, then `text` as [`Escaped`] shows it,
/// then a newline. Most lines need no escaping, and then no formatting
/// machinery runs at all.
fn push_line(out: &mut String, head: &[&str], text: &str) {
    for piece in head {
        out.push_str(piece);
    }
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        out.push_str(text);
    } else {
        let _ = write!(out, "{}", Escaped(text));
    }
    out.push('\n');
}

/// The time a log line begins with: RFC 3339 in UTC with microseconds,
/// `2026-11-24T20:31:07.412331Z`, as `humantime` writes it. A busy server
/// logs hundreds of thousands of lines a second, nearly every one in the
/// same second as the line before, so each thread keeps the text of the
/// current second and writes only the fraction: the calendar arithmetic
/// runs once a second per thread instead of once per line.
struct Stamp(Duration);

thread_local! {
    /// The second [`Stamp`] last wrote, and its text up to the fraction.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl Stamp {
    fn now() -> Stamp {
        Stamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        SECOND.with_borrow_mut(|(second, text)| {
            if *second != secs {
                text.clear();
                let whole = UNIX_EPOCH + Duration::from_secs(secs);
                let _ = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
                text.pop(); // its `Z`: the fraction comes first
                *second = secs;
            }
            f.write_str(text)
        })?;
        let mut fraction = *b".000000Z";
        let mut micros = self.0.subsec_micros();
        for digit in fraction[1..7].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        f.write_str(std::str::from_utf8(&fraction).expect("ASCII digits"))
    }
}

/// Says something on standard error, prefixed `proxy-herd: `. A failure
/// to write is ignored: standard error is often a file on the same disk
/// as the log (`run_herd.sh` puts it in `logs/NAME.out`), and when that
/// disk is full `eprintln!` would panic, taking down the thread that was
/// reporting the full disk.
pub fn to_stderr(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "proxy-herd: {args}");
}

/// A failure that can recur thousands of times a second (a full table,
/// no file descriptors left), reported without flooding the log: the first
/// of an episode at once, then at most one line per interval saying how
/// many happened since. The caller writes the line, in its own words.
pub struct Episode {
    every: Duration,
    state: Mutex<EpisodeState>,
}

#[derive(Default)]
struct EpisodeState {
    /// Occurrences not yet reported.
    unreported: u64,
    /// When the last line was due; `None` outside an episode.
    reported: Option<std::time::Instant>,
}

impl Episode {
    /// Reports at most once per `every`.
    pub fn new(every: Duration) -> Episode {
        Episode {
            every,
            state: Mutex::new(EpisodeState::default()),
        }
    }

    /// Counts one occurrence. `Some(n)` means a line is due now, for the
    /// `n` occurrences since the last one (1 for the first of an episode).
    pub fn occurred(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut state = self.state.lock();
        state.unreported += 1;
        let due = state
            .reported
            .is_none_or(|last| now.duration_since(last) >= self.every);
        if !due {
            return None;
        }
        state.reported = Some(now);
        Some(std::mem::take(&mut state.unreported))
    }

    /// Ends the episode. `Some(n)`: `n` occurrences were never reported,
    /// and the caller should say so with the recovery.
    pub fn ended(&self) -> Option<u64> {
        let mut state = self.state.lock();
        state.reported.take()?;
        Some(std::mem::take(&mut state.unreported))
    }

    /// Whether an episode is under way.
    pub fn ongoing(&self) -> bool {
        self.state.lock().reported.is_some()
    }
}

/// What the writer thread is told. Lines themselves do not travel
/// through the channel: they wait in [`Pending`].
enum ToWriter {
    /// Lines are waiting, and none were when the last write began.
    Lines,
    /// Say so once everything logged before this has been written.
    Flush(Sender<()>),
    /// Write what is pending, open the path anew, and say so.
    Reopen(Sender<()>),
}

/// Lines logged but not yet written, already formatted, one after the
/// other. Connection threads append under the lock (a copy of one line);
/// the writer swaps the whole text out under it. An earlier version sent
/// each line through the channel as its own `String`: one allocation in
/// the connection thread and one free in the writer thread per line,
/// which showed in profiles of a busy server (malloc's cross-thread frees
/// are not cheap).
///
/// A disk that stalls (a hung network mount, say) without failing would
/// let the text grow for as long as it stalls; past [`MAX_PENDING`] bytes
/// new lines are dropped instead, counted, and reported like lines a
/// failed write lost.
type Pending = Mutex<PendingLines>;

#[derive(Default)]
struct PendingLines {
    text: String,
    /// Lines dropped because `text` was full.
    dropped: u64,
}

/// The most log text that waits for the writer; a busy server writes
/// about 2 MiB a second, so this is seconds of a stalled disk.
const MAX_PENDING: usize = 16 * 1024 * 1024;

/// A `log::Log` that gathers lines for a writer thread, which writes them
/// in batches.
pub struct BatchWriter {
    pending: Arc<Pending>,
    queue: Sender<ToWriter>,
}

/// Room kept for the lines of one batch, so appending seldom reallocates.
const BATCH_BYTES: usize = 64 * 1024;

/// The pause between two writes of the log: lines reach the file at most
/// this much later than they were logged.
const BATCH_INTERVAL: Duration = Duration::from_millis(2);

/// The most room a thread keeps for formatting its log lines between
/// lines; a longer line's buffer is given back once it is copied.
const SCRATCH_KEPT: usize = 4096;

thread_local! {
    /// Where a thread formats its log line before copying it into
    /// [`Pending`]: reused, so logging allocates nothing once warm, and
    /// formatting happens outside the lock. It starts empty and grows to
    /// the longest line the thread formats: most of a held connection's
    /// lines are short, and its thread keeps this buffer for as long as
    /// it lives.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `format` on the thread's emptied [`SCRATCH`], the one buffer
/// both fern's lines and [`ServerLog::line`] are formatted in. A long
/// line's room (a whole WHATSAT reply) is given back afterwards, so a
/// long-lived connection's thread does not keep it.
fn with_scratch(format: impl FnOnce(&mut String)) {
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        format(out);
        if out.capacity() > SCRATCH_KEPT {
            *out = String::new();
        }
    });
}

/// How often a run of failed log writes is reported on standard error.
const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(10);

fn open_log(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl BatchWriter {
    /// Starts the writer thread for `file`, open at `path`. It ends,
    /// having written everything, when the last handle to the log is
    /// dropped.
    pub fn start(
        file: File,
        path: PathBuf,
        files: LogFiles,
        name: &str,
        lost_total: Arc<AtomicU64>,
    ) -> io::Result<BatchWriter> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pending = Arc::new(Mutex::new(PendingLines {
            text: String::with_capacity(BATCH_BYTES),
            dropped: 0,
        }));
        let for_writer = Arc::clone(&pending);
        let size = file.metadata().map_or(0, |m| m.len());
        let mut target = LogFile {
            file: Some(file),
            path,
            files,
            size,
            torn: false,
            lost: 0,
            lost_total,
            failures: Episode::new(FAILURE_REPORT_EVERY),
        };
        thread::Builder::new()
            .name(format!("{name} log"))
            .stack_size(64 * 1024)
            .spawn(move || write_batches(&mut target, &for_writer, &rx))?;
        Ok(BatchWriter { pending, queue: tx })
    }
}

/// The file the writer thread writes, and what it knows about it.
struct LogFile {
    /// `None` after a reopen or a rotation (or when opening failed); the
    /// next write opens the path.
    file: Option<File>,
    path: PathBuf,
    files: LogFiles,
    /// Bytes in the current file.
    size: u64,
    /// A write failed part-way: the next one starts on a line of its own.
    torn: bool,
    /// Lines lost (to failed writes, or dropped while the writer could not
    /// keep up) since the last write that worked.
    lost: u64,
    /// Every line lost since start, shared with [`ServerLog::lines_lost`].
    lost_total: Arc<AtomicU64>,
    failures: Episode,
}

impl LogFile {
    /// Writes a batch of whole lines. A failure loses them, counted, and
    /// never stops the server; the first write that works again says in
    /// the log how many lines were lost.
    fn write(&mut self, out: &str) {
        if out.is_empty() {
            return;
        }
        match self.try_write(out) {
            Ok(()) => {
                self.torn = false;
                if self.lost > 0 {
                    let lost = std::mem::take(&mut self.lost);
                    self.failures.ended();
                    crate::logging::to_stderr(format_args!(
                        "{}: writes work again; {lost} lines were lost",
                        self.path.display()
                    ));
                    let note = format!(
                        "{} ERROR {lost} log lines could not be written and were lost\n",
                        Stamp::now()
                    );
                    // A failure here is counted by the next batch's write.
                    let _ = self.try_write(&note);
                }
                self.rotate_if_due();
            }
            Err(e) => {
                // A write cut short leaves part of a line behind.
                self.torn = true;
                let lines = out.bytes().filter(|&b| b == b'\n').count() as u64;
                self.lost += lines;
                self.lost_total.fetch_add(lines, Ordering::Relaxed);
                if let Some(times) = self.failures.occurred() {
                    crate::logging::to_stderr(format_args!(
                        "cannot write the log {}: {e} ({times} failed writes since the last report, {} lines lost so far)",
                        self.path.display(),
                        self.lost
                    ));
                }
            }
        }
    }

    /// Opens the file if it is not open, and appends `out`, on a line of
    /// its own after a torn write.
    fn try_write(&mut self, out: &str) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = open_log(&self.path)?;
                self.size = file.metadata().map_or(0, |m| m.len());
                self.file.insert(file)
            }
        };
        if self.torn {
            file.write_all(b"\n")?;
            self.torn = false;
            self.size += 1;
        }
        file.write_all(out.as_bytes())?;
        self.size += out.len() as u64;
        Ok(())
    }

    /// Rotates once the file has passed `--log-max-bytes`: `.log.N-1`
    /// becomes `.log.N` (the oldest beyond `--log-keep` is deleted), the
    /// current file `.log.1`, and a new file takes the name.
    fn rotate_if_due(&mut self) {
        let Some(max) = self.files.max_bytes else {
            return;
        };
        if self.size < max {
            return;
        }
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let keep = self.files.keep;
        let _ = std::fs::remove_file(numbered(keep.max(1)));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else if let Err(e) = std::fs::rename(&self.path, numbered(1)) {
            crate::logging::to_stderr(format_args!(
                "cannot rotate the log {}: {e}; it goes on growing",
                self.path.display()
            ));
            return;
        }
        self.reopen();
    }

    /// Closes the file, so the next write opens the path anew (after a
    /// rotation, ours or logrotate's). Opening is the write's business:
    /// if it fails, the lines are counted as lost like any failed write.
    fn reopen(&mut self) {
        self.file = None;
        self.size = 0;
        // A torn line, if any, stays in the old file.
        self.torn = false;
    }
}

fn write_batches(target: &mut LogFile, pending: &Pending, queue: &Receiver<ToWriter>) {
    let mut out = String::with_capacity(BATCH_BYTES);
    let mut acks = Vec::new();
    let mut reopens = Vec::new();
    loop {
        // Wait for lines (or a flush); the channel closes when the last
        // handle is dropped, and then what is left is written and we end.
        let open = match queue.recv() {
            Ok(ToWriter::Flush(ack)) => {
                acks.push(ack);
                true
            }
            Ok(ToWriter::Reopen(ack)) => {
                reopens.push(ack);
                true
            }
            Ok(ToWriter::Lines) => {
                // Let lines pile up for a moment before the write. While
                // they do, logging a line is a copy under a lock with no
                // wake-up, so a busy server pays one wake-up and one write
                // per interval instead of per line.
                thread::sleep(BATCH_INTERVAL);
                true
            }
            Err(_) => false,
        };
        // A flush or reopen asked for meanwhile is answered by this write
        // too.
        while let Ok(message) = queue.try_recv() {
            match message {
                ToWriter::Flush(ack) => acks.push(ack),
                ToWriter::Reopen(ack) => reopens.push(ack),
                ToWriter::Lines => {}
            }
        }
        let dropped = {
            let mut pending = pending.lock();
            std::mem::swap(&mut pending.text, &mut out);
            std::mem::take(&mut pending.dropped)
        };
        target.lost += dropped;
        target.lost_total.fetch_add(dropped, Ordering::Relaxed);
        target.write(&out);
        out.clear();
        if !reopens.is_empty() {
            target.reopen();
        }
        for ack in acks.drain(..).chain(reopens.drain(..)) {
            let _ = ack.send(());
        }
        if !open {
            return;
        }
    }
}

impl BatchWriter {
    /// Appends `count` formatted lines for the writer, or counts them
    /// dropped if the writer is that far behind.
    fn push(&self, text: &str, count: u64) {
        let mut pending = self.pending.lock();
        let was_empty = pending.text.is_empty();
        if pending.text.len() + text.len() > MAX_PENDING {
            pending.dropped += count;
        } else {
            pending.text.push_str(text);
        }
        drop(pending);
        if was_empty {
            // The first line since the last write wakes the writer;
            // the others find it awake (or sleeping out its interval).
            let _ = self.queue.send(ToWriter::Lines);
        }
    }
}

/// What fern's dispatch writes to: the server's [`BatchWriter`], which
/// [`ServerLog`] also keeps for gathered lines.
struct ToBatch(Arc<BatchWriter>);

impl Log for ToBatch {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        with_scratch(|line| {
            let _ = writeln!(line, "{}", record.args());
            self.0.push(line, 1);
        });
    }

    fn flush(&self) {
        self.0.flush();
    }
}

impl BatchWriter {
    fn flush(&self) {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if self.queue.send(ToWriter::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logged lines are in the file once `flush` returns, each on one line
    /// with a timestamp and level.
    #[test]
    fn lines_reach_the_file() {
        let tmp = tempfile::Builder::new()
            .prefix("proxy-herd-log-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let (log, path) = ServerLog::to_file(dir, "Riley", LogFiles::default()).unwrap();
        log.info(format_args!("hello {}", 42));
        log.error(format_args!("bad thing"));
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("INFO  hello 42"), "{}", lines[0]);
        assert!(lines[1].ends_with("ERROR bad thing"), "{}", lines[1]);
        assert!(lines[0].starts_with("20"), "{}", lines[0]);
    }

    /// A line's time reads exactly as humantime's RFC 3339 with
    /// microseconds, also when the second changes between lines (the
    /// kept text is redone) and when it goes back (a clock set back).
    #[test]
    fn stamps_read_as_rfc3339_micros() {
        for (secs, nanos) in [
            (1_764_000_000, 0),
            (1_764_000_000, 999_999_999),
            (1_764_000_001, 412_331_000),
            (1_764_000_001, 7_000),
            (1_700_000_000, 123_456_789),
            (0, 1_000),
            (4_102_444_799, 999_999_000),
        ] {
            let at = Duration::new(secs, nanos);
            assert_eq!(
                Stamp(at).to_string(),
                humantime::format_rfc3339_micros(UNIX_EPOCH + at).to_string()
            );
        }
    }

    /// An episode is reported at its first occurrence, then not again
    /// within the interval; its end hands back what went unreported, and
    /// the next occurrence starts a new episode, reported at once.
    #[test]
    fn episodes_report_once_then_count() {
        let hour = Duration::from_secs(3600);
        let episode = Episode::new(hour);
        assert!(!episode.ongoing());
        assert_eq!(episode.occurred(), Some(1));
        assert!(episode.ongoing());
        for _ in 0..5 {
            assert_eq!(episode.occurred(), None);
        }
        assert_eq!(episode.ended(), Some(5));
        assert_eq!(episode.ended(), None, "already over");
        assert_eq!(episode.occurred(), Some(1));
        // With no interval every occurrence is reported, each alone.
        let every = Episode::new(Duration::ZERO);
        assert_eq!(every.occurred(), Some(1));
        assert_eq!(every.occurred(), Some(1));
        assert_eq!(every.ended(), Some(0));
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    /// While the writer cannot keep up (here there is no writer at all),
    /// what waits for it stops growing at MAX_PENDING bytes, and the lines
    /// past that are counted, not kept.
    #[test]
    fn waiting_lines_are_bounded() {
        let (queue, _never_read) = crossbeam_channel::unbounded();
        let writer = ToBatch(Arc::new(BatchWriter {
            pending: Arc::new(Mutex::new(PendingLines::default())),
            queue,
        }));
        let line = "x".repeat(1023);
        let lines = MAX_PENDING / 1024 + 100;
        for _ in 0..lines {
            writer.log(&Record::builder().args(format_args!("{line}")).build());
        }
        let pending = writer.0.pending.lock();
        assert!(pending.text.len() <= MAX_PENDING, "{}", pending.text.len());
        assert_eq!(pending.text.len() / 1024 + pending.dropped as usize, lines);
        assert!(pending.dropped >= 100, "{}", pending.dropped);
    }

    /// A line longer than [`SCRATCH_KEPT`] (a WHATSAT reply) does not leave
    /// its room in the thread's scratch buffer, and the next line is
    /// formatted in an emptied buffer.
    #[test]
    fn scratch_gives_back_a_long_lines_room() {
        with_scratch(|out| out.push_str(&"x".repeat(SCRATCH_KEPT * 4)));
        SCRATCH.with_borrow(|out| assert!(out.capacity() <= SCRATCH_KEPT, "{}", out.capacity()));
        with_scratch(|out| out.push_str("short"));
        with_scratch(|out| {
            assert!(out.is_empty(), "not emptied: {out:?}");
            out.push_str("next");
        });
        SCRATCH.with_borrow(|out| assert_eq!(out, "next"));
    }

    /// Gathered lines reach the file when committed, in the order
    /// gathered, each a whole line with one shared time, after the lines
    /// logged before the commit; nothing is written before it. A line
    /// that needs escaping reads as it would through fern.
    #[test]
    fn gathered_lines_arrive_together_on_commit() {
        let tmp = tempfile::Builder::new()
            .prefix("proxy-herd-gather-")
            .tempdir()
            .unwrap();
        let (log, path) = ServerLog::to_file(tmp.path(), "G", LogFiles::default()).unwrap();
        let mut lines = LogLines::default();
        log.gather_line(&mut lines, &["first", " <- "], "1");
        log.gather_line(&mut lines, &["second", " <- "], "2");
        log.info(format_args!("before the commit"));
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("first"), "written before its commit: {text}");
        log.commit(&mut lines);
        log.gather_line(&mut lines, &[], "third");
        log.gather_line(&mut lines, &["x", " -> "], "AT a\\b\n");
        log.commit(&mut lines);
        log.info(format_args!("x -> {}", Escaped("AT a\\b\n")));
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let got: Vec<(&str, &str)> = text
            .lines()
            .map(|l| l.split_once(" INFO  ").expect(l))
            .collect();
        let said: Vec<&str> = got.iter().map(|(_, said)| *said).collect();
        assert_eq!(
            said,
            [
                "before the commit",
                "first <- 1",
                "second <- 2",
                "third",
                r"x -> AT a\\b\n",
                r"x -> AT a\\b\n"
            ]
        );
        assert_eq!(got[1].0, got[2].0, "one gathering, one time");
    }

    /// Many threads logging at once lose no line, and `flush` returns
    /// only when all of them are in the file.
    #[test]
    fn concurrent_lines_all_written() {
        let tmp = tempfile::Builder::new()
            .prefix("proxy-herd-batch-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let (log, path) = ServerLog::to_file(dir, "Many", LogFiles::default()).unwrap();
        thread::scope(|s| {
            for t in 0..8 {
                let log = log.clone();
                s.spawn(move || {
                    for i in 0..1000 {
                        log.info(format_args!("thread {t} line {i}"));
                    }
                });
            }
        });
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 8000);
        for t in 0..8 {
            assert!(text.contains(&format!("thread {t} line 999\n")));
        }
    }
}
