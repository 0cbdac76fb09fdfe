//! Starting what the bench measures as separate processes: herds of
//! `proxy-herd` servers from a herd file the bench writes, `places-stub`,
//! and baseline servers (this binary's `baseline --serve-for`).
//!
//! Everything listens on free loopback ports, logs into a fresh temporary
//! folder, and is killed when its [`Procs`] is dropped (the folder is
//! removed too unless `--keep-logs`). Readiness is waited for, bounded in
//! time: every client port accepts, and in a herd of several servers an
//! update sent to each server has reached every other one, so every link
//! has been up at least once before measuring starts.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use proxy_herd::herd::Herd;

use super::client::{self, ClientClock, Conn};

/// The five servers of src/protocol.md#the-herd and their links.
pub use proxy_herd::herd::{DEFAULT_LINKS as FIVE_LINKS, DEFAULT_NAMES as FIVE};

/// How long anything started may take to be ready.
pub const READY_PATIENCE: Duration = Duration::from_secs(15);

/// What `{places_url}` becomes where the bench starts no Places
/// stand-in: loopback's discard port, which nothing serves here.
const NO_PLACES_URL: &str = "http://127.0.0.1:9/maps/api/place/nearbysearch/json";

/// The API key spawned herds and direct stub calls use (the stub accepts
/// any non-empty key).
pub const STUB_KEY: &str = "bench-key";

/// A loopback port nothing is using, for a server that will bind it
/// later: see [`proxy_herd::herd::free_port`], shared with the tests.
pub fn free_port() -> Result<u16, String> {
    proxy_herd::herd::free_port().map_err(|e| format!("cannot find a free port: {e}"))
}

/// Child processes and their folder, killed and removed on drop.
pub struct Procs {
    /// The folder with the herd file and the logs.
    pub dir: PathBuf,
    children: Vec<(String, Child)>,
    keep: bool,
}

impl Procs {
    /// A fresh folder under the system's temp folder.
    pub fn new(tag: &str, keep: bool) -> Result<Procs, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "proxy-herd-bench-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Procs {
            dir,
            children: Vec::new(),
            keep,
        })
    }

    /// Starts a program, its output appended to `<name>.out` in the
    /// folder (a server started again keeps what it said before). Returns
    /// its process id.
    pub fn spawn(&mut self, name: &str, mut command: Command) -> Result<u32, String> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.out")))
            .map_err(|e| format!("cannot create the output file of {name}: {e}"))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot share the output file of {name}: {e}"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        let pid = child.id();
        // A server started again replaces its earlier process, which has
        // exited (or is made to): one child per name.
        if let Some(at) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut old) = self.children.remove(at);
            let _ = old.kill();
            let _ = old.wait();
        }
        self.children.push((name.to_string(), child));
        Ok(pid)
    }

    /// Fails if a child has already exited (a port taken, say), quoting
    /// its output.
    pub fn check_alive(&mut self) -> Result<(), String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let out = std::fs::read_to_string(self.dir.join(format!("{name}.out")))
                    .unwrap_or_default();
                return Err(format!("{name} exited ({status}): {}", out.trim()));
            }
        }
        Ok(())
    }
}

impl Procs {
    /// Stops the child started as `name`: SIGTERM, or SIGKILL at once
    /// when `grace` is zero, then SIGKILL if it is still running after
    /// `grace`. Says how it ended.
    pub fn stop(&mut self, name: &str, grace: Duration) -> Result<Stopped, String> {
        let at = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| format!("{name} is not running"))?;
        let (_, mut child) = self.children.remove(at);
        let started = Instant::now();
        if !grace.is_zero() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            while started.elapsed() < grace {
                if let Ok(Some(status)) = child.try_wait() {
                    return Ok(Stopped {
                        after: started.elapsed(),
                        status: Some(status),
                    });
                }
                thread::sleep(Duration::from_millis(2));
            }
        }
        let _ = child.kill();
        child
            .wait()
            .map_err(|e| format!("cannot wait for {name}: {e}"))?;
        Ok(Stopped {
            after: started.elapsed(),
            status: None,
        })
    }

    /// Whether the child started as `name` is still running.
    pub fn alive(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .any(|(n, child)| n == name && matches!(child.try_wait(), Ok(None)))
    }
}

/// How a stopped child ended.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// From the first signal to its end.
    pub after: Duration,
    /// Its exit status when it exited on SIGTERM within the grace time;
    /// `None` when it took SIGKILL.
    pub status: Option<std::process::ExitStatus>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Finds a binary of this crate in `dir`.
pub fn binary(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "cannot find {name} in {}: build the binaries first (cargo build --release --bins) \
             or point --bin-dir at them",
            dir.display()
        ))
    }
}

/// Waits until `addr` accepts a connection.
pub fn wait_listening(addr: SocketAddr, procs: &mut Procs) -> Result<(), String> {
    let deadline = Instant::now() + READY_PATIENCE;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        procs.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing listens on {addr} after {READY_PATIENCE:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `addr` accepts a connection, failing early if the child
/// `name` exits (whatever the other children do).
pub fn wait_started(addr: SocketAddr, procs: &mut Procs, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_PATIENCE;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !procs.alive(name) {
            let out =
                std::fs::read_to_string(procs.dir.join(format!("{name}.out"))).unwrap_or_default();
            let tail: Vec<&str> = out.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let said = if tail.is_empty() {
                "it printed nothing".to_string()
            } else {
                tail.join(" / ")
            };
            return Err(format!(
                "{name} exited before it listened on {addr}: {said}"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing listens on {addr} after {READY_PATIENCE:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// One running server of a spawned herd.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its client port.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
}

/// An extra member of the herd that the bench plays itself (`flood`):
/// named in the herd file, linked to `link_to`, but not started.
pub struct Member {
    /// Its name in the herd.
    pub name: String,
    /// The peer port the bench listens on.
    pub peer_port: u16,
    /// The server it is linked to.
    pub link_to: String,
}

/// A spawned herd.
pub struct SpawnedHerd {
    /// The processes, held only to be dropped: that stops the herd.
    _procs: Procs,
    /// The herd as written to the herd file.
    pub herd: Herd,
    /// The running servers by name.
    pub servers: BTreeMap<String, Server>,
    /// The stub's Nearby Search URL, when started with one.
    pub stub_url: Option<String>,
}

/// What herd to start.
pub struct HerdPlan<'a> {
    /// Server names.
    pub names: &'a [&'a str],
    /// Links between them.
    pub links: &'a [(&'a str, &'a str)],
    /// A member the bench plays itself.
    pub member: Option<Member>,
    /// Start `places-stub` and point the herd at it (with a key).
    pub stub: bool,
    /// Start only this server; the others are in the herd file but down.
    pub only: Option<&'a str>,
}

/// Writes a herd file for the plan on free loopback ports, starts every
/// server (and the stub), and waits until the herd is ready.
pub fn start_herd(bin_dir: &Path, plan: HerdPlan<'_>, keep: bool) -> Result<SpawnedHerd, String> {
    let herd_bin = binary(bin_dir, "proxy-herd")?;
    let mut procs = Procs::new("herd", keep)?;
    let stub_url = if plan.stub {
        Some(start_stub(bin_dir, &mut procs)?)
    } else {
        None
    };
    let (file, herd) = write_herd_file(&procs.dir, plan.names, plan.links, plan.member.as_ref())?;
    let mut running = BTreeMap::new();
    for name in plan.names {
        if plan.only.is_some_and(|only| only != *name) {
            continue;
        }
        let command = server_command(&herd_bin, name, &file, &procs.dir, stub_url.as_deref());
        let pid = procs.spawn(name, command)?;
        let spec = herd.server(name).map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], spec.port));
        running.insert(name.to_string(), Server { addr, pid });
    }
    for server in running.values() {
        wait_listening(server.addr, &mut procs)?;
    }
    if running.len() > 1 {
        wait_linked(&running)?;
    }
    Ok(SpawnedHerd {
        _procs: procs,
        herd,
        servers: running,
        stub_url,
    })
}

/// Starts the bare relay herd of the five (the ceiling, see `relay`),
/// with the bench's member linked to `member.link_to`: each server this
/// binary's `relay` mode, serving for `serve_for`.
pub fn start_relay_herd(
    bin_dir: &Path,
    member: Member,
    serve_for: Duration,
    keep: bool,
) -> Result<SpawnedHerd, String> {
    let bench_bin = binary(bin_dir, "proxy-herd-bench")?;
    let mut procs = Procs::new("relay", keep)?;
    let (file, herd) = write_herd_file(&procs.dir, &FIVE, &FIVE_LINKS, Some(&member))?;
    let mut running = BTreeMap::new();
    for name in FIVE {
        let mut command = Command::new(&bench_bin);
        command
            .args(["--quiet", "relay", name, "--herd"])
            .arg(&file)
            .arg("--serve-for")
            .arg(format!("{}", serve_for.as_secs_f64().ceil()));
        let pid = procs.spawn(&format!("relay-{name}"), command)?;
        let spec = herd.server(name).map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], spec.port));
        running.insert(name.to_string(), Server { addr, pid });
    }
    listening(procs, herd, running)
}

/// Starts `places-stub` on a port the kernel gives it and returns its
/// Nearby Search URL, read from the line it prints. Nothing names the
/// stub's port beforehand, so unlike a herd's ports it can bind port 0:
/// no other process's [`free_port`] (below the kernel's range) can pick
/// the same port while it starts.
pub fn start_stub(bin_dir: &Path, procs: &mut Procs) -> Result<String, String> {
    let stub_bin = binary(bin_dir, "places-stub")?;
    let mut command = Command::new(stub_bin);
    command.args(["--host", "127.0.0.1", "--port", "0"]);
    procs.spawn("places-stub", command)?;
    let out = procs.dir.join("places-stub.out");
    let deadline = Instant::now() + READY_PATIENCE;
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(url) = text
            .split("serving MADE-UP places on ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
        {
            return Ok(url.trim().to_string());
        }
        procs.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "places-stub did not say where it listens within {READY_PATIENCE:?}"
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Writes `dir/herd.json`: the servers on free loopback client and peer
/// ports, their links, and the bench's own member if there is one.
pub fn write_herd_file(
    dir: &Path,
    names: &[&str],
    links: &[(&str, &str)],
    member: Option<&Member>,
) -> Result<(PathBuf, Herd), String> {
    let mut servers = serde_json::Map::new();
    for name in names {
        servers.insert(
            name.to_string(),
            serde_json::json!({"host": "127.0.0.1", "port": free_port()?, "peer_port": free_port()?}),
        );
    }
    let mut links: Vec<(String, String)> = links
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    if let Some(member) = member {
        servers.insert(
            member.name.clone(),
            serde_json::json!({"host": "127.0.0.1", "port": free_port()?, "peer_port": member.peer_port}),
        );
        links.push((member.link_to.clone(), member.name.clone()));
    }
    let file = dir.join("herd.json");
    let json = serde_json::json!({"servers": servers, "links": links});
    std::fs::File::create(&file)
        .and_then(|mut f| {
            f.write_all(
                serde_json::to_string_pretty(&json)
                    .unwrap_or_default()
                    .as_bytes(),
            )
        })
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let herd = Herd::from_file(&file).map_err(|e| e.to_string())?;
    Ok((file, herd))
}

/// The command that starts our server `name` of the herd file `file`,
/// logging into `log_dir`, with Places at `stub_url` (or no key at all,
/// so that a WHATSAT is answered at once, without a request).
pub fn server_command(
    herd_bin: &Path,
    name: &str,
    file: &Path,
    log_dir: &Path,
    stub_url: Option<&str>,
) -> Command {
    let mut command = Command::new(herd_bin);
    command
        .arg(name)
        .arg("--config")
        .arg(file)
        .arg("--log-dir")
        .arg(log_dir);
    match stub_url {
        Some(url) => command
            .env("PLACES_URL", url)
            .env("GOOGLE_PLACES_API_KEY", STUB_KEY),
        None => command
            .env_remove("PLACES_URL")
            .env_remove("GOOGLE_PLACES_API_KEY"),
    };
    command
}

/// The command that starts server `name` of another herd from a
/// template: `{name}`, `{port}`, `{config}` and `{places_url}` replaced,
/// run by `sh`, which `exec`s it so that the process id is the server's
/// own. With a Places URL, `PLACES_URL` and a key are in its
/// environment too.
pub fn template_command(
    template: &str,
    name: &str,
    port: u16,
    config: &Path,
    places_url: Option<&str>,
) -> Command {
    let command_line = template
        .replace("{name}", name)
        .replace("{port}", &port.to_string())
        .replace("{config}", &config.to_string_lossy())
        // The speed modes never send it a WHATSAT; a template written for
        // check still needs a URL there, so it gets one nothing answers.
        .replace("{places_url}", places_url.unwrap_or(NO_PLACES_URL));
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!("exec {command_line}"));
    if let Some(url) = places_url {
        command
            .env("PLACES_URL", url)
            .env("GOOGLE_PLACES_API_KEY", STUB_KEY);
    }
    command
}

/// A herd once every one of its servers accepts on its client port.
fn listening(
    mut procs: Procs,
    herd: Herd,
    running: BTreeMap<String, Server>,
) -> Result<SpawnedHerd, String> {
    for server in running.values() {
        wait_listening(server.addr, &mut procs)?;
    }
    Ok(SpawnedHerd {
        _procs: procs,
        herd,
        servers: running,
        stub_url: None,
    })
}

/// Starts another herd, one process per server of `config`, from a
/// command template ({name}, {port} and {config} replaced; run by `sh`,
/// which `exec`s it so that the process id is the server's own), and
/// waits until every client port answers. Nothing else is assumed of
/// that herd: no peer port of ours, no Places stand-in.
pub fn start_command_herd(
    template: &str,
    config: &Path,
    only: Option<&str>,
    keep: bool,
) -> Result<SpawnedHerd, String> {
    let config =
        std::fs::canonicalize(config).map_err(|e| format!("--config {}: {e}", config.display()))?;
    let herd = Herd::from_file(&config).map_err(|e| e.to_string())?;
    let mut procs = Procs::new("other", keep)?;
    let mut running = BTreeMap::new();
    for spec in herd.servers().filter(|s| only.is_none_or(|o| o == s.name)) {
        let command = template_command(template, &spec.name, spec.port, &config, None);
        let pid = procs.spawn(&spec.name, command)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], spec.port));
        running.insert(spec.name.clone(), Server { addr, pid });
    }
    listening(procs, herd, running)
}

/// Sends one IAMAT to each server and waits until every server holds
/// every one of them.
fn wait_linked(servers: &BTreeMap<String, Server>) -> Result<(), String> {
    let mut expected = Vec::new();
    for (name, server) in servers {
        let id = format!("bench-probe-{}-{name}", std::process::id());
        let line = iamat_once(server.addr, &id)?;
        expected.push((id, line));
    }
    let addrs: Vec<(String, SocketAddr)> =
        servers.iter().map(|(n, s)| (n.clone(), s.addr)).collect();
    let missing = converge(&addrs, &expected, READY_PATIENCE);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the herd did not link up within {READY_PATIENCE:?}: {}",
            missing.join("; ")
        ))
    }
}

/// Sends one IAMAT for `client` and returns the AT line of the reply.
pub fn iamat_once(addr: SocketAddr, client: &str) -> Result<String, String> {
    let mut conn = Conn::open(addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (line, tail) = client::iamat(client, &ClientClock::default().tick());
    conn.send(&line)
        .and_then(|()| conn.read_until(b"\n"))
        .map_err(|e| format!("IAMAT to {addr}: {e}"))
        .and_then(|reply| client::check_at(&reply, &tail))
}

/// Polls every server with WHATSAT until each holds exactly the expected
/// AT line for each client, or `patience` runs out. Returns what is still
/// missing (empty when all arrived). WHATSAT asks for 1 place within 1 m,
/// so a herd without a key answers at once.
pub fn converge(
    servers: &[(String, SocketAddr)],
    expected: &[(String, String)],
    patience: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + patience;
    let mut pending: Vec<(usize, usize)> = (0..servers.len())
        .flat_map(|s| (0..expected.len()).map(move |e| (s, e)))
        .collect();
    loop {
        let mut conns: BTreeMap<usize, Conn> = BTreeMap::new();
        pending.retain(|&(s, e)| {
            let (client, line) = &expected[e];
            let conn = match conns.entry(s) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    match Conn::open(servers[s].1, Duration::from_secs(5)) {
                        Ok(c) => e.insert(c),
                        Err(_) => return true,
                    }
                }
            };
            let held = conn
                .send(&format!("WHATSAT {client} 0.001 1\n"))
                .and_then(|()| conn.read_until(b"\n"));
            match held {
                Ok(first) if first.starts_with('?') => true,
                Ok(first) => {
                    // Read the rest of the reply: the JSON and the blank line.
                    let rest = conn.read_until(b"\n\n");
                    if rest.is_err() {
                        conns.remove(&s);
                    }
                    first.trim_end() != line
                }
                Err(_) => {
                    conns.remove(&s);
                    true
                }
            }
        });
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    pending
        .iter()
        .map(|&(s, e)| format!("{} lacks {}", servers[s].0, expected[e].0))
        .collect()
}

/// Starts a baseline server process, forwarding AT lines to `forward` if
/// given. Returns its client address and process id.
pub fn start_baseline(
    bin_dir: &Path,
    procs: &mut Procs,
    forward: Option<SocketAddr>,
    serve_for: Duration,
) -> Result<Server, String> {
    let bench_bin = binary(bin_dir, "proxy-herd-bench")?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = Command::new(bench_bin);
    command
        .args(["--quiet", "baseline", "--listen"])
        .arg(addr.to_string())
        .arg("--serve-for")
        .arg(format!("{}", serve_for.as_secs_f64().ceil()));
    if let Some(to) = forward {
        command.arg("--forward").arg(to.to_string());
    }
    let pid = procs.spawn(&format!("baseline-{port}"), command)?;
    wait_listening(addr, procs)?;
    Ok(Server { addr, pid })
}

/// Resident memory (VmRSS) and thread count of a process, from
/// `/proc/PID/status`.
pub fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((field("VmRSS:")? * 1024, field("Threads:")?))
}

/// The client-side ports of every TCP connection to or from `port` on
/// this machine (any state but LISTEN), from `/proc/net/tcp` and
/// `/proc/net/tcp6`. Connections opened between two calls show up as new
/// ports; closed ones stay visible while in TIME_WAIT.
pub fn client_ports_of(port: u16) -> std::collections::BTreeSet<u16> {
    let mut ports = std::collections::BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] == "0A" {
                continue;
            }
            let port_of = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let (local, remote) = (port_of(f[1]), port_of(f[2]));
            if remote == Some(port) {
                ports.extend(local);
            } else if local == Some(port) {
                ports.extend(remote);
            }
        }
    }
    ports
}
