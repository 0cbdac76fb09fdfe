//! Client-facing edge cases of the protocol (src/protocol.md#the-protocol), each sent as raw bytes
//! to a real server and checked against the exact reply bytes.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use support::*;

fn single() -> TestHerd {
    TestHerd::start(&["Riley"], &[], no_places())
}

/// The IAMAT reply copies the client's fields byte for byte and carries a
/// signed difference with exactly nine decimals.
#[test]
fn iamat_reply_shape() {
    let herd = single();
    let reply = one_shot(
        herd.addr("Riley"),
        "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n",
    );
    let fields: Vec<&str> = reply.trim_end().split(' ').collect();
    assert_eq!(fields.len(), 6, "{reply}");
    assert_eq!(fields[0..2], ["AT", "Riley"]);
    let delta = fields[2];
    assert!(delta.starts_with('+'), "{delta}");
    let (_, decimals) = delta.split_once('.').unwrap();
    assert_eq!(decimals.len(), 9, "{delta}");
    assert_eq!(
        fields[3..],
        [
            "kiwi.cs.ucla.edu",
            "+34.068930-118.445127",
            "1621464827.959498503"
        ]
    );
    // A client time an hour in the future gives a negative difference.
    let ahead = format!("IAMAT k +1+1 {:.6}\n", now_secs() + 3600.0);
    let reply = one_shot(herd.addr("Riley"), &ahead);
    assert!(reply.starts_with("AT Riley -"), "{reply}");
}

/// The difference is computed exactly: a client time with nanosecond
/// digits yields a difference whose nanoseconds complement them, which a
/// binary float could not do.
#[test]
fn iamat_difference_is_exact() {
    let herd = single();
    let reply = one_shot(herd.addr("Riley"), "IAMAT k +1+1 1000000000.123456789\n");
    let delta = reply.split(' ').nth(2).unwrap();
    let (secs, frac) = delta[1..].split_once('.').unwrap();
    let diff_ns: u128 =
        secs.parse::<u128>().unwrap() * 1_000_000_000 + frac.parse::<u128>().unwrap();
    // receipt = client + diff must be a plausible "now", to the nanosecond.
    let receipt = 1_000_000_000_123_456_789u128 + diff_ns;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(receipt <= now && now - receipt < 5_000_000_000, "{reply}");
}

/// Several lines in one write each get their reply, in order, and blank
/// lines get none.
#[test]
fn many_lines_in_one_write() {
    let herd = single();
    let reply = one_shot(
        herd.addr("Riley"),
        "IAMAT a +1+1 1\n\n   \nBAD LINE\nIAMAT b +2+2 2\n",
    );
    let lines: Vec<&str> = reply.lines().collect();
    assert_eq!(lines.len(), 3, "{reply}");
    assert!(lines[0].starts_with("AT Riley ") && lines[0].ends_with(" a +1+1 1"));
    assert_eq!(lines[1], "? BAD LINE");
    assert!(lines[2].ends_with(" b +2+2 2"));
}

/// One line sent over several writes, with pauses, is one message.
#[test]
fn one_line_over_many_writes() {
    let herd = single();
    let mut stream = connect(herd.addr("Riley"));
    for piece in ["IAM", "AT fr", "ag +1", "+1 5", "\n"] {
        stream.write_all(piece.as_bytes()).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = read_until(&mut stream, "\n");
    assert!(
        reply.starts_with("AT Riley ") && reply.ends_with(" frag +1+1 5\n"),
        "{reply}"
    );
}

/// A message followed by a half-close, with or without its final `\n`,
/// gets its whole reply and then end-of-file.
#[test]
fn half_close_with_and_without_newline() {
    let herd = single();
    for message in [
        "IAMAT h +1+1 7\n",
        "IAMAT h +1+1 7",
        "  IAMAT h +1+1 7 \r\n",
    ] {
        let reply = one_shot(herd.addr("Riley"), message);
        assert!(reply.ends_with(" h +1+1 7\n"), "{message:?}: {reply:?}");
        assert_eq!(reply.matches('\n').count(), 1);
    }
    assert_eq!(one_shot(herd.addr("Riley"), "NOPE"), "? NOPE\n");
    // A WHATSAT half-closed without newline gets the whole reply too.
    let reply = one_shot(herd.addr("Riley"), "WHATSAT h 1 1");
    assert!(reply.ends_with("}\n\n"), "{reply:?}");
}

/// Invalid lines of every kind get `? ` and the line, and the connection
/// stays open for the next line.
#[test]
fn invalid_lines_get_question_mark() {
    let herd = single();
    let mut stream = connect(herd.addr("Riley"));
    let bad = [
        "HELLO",
        "IAMAT",
        "IAMAT kiwi +34.06-118.44",
        "IAMAT kiwi +34.06-118.44 1 extra",
        "IAMAT kiwi 34.06-118.44 1",
        "IAMAT kiwi +91-118.44 1",
        "IAMAT kiwi +34.06-180.5 1",
        "IAMAT kiwi +34.06-118.44 1e9",
        "IAMAT kiwi +34.06-118.44 nan",
        "IAMAT kiwi +34.06-118.44 -5",
        "WHATSAT kiwi 10 5",
        "WHATSAT nobody 10 5",
        "WHATSAT kiwi 0 5",
        "WHATSAT kiwi 51 5",
        "WHATSAT kiwi 10 21",
        "WHATSAT kiwi 10 0",
        "AT Riley +0.1 kiwi +1+1 1",
        "iamat kiwi +1+1 1",
    ];
    for line in bad {
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        assert_eq!(read_until(&mut stream, "\n"), format!("? {line}\n"));
    }
    // Still open and working.
    stream.write_all(b"IAMAT kiwi +1+1 1\n").unwrap();
    assert!(read_until(&mut stream, "\n").starts_with("AT Riley "));
    // An AT line on the client port changed nothing.
    assert_eq!(herd.server("Riley").store().len(), 1);
}

/// A line that is not UTF-8 is invalid and echoed lossily.
#[test]
fn non_utf8_is_invalid() {
    let herd = single();
    let reply = one_shot_bytes(herd.addr("Riley"), b"IAMAT k\xff +1+1 1\n");
    assert_eq!(reply, "? IAMAT k\u{fffd} +1+1 1\n");
    assert!(herd.server("Riley").store().is_empty());
}

/// The server sends nothing unasked: no greeting, and nothing for a
/// blank line.
#[test]
fn no_greeting_no_reply_to_blank() {
    let herd = single();
    assert_eq!(one_shot(herd.addr("Riley"), ""), "");
    assert_eq!(one_shot(herd.addr("Riley"), " \t\r\n\n\x0b\x0c\n"), "");
}

/// A line past the limit closes that connection without an echo; other
/// connections carry on.
#[test]
fn overlong_line_closes_only_that_connection() {
    let herd = single();
    let mut other = connect(herd.addr("Riley"));
    let mut long = connect(herd.addr("Riley"));
    let huge = vec![b'x'; 200 * 1024];
    // The server may close while we are still writing; that is fine.
    let _ = long.write_all(&huge);
    let mut got = Vec::new();
    let _ = long.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "no echo of a long line: {} bytes",
        got.len()
    );
    other.write_all(b"IAMAT still +1+1 1\n").unwrap();
    assert!(read_until(&mut other, "\n").ends_with(" still +1+1 1\n"));
}

/// On the peer port, a valid AT is stored with no reply, and anything
/// else gets `? ` and the line.
#[test]
fn peer_port_lines() {
    let herd = TestHerd::start(&["Riley", "Jaquez"], &[("Riley", "Jaquez")], no_places());
    let peer = herd.peer_addr("Riley");
    let good = "AT Jaquez +0.5 kiwi +1+1 10";
    let bad = [
        "AT Nobody +0.5 kiwi +1+1 10",
        "AT Jaquez +0.5 kiwi +1+1",
        "AT Jaquez +0.5 kiwi +100+1 10",
        "AT Jaquez +0.5 kiwi +1+1 x",
        "AT Jaquez 0.5 kiwi +1+1 10",
        "IAMAT kiwi +1+1 10",
        "WHATSAT kiwi 1 1",
    ];
    let mut message = format!("{good}\n");
    for line in bad {
        message.push_str(line);
        message.push('\n');
    }
    let reply = one_shot(peer, &message);
    let expected: String = bad.iter().map(|l| format!("? {l}\n")).collect();
    assert_eq!(reply, expected);
    // Stored (it is not flooded back to Jaquez, which made it).
    wait_until("Riley to store the AT", || {
        herd.server("Riley")
            .store()
            .get("kiwi")
            .is_some_and(|r| r.line == good)
    });
}

/// Client ids keep any non-white-space bytes, and every white space src/protocol.md#lines names
/// separates fields.
#[test]
fn white_space_and_odd_ids() {
    let herd = single();
    let reply = one_shot(
        herd.addr("Riley"),
        "\x0bIAMAT\tsp\u{e9}cial/id:1\x0c+1.5-2.5\r  42\n",
    );
    assert!(
        reply.ends_with(" sp\u{e9}cial/id:1 +1.5-2.5 42\n"),
        "{reply:?}"
    );
}

/// A client that sends and never reads does not stop the server from
/// serving others (its replies pile up in its own socket only).
#[test]
fn client_that_never_reads() {
    let herd = single();
    let mut hog = connect(herd.addr("Riley"));
    let many = "IAMAT hog +1+1 1\n".repeat(2000);
    hog.write_all(many.as_bytes()).unwrap();
    let reply = one_shot(herd.addr("Riley"), "IAMAT other +1+1 1\n");
    assert!(reply.ends_with(" other +1+1 1\n"));
    hog.shutdown(Shutdown::Both).unwrap();
}
