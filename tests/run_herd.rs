//! `run_herd.sh` from outside: the real script, run by bash, starting the
//! real binaries (cargo's debug builds) as background processes, with a
//! small herd on free ports and places-stub standing in for Google.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};

use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/run_herd.sh");
const HERD_BIN: &str = env!("CARGO_BIN_EXE_proxy-herd");
const STUB_BIN: &str = env!("CARGO_BIN_EXE_places-stub");

/// A herd run by the script in its own folder, stopped (`run_herd.sh
/// stop`) when dropped, so a failing test leaves no process behind.
struct ScriptHerd {
    /// HERD_RUN_DIR, the current folder of the script, and where the herd
    /// file is.
    dir: TempDir,
    stub_port: u16,
    /// Each server's client port.
    ports: Vec<(String, u16)>,
}

impl ScriptHerd {
    /// Writes a herd file of `names` on free ports with `links` into a
    /// fresh folder; starts nothing.
    fn new(tag: &str, names: &[&str], links: &[(&str, &str)]) -> ScriptHerd {
        let dir = temp_dir(tag);
        let config = support::process::herd_file(&dir, names, links);
        let ports = names
            .iter()
            .map(|name| (name.to_string(), support::process::port_of(&config, name)))
            .collect();
        ScriptHerd {
            dir,
            stub_port: free_port(),
            ports,
        }
    }

    /// Runs `bash run_herd.sh ARGS` from the herd's folder (not the
    /// repository), with no Places key, the herd file given by a relative
    /// path, and the debug binaries.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// `run` with more environment variables.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let bin_dir = Path::new(HERD_BIN).parent().unwrap();
        assert_eq!(Path::new(STUB_BIN).parent().unwrap(), bin_dir);
        Command::new("bash")
            .arg(SCRIPT)
            .args(args)
            .current_dir(&self.dir)
            .env_remove("GOOGLE_PLACES_API_KEY")
            .env_remove("PLACES_URL")
            .env_remove("PLACES_API")
            .env_remove("HERD_SECRET")
            .env_remove("HERD_AUTH")
            .env("HERD_CONFIG", "herd.json")
            .env("HERD_RUN_DIR", &self.dir)
            .env("PROXY_HERD_BIN_DIR", bin_dir)
            .env("STUB_PORT", self.stub_port.to_string())
            // Metrics ports are client ports + 7000, which for free test
            // ports may reach the kernel's ephemeral range; tests/watch.rs
            // runs the script with metrics on, on ports it checked.
            .env("HERD_METRICS", "off")
            // Last, so a test can override any of the above.
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// `run`, asserting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, &[])
    }

    /// `run_with`, asserting success; returns stdout.
    fn ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run_with(args, env);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "run_herd.sh {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        stdout
    }

    /// A server's peer port, from the herd file.
    fn peer_addr(&self, name: &str) -> SocketAddr {
        let text = std::fs::read_to_string(self.dir.join("herd.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let port = v["servers"][name]["peer_port"].as_u64().unwrap() as u16;
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn addr(&self, name: &str) -> SocketAddr {
        let port = self.ports.iter().find(|(n, _)| n == name).unwrap().1;
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The PID files left in `run/`.
    fn pid_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.dir.join("run")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".pid"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for ScriptHerd {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).is_ok()
}

/// The line of `status` output about `what`.
fn status_line(status: &str, what: &str) -> String {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(what))
        .unwrap_or_else(|| panic!("no {what} in status:\n{status}"))
        .to_string()
}

/// Without a key, `start` runs places-stub (saying so in one line), starts
/// every server of HERD_CONFIG and prints each one's ports and an `nc`
/// example; the herd floods and WHATSAT gets the stub's made-up places;
/// `status` shows everything running; `stop` stops it all, removes the PID
/// files, and a second `stop` is harmless.
#[test]
fn start_status_and_stop_the_whole_herd() {
    let herd = ScriptHerd::new("script-start", &["A", "B", "C"], &[("A", "B"), ("B", "C")]);
    let out = herd.ok(&["start"]);
    let stub_lines: Vec<&str> = out.lines().filter(|l| l.contains("places-stub")).collect();
    assert_eq!(stub_lines.len(), 1, "{out}");
    assert!(
        stub_lines[0].contains("MADE-UP") && stub_lines[0].contains(&herd.stub_port.to_string()),
        "{out}"
    );
    for name in ["A", "B", "C"] {
        let port = herd.addr(name).port().to_string();
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.contains(&port)),
            "no address line for {name}:\n{out}"
        );
        assert!(answers(herd.addr(name)), "{name} is not listening");
    }
    assert!(out.contains("| nc "), "no nc example:\n{out}");
    // Another herd file while this herd runs: refused, naming the herd
    // that runs.
    let other = herd.run_with(&["start"], &[("HERD_CONFIG", "other.json")]);
    assert_eq!(other.status.code(), Some(1));
    let (_, stderr) = texts(&other);
    assert!(
        stderr.contains("the herd from") && stderr.contains("herd.json is running here"),
        "{stderr}"
    );
    // Paths are whole, so they read right from any folder.
    let logs = format!("logs in {}/logs/", herd.dir.display());
    assert!(out.contains(&logs), "{out}");

    let at = at_line(&one_shot(
        herd.addr("A"),
        "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n",
    ));
    wait_until("C to learn kiwi through B", || {
        one_shot(herd.addr("C"), "WHATSAT kiwi.cs.ucla.edu 10 3\n").starts_with(&at)
    });
    let reply = one_shot(herd.addr("C"), "WHATSAT kiwi.cs.ucla.edu 10 3\n");
    assert!(reply.ends_with("\n\n"), "{reply}");
    let json: serde_json::Value = serde_json::from_str(&reply[at.len()..]).unwrap();
    assert_eq!(json["status"], "OK", "{reply}");
    let results = json["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 3, "{reply}");
    assert!(
        reply.contains("places-stub"),
        "not the stub's places: {reply}"
    );

    let status = herd.ok(&["status"]);
    for what in ["A", "B", "C", "places-stub"] {
        let line = status_line(&status, what);
        assert!(line.contains("running (PID "), "{status}");
    }

    let stopped = herd.ok(&["stop"]);
    for what in ["A", "B", "C", "places-stub"] {
        assert!(stopped.contains(&format!("Stopped {what}")), "{stopped}");
    }
    for name in ["A", "B", "C"] {
        assert!(!answers(herd.addr(name)), "{name} still answers");
    }
    assert!(!answers(SocketAddr::from(([127, 0, 0, 1], herd.stub_port))));
    assert_eq!(herd.pid_files(), Vec::<String>::new());
    let again = herd.ok(&["stop"]);
    assert!(again.contains("Nothing running"), "{again}");
    let status = herd.ok(&["status"]);
    for what in ["A", "B", "C", "places-stub"] {
        assert!(status_line(&status, what).contains("stopped"), "{status}");
    }
}

/// Sends a forged AT line to a peer port as a stranger would, and reads
/// until the server closes the connection or a second passes with nothing;
/// returns what the server sent.
fn forge(peer: SocketAddr, client: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = TcpStream::connect(peer).unwrap();
    conn.write_all(format!("AT A +0.1 {client} +10+10 1\n").as_bytes())
        .unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = String::new();
    let _ = conn.read_to_string(&mut got);
    got
}

/// By default `start` makes a random herd secret (64 hex digits, mode
/// 600) and every server must prove it: a stranger on a peer port is
/// challenged and its forged AT line changes nothing, while the herd
/// itself floods as before. `stop` removes the secret. With HERD_AUTH=off
/// there is no secret, even if HERD_SECRET is set, and the same forged
/// line is taken.
#[test]
fn links_prove_a_secret_unless_turned_off() {
    use std::os::unix::fs::PermissionsExt;
    let herd = ScriptHerd::new("script-secret", &["A", "B"], &[("A", "B")]);
    let out = herd.ok(&["start"]);
    assert!(out.contains("Links prove the herd secret"), "{out}");
    let secret = herd.dir.join("run/herd-secret");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&secret).unwrap();
    assert!(
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "{text}"
    );

    let sent = forge(herd.peer_addr("B"), "forged");
    assert!(sent.starts_with("CHALLENGE "), "{sent:?}");
    let at = at_line(&one_shot(herd.addr("A"), "IAMAT genuine +1+1 2\n"));
    wait_until("B to learn genuine from A", || {
        one_shot(herd.addr("B"), "WHATSAT genuine 1 1\n").starts_with(&at)
    });
    let reply = one_shot(herd.addr("B"), "WHATSAT forged 1 1\n");
    assert!(
        reply.starts_with("? "),
        "the forged line was taken: {reply}"
    );

    herd.ok(&["stop"]);
    assert!(!secret.exists(), "the secret outlived the herd");

    // Off means off, even with a HERD_SECRET in the environment, which
    // the servers would otherwise read themselves.
    let out = herd.ok_with(
        &["start"],
        &[("HERD_AUTH", "off"), ("HERD_SECRET", "left-over-secret")],
    );
    assert!(out.contains("Links are open"), "{out}");
    assert!(!secret.exists());
    let sent = forge(herd.peer_addr("B"), "forged");
    assert!(!sent.contains("CHALLENGE"), "{sent:?}");
    wait_until("B to take the forged line", || {
        one_shot(herd.addr("B"), "WHATSAT forged 1 1\n").starts_with("AT A +0.1 forged")
    });
    let refused = herd.run(&["start", "A"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HERD_AUTH=off is running"),
        "{refused:?}"
    );
}

/// `stop NAME` stops just that server (its port refuses, the others
/// answer and `status` says so); the herd goes on without it; `restart
/// NAME` brings it back and it catches up with what it missed. `start`
/// on running servers leaves them alone.
#[test]
fn stop_and_restart_one_server() {
    let herd = ScriptHerd::new("script-one", &["A", "B", "C"], &[("A", "B"), ("B", "C")]);
    herd.ok(&["start"]);
    let status = herd.ok(&["status"]);
    let pid_a = status_line(&status, "A");

    let out = herd.ok(&["stop", "C"]);
    assert!(out.contains("Stopped C"), "{out}");
    assert!(!answers(herd.addr("C")), "C still answers");
    assert!(answers(herd.addr("A")) && answers(herd.addr("B")));
    let status = herd.ok(&["status"]);
    assert!(status_line(&status, "C").contains("stopped"), "{status}");
    assert!(status_line(&status, "B").contains("running"), "{status}");

    let at = at_line(&one_shot(herd.addr("A"), "IAMAT phone +1+1 2\n"));
    wait_until("B to learn phone", || {
        one_shot(herd.addr("B"), "WHATSAT phone 1 1\n").starts_with(&at)
    });

    // Restarting one server says that and no more: C was stopped, so
    // exactly one line, and the stub already runs.
    let out = herd.ok(&["restart", "C"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("Started C (PID "), "{out}");
    wait_until("restarted C to catch up", || {
        one_shot(herd.addr("C"), "WHATSAT phone 1 1\n").starts_with(&at)
    });

    let out = herd.ok(&["start"]);
    for name in ["A", "B", "C"] {
        assert!(out.contains(&format!("{name} is already running")), "{out}");
    }
    // A was never restarted: same PID as before.
    assert_eq!(status_line(&herd.ok(&["status"]), "A"), pid_a);
}

/// `help` and no arguments print the usage; an unknown command prints it
/// on stderr with exit status 2, and so does an unknown server name.
#[test]
fn usage_and_unknown_commands() {
    let herd = ScriptHerd::new("script-usage", &["A"], &[]);
    for args in [&["help"][..], &["--help"]] {
        let out = herd.run(args);
        assert!(out.status.success(), "{args:?}");
        let (stdout, _) = texts(&out);
        for word in ["start", "stop", "status", "restart", "HERD_CONFIG"] {
            assert!(stdout.contains(word), "{args:?}: {stdout}");
        }
    }
    // No command at all is a mistake: the usage, on stderr, and status 2.
    let out = herd.run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let (stdout, stderr) = texts(&out);
    assert!(stdout.is_empty() && stderr.contains("Usage"), "{stderr}");
    // A misspelt name is refused before anything is built or started.
    let out = herd.run(&["start", "Nobody"]);
    assert_eq!(out.status.code(), Some(2));
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("Nobody"), "{stderr}");
    assert!(
        !stdout.contains("Building") && herd.pid_files().is_empty(),
        "{stdout}"
    );
    let out = herd.run(&["launch"]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = texts(&out);
    assert!(
        stderr.contains("unknown command") && stderr.contains("Usage"),
        "{stderr}"
    );
    let out = herd.run(&["stop", "Nobody"]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = texts(&out);
    assert!(
        stderr.contains("Nobody") && stderr.contains('A'),
        "{stderr}"
    );
}

/// A server that cannot start (its peer port is taken) makes `start` fail
/// with a message naming the server and its log; the others still run.
#[test]
fn a_server_that_does_not_come_up_is_named() {
    let herd = ScriptHerd::new("script-fail", &["A", "B"], &[("A", "B")]);
    let text = std::fs::read_to_string(herd.dir.join("herd.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let peer = v["servers"]["B"]["peer_port"].as_u64().unwrap() as u16;
    let _taken = std::net::TcpListener::bind(("127.0.0.1", peer)).unwrap();
    let out = herd.run(&["start"]);
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("B did not come up") && stderr.contains("B.out"),
        "{stderr}"
    );
    assert!(
        stderr.contains("in use"),
        "the server's own error: {stderr}"
    );
    let status = herd.ok(&["status"]);
    assert!(status_line(&status, "A").contains("running"), "{status}");
    assert!(status_line(&status, "B").contains("stopped"), "{status}");
}

/// `proxy-herd --list-herd`, which the script reads, prints one `NAME HOST
/// PORT PEER_PORT WHERE` line per server in client-port order: the
/// built-in herd (src/protocol.md#the-herd), or the servers of `--config`,
/// each `here` on loopback and `elsewhere` on an address this machine
/// does not have. It cannot be combined with a server name.
#[test]
fn list_herd_prints_the_servers() {
    let out = Command::new(HERD_BIN).arg("--list-herd").output().unwrap();
    assert!(out.status.success());
    let (stdout, _) = texts(&out);
    let expected: String = FIVE
        .iter()
        .zip(12000..)
        .map(|(name, port)| format!("{name} 127.0.0.1 {port} {} here\n", port + 10000))
        .collect();
    assert_eq!(stdout, expected);

    let herd = ScriptHerd::new("script-list", &["B", "A"], &[("A", "B")]);
    let out = Command::new(HERD_BIN)
        .args(["--list-herd", "--config"])
        .arg(herd.dir.join("herd.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let (stdout, _) = texts(&out);
    let mut ports = herd.ports.clone();
    ports.sort_by_key(|(_, port)| *port);
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, (name, port)) in lines.iter().zip(&ports) {
        assert!(
            line.starts_with(&format!("{name} 127.0.0.1 {port} ")),
            "{stdout}"
        );
    }

    // 192.0.2.0/24 is set aside for documentation: no machine has it.
    let dir = temp_dir("script-list-far");
    let file = dir.join("far.json");
    std::fs::write(
        &file,
        r#"{"servers": {"Near": {"host": "127.0.0.1", "port": 23999},
                        "Far": {"host": "192.0.2.7", "port": 24000}},
            "links": [["Near", "Far"]]}"#,
    )
    .unwrap();
    let out = Command::new(HERD_BIN)
        .args(["--list-herd", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        texts(&out).0,
        "Near 127.0.0.1 23999 33999 here\nFar 192.0.2.7 24000 34000 elsewhere\n"
    );

    let out = Command::new(HERD_BIN)
        .args(["--list-herd", "Riley"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
