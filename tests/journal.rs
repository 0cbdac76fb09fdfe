//! The journal of a server that runs for a long time stays near the size
//! of its store, and a compaction loses nothing: against the real binary.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use support::process::{self, herd_file, port_of, signal, wait_exit, BIN};
use support::*;

/// Forty thousand updates for twenty clients write several megabytes of
/// journal lines; the server compacts while it runs (and says so in its
/// log), so the file ends far smaller than what was written. Killed with
/// SIGKILL and started again, it still answers every client with its
/// newest acknowledged update.
#[test]
fn journal_compacts_while_running_and_loses_nothing() {
    let dir = temp_dir("compact");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port_of(&config, "Riley")).into();
    let start = || process::spawn("Riley", &config, &dir);
    let mut riley = start();
    let mut written = 0usize;
    let mut newest = std::collections::BTreeMap::new();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let conn = TcpStream::connect(addr).unwrap();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut writer = conn;
                    let mut last = Vec::new();
                    let mut bytes = 0;
                    for i in 0..10_000 {
                        let client = format!("compaction-test-client-{t}-{}", i % 5);
                        writer
                            .write_all(format!("IAMAT {client} +1+1 {}\n", i + 1).as_bytes())
                            .unwrap();
                        let mut reply = String::new();
                        reader.read_line(&mut reply).unwrap();
                        bytes += reply.len();
                        if i >= 10_000 - 5 {
                            last.push((client, at_line(&reply)));
                        }
                    }
                    (bytes, last)
                })
            })
            .collect();
        for w in workers {
            let (bytes, last) = w.join().unwrap();
            written += bytes;
            newest.extend(last);
        }
    });
    assert_eq!(newest.len(), 20);
    wait_until("a compaction to be logged", || {
        std::fs::read_to_string(dir.join("Riley.log"))
            .unwrap_or_default()
            .contains("journal compacted")
    });
    let size = std::fs::metadata(dir.join("Riley.journal")).unwrap().len() as usize;
    eprintln!("journal: {written} bytes of AT lines written, {size} bytes on disk");
    assert!(
        size <= proxy_herd::journal::COMPACT_MIN_BYTES as usize * 2,
        "{size} bytes after {written} written"
    );
    assert!(size * 2 < written, "{size} bytes after {written} written");
    signal(&riley, "-KILL");
    wait_exit(&mut riley);
    let _riley = start();
    for (client, line) in &newest {
        let reply = one_shot(addr, &format!("WHATSAT {client} 1 1\n"));
        assert!(reply.starts_with(&format!("{line}\n")), "{client}: {reply}");
    }
}

/// An IAMAT that is not newer than the stored record is answered at once,
/// but the stored record may not be journaled yet (its own thread is
/// between the store and the journal, or it waits in a neighbour's burst).
/// Here a newer record is put straight into the store, as such a thread
/// would have it, and an older IAMAT's reply must not go out before that
/// newer record is in the journal.
#[test]
fn a_reply_waits_for_the_newest_record_to_be_journaled() {
    use proxy_herd::protocol::{parse_peer_line, PeerCommand};

    let dir = temp_dir("newest");
    let mut herd = TestHerd::stopped(&["Riley"], &[], no_places());
    herd.journal_dir = Some(dir.to_path_buf());
    herd.restart("Riley");
    let newer = "AT Riley +0.1 kiwi +5+5 200";
    let PeerCommand::At(record) = parse_peer_line(newer, |_| true) else {
        panic!("not an AT line");
    };
    assert!(herd.server("Riley").store().offer(record).is_some());
    let journal = dir.join("Riley.journal");
    assert!(!std::fs::read_to_string(&journal).unwrap().contains(newer));
    at_line(&one_shot(herd.addr("Riley"), "IAMAT kiwi +1+1 100\n"));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains(&format!("{newer}\n")), "{text}");
}

/// A journal that cannot be written (here a file size limit, as a full
/// disk would do) gets no AT reply: the connection is closed instead. The
/// failure is reported on stderr once for the episode, with a count.
/// Killed and restarted with room, the server has every update it
/// acknowledged, and the part of a line the failed write left is set
/// aside by replay.
#[test]
fn no_acknowledgement_without_the_journal() {
    let dir = temp_dir("full");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port_of(&config, "Riley")).into();
    // A shell limits the size of every file the server writes (in 512-byte
    // blocks) and ignores the signal the limit sends, so writes past it fail
    // with EFBIG, as they would with ENOSPC on a full disk.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 24 && exec "$0" "$@""#)
        .arg(BIN)
        .args(["Riley", "--config"])
        .arg(&config)
        .arg("--log-dir")
        .arg(&dir)
        .arg("--journal")
        .arg(dir.join("Riley.journal"));
    let mut riley = process::start("Riley", &config, &dir, cmd);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..1_000 {
        let line = format!("IAMAT full-{i} +1+1 {}\n", i + 1);
        match try_one_shot(addr, &line) {
            Some(reply) if reply.starts_with("AT ") => acknowledged.push(at_line(&reply)),
            Some(reply) => {
                assert_eq!(reply, "", "no AT line, and no other reply either");
                refused += 1;
            }
            None => panic!("the server did not take the connection: has it died?"),
        }
    }
    eprintln!("{} acknowledged, {refused} refused", acknowledged.len());
    assert!(refused > 0, "the journal never filled up");
    assert!(!acknowledged.is_empty());
    let stderr = std::fs::read_to_string(dir.join("Riley.stderr")).unwrap();
    assert_eq!(
        stderr.matches("updates are not acknowledged").count(),
        1,
        "one report for the episode:\n{stderr}"
    );
    signal(&riley, "-KILL");
    wait_exit(&mut riley);
    let _riley = process::spawn("Riley", &config, &dir);
    for line in &acknowledged {
        let client = line.split(' ').nth(3).unwrap();
        let reply = one_shot(addr, &format!("WHATSAT {client} 1 1\n"));
        assert!(reply.starts_with(&format!("{line}\n")), "{client}: {reply}");
    }
    // The write that hit the limit left part of a line, set aside.
    let aside = std::fs::read_to_string(dir.join("Riley.journal.rejected")).unwrap();
    assert_eq!(aside.lines().count(), 1, "{aside}");
    assert!(aside.starts_with("AT Riley"), "{aside}");
}
