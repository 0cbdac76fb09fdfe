//! What a stranger can make a long-running server spend has a limit, and
//! hitting it is reported without flooding the log: clients in the store
//! (`--max-clients`), connections on the peer port
//! (`--max-peer-connections`), failed accepts when descriptors run out,
//! and journal lines that replay would not take from a neighbour. Each
//! against the real binary.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::process::{self, herd_file, port_of, BIN};
use support::*;

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// Whether the server at `addr` holds a record for `client`: WHATSAT
/// answers an unknown client with `?`, and a known one with its AT line.
fn knows(addr: SocketAddr, client: &str) -> bool {
    one_shot(addr, &format!("WHATSAT {client} 1 1\n")).starts_with("AT ")
}

/// At `--max-clients`, an IAMAT for a new client gets `?` and known
/// clients keep updating; the refusals of one episode make one log line.
#[test]
fn max_clients_refuses_only_new_clients() {
    let dir = temp_dir("maxclients");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port_of(&config, "Riley")).into();
    let _riley = process::spawn_with("Riley", &config, &dir, &["--max-clients", "3"]);
    for client in ["a", "b", "c"] {
        at_line(&one_shot(addr, &format!("IAMAT {client} +1+1 1\n")));
    }
    for client in ["d", "e", "f"] {
        let line = format!("IAMAT {client} +1+1 1");
        assert_eq!(one_shot(addr, &format!("{line}\n")), format!("? {line}\n"));
    }
    let newer = at_line(&one_shot(addr, "IAMAT a +2+2 2\n"));
    assert!(newer.ends_with(" a +2+2 2"), "{newer}");
    assert!(!knows(addr, "d"));
    wait_until("the refusal to be logged", || {
        log_of(&dir, "Riley").contains("--max-clients")
    });
    let log = log_of(&dir, "Riley");
    let reports = log.matches("(--max-clients)").count();
    assert_eq!(reports, 1, "one line for the episode:\n{log}");
}

/// A peer connection that has sent a valid AT line the server stored is
/// one it admitted. Retries a refused connection, since connections that
/// just closed may still hold their slot for a moment.
fn admitted_peer(peer: SocketAddr, client_addr: SocketAddr, client: &str) -> TcpStream {
    let mut admitted = None;
    wait_until(
        &format!("a peer connection carrying {client} to be admitted"),
        || {
            let Ok(mut conn) = TcpStream::connect(peer) else {
                return false;
            };
            let line = format!("AT Jaquez +0.1 {client} +1+1 1\n");
            if conn.write_all(line.as_bytes()).is_err() {
                return false;
            }
            // Stored only if this connection was served; a refused one is
            // closed before the line is read.
            let deadline = Instant::now() + std::time::Duration::from_secs(1);
            while Instant::now() < deadline {
                if knows(client_addr, client) {
                    admitted = Some(conn);
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            false
        },
    );
    admitted.unwrap()
}

/// `--max-peer-connections 2`: two idle connections to the peer port are
/// held and served, a third is closed at once (end-of-file, nothing
/// read), and once one closes a new one is admitted again. The refusal is
/// logged.
#[test]
fn peer_port_admits_a_bounded_number() {
    let dir = temp_dir("maxpeers");
    let config = herd_file(&dir, &["Riley", "Jaquez"], &[("Riley", "Jaquez")]);
    let client: SocketAddr = ([127, 0, 0, 1], port_of(&config, "Riley")).into();
    let text = std::fs::read_to_string(&config).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let peer: SocketAddr = (
        [127, 0, 0, 1],
        v["servers"]["Riley"]["peer_port"].as_u64().unwrap() as u16,
    )
        .into();
    let _riley = process::spawn_with("Riley", &config, &dir, &["--max-peer-connections", "2"]);
    let first = admitted_peer(peer, client, "p1");
    let _second = admitted_peer(peer, client, "p2");
    let mut third = TcpStream::connect(peer).unwrap();
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 16];
    match third.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the third peer connection was not closed: {other:?}"),
    }
    drop(first);
    let _again = admitted_peer(peer, client, "p3");
    wait_until("the refusal to be logged", || {
        log_of(&dir, "Riley").contains("(--max-peer-connections)")
    });
}

/// With its descriptors used up, a server whose accept fails backs off
/// and logs the failures at most once a second (each line with a count)
/// instead of once per try, and serves again once connections close.
#[test]
fn accept_failures_back_off() {
    let dir = temp_dir("emfile");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port_of(&config, "Riley")).into();
    // A shell lowers the limit, then becomes the server.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n 48 && exec "$0" "$@""#)
        .arg(BIN)
        .args(["Riley", "--config"])
        .arg(&config)
        .arg("--log-dir")
        .arg(&dir);
    let _riley = process::start("Riley", &config, &dir, cmd);
    let began = Instant::now();
    // Far more connections than descriptors: the kernel completes them
    // into the listen queue, and accept fails on each until some close.
    let held: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(held.len() > 60, "only {} connections opened", held.len());
    wait_until("accept failures to be logged", || {
        log_of(&dir, "Riley").contains("accept on the client port failed")
    });
    // The failures go on: wait for the second report, which the once a
    // second rule holds back at least a second after the first.
    wait_until("a second report of the accept failures", || {
        log_of(&dir, "Riley")
            .matches("accept on the client port failed")
            .count()
            >= 2
    });
    let lines = log_of(&dir, "Riley")
        .matches("accept on the client port failed")
        .count();
    let bound = began.elapsed().as_secs() as usize + 2;
    assert!(
        lines <= bound,
        "{lines} failure lines in {:?}, more than one a second",
        began.elapsed()
    );
    drop(held);
    wait_until("the server to serve again", || {
        try_one_shot(addr, "IAMAT back +1+1 1\n").is_some_and(|r| r.starts_with("AT "))
    });
    wait_until("the recovery to be logged", || {
        log_of(&dir, "Riley").contains("accepting on the client port again")
    });
}

/// Replay takes a journal line only as it would take it from a
/// neighbour: a time beyond `--max-future`, a torn line and a line naming
/// no server of the herd are not replayed, and are kept in
/// `<journal>.rejected` rather than lost; the good line is served.
#[test]
fn replay_checks_lines_and_keeps_the_rest_aside() {
    let dir = temp_dir("replay");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port_of(&config, "Riley")).into();
    let good = "AT Riley +0.1 good +1+1 1";
    let future = "AT Riley +0.1 future +1+1 99999999999999999999";
    let stranger = "AT Nobody +0.1 other +1+1 1";
    let torn = "AT Riley +0.1 to";
    std::fs::write(
        dir.join("Riley.journal"),
        format!("{good}\n{future}\n{stranger}\n{torn}"),
    )
    .unwrap();
    let _riley = process::spawn_with("Riley", &config, &dir, &[]);
    assert!(one_shot(addr, "WHATSAT good 1 1\n").starts_with(&format!("{good}\n")));
    assert!(!knows(addr, "future"));
    let aside = std::fs::read_to_string(dir.join("Riley.journal.rejected")).unwrap();
    assert_eq!(aside, format!("{future}\n{stranger}\n{torn}\n"));
    let journal = std::fs::read_to_string(dir.join("Riley.journal")).unwrap();
    assert_eq!(journal, format!("{good}\n"));
    wait_until("the skipped lines to be logged", || {
        log_of(&dir, "Riley").contains("3 line(s) not replayed")
    });
}
