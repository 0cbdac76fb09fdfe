//! Logs a week can hold, against the real binary: SIGHUP reopens the log
//! (logrotate's rename-then-signal), `--log-max-bytes` rotates it, and a
//! write that fails is counted and reported, never silently dropped.

mod support;

use std::path::Path;

use support::process::{self, addr_of, herd_file, signal, wait_exit};
use support::*;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// After the log is renamed and the server gets SIGHUP, new lines go to a
/// new file of the old name and none to the renamed one; the server goes
/// on serving.
#[test]
fn sighup_reopens_the_log() {
    let dir = temp_dir("sighup");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr = addr_of(&config, "Riley");
    let riley = process::spawn_with("Riley", &config, &dir, &["--no-journal"]);
    let log = dir.join("Riley.log");
    let rotated = dir.join("Riley.log.old");
    assert!(one_shot(addr, "IAMAT before +1+1 1\n").starts_with("AT "));
    wait_until("the first IAMAT to be logged", || {
        read(&log).contains("IAMAT before")
    });
    std::fs::rename(&log, &rotated).unwrap();
    signal(&riley, "-HUP");
    wait_until("a new log to be opened", || {
        read(&log).contains("log reopened after SIGHUP")
    });
    assert!(one_shot(addr, "IAMAT after +1+1 1\n").starts_with("AT "));
    wait_until("the second IAMAT to be logged", || {
        read(&log).contains("IAMAT after")
    });
    let old = read(&rotated);
    assert!(old.contains("IAMAT before"), "{old}");
    assert!(!old.contains("IAMAT after"), "{old}");
    assert!(!read(&log).contains("IAMAT before"));
}

/// With `--log-max-bytes 4K --log-keep 2`, a thousand IAMATs leave the log
/// and exactly two rotated files, none far past the limit, the newest
/// lines in `Riley.log`; SIGTERM still exits with status 0.
#[test]
fn the_log_rotates_past_its_size() {
    let dir = temp_dir("rotate");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr = addr_of(&config, "Riley");
    let args = ["--no-journal", "--log-max-bytes", "4K", "--log-keep", "2"];
    let mut riley = process::spawn_with("Riley", &config, &dir, &args);
    let mut conn = connect(addr);
    for i in 0..1000 {
        use std::io::Write;
        conn.write_all(format!("IAMAT rotating-{i} +1+1 1\n").as_bytes())
            .unwrap();
        read_until(&mut conn, "\n");
    }
    drop(conn);
    signal(&riley, "-TERM");
    let (status, _) = wait_exit(&mut riley);
    assert!(status.success(), "{status}");
    let numbered = |n: usize| dir.join(format!("Riley.log.{n}"));
    assert!(numbered(1).exists() && numbered(2).exists());
    assert!(!numbered(3).exists(), "only two rotated files are kept");
    for n in [1, 2] {
        // A file is rotated after the write that takes it past the limit;
        // one batch of lines can be big, but not a thousand IAMATs' worth.
        let size = std::fs::metadata(numbered(n)).unwrap().len();
        assert!(size < 100_000, "Riley.log.{n} has {size} bytes");
    }
    let everything = [
        read(&numbered(2)),
        read(&numbered(1)),
        read(&dir.join("Riley.log")),
    ];
    let last = everything
        .iter()
        .rposition(|t| t.contains("rotating-999 "))
        .unwrap();
    assert!(last >= 1, "the newest lines are in the newest files");
    assert!(everything.concat().contains("got a stop signal"));
}

/// A log that cannot be written (here it is /dev/full, always "no space
/// left") does not stop the server: clients are still answered, the
/// failure is reported on stderr with a count, and once SIGHUP opens a
/// writable file the log itself says how many lines were lost.
#[test]
fn failed_log_writes_are_counted_and_reported() {
    let dir = temp_dir("full-log");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr = addr_of(&config, "Riley");
    let log = dir.join("Riley.log");
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    let riley = process::spawn_with("Riley", &config, &dir, &["--no-journal"]);
    for i in 0..20 {
        let reply = one_shot(addr, &format!("IAMAT lost-{i} +1+1 1\n"));
        assert!(reply.starts_with("AT "), "{reply}");
    }
    let stderr = dir.join("Riley.stderr");
    wait_until("the failure to be reported", || {
        read(&stderr).contains("cannot write the log")
    });
    let report = read(&stderr);
    assert!(report.contains("No space left on device"), "{report}");
    assert!(report.contains("lines lost so far"), "{report}");

    std::fs::remove_file(&log).unwrap();
    signal(&riley, "-HUP");
    wait_until("a writable log to be opened", || {
        read(&log).contains("log reopened after SIGHUP")
    });
    assert!(one_shot(addr, "IAMAT kept +1+1 1\n").starts_with("AT "));
    wait_until("the recovery to be logged", || {
        read(&log).contains("IAMAT kept")
    });
    let text = read(&log);
    let note = text
        .lines()
        .find(|l| l.contains("log lines could not be written and were lost"))
        .unwrap_or_else(|| panic!("no note of the lost lines in\n{text}"));
    let lost: u64 = note.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Every IAMAT and its reply was a line of its own, and more.
    assert!(lost >= 40, "{note}");
    assert!(read(&stderr).contains("writes work again"));
}
