//! Helpers for tests that run the real `proxy-herd` binary as processes.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
/// its client port answers.
pub fn spawn(name: &str, config: &Path, log_dir: &Path) -> Proc {
    let child = Command::new(BIN)
        .args([name, "--config"])
        .arg(config)
        .arg("--log-dir")
        .arg(log_dir)
        .env_remove("GOOGLE_PLACES_API_KEY")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port_of(config, name)).into();
    wait_until(&format!("{name} to listen"), || {
        TcpStream::connect(addr).is_ok()
    });
    Proc(child)
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
