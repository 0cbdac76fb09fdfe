//! The herd under check: its servers, each started, stopped and started
//! again on its own, and the Places stand-in it was pointed at.
//!
//! Our herd is started from the release binaries on free loopback ports,
//! in the topology of `--config` (or the built-in five). Another herd is
//! started from its command template, on the ports of its herd file. Both
//! get a `places-stub` of their own; nothing is assumed of either but
//! its client ports and the links its herd file lists.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proxy_herd::herd::Herd;

use crate::spawn::{self, Procs, Stopped};

/// How a server of the herd is started.
enum Launch {
    /// Our `proxy-herd`, from a herd file the bench wrote.
    Ours { bin: PathBuf, file: PathBuf },
    /// Another herd's command template, with its own herd file.
    Template { template: String, config: PathBuf },
}

/// A herd whose servers the check starts and stops.
pub struct Subject {
    /// How the scorecard names it: `proxy-herd`, or `other`.
    pub label: String,
    /// Its servers, client ports and links.
    pub herd: Herd,
    /// The Nearby Search URL of its `places-stub`.
    pub stub_url: String,
    procs: Procs,
    launch: Launch,
}

impl Subject {
    /// Our herd in the topology of `shape` (names and links; its ports
    /// are not used), not yet started.
    pub fn ours(bin_dir: &Path, shape: &Herd, keep: bool) -> Result<Subject, String> {
        let bin = spawn::binary(bin_dir, "proxy-herd")?;
        let mut procs = Procs::new("check", keep)?;
        let stub_url = spawn::start_stub(bin_dir, &mut procs)?;
        let names: Vec<String> = shape.servers().map(|s| s.name.clone()).collect();
        let links = links_of(shape);
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let link_refs: Vec<(&str, &str)> = links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (file, herd) = spawn::write_herd_file(&procs.dir, &name_refs, &link_refs, None)?;
        Ok(Subject {
            label: "proxy-herd".into(),
            herd,
            stub_url,
            procs,
            launch: Launch::Ours { bin, file },
        })
    }

    /// Another herd, started per server from `template` with the herd
    /// file `config`, not yet started. Its servers must be on loopback.
    pub fn other(
        bin_dir: &Path,
        template: &str,
        config: &Path,
        keep: bool,
    ) -> Result<Subject, String> {
        let config = std::fs::canonicalize(config)
            .map_err(|e| format!("--config {}: {e}", config.display()))?;
        let herd = Herd::from_file(&config).map_err(|e| e.to_string())?;
        for spec in herd.servers() {
            let loopback = (spec.host.as_str(), spec.port)
                .to_socket_addrs()
                .map(|mut a| a.all(|a| a.ip().is_loopback()))
                .unwrap_or(false);
            if !loopback {
                return Err(format!(
                    "--config: {} is on {}, not on loopback; the check talks only to 127.0.0.0/8",
                    spec.name, spec.host
                ));
            }
        }
        let mut procs = Procs::new("check-other", keep)?;
        let stub_url = spawn::start_stub(bin_dir, &mut procs)?;
        Ok(Subject {
            label: "other".into(),
            herd,
            stub_url,
            procs,
            launch: Launch::Template {
                template: template.to_string(),
                config,
            },
        })
    }

    /// Every server's name, in the herd file's order.
    pub fn names(&self) -> Vec<String> {
        self.herd.servers().map(|s| s.name.clone()).collect()
    }

    /// The client address of `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let port = self.herd.server(name).map_or(0, |s| s.port);
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The names of `name`'s neighbours.
    pub fn neighbours(&self, name: &str) -> Vec<String> {
        self.herd
            .neighbours(name)
            .into_iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Starts `name` and waits until its client port accepts.
    pub fn start(&mut self, name: &str) -> Result<(), String> {
        let spec = self.herd.server(name).map_err(|e| e.to_string())?;
        let command: Command = match &self.launch {
            Launch::Ours { bin, file } => {
                spawn::server_command(bin, name, file, &self.procs.dir, Some(&self.stub_url))
            }
            Launch::Template { template, config } => {
                spawn::template_command(template, name, spec.port, config, Some(&self.stub_url))
            }
        };
        let addr = self.addr(name);
        self.procs.spawn(name, command)?;
        spawn::wait_started(addr, &mut self.procs, name)
    }

    /// Starts every server.
    pub fn start_all(&mut self) -> Result<(), String> {
        for name in self.names() {
            self.start(&name)?;
        }
        Ok(())
    }

    /// Stops `name`: SIGTERM with `grace` to exit, then SIGKILL (at once
    /// when `grace` is zero).
    pub fn stop(&mut self, name: &str, grace: Duration) -> Result<Stopped, String> {
        self.procs.stop(name, grace)
    }

    /// Whether `name`'s process is still running.
    pub fn alive(&mut self, name: &str) -> bool {
        self.procs.alive(name)
    }

    /// Whether `name`'s process exits within `patience`: after a
    /// connection was dropped, a crashing server may still be on its way
    /// out.
    pub fn exits_within(&mut self, name: &str, patience: Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        while self.alive(name) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The servers an update taken by `from` can reach over the herd's
    /// links without passing through a server in `down` (`from`
    /// included).
    pub fn reachable(&self, from: &str, down: &BTreeSet<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::from([from.to_string()]);
        let mut queue = VecDeque::from([from.to_string()]);
        while let Some(at) = queue.pop_front() {
            for next in self.neighbours(&at) {
                if !down.contains(&next) && seen.insert(next.clone()) {
                    queue.push_back(next);
                }
            }
        }
        seen
    }

    /// The folder of logs and outputs.
    pub fn dir(&self) -> &Path {
        &self.procs.dir
    }
}

/// The links of a herd, each once, as its neighbour lists give them.
fn links_of(herd: &Herd) -> Vec<(String, String)> {
    let mut links = BTreeMap::new();
    for spec in herd.servers() {
        for other in herd.neighbours(&spec.name) {
            let (a, b) = if spec.name < other.name {
                (spec.name.clone(), other.name.clone())
            } else {
                (other.name.clone(), spec.name.clone())
            };
            links.insert((a, b), ());
        }
    }
    links.into_keys().collect()
}
