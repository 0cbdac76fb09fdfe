//! The herd as a whole: flooding, convergence, catching up after a
//! restart, and many clients at once, against real servers on loopback.

mod support;

use std::thread;

use support::*;

/// An IAMAT sent to Riley reaches every server of the five-server herd,
/// two hops away included, and every server answers WHATSAT with the
/// identical AT line Riley made.
#[test]
fn flood_reaches_every_server() {
    let herd = TestHerd::five(no_places());
    let reply = one_shot(
        herd.addr("Riley"),
        "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n",
    );
    let line = at_line(&reply);
    assert!(line.starts_with("AT Riley +"), "{line}");
    assert!(line.ends_with(" kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503"));
    herd.wait_converged("kiwi.cs.ucla.edu", &line);
    for name in FIVE {
        let reply = one_shot(herd.addr(name), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
        assert!(reply.starts_with(&format!("{line}\n{{")), "{name}: {reply}");
    }
}

/// A flood ends: after an update has spread, no server stores it again
/// (each server's store holds one record, and a repeated IAMAT with the
/// same time changes nothing and is not flooded).
#[test]
fn flood_ends_and_old_updates_change_nothing() {
    let herd = TestHerd::five(no_places());
    let first = at_line(&one_shot(herd.addr("Juzang"), "IAMAT c +1+2 100\n"));
    herd.wait_converged("c", &first);
    // An older update gets its reply but changes nothing anywhere.
    let older = at_line(&one_shot(herd.addr("Campbell"), "IAMAT c +5+5 99\n"));
    assert!(older.starts_with("AT Campbell ") && older.ends_with(" c +5+5 99"));
    let newer = at_line(&one_shot(herd.addr("Campbell"), "IAMAT c +3+4 101\n"));
    herd.wait_converged("c", &newer);
    for name in FIVE {
        assert_eq!(herd.server(name).store().len(), 1);
    }
}

/// Two IAMATs for one client with the same time, sent to servers at
/// opposite ends of the herd at once, end with every server holding the
/// same record: the byte-wise greater AT line.
#[test]
fn same_time_updates_converge() {
    let herd = TestHerd::five(no_places());
    for round in 0..20 {
        let client = format!("tie{round}");
        let (riley, bernard) = thread::scope(|s| {
            let a = s.spawn(|| one_shot(herd.addr("Riley"), &format!("IAMAT {client} +1+1 500\n")));
            let b =
                s.spawn(|| one_shot(herd.addr("Bernard"), &format!("IAMAT {client} +2+2 500\n")));
            (at_line(&a.join().unwrap()), at_line(&b.join().unwrap()))
        });
        let winner = riley.clone().max(bernard.clone());
        // Riley's line starts "AT Riley", Bernard's "AT Bernard": Riley wins.
        assert_eq!(winner, riley);
        herd.wait_converged(&client, &winner);
    }
}

/// A server that was down catches up when it comes back: its neighbours'
/// links resync every record they hold, including updates made while it
/// was away and updates for clients it never saw.
#[test]
fn restarted_server_catches_up() {
    let mut herd = TestHerd::five(no_places());
    let before = at_line(&one_shot(herd.addr("Riley"), "IAMAT old +1+1 1\n"));
    herd.wait_converged("old", &before);
    herd.stop("Jaquez");
    // While Jaquez is down, updates still flow around it (Riley - Juzang -
    // Bernard), and Jaquez's client port refuses connections.
    assert!(std::net::TcpStream::connect(herd.addr("Jaquez")).is_err());
    let during = at_line(&one_shot(herd.addr("Riley"), "IAMAT new +2+2 2\n"));
    let moved = at_line(&one_shot(herd.addr("Bernard"), "IAMAT old +3+3 3\n"));
    herd.wait_converged("new", &during);
    herd.restart("Jaquez");
    herd.wait_converged("new", &during);
    herd.wait_converged("old", &moved);
    let reply = one_shot(herd.addr("Jaquez"), "WHATSAT new 1 1\n");
    assert!(reply.starts_with(&format!("{during}\n")), "{reply}");
}

/// A cut-off part of the herd catches up after the cut heals: with Juzang
/// and Jaquez down, Riley is alone; updates on both sides meet when they
/// come back.
#[test]
fn partition_heals() {
    let mut herd = TestHerd::five(no_places());
    herd.stop("Jaquez");
    herd.stop("Juzang");
    let west = at_line(&one_shot(herd.addr("Riley"), "IAMAT w +1+1 10\n"));
    let east = at_line(&one_shot(herd.addr("Campbell"), "IAMAT e +2+2 10\n"));
    assert!(herd.server("Bernard").store().get("w").is_none());
    herd.restart("Juzang");
    herd.restart("Jaquez");
    herd.wait_converged("w", &west);
    herd.wait_converged("e", &east);
}

/// 400 clients at once, each on its own connection, all get their own
/// correct reply, and every update reaches the far end of the herd.
#[test]
fn four_hundred_clients_at_once() {
    let herd = TestHerd::five(no_places());
    let replies: Vec<(String, String)> = thread::scope(|s| {
        let handles: Vec<_> = (0..400)
            .map(|i| {
                let addr = herd.addr(FIVE[i % 5]);
                s.spawn(move || {
                    let client = format!("client{i}");
                    let reply = one_shot(addr, &format!("IAMAT {client} +10.5-20.25 {i}.5\n"));
                    (client, reply)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (client, reply)) in replies.iter().enumerate() {
        let line = at_line(reply);
        assert!(
            line.ends_with(&format!(" {client} +10.5-20.25 {i}.5")),
            "{line}"
        );
    }
    wait_until("all 400 records on Campbell", || {
        herd.server("Campbell").store().len() == 400
    });
    for (client, reply) in &replies {
        herd.wait_converged(client, reply.trim_end());
    }
}

/// Flooding is on its way before the reply: by the time a client has read
/// its IAMAT reply, the AT line is already in the neighbour's socket, so a
/// neighbour asked right afterwards can know it. The neighbour here is a
/// bare listener standing in for a server's peer port. On an idle machine
/// the link thread usually wins this race even without the wait, so this
/// checks the outcome; `flood::tests::resync_then_confirmed_delivery`
/// pins the mechanism (the wait returns only once the link has written).
#[test]
fn update_reaches_neighbour_socket_before_reply() {
    use proxy_herd::herd::HerdFile;
    use std::io::{BufRead, BufReader, Read};

    let herd = herd_on_free_ports(&["A", "B"], &[("A", "B")]);
    let herd = HerdFile { ..herd }.validate().unwrap();
    let b = herd.server("B").unwrap().clone();
    let fake_b = std::net::TcpListener::bind(("127.0.0.1", b.peer_port)).unwrap();
    let a = start_plain(&herd, "A");
    let (link, _) = fake_b.accept().unwrap();
    link.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(link);
    // Without a secret, the link first says who it is.
    let mut hello = String::new();
    reader.read_line(&mut hello).unwrap();
    assert_eq!(hello, "HELLO A\n");
    // Warm up until the link is up and resynced.
    for i in 0..3 {
        let reply = one_shot(a.client_addr(), &format!("IAMAT warm{i} +1+1 1\n"));
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, reply);
    }
    reader.get_ref().set_nonblocking(true).unwrap();
    for i in 0..50 {
        let reply = one_shot(a.client_addr(), &format!("IAMAT c{i} +1+1 1\n"));
        // No waiting: the line must be there already.
        let mut got = vec![0u8; reply.len()];
        reader
            .read_exact(&mut got)
            .expect("AT line already in the neighbour's socket");
        assert_eq!(String::from_utf8(got).unwrap(), reply);
    }
}

/// A link may say which neighbour it is with `HELLO <name>`
/// (src/protocol.md#flooding): the server answers nothing, and does not send what that
/// neighbour told it back to it. A HELLO naming no server of the herd is
/// an invalid line. The proof is a gate: after the skipped line, A's next
/// line to B is the update of a later IAMAT, so the skipped one was never
/// queued before it.
#[test]
fn hello_names_the_link_and_nothing_goes_back_to_it() {
    use std::io::{BufRead, BufReader, Write};

    let herd = herd_on_free_ports(&["A", "B", "C"], &[("A", "B"), ("A", "C")])
        .validate()
        .unwrap();
    let b = herd.server("B").unwrap().clone();
    let c = herd.server("C").unwrap().clone();
    let fake_b = std::net::TcpListener::bind(("127.0.0.1", b.peer_port)).unwrap();
    let _fake_c = std::net::TcpListener::bind(("127.0.0.1", c.peer_port)).unwrap();
    let a = start_plain(&herd, "A");
    let (link, _) = fake_b.accept().unwrap();
    link.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut to_b = BufReader::new(link);
    let mut line = String::new();
    to_b.read_line(&mut line).unwrap();
    assert_eq!(line, "HELLO A\n");

    // B's own link into A: HELLO gets no reply, so the first reply is
    // the one for the invalid line after it.
    let mut from_b = connect(a.peer_addr());
    from_b.write_all(b"HELLO B\nHELLO Z\n").unwrap();
    let mut replies = BufReader::new(from_b.try_clone().unwrap());
    line.clear();
    replies.read_line(&mut line).unwrap();
    assert_eq!(line, "? HELLO Z\n");

    // C's record, arriving from B: A stores it and sends it to nobody
    // (C made it, B sent it).
    from_b
        .write_all(b"AT C +0.1 via-b +1+1 1621464827\n")
        .unwrap();
    wait_until("A stores the record from B", || {
        one_shot(a.client_addr(), "WHATSAT via-b 1 1\n").starts_with("AT C ")
    });
    let gate = at_line(&one_shot(a.client_addr(), "IAMAT gate +1+1 1621464827\n"));
    line.clear();
    to_b.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), gate, "B got its own line back first");

    // Without a HELLO, the same kind of line does go back.
    let mut anonymous = connect(a.peer_addr());
    anonymous
        .write_all(b"AT C +0.1 no-name +1+1 1621464827\n")
        .unwrap();
    line.clear();
    to_b.read_line(&mut line).unwrap();
    assert_eq!(line, "AT C +0.1 no-name +1+1 1621464827\n");
}

/// With `peer_host`, links use their own address: the peer port listens
/// there (and not on the client address), and flooding goes through it.
#[test]
fn peer_host_moves_links_to_their_own_address() {
    let mut file = herd_on_free_ports(&["A", "B"], &[("A", "B")]);
    for entry in file.servers.values_mut() {
        entry.peer_host = Some("127.0.0.2".into());
    }
    let herd = file.validate().unwrap();
    let (a, b) = (start_plain(&herd, "A"), start_plain(&herd, "B"));
    assert_eq!(a.peer_addr().ip().to_string(), "127.0.0.2");
    let on_client_host = ([127, 0, 0, 1], a.peer_addr().port()).into();
    assert!(std::net::TcpStream::connect_timeout(&on_client_host, PATIENCE).is_err());
    let line = at_line(&one_shot(a.client_addr(), "IAMAT p +1+1 1\n"));
    wait_until("B to hear from A over 127.0.0.2", || {
        b.store().get("p").is_some_and(|r| r.line == line)
    });
}
