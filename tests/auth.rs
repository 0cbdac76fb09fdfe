//! The herd secret on real servers: proven links flood as usual, and an
//! unproven connection to a peer port changes nothing.

mod support;

use std::io::{BufRead, BufReader, Write};

use proxy_herd::auth::{self, HerdSecret};
use support::*;

fn secret(text: &str) -> HerdSecret {
    HerdSecret::new(text.as_bytes()).unwrap()
}

/// Starts the three servers A - B - C, each with its own secret.
fn herd_with(secrets: [&str; 3], log_dir: Option<std::path::PathBuf>) -> TestHerd {
    let names = ["A", "B", "C"];
    let mut herd = TestHerd::stopped(&names, &[("A", "B"), ("B", "C")], no_places());
    herd.log_dir = log_dir;
    for (name, s) in names.iter().zip(secrets) {
        herd.secret = Some(secret(s));
        herd.restart(name);
    }
    herd
}

/// With the same secret everywhere, links prove it and updates flood to
/// the far end as without a secret.
#[test]
fn proven_links_flood() {
    let herd = herd_with(["shared", "shared", "shared"], None);
    let line = at_line(&one_shot(herd.addr("A"), "IAMAT k +1+1 1\n"));
    herd.wait_converged("k", &line);
}

/// A connection to the peer port that does not prove the secret gets the
/// challenge, then is closed, and the AT line it sent changes nothing;
/// the log says so.
#[test]
fn unproven_connection_changes_nothing() {
    let dir = temp_dir("auth");
    let mut herd = herd_with(["s", "s", "s"], Some(dir.to_path_buf()));
    let reply = one_shot(herd.peer_addr("B"), "AT A +0.1 spoofed +1+1 1\n");
    let challenge = reply.strip_prefix("CHALLENGE ").expect("a challenge first");
    assert_eq!(challenge.trim_end().len(), 32, "{reply}");
    assert_eq!(
        reply.lines().count(),
        1,
        "nothing after the challenge: {reply}"
    );
    assert!(herd.server("B").store().get("spoofed").is_none());
    herd.stop("B");
    let log = std::fs::read_to_string(dir.join("B.log")).unwrap();
    assert!(log.contains("unproven link"), "{log}");
}

/// A connection that gets the challenge and then says nothing (holding a
/// peer-port slot and its thread) is closed by the server once
/// HANDSHAKE_TIMEOUT passes, not kept for ever.
#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    use std::io::{BufRead, BufReader, Read};
    let herd = herd_with(["s", "s", "s"], None);
    let conn = std::net::TcpStream::connect(herd.peer_addr("B")).unwrap();
    // Longer than the server's limit: the close must come from the server.
    conn.set_read_timeout(Some(proxy_herd::auth::HANDSHAKE_TIMEOUT * 4))
        .unwrap();
    let mut reader = BufReader::new(conn);
    let mut challenge = String::new();
    reader.read_line(&mut challenge).unwrap();
    assert!(challenge.starts_with("CHALLENGE "), "{challenge}");
    let mut rest = Vec::new();
    let read = reader.read_to_end(&mut rest);
    assert!(read.is_ok(), "not closed by the server: {read:?}");
    assert!(rest.is_empty(), "{rest:?}");
}

/// A client that answers the challenge correctly (as a neighbour's link
/// does) has its AT lines accepted.
#[test]
fn correct_proof_is_accepted() {
    let herd = herd_with(["s", "s", "s"], None);
    let mut stream = connect(herd.peer_addr("B"));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let challenge = auth::parse_challenge(&line).unwrap();
    let proof = secret("s").proof(challenge, "A");
    stream
        .write_all(auth::proof_line("A", &proof).as_bytes())
        .unwrap();
    stream.write_all(b"AT A +0.1 honest +1+1 1\n").unwrap();
    // B stores it and floods it on to C (not back to A, which made it).
    wait_until("B and C to store the AT", || {
        ["B", "C"].iter().all(|n| {
            herd.server(n)
                .store()
                .get("honest")
                .is_some_and(|r| r.line == "AT A +0.1 honest +1+1 1")
        })
    });
}

/// A server with the wrong secret cannot get its updates into the herd,
/// while servers that share the right one keep flooding to each other.
#[test]
fn wrong_secret_is_kept_out() {
    let herd = herd_with(["wrong", "right", "right"], None);
    let outside = at_line(&one_shot(herd.addr("A"), "IAMAT out +1+1 1\n"));
    let inside = at_line(&one_shot(herd.addr("B"), "IAMAT in +1+1 1\n"));
    wait_until("C to hear from B", || {
        herd.server("C")
            .store()
            .get("in")
            .is_some_and(|r| r.line == inside)
    });
    // B's link to C has carried a later update, and A's never got in.
    assert!(herd.server("B").store().get("out").is_none(), "{outside}");
    assert!(herd.server("C").store().get("out").is_none());
}
