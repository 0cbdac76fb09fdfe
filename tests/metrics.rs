//! `--metrics-addr`: the real binary serves `GET /metrics` on a port of
//! its own, in a format Prometheus accepts, with figures that follow what
//! the herd does; and a stranger on that port cannot tie it up.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use support::process::{addr_of, herd_file, spawn_with};
use support::{free_port, now_secs, one_shot, temp_dir, wait_until, PATIENCE};

/// One HTTP request on a new connection; the whole answer.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The metrics page's body.
fn scrape(addr: SocketAddr) -> String {
    let answer = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// Every sample of the page by its name and labels, checked the way a
/// scraper reads it: each sample line is `name{labels} value` with a
/// number, of a family declared by `# TYPE`, and counters end in
/// `_total` (histograms' `_bucket`, `_sum`, `_count` belong to theirs).
fn samples(page: &str) -> BTreeMap<String, f64> {
    let mut types = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            }
            assert!(name.starts_with("herd_"), "{name} without the herd_ prefix");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = key.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no # TYPE");
        assert!(!key.contains("client="), "a label per client: {line}");
        out.insert(key.to_string(), value);
    }
    out
}

fn get(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing: {samples:?}"))
}

/// promtool's verdict on the page, where Debian's `prometheus` package
/// put it; `None` where it is not installed (then [`samples`] is the
/// check).
fn promtool(page: &str) -> Option<(bool, String)> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success() && said.trim().is_empty(), said))
}

/// Two servers, A and B, linked, each with metrics on: lines of every
/// kind, a WHATSAT (Places refuses: no key), and the flood show in the
/// right counters on the right server; links show up, and down with a
/// disconnect once B is killed; the page passes promtool (or our own
/// reading of the format when promtool is missing).
#[test]
fn figures_follow_the_herd() {
    let dir = temp_dir("metrics");
    let config = herd_file(&dir, &["A", "B"], &[("A", "B")]);
    let (ma, mb): (SocketAddr, SocketAddr) = (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    );
    let _a = spawn_with("A", &config, &dir, &["--metrics-addr", &ma.to_string()]);
    let mut b = spawn_with("B", &config, &dir, &["--metrics-addr", &mb.to_string()]);
    wait_until("the links both ways up", || {
        get(&samples(&scrape(ma)), "herd_link_up{link=\"B\"}") == 1.0
            && get(&samples(&scrape(mb)), "herd_link_up{link=\"A\"}") == 1.0
    });

    let a = addr_of(&config, "A");
    let at = one_shot(
        a,
        &format!("IAMAT metrics-phone +34.1-118.4 {}\n", now_secs()),
    );
    assert!(at.starts_with("AT A "), "{at}");
    let _ = one_shot(a, "IAMAT metrics-phone +34.1-118.4 1\n"); // older: superseded
    assert!(one_shot(a, "HELLO\n").starts_with("? HELLO"));
    let whatsat = one_shot(a, "WHATSAT metrics-phone 10 1\n");
    assert!(whatsat.contains("REQUEST_DENIED"), "{whatsat}");
    wait_until("B to store the update", || {
        get(
            &samples(&scrape(mb)),
            "herd_records_stored_total{from=\"peer\"}",
        ) == 1.0
    });

    let page = scrape(ma);
    let s = samples(&page);
    assert_eq!(get(&s, "herd_lines_received_total{kind=\"iamat\"}"), 2.0);
    assert_eq!(get(&s, "herd_lines_received_total{kind=\"invalid\"}"), 1.0);
    assert_eq!(get(&s, "herd_lines_received_total{kind=\"whatsat\"}"), 1.0);
    assert_eq!(get(&s, "herd_records_stored_total{from=\"client\"}"), 1.0);
    assert_eq!(get(&s, "herd_records_superseded_total"), 1.0);
    assert_eq!(
        get(&s, "herd_places_requests_total{status=\"REQUEST_DENIED\"}"),
        1.0
    );
    assert_eq!(get(&s, "herd_places_request_seconds_count"), 1.0);
    assert_eq!(get(&s, "herd_clients_stored"), 1.0);
    assert!(get(&s, "herd_link_at_lines_sent_total{link=\"B\"}") >= 1.0);
    assert_eq!(get(&s, "herd_link_connects_total{link=\"B\"}"), 1.0);
    assert_eq!(get(&s, "herd_link_resyncs_total{link=\"B\"}"), 1.0);
    assert!(get(&s, "herd_journal_bytes") > 0.0);
    assert!(get(&s, "herd_threads") >= 4.0);
    // B's own neighbour connected to A's peer port.
    assert_eq!(get(&s, "herd_peer_connections"), 1.0);
    let sb = samples(&scrape(mb));
    assert_eq!(get(&sb, "herd_lines_received_total{kind=\"at\"}"), 1.0);
    if let Some((clean, said)) = promtool(&page) {
        assert!(clean, "promtool check metrics: {said}\n{page}");
    }

    b.0.kill().unwrap();
    b.0.wait().unwrap();
    wait_until("A to see its link to B go down", || {
        let s = samples(&scrape(ma));
        get(&s, "herd_link_up{link=\"B\"}") == 0.0
            && get(&s, "herd_link_disconnects_total{link=\"B\"}") == 1.0
    });
}

/// The metrics port answers only `GET /metrics`; a stranger who opens
/// more idle connections than the port serves at once gets the extra
/// ones closed unanswered (a whole request on the fifth gets no page),
/// and once those go the page is served again; a request head that
/// trickles in a byte at a time is cut off, not waited for.
#[test]
fn the_metrics_port_is_bounded() {
    let dir = temp_dir("metrics-bounded");
    let config = herd_file(&dir, &["A"], &[]);
    let m: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _a = spawn_with("A", &config, &dir, &["--metrics-addr", &m.to_string()]);
    assert!(http(m, "GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(m, "POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(http(m, "IAMAT x +1+1 1\n\n").starts_with("HTTP/1.1 400"));
    let head = http(m, "HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );

    // Four idle connections hold every scrape thread (each waits for a
    // request head); a fifth, even with a whole request, is closed with
    // nothing said.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(m).unwrap()).collect();
    let mut extra = TcpStream::connect(m).unwrap();
    extra.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = extra.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "a fifth connection was served: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(idle);
    wait_until("the page once the idle connections are gone", || {
        let mut stream = TcpStream::connect(m).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    });
    // A head begun and never finished is closed by its deadline: the
    // server ends the connection (end-of-file here) with nothing sent.
    let mut slow = TcpStream::connect(m).unwrap();
    slow.write_all(b"GET /met").unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    match slow.read_to_end(&mut got) {
        Ok(_) => assert!(got.is_empty(), "an unfinished head got {got:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // The client port carries none of it.
    let reply = one_shot(addr_of(&config, "A"), "GET /metrics HTTP/1.0\n");
    assert_eq!(reply, "? GET /metrics HTTP/1.0\n");
}

/// A copy of the record a server holds, which a flood brings by several
/// paths, is taken as a valid AT line that is not newer: counted as
/// received and superseded, logged, not stored again and not answered,
/// whether its bytes are the stored line's (the shortcut that skips the
/// parse) or spaced otherwise (the whole parse). A line that differs in
/// anything else is still judged on its own: one field too many is
/// invalid.
#[test]
fn copies_of_a_stored_record_change_nothing() {
    let dir = temp_dir("metrics-copies");
    let config = herd_file(&dir, &["A", "B"], &[("A", "B")]);
    let mb: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _b = spawn_with("B", &config, &dir, &["--metrics-addr", &mb.to_string()]);
    let herd: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let peer_port = herd["servers"]["B"]["peer_port"].as_u64().unwrap() as u16;
    let line = format!("AT A +0.1 copy-phone +34.1-118.4 {}", now_secs());
    let spaced = line.replacen(' ', "  ", 1);
    let longer = format!("{line} extra");
    let mut peer = TcpStream::connect(("127.0.0.1", peer_port)).unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(peer, "{line}\n{line}\n{spaced}\n{longer}\n").unwrap();
    // Lines of one connection are handled in order: the reply to the last
    // says the three before it are done.
    let mut reply = vec![0u8; longer.len() + 3];
    peer.read_exact(&mut reply).unwrap();
    assert_eq!(String::from_utf8(reply).unwrap(), format!("? {longer}\n"));

    let s = samples(&scrape(mb));
    assert_eq!(get(&s, "herd_lines_received_total{kind=\"at\"}"), 3.0);
    assert_eq!(get(&s, "herd_lines_received_total{kind=\"invalid\"}"), 1.0);
    assert_eq!(get(&s, "herd_records_stored_total{from=\"peer\"}"), 1.0);
    assert_eq!(get(&s, "herd_records_superseded_total"), 2.0);
    assert_eq!(get(&s, "herd_clients_stored"), 1.0);
    let whatsat = one_shot(addr_of(&config, "B"), "WHATSAT copy-phone 10 1\n");
    assert!(whatsat.starts_with(&format!("{line}\n")), "{whatsat}");
    drop(peer);
    wait_until("B to log every line received", || {
        let log = std::fs::read_to_string(dir.join("B.log")).unwrap_or_default();
        [&line, &line, &spaced, &longer]
            .iter()
            .enumerate()
            .all(|(i, l)| log.matches(&format!("<- {l}\n")).count() >= [2, 2, 1, 1][i])
    });
}
