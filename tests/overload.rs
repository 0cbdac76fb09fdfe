//! Overload: clients updating faster than a neighbour takes the updates.
//! What a link holds stays bounded, clients keep being served, and once
//! the load stops every server ends with every client's newest record.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use proxy_herd::flood::LINK_QUEUE;
use support::*;

/// A stand-in for a neighbour's peer port that takes links and, if
/// `slowly`, reads 512 bytes a millisecond from each, else never reads.
/// Its receive buffer is kept small, so a link to it fills up quickly
/// instead of pouring megabytes into the kernel. It lives as long as the
/// test process.
fn slow_neighbour(addr: SocketAddr, slowly: bool) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(16).unwrap();
    let listener: TcpListener = socket.into();
    thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if slowly {
                let mut reader = conn.try_clone().unwrap();
                thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    // The pace of a slow reader, not a wait for anything.
                    while matches!(reader.read(&mut buf), Ok(n) if n > 0) {
                        thread::sleep(Duration::from_millis(1));
                    }
                });
            }
            held.push(conn);
        }
    });
}

/// Runs `threads` connections of `updates` IAMATs each against `addr`,
/// each connection cycling through its own `clients` client ids, padded
/// to `pad` bytes. Checks every reply, and returns each client's last AT
/// line. Meanwhile `watch` is called between updates.
fn load(
    addr: SocketAddr,
    threads: usize,
    updates: usize,
    clients: usize,
    pad: usize,
    watch: &(dyn Fn() + Sync),
) -> Vec<(String, String)> {
    let padding = "p".repeat(pad);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let padding = &padding;
                s.spawn(move || {
                    let conn = connect(addr);
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut writer = conn;
                    let mut last = std::collections::BTreeMap::new();
                    for i in 0..updates {
                        let client = format!("{padding}-t{t}-c{}", i % clients);
                        writer
                            .write_all(format!("IAMAT {client} +1+1 {}\n", i + 1).as_bytes())
                            .unwrap();
                        let mut reply = String::new();
                        reader.read_line(&mut reply).unwrap();
                        let line = at_line(&reply);
                        assert!(
                            line.ends_with(&format!(" {client} +1+1 {}", i + 1)),
                            "{line}"
                        );
                        last.insert(client, line);
                        watch();
                    }
                    last
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// A way to read how many records `server`'s link to `neighbour` holds.
fn held_by<'a>(
    herd: &'a TestHerd,
    server: &str,
    neighbour: &'a str,
) -> impl Fn() -> usize + Sync + 'a {
    let handle = herd.server(server);
    move || {
        handle
            .link_waiting()
            .into_iter()
            .find(|(n, _)| n == neighbour)
            .map_or(0, |(_, held)| held)
    }
}

/// Clients of A keep updating while its neighbour X takes its link and
/// never reads. A's link to X holds at most its queue and one record per
/// client however many updates are made, and the queue really did fill
/// (else this proves nothing); every client gets its reply; and the other
/// neighbour, B, ends with every client's newest record.
#[test]
fn neighbour_that_never_reads_holds_bounded_records() {
    overload_one_neighbour(false);
}

/// As above with a neighbour that reads, but slowly: 512 bytes a
/// millisecond, far less than the clients send.
#[test]
fn slow_neighbour_holds_bounded_records() {
    overload_one_neighbour(true);
}

fn overload_one_neighbour(slowly: bool) {
    const CLIENTS_PER_THREAD: usize = 25;
    const THREADS: usize = 8;
    let mut herd = TestHerd::stopped(&["A", "B", "X"], &[("A", "B"), ("A", "X")], no_places());
    slow_neighbour(herd.peer_addr("X"), slowly);
    herd.restart("A");
    herd.restart("B");
    let held_now = held_by(&herd, "A", "X");
    let most = AtomicUsize::new(0);
    let watch = || {
        most.fetch_max(held_now(), Ordering::SeqCst);
    };
    // 1 KiB client ids: each update is a 1 KiB line, so X's small buffer
    // is full after a few and the link's queue must take the rest.
    let last = load(
        herd.addr("A"),
        THREADS,
        1_000,
        CLIENTS_PER_THREAD,
        1024,
        &watch,
    );
    let most = most.load(Ordering::SeqCst);
    let clients = THREADS * CLIENTS_PER_THREAD;
    eprintln!("A's link to X held at most {most} records ({clients} clients, queue {LINK_QUEUE})");
    assert!(most >= LINK_QUEUE, "the link never filled up: {most}");
    assert!(
        most <= LINK_QUEUE + clients,
        "the link held {most} records, more than its queue and one per client"
    );
    for (client, line) in &last {
        wait_until(&format!("B to hold {client}'s newest"), || {
            herd.server("B")
                .store()
                .get(client)
                .is_some_and(|r| &r.line == line)
        });
    }
}

/// The five-server herd under a burst of updates from many connections at
/// once: links fill, relayed records fall behind (relays never wait, so
/// the herd's cycles cannot deadlock), and afterwards every server holds
/// every client's newest record and no link holds anything.
#[test]
fn five_servers_converge_after_overload() {
    let herd = TestHerd::five(no_places());
    let last = load(herd.addr("Riley"), 16, 1_500, 10, 0, &|| {});
    assert_eq!(last.len(), 160);
    for (client, line) in &last {
        herd.wait_converged(client, line);
    }
    for name in FIVE {
        wait_until(&format!("{name}'s links to be empty"), || {
            herd.server(name)
                .link_waiting()
                .iter()
                .all(|(_, n)| *n == 0)
        });
    }
}
