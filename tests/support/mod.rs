//! Helpers for the integration tests: herds of real servers on loopback,
//! and clients that talk to them over real sockets.
#![allow(dead_code)] // each test file uses a different part of this

pub mod netns;
pub mod own_harness;
pub mod process;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proxy_herd::auth::HerdSecret;
use proxy_herd::herd::{Herd, HerdFile, ServerEntry};
use proxy_herd::logging::ServerLog;
use proxy_herd::places::{PlacesApi, PlacesConfig};
use proxy_herd::server::{self, Limits, Listeners, ServerConfig, ServerHandle};

/// How long any test waits for something that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The five servers and links of src/protocol.md#the-herd.
pub use proxy_herd::herd::{DEFAULT_LINKS as FIVE_LINKS, DEFAULT_NAMES as FIVE};

/// A herd of in-process servers, each on its own loopback ports.
pub struct TestHerd {
    pub herd: Herd,
    pub places: PlacesConfig,
    pub log_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Where each server journals (`None`: no journal).
    pub journal_dir: Option<PathBuf>,
    /// The herd secret every server uses (`None`: links are not proved).
    pub secret: Option<HerdSecret>,
    servers: BTreeMap<String, ServerHandle>,
    /// Each server's two ports, kept so a stopped server can come back on
    /// the same ones.
    ports: BTreeMap<String, (u16, u16)>,
}

/// A loopback port nothing uses yet, that no other socket of this process
/// will be given before a server binds it (see `proxy_herd::herd::free_port` for
/// why a port from `bind(0)` is not safe).
pub fn free_port() -> u16 {
    proxy_herd::herd::free_port().unwrap()
}

/// A herd file's servers on free loopback ports, every one different.
pub fn herd_on_free_ports(names: &[&str], links: &[(&str, &str)]) -> HerdFile {
    let servers = names
        .iter()
        .map(|n| {
            let entry = ServerEntry {
                host: "127.0.0.1".into(),
                port: i64::from(free_port()),
                peer_port: Some(i64::from(free_port())),
                peer_host: None,
            };
            (n.to_string(), entry)
        })
        .collect();
    let links = links
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    HerdFile { servers, links }
}

impl TestHerd {
    /// Starts every server of a herd with the given links, Places pointed
    /// at `places`.
    pub fn start(names: &[&str], links: &[(&str, &str)], places: PlacesConfig) -> TestHerd {
        TestHerd::start_with_logs(names, links, places, None)
    }

    /// Like `start`, with each server logging to `log_dir/<Name>.log`.
    pub fn start_with_logs(
        names: &[&str],
        links: &[(&str, &str)],
        places: PlacesConfig,
        log_dir: Option<PathBuf>,
    ) -> TestHerd {
        TestHerd::start_configured(names, links, places, Limits::default(), log_dir)
    }

    /// Like `start_with_logs`, with the given limits.
    pub fn start_configured(
        names: &[&str],
        links: &[(&str, &str)],
        places: PlacesConfig,
        limits: Limits,
        log_dir: Option<PathBuf>,
    ) -> TestHerd {
        // The ports are free when chosen, and each is taken by one bind
        // soon after; a few times in CI a process from an earlier test
        // took one in between ("Address already in use"). Every port is
        // bound before any server starts, so then the herd simply moves
        // to other ports.
        let mut attempts = 0;
        let (mut test_herd, bound) = loop {
            let test_herd = TestHerd::stopped(names, links, places.clone());
            let bound: std::io::Result<Vec<Listeners>> = names
                .iter()
                .map(|name| Listeners::bind(test_herd.herd.server(name).unwrap()))
                .collect();
            match bound {
                Ok(bound) => break (test_herd, bound),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 5 => {
                    attempts += 1;
                    eprintln!("{e}; choosing other ports");
                }
                Err(e) => panic!("{e}"),
            }
        };
        test_herd.limits = limits;
        test_herd.log_dir = log_dir;
        for (name, listeners) in names.iter().zip(bound) {
            test_herd.start_on(name, listeners);
        }
        test_herd
    }

    /// A herd on free ports with no server started yet, so a test can
    /// change its settings first and then `restart` each server.
    pub fn stopped(names: &[&str], links: &[(&str, &str)], places: PlacesConfig) -> TestHerd {
        // Every port is chosen before any server starts, so no server
        // starts on a port that a later one of the same herd then needs.
        let herd = herd_on_free_ports(names, links).validate().unwrap();
        let ports = herd
            .servers()
            .map(|s| (s.name.clone(), (s.port, s.peer_port)))
            .collect();
        TestHerd {
            herd,
            places,
            log_dir: None,
            limits: Limits::default(),
            journal_dir: None,
            secret: None,
            servers: BTreeMap::new(),
            ports,
        }
    }

    /// The five-server herd of src/protocol.md#the-herd.
    pub fn five(places: PlacesConfig) -> TestHerd {
        TestHerd::start(&FIVE, &FIVE_LINKS, places)
    }

    /// Starts (again) the server of that name on its ports, with an empty
    /// store, as a restarted process would be.
    pub fn restart(&mut self, name: &str) {
        let spec = self.herd.server(name).unwrap().clone();
        self.start_on(name, Listeners::bind(&spec).unwrap());
    }

    /// Starts the server of that name on listeners already bound.
    fn start_on(&mut self, name: &str, listeners: Listeners) {
        assert!(!self.servers.contains_key(name), "{name} is running");
        let log = match &self.log_dir {
            Some(dir) => ServerLog::to_file(dir, name, Default::default()).unwrap().0,
            None => ServerLog::discard(),
        };
        let config = ServerConfig {
            places: self.places.clone(),
            limits: self.limits.clone(),
            journal: self
                .journal_dir
                .as_ref()
                .map(|d| d.join(format!("{name}.journal"))),
            secret: self.secret.clone(),
            log,
            ..plain_config(&self.herd, name)
        };
        let handle = server::start(config, listeners).unwrap();
        self.servers.insert(name.to_string(), handle);
    }

    /// Stops a server: its ports close and its store is gone.
    pub fn stop(&mut self, name: &str) {
        self.servers.remove(name).expect("running").shutdown();
    }

    /// Where a server's clients connect (also while it is stopped).
    pub fn addr(&self, name: &str) -> SocketAddr {
        let (port, _) = self.ports[name];
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Where a server's neighbours connect.
    pub fn peer_addr(&self, name: &str) -> SocketAddr {
        let (_, port) = self.ports[name];
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A running server.
    pub fn server(&self, name: &str) -> &ServerHandle {
        &self.servers[name]
    }

    /// Waits until every running server holds exactly `line` for `client`.
    pub fn wait_converged(&self, client: &str, line: &str) {
        wait_until(&format!("every server to hold {line:?}"), || {
            self.servers
                .values()
                .all(|s| s.store().get(client).is_some_and(|r| r.line == line))
        });
    }
}

/// The configuration every test server starts from: server `name` of
/// `herd`, no Places key, default limits, no journal, no secret, and a log
/// that discards. Tests change what they need with `..plain_config(..)`.
pub fn plain_config(herd: &Herd, name: &str) -> ServerConfig {
    ServerConfig {
        name: name.to_string(),
        herd: herd.clone(),
        places: no_places(),
        limits: Limits::default(),
        journal: None,
        secret: None,
        log: ServerLog::discard(),
    }
}

/// Starts server `name` of `herd` in this process with [`plain_config`],
/// on its own ports.
pub fn start_plain(herd: &Herd, name: &str) -> ServerHandle {
    let spec = herd.server(name).unwrap().clone();
    server::start(plain_config(herd, name), Listeners::bind(&spec).unwrap()).unwrap()
}

/// Polls `done` until it holds, failing the test after [`PATIENCE`].
/// Used to wait for flooding, which has no reply to wait for; the
/// assertion is `done` itself, the polling only decides when to look.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connects with the test's patience as read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// The graders' pattern: one message, half-close, read to end-of-file.
pub fn one_shot(addr: SocketAddr, message: &str) -> String {
    one_shot_bytes(addr, message.as_bytes())
}

/// `one_shot` for a server that may refuse or drop the connection: the
/// reply, or `None` if any step failed.
pub fn try_one_shot(addr: SocketAddr, message: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    stream.write_all(message.as_bytes()).ok()?;
    stream.shutdown(Shutdown::Write).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// `one_shot` with arbitrary bytes.
pub fn one_shot_bytes(addr: SocketAddr, message: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(message).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    String::from_utf8(reply).unwrap()
}

/// Reads from a connection until `reply` ends with `end`.
pub fn read_until(stream: &mut TcpStream, end: &str) -> String {
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(end.as_bytes()) {
        let n = stream.read(&mut buf).expect("reply in time");
        assert!(
            n > 0,
            "connection closed early; got {:?}",
            String::from_utf8_lossy(&reply)
        );
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(reply).unwrap()
}

/// Places settings that nothing answers (for tests that never WHATSAT
/// or that want a failing Places).
pub fn no_places() -> PlacesConfig {
    PlacesConfig {
        url: format!(
            "http://127.0.0.1:{}/maps/api/place/nearbysearch/json",
            free_port()
        ),
        key: Some("test-key".into()),
        timeout: Duration::from_secs(2),
        api: PlacesApi::Legacy,
        ..PlacesConfig::default()
    }
}

/// A fresh empty folder under the system's temp folder (made by
/// `tempfile`), removed when the test is done with it. A failing test
/// keeps it, and says where, so its logs can be read.
pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    /// Keeps the folder after all (a test that fails without panicking).
    pub fn keep(mut self) -> PathBuf {
        self.0.take().expect("not kept yet").keep()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if std::thread::panicking() {
                eprintln!("kept {} for the failing test", dir.keep().display());
            }
        }
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.as_ref().expect("not kept yet").path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.as_os_str()
    }
}

/// Makes a [`TempDir`] whose name starts with `proxy-herd-TAG-`.
pub fn temp_dir(tag: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("proxy-herd-{tag}-"))
        .tempdir()
        .unwrap();
    TempDir(Some(dir))
}

/// The AT line an IAMAT reply carries, checked for shape.
pub fn at_line(reply: &str) -> String {
    assert!(
        reply.starts_with("AT ") && reply.ends_with('\n'),
        "{reply:?}"
    );
    assert_eq!(reply.matches('\n').count(), 1, "{reply:?}");
    reply.trim_end().to_string()
}

/// Now, in POSIX seconds, as a client would write it.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
