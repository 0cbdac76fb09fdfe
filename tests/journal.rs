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
    let start = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["Riley", "--config"])
            .arg(&config)
            .arg("--log-dir")
            .arg(&dir);
        process::start("Riley", &config, &dir, cmd)
    };
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
