//! The partition test of issue 5: the five servers of src/protocol.md#the-herd, each
//! in its own network namespace with its own address, so the herd file
//! names five different hosts. The herd is split by taking down the
//! network links that cross the cut, both sides take updates, the links
//! come back, and every server must then answer WHATSAT for every client
//! with the same AT line: the newest one the herd acknowledged.
//!
//! The network (X is derived from the pid, see [`choose_subnet`]):
//! - server k lives in namespace `ph<pid>-<Name>` with address
//!   10.231.X.(10+k)/32 on its loopback; both its ports bind there;
//! - every link of the herd is a veth pair between the two servers'
//!   namespaces (`to<Neighbour>` on each end) with a /32 route to the
//!   neighbour's address over it, and no other route between namespaces,
//!   so taking a pair down really cuts that link and nothing else;
//! - each namespace also has a management veth to the root namespace
//!   (`ph<pid>m<k>` there, address 10.231.X.(100+k), and `mg` in the
//!   namespace), which is how this process, in the root namespace, talks
//!   to every server on its herd address, also while the herd is cut.
//!
//! Side A is {Riley, Jaquez} and side B {Juzang, Campbell, Bernard}: each
//! half stays connected on its own, and the cut takes down exactly the
//! links Riley–Juzang and Jaquez–Bernard.
//!
//! The herd is cut twice:
//! 1. a short cut (about a second). The servers' link connections across
//!    it stay established; the lines written into them during the cut
//!    reach the other side by TCP retransmission after the heal;
//! 2. a long cut, held until all four link directions across it have
//!    gone down: the servers' own dead-link detection (TCP keepalive and
//!    `TCP_USER_TIMEOUT` on every link, `os::detect_dead_peer`) must
//!    notice the cut within seconds, with the kernel's defaults otherwise.
//!    The heal then goes through reconnect (after a backoff of up to 2 s)
//!    and the resync of src/protocol.md#flooding.
//!
//! Each round updates both sides (the same clients on both sides with
//! different times, a same-time tie that the byte-greater AT line must
//! win, an update older than the record held, which must change nothing),
//! checks that each side converges on its own and that nothing crosses
//! the cut, heals, and checks that every server answers WHATSAT for every
//! client with the newest acknowledged AT line.
//!
//! It needs root and iproute2. It runs with its own harness (`harness =
//! false` in Cargo.toml) so that, where it cannot run, it says so loudly
//! and reports "1 not run" instead of passing quietly. Setting
//! `PROXY_HERD_REQUIRE_PARTITION=1` turns "not run" into a failure, for a
//! CI that must run it.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::netns::{choose_subnet, ip, ip_output, ip_path, prerequisites};
use support::own_harness::{self, Outcome};
use support::{temp_dir, FIVE, FIVE_LINKS};

/// The binary cargo built for this test.
const BIN: &str = env!("CARGO_BIN_EXE_proxy-herd");
/// The test's name, as `--list` and the summary line give it.
const NAME: &str = "partition";
/// The servers on side A of the cut; the others are side B.
const SIDE_A: [&str; 2] = ["Riley", "Jaquez"];
/// Every server uses the same two ports: they are on different hosts.
const CLIENT_PORT: u16 = 12000;
const PEER_PORT: u16 = 22000;
/// How long the servers may take to listen and their links to come up.
const START_BOUND: Duration = Duration::from_secs(10);
/// How long one side may take to converge while the herd is cut.
const SIDE_BOUND: Duration = Duration::from_secs(10);
/// How long the whole herd may take to converge after the heal: a link
/// may be in a 2 s backoff, and a line written into a cut TCP connection
/// waits for that connection's next retransmission, whose timer has been
/// doubling while the cut lasted.
const HEAL_BOUND: Duration = Duration::from_secs(30);
/// How long the cut is held after both sides converged, to show that
/// nothing crosses it.
const HOLD: Duration = Duration::from_secs(1);
/// Pause between two convergence polls.
const POLL: Duration = Duration::from_millis(100);

/// Which updates a check takes into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Sent to the whole herd before the cut.
    Before,
    /// Sent to side A during the cut.
    SideA,
    /// Sent to side B during the cut.
    SideB,
}

/// One IAMAT of the scenario: client, server, client time as
/// milliseconds after the run's base time, location.
type Update = (&'static str, &'static str, u64, &'static str);

/// Updates sent to the whole herd before the cut.
const BEFORE: &[Update] = &[
    ("kept", "Campbell", 1000, "+10.0+10.0"),
    ("movedA", "Riley", 1000, "+11.0+11.0"),
    ("movedB", "Bernard", 1000, "+12.0+12.0"),
    ("staleA", "Juzang", 5000, "+13.0+13.0"),
    ("staleB", "Jaquez", 5000, "+14.0+14.0"),
    ("bothA", "Juzang", 1000, "+15.0+15.0"),
];

/// Updates sent to side A during the cut. `staleA` is older than what the
/// herd holds and must change nothing; `tieRB` and `tieJJ` have the same
/// client time as their side-B twins, so the byte-greater AT line must
/// win: Riley's over Bernard's, Juzang's over Jaquez's.
const DURING_A: &[Update] = &[
    ("movedA", "Jaquez", 2000, "+21.0+21.0"),
    ("onlyA", "Riley", 2000, "+22.0+22.0"),
    ("onlyA", "Jaquez", 2500, "+22.5+22.5"),
    ("bothA", "Riley", 3000, "+23.0+23.0"),
    ("bothB", "Jaquez", 2000, "+24.0+24.0"),
    ("staleA", "Riley", 3000, "+25.0+25.0"),
    ("tieRB", "Riley", 4000, "+26.0+26.0"),
    ("tieJJ", "Jaquez", 4000, "+27.0+27.0"),
];

/// Updates sent to side B during the cut (see [`DURING_A`]).
const DURING_B: &[Update] = &[
    ("movedB", "Campbell", 2000, "+31.0+31.0"),
    ("onlyB", "Bernard", 2000, "+32.0+32.0"),
    ("onlyB", "Juzang", 2500, "+32.5+32.5"),
    ("bothA", "Campbell", 2000, "+33.0+33.0"),
    ("bothB", "Bernard", 3000, "+34.0+34.0"),
    ("staleB", "Juzang", 3000, "+35.0+35.0"),
    ("tieRB", "Bernard", 4000, "+36.0+36.0"),
    ("tieJJ", "Juzang", 4000, "+37.0+37.0"),
];

/// Clients that, besides the ones above, take a burst of updates on both
/// sides during the cut, the newest alternately on side A and side B.
const BULK_CLIENTS: u64 = 8;
/// Updates per bulk client and side.
const BULK_ROUNDS: u64 = 3;

/// Runs the scenario under the harness of `support::own_harness`, which
/// says loudly when it could not run.
fn main() -> ExitCode {
    own_harness::main(
        NAME,
        "PROXY_HERD_REQUIRE_PARTITION",
        "needs root and ip",
        || {
            install_interrupt_cleanup();
            run()
        },
    )
}

/// Everything this run created outside the process, so that it is
/// removed whatever way the run ends: the [`Cleanup`] guard on return or
/// panic, and the interrupt handler on Ctrl-C.
#[derive(Default)]
struct Created {
    servers: Vec<(String, Child)>,
    /// Root-namespace ends of the management veths.
    root_links: Vec<String>,
    namespaces: Vec<String>,
}

/// The one registry of [`Created`], shared with the interrupt handler.
static CREATED: Mutex<Option<Created>> = Mutex::new(None);

/// Runs `f` on the registry, also after a panic poisoned it (cleanup must
/// still happen then).
fn with_created<T>(f: impl FnOnce(&mut Created) -> T) -> T {
    let mut guard = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Created::default))
}

/// Kills the servers and deletes the links and namespaces of this run.
/// Idempotent: it empties the registry.
fn cleanup() {
    let created = with_created(std::mem::take);
    // SIGTERM first, so each server flushes its log (src/protocol.md#log-and-life-cycle
    // gives it 250 ms); SIGKILL whatever is still there after 1 s.
    for (_, child) in &created.servers {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    for (_, mut child) in created.servers {
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    // Deleting one end of a veth deletes the pair; the namespaces' own
    // veths go with the namespaces.
    for link in &created.root_links {
        let _ = ip(&["link", "del", link]);
    }
    for ns in &created.namespaces {
        if let Err(e) = ip(&["netns", "del", ns]) {
            eprintln!("{NAME}: WARNING: could not delete namespace {ns}: {e}");
        }
    }
}

/// Cleans up when dropped, which also happens while a panic unwinds.
struct Cleanup;

impl Drop for Cleanup {
    /// Runs [`cleanup`] however `run` ends, so no namespace or server
    /// outlives a failed or panicking run.
    fn drop(&mut self) {
        cleanup();
    }
}

/// Ctrl-C (or SIGTERM) would skip every destructor and leave namespaces
/// and servers behind; clean up and exit instead.
fn install_interrupt_cleanup() {
    let _ = ctrlc::set_handler(|| {
        eprintln!("{NAME}: interrupted; cleaning up");
        cleanup();
        std::process::exit(130);
    });
}

/// The addresses and names of this run's network.
struct Net {
    /// `ph<pid>`: the prefix of every name this run creates.
    prefix: String,
    subnet: u8,
}

impl Net {
    /// Index of a server in [`FIVE`].
    fn index(name: &str) -> u8 {
        FIVE.iter()
            .position(|n| *n == name)
            .expect("a server of FIVE") as u8
    }

    /// The server's namespace.
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The server's herd address (on its namespace's loopback).
    fn host(&self, name: &str) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 10 + Self::index(name))
    }

    /// The root namespace's address on that server's management veth.
    fn mgmt(&self, name: &str) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 100 + Self::index(name))
    }

    /// The root end of the server's management veth (at most 15 bytes:
    /// "ph" + 7 pid digits + "m" + one digit).
    fn mgmt_link(&self, name: &str) -> String {
        format!("{}m{}", self.prefix, Self::index(name))
    }

    /// Where clients of that server connect.
    fn client_addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from((self.host(name), CLIENT_PORT))
    }

    /// Runs a shell command inside the server's namespace.
    fn sh_in(&self, name: &str, script: &str) -> Result<(), String> {
        ip(&["netns", "exec", &self.ns(name), "sh", "-c", script])
    }

    /// Creates the server's namespace, its loopback address and its
    /// management veth. The first namespace's creation failing means the
    /// test cannot run here (not a failure of the herd).
    fn add_server(&self, name: &str, first: bool) -> Result<(), Outcome> {
        let ns = self.ns(name);
        if let Err(e) = ip(&["netns", "add", &ns]) {
            return Err(if first {
                Outcome::NotRun(format!("cannot create a network namespace: {e}"))
            } else {
                Outcome::Failed(e)
            });
        }
        with_created(|c| c.namespaces.push(ns.clone()));
        let failed = Outcome::Failed;
        // Answer ARP for the loopback address on any veth, and never drop
        // a packet for arriving on the "wrong" veth, whatever the
        // machine's defaults the namespace inherited.
        self.sh_in(
            name,
            "for k in all default; do \
               echo 0 > /proc/sys/net/ipv4/conf/$k/arp_ignore && \
               echo 0 > /proc/sys/net/ipv4/conf/$k/rp_filter || exit 1; \
             done",
        )
        .map_err(failed)?;
        let host = format!("{}/32", self.host(name));
        ip(&["-n", &ns, "link", "set", "lo", "up"]).map_err(failed)?;
        ip(&["-n", &ns, "addr", "add", &host, "dev", "lo"]).map_err(failed)?;
        let root = self.mgmt_link(name);
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "mg", "netns", &ns,
        ])
        .map_err(failed)?;
        with_created(|c| c.root_links.push(root.clone()));
        let mgmt = self.mgmt(name).to_string();
        ip(&["addr", "add", &format!("{mgmt}/32"), "dev", &root]).map_err(failed)?;
        ip(&["link", "set", &root, "up"]).map_err(failed)?;
        ip(&["-n", &ns, "link", "set", "mg", "up"]).map_err(failed)?;
        ip(&["route", "add", &host, "dev", &root, "src", &mgmt]).map_err(failed)?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            &format!("{mgmt}/32"),
            "dev",
            "mg",
        ])
        .map_err(failed)?;
        Ok(())
    }

    /// Creates the veth pair of one herd link and brings it up.
    fn add_link(&self, a: &str, b: &str) -> Result<(), String> {
        let (ns_a, ns_b) = (self.ns(a), self.ns(b));
        let (to_b, to_a) = (format!("to{b}"), format!("to{a}"));
        ip(&[
            "link", "add", &to_b, "netns", &ns_a, "type", "veth", "peer", "name", &to_a, "netns",
            &ns_b,
        ])?;
        self.set_link(a, b, true)
    }

    /// Brings a herd link's two ends up or down. Taking a device down
    /// also drops the routes through it, so bringing it up puts the /32
    /// routes back.
    fn set_link(&self, a: &str, b: &str, up: bool) -> Result<(), String> {
        for (me, other) in [(a, b), (b, a)] {
            let ns = self.ns(me);
            let dev = format!("to{other}");
            let state = if up { "up" } else { "down" };
            ip(&["-n", &ns, "link", "set", &dev, state])?;
            if up {
                let route = format!("{}/32", self.host(other));
                ip(&["-n", &ns, "route", "replace", &route, "dev", &dev])?;
            }
        }
        Ok(())
    }

    /// Writes the herd file: five hosts, the links of src/protocol.md#the-herd.
    fn herd_file(&self, dir: &Path) -> PathBuf {
        let servers: serde_json::Map<String, serde_json::Value> = FIVE
            .iter()
            .map(|n| {
                let entry = serde_json::json!({
                    "host": self.host(n).to_string(),
                    "port": CLIENT_PORT,
                    "peer_port": PEER_PORT,
                });
                (n.to_string(), entry)
            })
            .collect();
        let json = serde_json::json!({"servers": servers, "links": FIVE_LINKS});
        let path = dir.join("herd.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        path
    }

    /// Starts one server inside its namespace, its stderr kept in the log
    /// folder for a failure report.
    fn spawn(&self, name: &str, config: &Path, log_dir: &Path) -> Result<(), String> {
        let stderr = std::fs::File::create(log_dir.join(format!("{name}.stderr")))
            .map_err(|e| e.to_string())?;
        let child = Command::new(ip_path().ok_or("no ip")?)
            .args(["netns", "exec", &self.ns(name), BIN, name, "--config"])
            .arg(config)
            .arg("--log-dir")
            .arg(log_dir)
            .env_remove("GOOGLE_PLACES_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        with_created(|c| c.servers.push((name.to_string(), child)));
        Ok(())
    }
}

/// The side of the cut a server is on.
fn side_of(name: &str) -> Phase {
    if SIDE_A.contains(&name) {
        Phase::SideA
    } else {
        Phase::SideB
    }
}

/// Herd links that cross the cut.
fn crossing_links() -> Vec<(&'static str, &'static str)> {
    FIVE_LINKS
        .iter()
        .copied()
        .filter(|(a, b)| side_of(a) != side_of(b))
        .collect()
}

/// Servers whose process has exited, with their stderr: a crash would
/// otherwise only show up as a convergence timeout.
fn dead_servers(log_dir: &Path) -> Vec<String> {
    with_created(|c| {
        c.servers
            .iter_mut()
            .filter_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => {
                    let err = std::fs::read_to_string(log_dir.join(format!("{name}.stderr")))
                        .unwrap_or_default();
                    Some(format!("{name} exited ({status}): {}", err.trim()))
                }
                _ => None,
            })
            .collect()
    })
}

/// The test's clients: counts requests and remembers every acknowledged
/// update, which is what the expected records are computed from.
struct Clients {
    requests: usize,
    acks: BTreeMap<String, Vec<Ack>>,
    /// Client times count from here (nanoseconds since the epoch).
    base: u128,
}

impl Clients {
    /// Sends one update of the scenario to a server and records its
    /// acknowledgement.
    fn update(
        &mut self,
        net: &Net,
        phase: Phase,
        (client, server, ms, loc): (&str, &str, u64, &str),
    ) -> Result<(), String> {
        // Odd nanoseconds, so the fraction's nine digits matter.
        let time = self.base + u128::from(ms) * 1_000_000 + 123_457;
        let line = self.iamat(net.client_addr(server), client, loc, &client_time(time))?;
        self.acks
            .entry(client.to_string())
            .or_default()
            .push(Ack { phase, time, line });
        Ok(())
    }

    /// The newest acknowledged records, counting only the given phases.
    fn newest(&self, phases: &[Phase]) -> BTreeMap<String, Option<String>> {
        newest(&self.acks, phases)
    }

    /// One message on its own connection, half-closed, read to the end
    /// (the graders' pattern); bounded in time so a stuck server is an
    /// error, not a hang.
    fn exchange(&mut self, addr: SocketAddr, message: &str) -> Result<String, String> {
        self.requests += 1;
        let err = |e: std::io::Error| format!("{addr}: {e}");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(err)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(err)?;
        stream.write_all(message.as_bytes()).map_err(err)?;
        stream.shutdown(Shutdown::Write).map_err(err)?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).map_err(err)?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// Sends an IAMAT and returns the acknowledged AT line.
    fn iamat(
        &mut self,
        addr: SocketAddr,
        client: &str,
        loc: &str,
        time: &str,
    ) -> Result<String, String> {
        let reply = self.exchange(addr, &format!("IAMAT {client} {loc} {time}\n"))?;
        match reply.strip_suffix('\n') {
            Some(line) if line.starts_with("AT ") && !line.contains('\n') => Ok(line.to_string()),
            _ => Err(format!(
                "IAMAT {client} to {addr}: unexpected reply {reply:?}"
            )),
        }
    }

    /// What a server holds for a client: the first line of its WHATSAT
    /// reply (`?` and the line if it holds nothing).
    fn whatsat(&mut self, addr: SocketAddr, client: &str) -> Result<String, String> {
        let reply = self.exchange(addr, &format!("WHATSAT {client} 1 1\n"))?;
        Ok(reply.lines().next().unwrap_or_default().to_string())
    }
}

/// One acknowledged update.
struct Ack {
    phase: Phase,
    /// Client time in nanoseconds, for the newest rule.
    time: u128,
    line: String,
}

/// The newest acknowledged AT line of each client, counting only the
/// given phases: later client time first, then the byte-greater line.
fn newest(acks: &BTreeMap<String, Vec<Ack>>, phases: &[Phase]) -> BTreeMap<String, Option<String>> {
    acks.iter()
        .map(|(client, list)| {
            let best = list
                .iter()
                .filter(|a| phases.contains(&a.phase))
                .max_by(|x, y| (x.time, x.line.as_bytes()).cmp(&(y.time, y.line.as_bytes())))
                .map(|a| a.line.clone());
            (client.clone(), best)
        })
        .collect()
}

/// Checks that every listed server holds exactly the expected record of
/// every client (none: WHATSAT is refused). The first mismatch otherwise.
fn check(
    clients: &mut Clients,
    net: &Net,
    servers: &[&str],
    expected: &BTreeMap<String, Option<String>>,
) -> Result<(), String> {
    for (client, want) in expected {
        for server in servers {
            let got = clients.whatsat(net.client_addr(server), client)?;
            let ok = match want {
                Some(line) => &got == line,
                None => got.starts_with("? "),
            };
            if !ok {
                return Err(format!(
                    "{server} answers {got:?} for {client}, expected {}",
                    want.as_deref().unwrap_or("no record")
                ));
            }
        }
    }
    Ok(())
}

/// Polls `check` until it passes or `bound` has passed; how long it took,
/// or the last mismatch (and any crashed server).
fn wait_for(
    what: &str,
    bound: Duration,
    log_dir: &Path,
    check: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    wait_for_timed(what, bound, log_dir, check).map(|(done, _)| done)
}

/// [`wait_for`], also returning how long the last, passing, poll took:
/// on a loaded machine a poll of the whole herd can take a while, and the
/// reader of a figure should know how much of it is polling.
fn wait_for_timed(
    what: &str,
    bound: Duration,
    log_dir: &Path,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(Duration, Duration), String> {
    let start = Instant::now();
    loop {
        let poll = Instant::now();
        let last = match check() {
            Ok(()) => return Ok((start.elapsed(), poll.elapsed())),
            Err(e) => e,
        };
        let dead = dead_servers(log_dir);
        if !dead.is_empty() {
            return Err(format!("{what}: server died: {}", dead.join("; ")));
        }
        if start.elapsed() > bound {
            return Err(format!(
                "{what}: not done after {:.1} s; last seen: {last}",
                bound.as_secs_f64()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether a server's log says its link to `neighbour` is up now (its
/// last "link to N (...)" line ends in "up").
fn link_up(log_dir: &Path, server: &str, neighbour: &str) -> bool {
    let log = std::fs::read_to_string(log_dir.join(format!("{server}.log"))).unwrap_or_default();
    let tag = format!("link to {neighbour} (");
    log.lines()
        .rfind(|l| l.contains(&tag))
        .is_some_and(|l| l.ends_with(") up"))
}

/// Formats a client time as a client writes it: seconds and nine decimals.
fn client_time(nanos: u128) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Sets up the network, runs the scenario, and cleans up (the guard also
/// does so if anything panics).
fn run() -> Outcome {
    if let Err(reason) = prerequisites() {
        return Outcome::NotRun(reason);
    }
    let _cleanup = Cleanup;
    let subnet = match choose_subnet("10.231") {
        Ok(x) => x,
        Err(e) => return Outcome::Failed(e),
    };
    let net = Net {
        prefix: format!("ph{}", std::process::id()),
        subnet,
    };
    for (i, name) in FIVE.iter().enumerate() {
        if let Err(outcome) = net.add_server(name, i == 0) {
            return outcome;
        }
    }
    for (a, b) in FIVE_LINKS {
        if let Err(e) = net.add_link(a, b) {
            return Outcome::Failed(e);
        }
    }
    match scenario(&net) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    }
}

/// The scenario proper; any error is the reason the test failed.
fn scenario(net: &Net) -> Result<(), String> {
    let log_dir = temp_dir("partition");
    println!(
        "{NAME}: five namespaces {}-*, hosts 10.231.{}.10-14, logs in {} (kept if the test fails)",
        net.prefix,
        net.subnet,
        log_dir.display()
    );
    let result = scenario_in(net, &log_dir);
    if result.is_err() {
        log_dir.keep();
    }
    result
}

/// [`scenario`], its servers logging to `log_dir`.
fn scenario_in(net: &Net, log_dir: &Path) -> Result<(), String> {
    let config = net.herd_file(log_dir);
    let started = Instant::now();
    for name in FIVE {
        net.spawn(name, &config, log_dir)?;
    }
    // Client times count from a base in the recent past.
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        - 600 * 1_000_000_000;
    let mut clients = Clients {
        requests: 0,
        acks: BTreeMap::new(),
        base,
    };
    // Every server listens, and every link of the herd is up both ways,
    // so that the cut hits established connections.
    wait_for("servers to listen", START_BOUND, log_dir, || {
        for name in FIVE {
            TcpStream::connect_timeout(&net.client_addr(name), Duration::from_millis(500))
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    })?;
    wait_for("every link to come up", START_BOUND, log_dir, || {
        all_links_up(log_dir)
    })?;
    let startup = started.elapsed();
    for &update in BEFORE {
        clients.update(net, Phase::Before, update)?;
    }
    let expected = clients.newest(&[Phase::Before]);
    let first = wait_for(
        "the herd to converge before the cut",
        SIDE_BOUND,
        log_dir,
        || check(&mut clients, net, &FIVE, &expected),
    )?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{NAME}: started 5 servers in 5 namespaces, all 12 link directions up in {:.0} ms; {} updates before the cut converged in {:.0} ms",
        ms(startup),
        BEFORE.len(),
        ms(first)
    );

    // Round 1: a short cut, which the servers' links never notice.
    cut_round(&mut clients, net, log_dir, 1, 0, false)?;
    // Round 2: a cut long enough for the servers to notice it (their
    // links' keepalive and user timeout), so the heal goes through
    // reconnect and resync.
    cut_round(&mut clients, net, log_dir, 2, 100_000, true)?;

    let dead = dead_servers(log_dir);
    if !dead.is_empty() {
        return Err(format!("servers died: {}", dead.join("; ")));
    }
    println!(
        "{NAME}: {} requests in all, {:.1} s in all",
        clients.requests,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One cut, updates on both sides, heal and convergence check, with its
/// figures printed. `offset` (ms) makes this round's client times newer
/// than the last round's. With `await_drop`, the cut is held until every
/// link across it has gone down (the link's connection timed out), so
/// the heal has to reconnect and resync.
fn cut_round(
    clients: &mut Clients,
    net: &Net,
    log_dir: &Path,
    round: u32,
    offset: u64,
    await_drop: bool,
) -> Result<(), String> {
    let tag = format!("{NAME}: round {round}");
    let cut = crossing_links();
    let side_a: Vec<&str> = SIDE_A.to_vec();
    let side_b: Vec<&str> = FIVE
        .iter()
        .copied()
        .filter(|n| !SIDE_A.contains(n))
        .collect();
    let drops_before = link_drops(log_dir);
    for &(a, b) in &cut {
        net.set_link(a, b, false)?;
    }
    let cut_at = Instant::now();
    let mut sent = (0, 0);
    // Interleave the sides' updates, as if both had clients at once.
    for i in 0..DURING_A.len().max(DURING_B.len()) {
        if let Some(&(c, s, t, l)) = DURING_A.get(i) {
            clients.update(net, Phase::SideA, (c, s, t + offset, l))?;
            sent.0 += 1;
        }
        if let Some(&(c, s, t, l)) = DURING_B.get(i) {
            clients.update(net, Phase::SideB, (c, s, t + offset, l))?;
            sent.1 += 1;
        }
    }
    for r in 0..BULK_ROUNDS {
        for c in 0..BULK_CLIENTS {
            // The last side to write a bulk client alternates with c.
            let a_newer = c % 2 == 0;
            let time = |later: bool| offset + 10_000 + r * 100 + u64::from(later) * 50;
            let client = format!("bulk{c}");
            let a = side_a[(c + r) as usize % side_a.len()];
            let b = side_b[(c + r) as usize % side_b.len()];
            let loc_a = format!("+{c}.{r}1-{c}.{r}1");
            let loc_b = format!("-{c}.{r}2+{c}.{r}2");
            clients.update(net, Phase::SideA, (&client, a, time(a_newer), &loc_a))?;
            clients.update(net, Phase::SideB, (&client, b, time(!a_newer), &loc_b))?;
            sent.0 += 1;
            sent.1 += 1;
        }
    }
    let sides_time = cut_at.elapsed();
    let want_a = clients.newest(&[Phase::Before, Phase::SideA]);
    let want_b = clients.newest(&[Phase::Before, Phase::SideB]);
    let want_all = clients.newest(&[Phase::Before, Phase::SideA, Phase::SideB]);
    let conv_a = wait_for(
        "side A to converge during the cut",
        SIDE_BOUND,
        log_dir,
        || check(clients, net, &side_a, &want_a),
    )?;
    let conv_b = wait_for(
        "side B to converge during the cut",
        SIDE_BOUND,
        log_dir,
        || check(clients, net, &side_b, &want_b),
    )?;
    let dropped_after = if await_drop {
        wait_for(
            "the links across the cut to time out",
            SIDE_BOUND,
            log_dir,
            || {
                for &(a, b) in &cut {
                    for (me, other) in [(a, b), (b, a)] {
                        if link_up(log_dir, me, other) {
                            return Err(format!("{me}'s link to {other} is still up"));
                        }
                    }
                }
                Ok(())
            },
        )?;
        Some(cut_at.elapsed())
    } else {
        None
    };
    // Nothing crossed the cut: after a while, each side still holds only
    // its own updates.
    std::thread::sleep(HOLD);
    check(clients, net, &side_a, &want_a)
        .map_err(|e| format!("round {round}: the cut leaked into side A: {e}"))?;
    check(clients, net, &side_b, &want_b)
        .map_err(|e| format!("round {round}: the cut leaked into side B: {e}"))?;
    let differing = want_a.iter().filter(|(c, w)| want_b[*c] != **w).count();
    let cut_held = cut_at.elapsed();

    // The heal.
    for &(a, b) in &cut {
        net.set_link(a, b, true)?;
    }
    let requests_before_heal = clients.requests;
    let (healed, last_poll) = wait_for_timed(
        "the herd to converge after the heal",
        HEAL_BOUND,
        log_dir,
        || check(clients, net, &FIVE, &want_all),
    )?;
    let heal_requests = clients.requests - requests_before_heal;
    // The links across the cut come back too (in round 2 they went down).
    let relinked = wait_for(
        "every link to be up after the heal",
        START_BOUND,
        log_dir,
        || all_links_up(log_dir),
    )?;
    let drops = link_drops(log_dir) - drops_before;

    // Which side won where the sides disagreed.
    let (mut won_a, mut won_b) = (0, 0);
    for (client, want) in &want_all {
        if want_a[client] != want_b[client] {
            if want == &want_a[client] {
                won_a += 1;
            } else {
                won_b += 1;
            }
        }
    }
    let server_of = |client: &str| {
        want_all[client]
            .as_deref()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("?")
            .to_string()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{tag}: cut {} (both ends down); sent {} updates to side A {side_a:?} and {} to side B {side_b:?} in {:.0} ms",
        cut.iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(" and "),
        sent.0,
        sent.1,
        ms(sides_time)
    );
    println!(
        "{tag}: during the cut side A converged in {:.0} ms, side B in {:.0} ms; {differing} of {} clients differed across the cut; held {:.1} s with nothing crossing",
        ms(conv_a),
        ms(conv_b),
        want_all.len(),
        cut_held.as_secs_f64()
    );
    if let Some(dropped) = dropped_after {
        println!(
            "{tag}: all 4 link directions across the cut had timed out {:.0} ms after the cut",
            ms(dropped)
        );
    }
    println!(
        "{tag}: healed; all 5 servers agree on the newest record of all {} clients {:.0} ms after the heal ({heal_requests} WHATSAT polls, the last full poll of the herd took {:.0} ms); newest from side A for {won_a}, side B for {won_b}; ties: tieRB -> {}, tieJJ -> {}",
        want_all.len(),
        ms(healed),
        ms(last_poll),
        server_of("tieRB"),
        server_of("tieJJ"),
    );
    println!(
        "{tag}: link drops logged during the round: {drops}; all 12 link directions up {:.0} ms after convergence{}",
        ms(relinked),
        if drops == 0 {
            " (no link noticed the cut: TCP retransmission carried the lines over)"
        } else {
            " (links reconnected and resynced)"
        }
    );
    if await_drop && drops < 4 {
        return Err(format!(
            "round {round}: expected the 4 link directions across the cut to drop, saw {drops} drops"
        ));
    }
    println!("{tag}: {}", stale_peer_connections(net));
    // This round's updates are history for the next one.
    for list in clients.acks.values_mut() {
        for ack in list {
            ack.phase = Phase::Before;
        }
    }
    Ok(())
}

/// Whether every server's log says all its links are up; the first one
/// that is not otherwise.
fn all_links_up(log_dir: &Path) -> Result<(), String> {
    for (a, b) in FIVE_LINKS {
        for (me, other) in [(a, b), (b, a)] {
            if !link_up(log_dir, me, other) {
                return Err(format!("{me}'s link to {other} is not up"));
            }
        }
    }
    Ok(())
}

/// How many times the servers have logged a link going down.
fn link_drops(log_dir: &Path) -> usize {
    FIVE.iter()
        .map(|n| {
            std::fs::read_to_string(log_dir.join(format!("{n}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("link to ") && l.ends_with(") down"))
                .count()
        })
        .sum()
}

/// Counts, per server, the established connections on its peer port
/// (from `ss` in its namespace). Each neighbour should hold one; more
/// means a link connection the neighbour abandoned is still held open
/// here. Informational: reported, not asserted.
fn stale_peer_connections(net: &Net) -> String {
    let counts: Vec<String> = FIVE
        .iter()
        .map(|n| {
            let out = ip_output(&[
                "netns",
                "exec",
                &net.ns(n),
                "ss",
                "-Htn",
                "state",
                "established",
                &format!("( sport = :{PEER_PORT} )"),
            ])
            .unwrap_or_default();
            let held = out.lines().filter(|l| !l.trim().is_empty()).count();
            let neighbours = FIVE_LINKS.iter().filter(|(a, b)| a == n || b == n).count();
            format!("{n} {held}/{neighbours}")
        })
        .collect();
    format!(
        "peer-port connections held / neighbours: {}",
        counts.join(", ")
    )
}
