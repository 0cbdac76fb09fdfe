//! One stranger cannot take the client port. A stranger on 127.0.0.2
//! fills `--max-connections` with silent connections, or with lines it
//! trickles and never ends, and a client on 127.0.0.1 still gets every
//! IAMAT answered; a line that is begun must end within
//! `--line-timeout`, while a person typing (nc sends whole lines) is
//! never cut off; and one address may still hold 10,000 connections when
//! the port has room for them. Each against the real binary, watched
//! through its metrics port.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use support::process::{self, herd_file, port_of};
use support::*;

/// The tests here take turns: the one with 10,000 connections starves
/// the machine's two cores of everything else for a while, and the
/// others wait on servers counting connections.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stranger's address: loopback, but not the client's.
const STRANGER: [u8; 4] = [127, 0, 0, 2];

/// A connection to `addr` from the address `from`.
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// One figure of the server's metrics page (the first sample named
/// `name`), read over its metrics port.
fn metric(metrics: SocketAddr, name: &str) -> f64 {
    let mut stream = TcpStream::connect(metrics).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
}

/// A server of its own, with these extra flags; its client address, its
/// metrics address, the process and its folder.
fn server(flags: &[&str]) -> (SocketAddr, SocketAddr, process::Proc, TempDir) {
    let dir = temp_dir("stranger");
    let config = herd_file(&dir, &["Riley"], &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], port_of(&config, "Riley")).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let metrics_flag = metrics.to_string();
    let mut all = vec!["--metrics-addr", &metrics_flag];
    all.extend_from_slice(flags);
    let proc = process::spawn_with("Riley", &config, &dir, &all);
    // The start-up probe's connection must be gone, or its close could
    // cancel out a stranger's connection in the counts `fill` watches.
    wait_until("the start-up probe to be counted out", || {
        metric(metrics, "herd_client_connections") == 0.0
    });
    (addr, metrics, proc, dir)
}

/// The open client connections and the line timeouts so far.
fn state(metrics: SocketAddr) -> (usize, f64) {
    (
        metric(metrics, "herd_client_connections") as usize,
        metric(metrics, "herd_line_timeouts_total"),
    )
}

/// The stranger opens connections, each sending `first`, until the port
/// holds `limit`; after each, it waits until the server has counted it
/// (or closed one of the others for its line timeout meanwhile).
fn fill(
    addr: SocketAddr,
    metrics: SocketAddr,
    limit: usize,
    held: &mut Vec<TcpStream>,
    first: &[u8],
) {
    loop {
        let before = state(metrics);
        if before.0 >= limit {
            return;
        }
        let mut stream = connect_from(STRANGER, addr);
        if !first.is_empty() {
            let _ = stream.write_all(first);
        }
        held.push(stream);
        wait_until("the server to count the stranger's connection", || {
            state(metrics) != before
        });
    }
}

/// The client's IAMAT on a connection of its own, answered within 2 s.
fn answered_within_2s(addr: SocketAddr, client: &str) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(format!("IAMAT {client} +1+1 1\n").as_bytes())
        .unwrap();
    let mut reply = [0u8; 256];
    let n = stream
        .read(&mut reply)
        .unwrap_or_else(|e| panic!("{client}: no reply within 2 s: {e}"));
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("AT Riley "), "{client}: {reply:?}");
}

/// Silent connections from one address fill the port; each IAMAT from
/// another address still gets in, by closing the stranger's
/// longest-idle connection, and each such closing is counted.
#[test]
fn silent_connections_do_not_keep_a_client_out() {
    let _turn = turn();
    let (addr, metrics, _proc, _dir) = server(&["--max-connections", "40"]);
    let mut held = Vec::new();
    for round in 0..10 {
        fill(addr, metrics, 40, &mut held, b"");
        answered_within_2s(addr, &format!("silent{round}"));
        // The client and the connection closed for it are both gone
        // before the stranger fills the port again.
        wait_until("the port to have one free slot", || state(metrics).0 == 39);
    }
    assert_eq!(
        metric(metrics, "herd_client_connections_evicted_total"),
        10.0
    );
}

/// Connections that trickle a line and never end it: each IAMAT from
/// another address is answered all the same, and each trickling
/// connection is closed once its line is older than `--line-timeout`,
/// counted as a line timeout.
#[test]
fn trickled_lines_do_not_keep_a_client_out_or_a_slot_for_ever() {
    let _turn = turn();
    let (addr, metrics, _proc, _dir) = server(&["--max-connections", "30", "--line-timeout", "3"]);
    let mut held = Vec::new();
    for round in 0..5 {
        fill(addr, metrics, 30, &mut held, b"IAMAT trickle");
        answered_within_2s(addr, &format!("trickled{round}"));
    }
    // Every trickling connection ends: the server closes it (end-of-file
    // here), with nothing sent.
    for stream in &mut held {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = Vec::new();
        match stream.read_to_end(&mut got) {
            Ok(_) => assert!(got.is_empty(), "{got:?}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    let timed_out = metric(metrics, "herd_line_timeouts_total");
    let evicted = metric(metrics, "herd_client_connections_evicted_total");
    assert!(timed_out >= 1.0 && evicted >= 1.0, "{timed_out} {evicted}");
}

/// A person typing: a line sent a byte at a time, within the line
/// timeout, is answered; and a connection idle between lines far longer
/// than the line timeout is not cut off. The gate for "far longer" is a
/// trickling connection opened after the person's first line: once the
/// server has closed it for its line timeout, the person has been idle
/// longer than that.
#[test]
fn a_person_typing_is_never_cut_off() {
    let _turn = turn();
    let (addr, metrics, _proc, _dir) = server(&["--line-timeout", "2"]);
    let mut person = TcpStream::connect(addr).unwrap();
    person.set_nodelay(true).unwrap();
    for byte in b"IAMAT typist +1+1 1\n" {
        person.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(read_until(&mut person, "\n").starts_with("AT Riley "));
    let mut trickle = TcpStream::connect(addr).unwrap();
    trickle.write_all(b"IAMAT half").unwrap();
    let mut got = Vec::new();
    let _ = trickle.read_to_end(&mut got);
    assert!(got.is_empty());
    assert_eq!(metric(metrics, "herd_line_timeouts_total"), 1.0);
    person.write_all(b"IAMAT typist +1+1 2\n").unwrap();
    assert!(read_until(&mut person, "\n").starts_with("AT Riley "));
}

/// When the port has room, one address may hold 10,000 connections, and
/// every one is answered: the fairness only acts on a full port.
#[test]
fn ten_thousand_connections_from_one_address() {
    let _turn = turn();
    // Each side needs a descriptor per connection: raise this process's
    // soft limit to its hard one (the server inherits it).
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .unwrap();
    assert!(
        hard.is_none_or(|h| h >= 10_500),
        "this test needs 10,500 file descriptors; the hard limit is {hard:?}"
    );
    let (addr, metrics, _proc, _dir) = server(&["--max-connections", "12000"]);
    let mut conns: Vec<TcpStream> = (0..10_000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    wait_until("every connection to be counted", || {
        metric(metrics, "herd_client_connections") as usize == 10_000
    });
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.write_all(format!("IAMAT many{i} +1+1 1\n").as_bytes())
            .unwrap();
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let reply = read_until(conn, "\n");
        assert!(reply.ends_with(&format!(" many{i} +1+1 1\n")), "{reply}");
    }
    assert_eq!(
        metric(metrics, "herd_client_connections_evicted_total"),
        0.0
    );
}
