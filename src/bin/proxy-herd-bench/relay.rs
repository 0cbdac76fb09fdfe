//! The ceiling: a bare relay herd of the same shape as ours, doing only
//! what the flood needs, so that `sustain --vs-ceiling` can say how close
//! our herd comes to what this design can do on this machine.
//!
//! One process per server, as ours: a client port and a peer port, a
//! thread per connection, one newest-per-client map behind one lock, an
//! unbounded channel and a sender thread per neighbour. An IAMAT is
//! stored, queued for every neighbour and answered at once; an AT line
//! newer than the stored record is stored and queued for every neighbour
//! but the server that made it and the one it came from (links open with
//! `HELLO <name>`). Nothing else: no log, no journal, no validation
//! beyond splitting fields, no flow control (its lag is unbounded, and is
//! shown, not compared), no resync when a link comes back.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use proxy_herd::herd::Herd;
use proxy_herd::protocol::{self, Nanos};

/// A connection thread's stack, as the baseline's.
const STACK: usize = 64 * 1024;

/// What every thread of the relay shares.
struct Relay {
    name: String,
    /// Client id to (client time, AT line).
    newest: Mutex<HashMap<String, (Nanos, Arc<str>)>>,
    /// A queue per neighbour, by name.
    links: Vec<(String, Sender<Arc<str>>)>,
}

impl Relay {
    /// Stores `line` if newer than the client's record; whether it was.
    fn store(&self, client: &str, time: Nanos, line: &Arc<str>) -> bool {
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        match newest.get(client) {
            Some((t, l)) if (*t, &**l) >= (time, &**line) => false,
            _ => {
                newest.insert(client.to_string(), (time, Arc::clone(line)));
                true
            }
        }
    }

    /// Queues `line` for every neighbour but `origin` and `from`.
    fn forward(&self, line: &Arc<str>, origin: &str, from: Option<&str>) {
        for (name, queue) in &self.links {
            if name != origin && Some(name.as_str()) != from {
                let _ = queue.send(Arc::clone(line));
            }
        }
    }
}

/// Runs server `name` of the herd file `config` for `serve_for`.
pub fn serve_for(name: &str, config: &Path, serve_for: Duration) -> Result<(), String> {
    let herd = Herd::from_file(config).map_err(|e| e.to_string())?;
    let spec = herd.server(name).map_err(|e| e.to_string())?.clone();
    let loopback = |host: &str, port: u16| {
        (host, port)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()))
    };
    if !loopback(&spec.host, spec.port) || !loopback(&spec.peer_host, spec.peer_port) {
        return Err(format!(
            "relay {name}: the relay herd runs on loopback only"
        ));
    }
    let client = TcpListener::bind((spec.host.as_str(), spec.port))
        .map_err(|e| format!("relay {name}: client port {}: {e}", spec.port))?;
    let peer = TcpListener::bind((spec.peer_host.as_str(), spec.peer_port))
        .map_err(|e| format!("relay {name}: peer port {}: {e}", spec.peer_port))?;
    let mut links = Vec::new();
    let mut senders = Vec::new();
    for next in herd.neighbours(name) {
        let (tx, rx) = crossbeam_channel::unbounded();
        links.push((next.name.clone(), tx));
        senders.push((next.peer_host.clone(), next.peer_port, rx));
    }
    let relay = Arc::new(Relay {
        name: name.to_string(),
        newest: Mutex::new(HashMap::new()),
        links,
    });
    for (host, port, rx) in senders {
        let me = name.to_string();
        thread::Builder::new()
            .name("relay link".into())
            .spawn(move || send(&me, &host, port, &rx))
            .map_err(|e| e.to_string())?;
    }
    for (listener, peer_port) in [(client, false), (peer, true)] {
        let relay = Arc::clone(&relay);
        thread::Builder::new()
            .name("relay accept".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let relay = Arc::clone(&relay);
                    let _ = thread::Builder::new()
                        .stack_size(STACK)
                        .spawn(move || serve(&relay, stream, peer_port));
                }
            })
            .map_err(|e| e.to_string())?;
    }
    thread::sleep(serve_for);
    Ok(())
}

/// One neighbour's sender: connect (retrying), say who we are, then
/// write what the queue holds, all that is queued in one write.
fn send(me: &str, host: &str, port: u16, queue: &Receiver<Arc<str>>) {
    let addr: Option<SocketAddr> = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    let Some(addr) = addr else { return };
    loop {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = stream.set_nodelay(true);
        if stream
            .write_all(format!("HELLO {me}\n").as_bytes())
            .is_err()
        {
            continue;
        }
        let mut out = String::new();
        loop {
            let Ok(first) = queue.recv() else { return };
            out.clear();
            out.push_str(&first);
            out.push('\n');
            for line in queue.try_iter().take(1024) {
                out.push_str(&line);
                out.push('\n');
            }
            if stream.write_all(out.as_bytes()).is_err() {
                break;
            }
        }
    }
}

/// One connection: IAMATs answered, AT lines and HELLOs taken, anything
/// else ignored.
fn serve(relay: &Relay, stream: TcpStream, peer_port: bool) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut line = String::new();
    let mut from: Option<String> = None;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        match f.as_slice() {
            ["IAMAT", client, location, time] if !peer_port => {
                let received = protocol::now_nanos();
                let Some(t) = protocol::parse_time(time) else {
                    continue;
                };
                let at: Arc<str> = format!(
                    "AT {} {} {client} {location} {time}",
                    relay.name,
                    protocol::format_delta(received - t)
                )
                .into();
                if relay.store(client, t, &at) {
                    relay.forward(&at, &relay.name, None);
                }
                let reply = format!("{at}\n");
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            ["AT", origin, _, client, _, time] if peer_port => {
                let Some(t) = protocol::parse_time(time) else {
                    continue;
                };
                let at: Arc<str> = f.join(" ").into();
                if relay.store(client, t, &at) {
                    relay.forward(&at, origin, from.as_deref());
                }
            }
            ["HELLO", name] if peer_port => from = Some(name.to_string()),
            _ => {}
        }
    }
}
