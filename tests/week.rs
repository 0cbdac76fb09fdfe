//! A week of a server's life, compressed into half a minute: updates to
//! a small set of clients at full speed, so the journal and the log are
//! written many times over; a logrotate-style rename and SIGHUP; a disk
//! that fills up and frees again; and `kill -9` with restarts. Then:
//!
//! - the journal stays near its live set (it was written many times its
//!   size), and the log within `--log-max-bytes` times the files kept;
//! - while the disk was full, updates got no AT reply (the server hung
//!   up) and the failure was reported on stderr, once per episode; when
//!   space came back the server carried on by itself;
//! - the server's peak RSS stayed small;
//! - every acknowledged update is there after the last `kill -9`: each
//!   client's record is at least as new as the newest AT reply it got.
//!
//! The server's log and journal live on a small tmpfs, so the disk can
//! really be filled; mounting one needs root. Like the partition test it
//! runs under its own harness (`support::own_harness`): where it cannot
//! mount, it says so loudly and reports "1 not run", and
//! `PROXY_HERD_REQUIRE_WEEK=1` (set by `.ci/run`) makes that a failure.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::own_harness::{self, Outcome};
use support::process::{self, addr_of, herd_file, signal, Proc, BIN};
use support::temp_dir;

const NAME: &str = "week";
/// Clients the load updates, over and over.
const CLIENTS: usize = 40;
/// Connections sending updates at once.
const WORKERS: usize = 4;
/// `--log-max-bytes` and `--log-keep` of the server.
const LOG_MAX: u64 = 256 * 1024;
const LOG_KEEP: usize = 2;
/// Size of the tmpfs the log and journal live on.
const DISK: &str = "16m";
/// How long any one gate of the scenario may take before the test fails
/// (300,000 updates take about 15 s here, in a debug build on 2 cores).
const GATE: Duration = Duration::from_secs(120);
/// Highest peak RSS accepted for the server (a debug build).
const MAX_RSS_KIB: u64 = 64 * 1024;

fn main() -> ExitCode {
    own_harness::main(
        NAME,
        "PROXY_HERD_REQUIRE_WEEK",
        "needs root to mount a tmpfs",
        run,
    )
}

/// The tmpfs of this run, unmounted when dropped (after the server,
/// declared after it, is killed).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(disk: &Path) -> Result<Mounted, String> {
    std::fs::create_dir_all(disk).map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"])
        .arg(disk)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(Mounted(disk.to_path_buf()))
}

/// What the load has seen, shared by its threads and the scenario.
#[derive(Default)]
struct Seen {
    /// AT replies received.
    acked: AtomicU64,
    /// Updates sent that got no AT reply (the connection closed first).
    unanswered: AtomicU64,
    /// Bytes of AT lines acknowledged: what the journal was sent.
    bytes: AtomicU64,
    /// Each client's newest acknowledged AT line, by client time.
    newest: Mutex<HashMap<String, (u64, String)>>,
    stop: AtomicBool,
    /// Client times: one counter, so every update is newer than the last.
    clock: AtomicU64,
}

/// One connection's worth of load: sends IAMATs one at a time and
/// records each AT reply; a closed connection (a hang-up, a killed
/// server) counts the update as unanswered, and it connects again.
fn worker(addr: SocketAddr, seen: &Seen, id: usize) {
    let mut n = id;
    while !seen.stop.load(Ordering::Relaxed) {
        let Ok(conn) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut writer = conn;
        while !seen.stop.load(Ordering::Relaxed) {
            n += WORKERS;
            let client = format!("week-{}", n % CLIENTS);
            let time = seen.clock.fetch_add(1, Ordering::Relaxed) + 1;
            let line = format!("IAMAT {client} +34.068930-118.445127 {time}\n");
            let mut reply = String::new();
            let answered = writer.write_all(line.as_bytes()).is_ok()
                && reader.read_line(&mut reply).is_ok_and(|n| n > 0);
            if !answered {
                seen.unanswered.fetch_add(1, Ordering::Relaxed);
                break;
            }
            assert!(reply.starts_with("AT "), "{reply:?} to {line:?}");
            seen.acked.fetch_add(1, Ordering::Relaxed);
            seen.bytes.fetch_add(reply.len() as u64, Ordering::Relaxed);
            let mut newest = seen.newest.lock().unwrap();
            let entry = newest.entry(client).or_default();
            if time > entry.0 {
                *entry = (time, reply.trim_end().to_string());
            }
        }
    }
}

/// Waits until `done` holds, or fails after [`GATE`].
fn gate(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > GATE {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Waits until `more` more updates have been acknowledged.
fn acks(seen: &Seen, more: u64, what: &str) -> Result<(), String> {
    let target = seen.acked.load(Ordering::Relaxed) + more;
    gate(what, || seen.acked.load(Ordering::Relaxed) >= target)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The process's peak resident set (VmHWM) in KiB.
fn peak_rss_kib(proc: &Proc) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", proc.0.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Starts the server with its log and journal on `disk` and its stderr in
/// `dir/Riley.stderr` (earlier runs' in `dir/earlier.stderr`).
fn start(config: &Path, dir: &Path, disk: &Path) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["Riley", "--config"])
        .arg(config)
        .arg("--log-dir")
        .arg(disk)
        .args(["--log-max-bytes", &LOG_MAX.to_string()])
        .args(["--log-keep", &LOG_KEEP.to_string()])
        .env_remove("GOOGLE_PLACES_API_KEY");
    // `start` begins `Riley.stderr` anew: keep what earlier runs said.
    let said = stderr_of(dir);
    let mut earlier = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("earlier.stderr"))
        .unwrap();
    earlier.write_all(said.as_bytes()).unwrap();
    process::start("Riley", config, dir, cmd)
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("Riley.stderr")).unwrap_or_default()
}

fn run() -> Outcome {
    let dir = temp_dir("week");
    let disk = dir.join("disk");
    let mounted = match mount(&disk) {
        Ok(mounted) => mounted,
        Err(why) => return Outcome::NotRun(format!("cannot mount a tmpfs: {why}")),
    };
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr = addr_of(&config, "Riley");
    let seen = Seen {
        clock: AtomicU64::new(1_000_000),
        ..Seen::default()
    };
    let result = std::thread::scope(|s| {
        let mut server = start(&config, &dir, &disk);
        for id in 0..WORKERS {
            let seen = &seen;
            s.spawn(move || worker(addr, seen, id));
        }
        let outcome = scenario(&seen, &mut server, &config, &dir, &disk);
        seen.stop.store(true, Ordering::Relaxed);
        outcome
    });
    drop(mounted);
    match result {
        Ok(()) => {
            drop(dir);
            Outcome::Passed
        }
        Err(why) => {
            let kept = dir.keep();
            Outcome::Failed(format!("{why} (files kept in {})", kept.display()))
        }
    }
}

fn scenario(
    seen: &Seen,
    server: &mut Proc,
    config: &Path,
    dir: &Path,
    disk: &Path,
) -> Result<(), String> {
    let journal = disk.join("Riley.journal");
    let log = disk.join("Riley.log");
    let began = Instant::now();
    let mut peak = 0;

    // 1. Many times the journal's compaction threshold, for 40 clients.
    acks(seen, 300_000, "300,000 updates")?;
    let journal_size = size(&journal);
    let written = seen.bytes.load(Ordering::Relaxed);
    println!(
        "{NAME}: {} updates, {written} bytes of AT lines journaled; journal now {journal_size} bytes",
        seen.acked.load(Ordering::Relaxed)
    );
    if journal_size > 3 * 1024 * 1024 || written < 4 * journal_size {
        return Err(format!(
            "journal of {journal_size} bytes after {written} written"
        ));
    }

    // 2. logrotate's way: rename, then SIGHUP.
    // The server's own rotation (--log-max-bytes) may have just moved
    // Riley.log aside: until its next line it has no file of that name.
    // So wait until there is one to rename, as a logrotate run that
    // found none would try again later.
    let renamed = disk.join("Riley.log.renamed");
    gate("Riley.log to exist and be renamed", || {
        std::fs::rename(&log, &renamed).is_ok()
    })?;
    signal(server, "-HUP");
    gate("the log to be reopened after SIGHUP", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("log reopened after SIGHUP"))
    })?;
    std::fs::remove_file(&renamed).map_err(|e| e.to_string())?;

    // 3. The disk fills up.
    let unanswered = seen.unanswered.load(Ordering::Relaxed);
    let filler = disk.join("filler");
    let mut file = std::fs::File::create(&filler).map_err(|e| e.to_string())?;
    let chunk = vec![b'x'; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    gate("the journal failure to be reported", || {
        stderr_of(dir).contains("updates are not acknowledged until it can be written")
    })?;
    gate("updates to go unanswered", || {
        seen.unanswered.load(Ordering::Relaxed) >= unanswered + 20
    })?;
    let during = seen.acked.load(Ordering::Relaxed);
    gate("more updates to go unanswered", || {
        seen.unanswered.load(Ordering::Relaxed) >= unanswered + 200
    })?;
    let acked_while_full = seen.acked.load(Ordering::Relaxed) - during;
    let reports = stderr_of(dir)
        .matches("append(s) failed since the last report")
        .count();
    println!(
        "{NAME}: disk full: {} updates unanswered, {acked_while_full} acknowledged meanwhile, {reports} report(s) on stderr",
        seen.unanswered.load(Ordering::Relaxed) - unanswered
    );
    if acked_while_full > 0 {
        return Err(format!(
            "{acked_while_full} updates acknowledged with the disk full"
        ));
    }
    drop(file);
    std::fs::remove_file(&filler).map_err(|e| e.to_string())?;
    acks(
        seen,
        5_000,
        "updates to be acknowledged again after the disk freed",
    )?;
    let text = stderr_of(dir);
    if !text.contains("appends work again") || !text.contains("writes work again") {
        return Err(format!("no recovery on stderr:\n{text}"));
    }

    // 4. kill -9 and restarts, under load.
    for round in 0..3 {
        acks(seen, 50_000, "updates before a kill")?;
        peak = peak.max(peak_rss_kib(server));
        signal(server, "-KILL");
        let _ = server.0.wait();
        *server = start(config, dir, disk);
        acks(seen, 1_000, "updates after a restart")?;
        println!("{NAME}: kill -9 and restart {} done", round + 1);
    }
    acks(seen, 300_000, "the last stretch of updates")?;
    peak = peak.max(peak_rss_kib(server));

    // 5. Stop the load, kill once more, and look.
    seen.stop.store(true, Ordering::Relaxed);
    let journal_size = size(&journal);
    signal(server, "-KILL");
    let _ = server.0.wait();
    let logs: Vec<(String, u64)> = std::fs::read_dir(disk)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                size(&e.path()),
            )
        })
        .filter(|(name, _)| name.starts_with("Riley.log"))
        .collect();
    *server = start(config, dir, disk);
    let newest = seen.newest.lock().unwrap().clone();
    let mut behind = Vec::new();
    for (client, (time, line)) in &newest {
        let reply = support::one_shot(
            process::addr_of(config, "Riley"),
            &format!("WHATSAT {client} 1 1\n"),
        );
        let stored = reply.lines().next().unwrap_or("");
        let stored_time: u64 = stored
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if stored_time < *time || (stored_time == *time && stored != line) {
            behind.push(format!(
                "{client}: acknowledged {line:?}, stored {stored:?}"
            ));
        }
    }
    let total = seen.acked.load(Ordering::Relaxed);
    println!(
        "{NAME}: {total} updates acknowledged in {:.1} s, {} bytes of AT lines; journal {journal_size} bytes before the last kill; logs {logs:?}; peak RSS {peak} KiB; {} of {} clients checked behind",
        began.elapsed().as_secs_f64(),
        seen.bytes.load(Ordering::Relaxed),
        behind.len(),
        newest.len()
    );
    if newest.len() != CLIENTS {
        return Err(format!("only {} clients acknowledged", newest.len()));
    }
    if !behind.is_empty() {
        return Err(format!("acknowledged updates lost: {behind:?}"));
    }
    if journal_size > 3 * 1024 * 1024 {
        return Err(format!("journal of {journal_size} bytes"));
    }
    if logs.len() > LOG_KEEP + 1 || logs.iter().any(|(_, bytes)| *bytes > 4 * LOG_MAX) {
        return Err(format!("logs not bounded: {logs:?}"));
    }
    if peak == 0 || peak > MAX_RSS_KIB {
        return Err(format!("peak RSS {peak} KiB"));
    }
    for leftover in ["Riley.journal.tmp", "Riley.journal.compact"] {
        if disk.join(leftover).exists() {
            return Err(format!("{leftover} left behind"));
        }
    }
    Ok(())
}
