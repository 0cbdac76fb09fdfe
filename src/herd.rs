//! The herd: which servers exist, where they listen, and who talks to whom.
//!
//! The herd file is read raw ([`HerdFile`], straight from JSON) and then
//! validated in one place ([`HerdFile::validate`]) into a [`Herd`] that the
//! rest of the program can trust: every link names known servers, no port
//! is used twice on a host, every port is in range. Anything wrong is a
//! [`HerdError`] with a message that names the culprit, and the binary
//! exits before it binds a port or opens a log.
//!
//! ```json
//! {
//!   "servers": {
//!     "Riley":  { "host": "127.0.0.1", "port": 12000, "peer_port": 22000 },
//!     "Jaquez": { "host": "127.0.0.1", "port": 12001, "peer_host": "127.0.0.2" }
//!   },
//!   "links": [["Riley", "Jaquez"]]
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// The five servers of src/protocol.md#the-herd, in client-port order (12000 up).
pub const DEFAULT_NAMES: [&str; 5] = ["Riley", "Jaquez", "Juzang", "Campbell", "Bernard"];

/// The links of the built-in herd (src/protocol.md#the-herd).
pub const DEFAULT_LINKS: [(&str, &str); 6] = [
    ("Riley", "Jaquez"),
    ("Riley", "Juzang"),
    ("Bernard", "Jaquez"),
    ("Bernard", "Juzang"),
    ("Bernard", "Campbell"),
    ("Juzang", "Campbell"),
];

/// How far above the client port the peer port sits when the herd file
/// does not say (src/protocol.md#the-herd; like Redis Cluster's bus port).
pub const PEER_PORT_OFFSET: u32 = 10_000;

/// One server of a herd file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// Host name or address both ports bind to and neighbours connect to.
    pub host: String,
    /// The client port. Wider than `u16` so that `70000` is reported as
    /// out of range instead of failing to parse with a vaguer message.
    pub port: i64,
    /// The peer port; defaults to `port + 10000`.
    pub peer_port: Option<i64>,
    /// Where the peer port listens and neighbours connect, if not `host`:
    /// lets links live on a private network while clients use another.
    #[serde(default)]
    pub peer_host: Option<String>,
}

/// A herd file as written, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HerdFile {
    /// Server name to its addresses. `preserve_order` is on for
    /// serde_json, but a `BTreeMap` keeps listings sorted and stable.
    pub servers: BTreeMap<String, ServerEntry>,
    /// Bidirectional links, each a pair of server names.
    #[serde(default)]
    pub links: Vec<(String, String)>,
}

/// One server of a validated herd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Its name, as it appears in AT lines.
    pub name: String,
    /// Host both ports use.
    pub host: String,
    /// Where clients connect.
    pub port: u16,
    /// Where neighbours' links connect.
    pub peer_port: u16,
    /// Host the peer port uses (`host` unless the herd file says).
    pub peer_host: String,
}

/// A validated herd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Herd {
    servers: BTreeMap<String, ServerSpec>,
    neighbours: HashMap<String, BTreeSet<String>>,
}

/// Why a herd file, or a server name, was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HerdError {
    /// The file could not be read.
    Read(String),
    /// The file is not JSON of the herd file's shape.
    Parse(String),
    /// The file is well formed but describes an impossible herd.
    Invalid(String),
    /// The server name given on the command line is not in the herd.
    UnknownName { name: String, known: Vec<String> },
}

impl fmt::Display for HerdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HerdError::Read(m) | HerdError::Parse(m) | HerdError::Invalid(m) => f.write_str(m),
            HerdError::UnknownName { name, known } => write!(
                f,
                "no server named {name:?} in the herd (it has: {})",
                known.join(", ")
            ),
        }
    }
}

impl std::error::Error for HerdError {}

impl HerdFile {
    /// Reads and parses a herd file (not yet validated).
    pub fn read(path: &Path) -> Result<HerdFile, HerdError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            HerdError::Read(format!("cannot read herd file {}: {e}", path.display()))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| HerdError::Parse(format!("herd file {}: {e}", path.display())))
    }

    /// Checks everything src/protocol.md#the-herd-file asks of a herd file and
    /// builds the herd.
    pub fn validate(self) -> Result<Herd, HerdError> {
        let invalid = |m: String| Err(HerdError::Invalid(m));
        if self.servers.is_empty() {
            return invalid("the herd file names no servers".into());
        }
        let port = |name: &str, what: &str, p: i64| -> Result<u16, HerdError> {
            match u16::try_from(p) {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(HerdError::Invalid(format!(
                    "server {name}: {what} {p} is outside 1-65535"
                ))),
            }
        };
        let mut servers = BTreeMap::new();
        // (host, port) -> who uses it, to find a port used twice.
        let mut used: HashMap<(String, u16), String> = HashMap::new();
        for (name, entry) in self.servers {
            if name.is_empty() || name.bytes().any(crate::protocol::is_space) {
                return invalid(format!(
                    "server name {name:?} is empty or has white space, so it cannot appear in an AT line"
                ));
            }
            let client_port = port(&name, "port", entry.port)?;
            let peer_port = match entry.peer_port {
                Some(p) => port(&name, "peer_port", p)?,
                None => port(
                    &name,
                    "peer port (port + 10000)",
                    entry.port + i64::from(PEER_PORT_OFFSET),
                )?,
            };
            let peer_host = entry.peer_host.unwrap_or_else(|| entry.host.clone());
            for (what, host, p) in [
                ("port", &entry.host, client_port),
                ("peer port", &peer_host, peer_port),
            ] {
                let who = format!("{name}'s {what}");
                if let Some(other) = used.insert((host.clone(), p), who.clone()) {
                    return invalid(format!(
                        "port {p} on {host} is used twice: {other} and {who}"
                    ));
                }
            }
            servers.insert(
                name.clone(),
                ServerSpec {
                    name,
                    host: entry.host,
                    port: client_port,
                    peer_port,
                    peer_host,
                },
            );
        }
        let mut neighbours: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (a, b) in self.links {
            for end in [&a, &b] {
                if !servers.contains_key(end) {
                    return invalid(format!("link {a}-{b} names unknown server {end:?}"));
                }
            }
            if a == b {
                return invalid(format!("link {a}-{b} links a server to itself"));
            }
            neighbours.entry(a.clone()).or_default().insert(b.clone());
            neighbours.entry(b).or_default().insert(a);
        }
        Ok(Herd {
            servers,
            neighbours,
        })
    }
}

impl Herd {
    /// The herd of src/protocol.md#the-herd: five servers on 127.0.0.1, client ports
    /// 12000-12004, peer ports 22000-22004.
    pub fn default_herd() -> Herd {
        let servers = DEFAULT_NAMES
            .iter()
            .zip(12000..)
            .map(|(name, port)| {
                let entry = ServerEntry {
                    host: "127.0.0.1".into(),
                    port,
                    peer_port: None,
                    peer_host: None,
                };
                (name.to_string(), entry)
            })
            .collect();
        let links = DEFAULT_LINKS
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        HerdFile { servers, links }
            .validate()
            .expect("the built-in herd is valid")
    }

    /// Reads and validates a herd file; every error names the file.
    pub fn from_file(path: &Path) -> Result<Herd, HerdError> {
        HerdFile::read(path)?.validate().map_err(|e| match e {
            HerdError::Invalid(m) => {
                HerdError::Invalid(format!("herd file {}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// The server of that name, or an error listing the names there are.
    pub fn server(&self, name: &str) -> Result<&ServerSpec, HerdError> {
        self.servers
            .get(name)
            .ok_or_else(|| HerdError::UnknownName {
                name: name.to_string(),
                known: self.servers.keys().cloned().collect(),
            })
    }

    /// Whether a server of that name is in the herd.
    pub fn contains(&self, name: &str) -> bool {
        self.servers.contains_key(name)
    }

    /// Every server, sorted by name.
    pub fn servers(&self) -> impl Iterator<Item = &ServerSpec> {
        self.servers.values()
    }

    /// The servers `name` has links with, sorted by name.
    pub fn neighbours(&self, name: &str) -> Vec<&ServerSpec> {
        self.neighbours
            .get(name)
            .map(|set| set.iter().map(|n| &self.servers[n]).collect())
            .unwrap_or_default()
    }
}

/// A loopback port nothing is using, for a server that will bind it
/// later: a herd file must name its ports before anything starts. The
/// bench and the tests write such files; this is their one port picker.
///
/// A port the kernel hands out (`bind` to port 0, then released) is
/// unsafe for this: until the server binds it, the kernel may give the
/// same port to any other socket's `connect()` or `bind(0)`, and then
/// the server cannot start. That happened once in CI. So the port comes
/// from below the kernel's ephemeral range, which it never hands out,
/// from a counter this process owns (so no two calls here agree) that
/// starts at an offset of its process id (so two processes seldom
/// meet), and only after a test bind shows it free.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    let (low, high) = unhanded_ports();
    if low >= high {
        return kernel_port();
    }
    let span = u32::from(high - low);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(337) % span,
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = low + (NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    kernel_port()
}

/// The ports [`free_port`] chooses from: above the default herd's
/// (12000–12004, peers 22000–22004) and below the kernel's ephemeral
/// range, read from `/proc` (Linux's default starts at 32768).
fn unhanded_ports() -> (u16, u16) {
    const LOW: u16 = 23000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (LOW, ephemeral_low.max(LOW))
}

/// A port from the kernel (bound to port 0, then released): the fallback
/// when the ephemeral range leaves no room below it.
fn kernel_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Herd, HerdError> {
        serde_json::from_str::<HerdFile>(json)
            .map_err(|e| HerdError::Parse(e.to_string()))?
            .validate()
    }

    fn err(json: &str) -> String {
        parse(json).unwrap_err().to_string()
    }

    /// The built-in herd is the one of src/protocol.md#the-herd, links both ways.
    #[test]
    fn default_herd_matches_protocol() {
        let herd = Herd::default_herd();
        let names = |n: &str| -> Vec<String> {
            herd.neighbours(n).iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names("Riley"), ["Jaquez", "Juzang"]);
        assert_eq!(names("Bernard"), ["Campbell", "Jaquez", "Juzang"]);
        assert_eq!(names("Juzang"), ["Bernard", "Campbell", "Riley"]);
        assert_eq!(names("Jaquez"), ["Bernard", "Riley"]);
        assert_eq!(names("Campbell"), ["Bernard", "Juzang"]);
        let riley = herd.server("Riley").unwrap();
        assert_eq!((riley.port, riley.peer_port), (12000, 22000));
        let bernard = herd.server("Bernard").unwrap();
        assert_eq!((bernard.port, bernard.peer_port), (12004, 22004));
    }

    /// The example herd file of src/protocol.md#the-herd-file is accepted, with the
    /// default peer port filled in.
    #[test]
    fn example_file() {
        let herd = parse(
            r#"{"servers": {
                "Riley":  { "host": "127.0.0.1", "port": 12000, "peer_port": 22000 },
                "Jaquez": { "host": "127.0.0.1", "port": 12001 }},
              "links": [["Riley", "Jaquez"]]}"#,
        )
        .unwrap();
        assert_eq!(herd.server("Jaquez").unwrap().peer_port, 22001);
        assert_eq!(herd.neighbours("Jaquez")[0].name, "Riley");
    }

    /// Each refusal src/protocol.md#the-herd-file lists has a message naming what is wrong.
    #[test]
    fn refusals() {
        let one = r#""A": {"host": "h", "port": 1000}"#;
        let m = err(&format!(
            r#"{{"servers": {{{one}}}, "links": [["A", "B"]]}}"#
        ));
        assert!(m.contains("unknown server \"B\""), "{m}");
        let m = err(&format!(
            r#"{{"servers": {{{one}}}, "links": [["A", "A"]]}}"#
        ));
        assert!(m.contains("itself"), "{m}");
        let m = err(
            r#"{"servers": {"A": {"host": "h", "port": 1000}, "B": {"host": "h", "port": 1000}}}"#,
        );
        assert!(m.contains("port 1000 on h is used twice"), "{m}");
        // A client port clashing with another's default peer port.
        let m = err(
            r#"{"servers": {"A": {"host": "h", "port": 1000}, "B": {"host": "h", "port": 11000}}}"#,
        );
        assert!(m.contains("port 11000 on h is used twice"), "{m}");
        let m = err(r#"{"servers": {"A": {"host": "h", "port": 1000, "peer_port": 1000}}}"#);
        assert!(m.contains("used twice"), "{m}");
        for port in ["0", "-1", "65536", "70000"] {
            let m = err(&format!(
                r#"{{"servers": {{"A": {{"host": "h", "port": {port}}}}}}}"#
            ));
            assert!(m.contains("outside 1-65535"), "{port}: {m}");
        }
        // Fine as a client port, but the default peer port is too high.
        let m = err(r#"{"servers": {"A": {"host": "h", "port": 60000}}}"#);
        assert!(m.contains("port + 10000") && m.contains("70000"), "{m}");
        let m = err(r#"{"servers": {}}"#);
        assert!(m.contains("no servers"), "{m}");
        let m = err(r#"{"servers": {"A B": {"host": "h", "port": 1}}}"#);
        assert!(m.contains("white space"), "{m}");
    }

    /// The same port on different hosts is fine.
    #[test]
    fn same_port_other_host() {
        let herd = parse(
            r#"{"servers": {"A": {"host": "10.0.0.1", "port": 1000},
                            "B": {"host": "10.0.0.2", "port": 1000}},
                "links": [["A", "B"]]}"#,
        );
        assert!(herd.is_ok(), "{herd:?}");
    }

    /// `peer_host` moves the peer port to its own address; ports are then
    /// counted per address.
    #[test]
    fn peer_host() {
        let herd = parse(
            r#"{"servers": {"A": {"host": "127.0.0.1", "port": 1000, "peer_host": "127.0.0.2", "peer_port": 1000}}}"#,
        )
        .unwrap();
        let a = herd.server("A").unwrap();
        assert_eq!((a.peer_host.as_str(), a.peer_port), ("127.0.0.2", 1000));
        assert_eq!(
            Herd::default_herd().server("Riley").unwrap().peer_host,
            "127.0.0.1"
        );
    }

    /// Typos in keys are refused rather than silently ignored.
    #[test]
    fn unknown_keys_refused() {
        let m = err(r#"{"servers": {"A": {"host": "h", "port": 1, "peerport": 2}}}"#);
        assert!(m.contains("peerport"), "{m}");
    }

    /// An unknown name lists the names the herd has.
    #[test]
    fn unknown_name() {
        let m = Herd::default_herd().server("Bob").unwrap_err().to_string();
        assert!(m.contains("\"Bob\"") && m.contains("Riley"), "{m}");
    }
}
