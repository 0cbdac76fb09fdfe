//! Helpers for tests that run the real `proxy-herd` binary as processes.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{herd_on_free_ports, wait_until, PATIENCE};

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_proxy-herd");

/// Writes a herd file with the given servers (on free ports) and links.
pub fn herd_file(dir: &Path, names: &[&str], links: &[(&str, &str)]) -> PathBuf {
    let file = herd_on_free_ports(names, links);
    let servers: serde_json::Map<String, serde_json::Value> = file
        .servers
        .iter()
        .map(|(name, e)| {
            let entry =
                serde_json::json!({"host": e.host, "port": e.port, "peer_port": e.peer_port});
            (name.clone(), entry)
        })
        .collect();
    let json = serde_json::json!({"servers": servers, "links": file.links});
    let path = dir.join("herd.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

pub fn port_of(path: &Path, name: &str) -> u16 {
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["servers"][name]["port"].as_u64().unwrap() as u16
}

/// A server process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `proxy-herd NAME --config FILE --log-dir DIR` and waits until
/// both its ports answer. Its stderr goes to `DIR/NAME.stderr`, quoted if
/// it exits instead.
pub fn spawn(name: &str, config: &Path, log_dir: &Path) -> Proc {
    spawn_with(name, config, log_dir, &[])
}

/// Like [`spawn`], with more flags after the usual ones.
pub fn spawn_with(name: &str, config: &Path, log_dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args([name, "--config"])
        .arg(config)
        .arg("--log-dir")
        .arg(log_dir)
        .args(args)
        .env_remove("GOOGLE_PLACES_API_KEY");
    start(name, config, log_dir, cmd)
}

/// Runs `cmd` (a `proxy-herd NAME` command) with stderr in
/// `DIR/NAME.stderr`, and waits until the client and
/// peer ports of NAME in `config` both answer while the process still
/// runs.
pub fn start(name: &str, config: &Path, log_dir: &Path, mut cmd: Command) -> Proc {
    let stderr_path = log_dir.join(format!("{name}.stderr"));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let child = cmd.stderr(stderr).spawn().unwrap();
    let mut proc = Proc(child);
    let text = std::fs::read_to_string(config).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let port = |key: &str| v["servers"][name][key].as_u64().map(|p| p as u16);
    let client = port("port").unwrap();
    let peer = port("peer_port").unwrap_or(client + 10000);
    wait_until(&format!("{name} to listen"), || {
        if let Some(status) = proc.0.try_wait().unwrap() {
            let why = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("{name} exited ({status}) instead of listening: {why}");
        }
        [client, peer]
            .iter()
            .all(|&p| TcpStream::connect(("127.0.0.1", p)).is_ok())
    });
    proc
}

pub fn signal(proc: &Proc, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for a process to exit (at most PATIENCE) and returns its status
/// and how long it took.
pub fn wait_exit(proc: &mut Proc) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        assert!(start.elapsed() < PATIENCE, "process did not exit");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The client address of a server in a herd file.
pub fn addr_of(path: &Path, name: &str) -> SocketAddr {
    ([127, 0, 0, 1], port_of(path, name)).into()
}
