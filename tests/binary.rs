//! The `proxy-herd` binary from outside: its command line, its refusals,
//! signals, the log file, and a server process killed and restarted.

mod support;

use std::process::{Command, Output};

use support::process::*;
use support::*;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("GOOGLE_PLACES_API_KEY")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--help` documents the flags and `--version` prints the version.
#[test]
fn help_and_version() {
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--log-dir",
        "--places-url",
        "GOOGLE_PLACES_API_KEY",
        "PLACES_URL",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// A name the herd does not have is refused with one clear line and a
/// non-zero exit.
#[test]
fn unknown_name_is_refused() {
    let out = run(&["Nobody"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Nobody") && err.contains("Riley"), "{err}");
    // No name at all: the same kind of line, listing the names there are.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("which server") && err.contains("Bernard, Campbell"),
        "{err}"
    );
}

/// Each kind of bad herd file is refused before anything starts.
#[test]
fn bad_herd_files_are_refused() {
    let dir = temp_dir("badherd");
    let cases = [
        ("not json", "herd file"),
        (
            r#"{"servers": {"A": {"host": "127.0.0.1", "port": 1}}, "links": [["A", "B"]]}"#,
            "unknown server",
        ),
        (
            r#"{"servers": {"A": {"host": "127.0.0.1", "port": 1}}, "links": [["A", "A"]]}"#,
            "itself",
        ),
        (
            r#"{"servers": {"A": {"host": "127.0.0.1", "port": 70000}}}"#,
            "outside 1-65535",
        ),
        (
            r#"{"servers": {"A": {"host": "127.0.0.1", "port": 60000}}}"#,
            "outside 1-65535",
        ),
        (
            r#"{"servers": {"A": {"host": "127.0.0.1", "port": 5000}, "B": {"host": "127.0.0.1", "port": 5000}}}"#,
            "used twice",
        ),
    ];
    for (json, expected) in cases {
        let path = dir.join("bad.json");
        std::fs::write(&path, json).unwrap();
        let out = run(&[
            "A",
            "--config",
            path.to_str().unwrap(),
            "--log-dir",
            dir.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{json}");
        let err = stderr(&out);
        assert!(err.contains(expected), "{json}: {err}");
        assert!(
            err.contains(path.to_str().unwrap()),
            "names the file: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.join("A.log").exists(), "no log for a refused start");
    }
    let out = run(&["A", "--config", "/no/such/herd.json"]);
    assert!(!out.status.success() && stderr(&out).contains("/no/such/herd.json"));
}

/// A port already in use is refused with one clear line.
#[test]
fn port_in_use_is_refused() {
    let dir = temp_dir("inuse");
    let config = herd_file(&dir, &["A"], &[]);
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port_of(&config, "A"))).unwrap();
    let out = run(&[
        "A",
        "--config",
        config.to_str().unwrap(),
        "--log-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot listen") && err.contains("in use"),
        "{err}"
    );
}

/// SIGTERM and SIGINT stop a server with status 0, and every line it
/// handled is in its log by then.
#[test]
fn signals_stop_cleanly_with_log_flushed() {
    for sig in ["-TERM", "-INT"] {
        let dir = temp_dir("signal");
        let config = herd_file(&dir, &["A"], &[]);
        let mut server = spawn("A", &config, &dir);
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port_of(&config, "A")).into();
        let reply = one_shot(addr, "IAMAT sig +1+1 1\n");
        signal(&server, sig);
        let (status, took) = wait_exit(&mut server);
        assert_eq!(status.code(), Some(0), "{sig}");
        eprintln!("{sig}: exited in {took:?}");
        let log = std::fs::read_to_string(dir.join("A.log")).unwrap();
        assert!(log.contains("<- IAMAT sig +1+1 1"), "{log}");
        assert!(log.contains(&format!("-> {}", reply.trim_end())), "{log}");
        assert!(log.contains("stop signal"), "{log}");
    }
}

/// places-stub, which `run_herd.sh` stops with SIGTERM, also exits with
/// status 0 on SIGTERM and on SIGINT.
#[test]
fn places_stub_stops_cleanly_on_signals() {
    for sig in ["-TERM", "-INT"] {
        let port = free_port();
        let mut stub = Proc(
            Command::new(env!("CARGO_BIN_EXE_places-stub"))
                .args(["--port", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_until("places-stub to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        signal(&stub, sig);
        let (status, _) = wait_exit(&mut stub);
        assert_eq!(status.code(), Some(0), "{sig}: {status}");
    }
}

/// An AT reply is a promise: a lone server (no neighbour to hold a copy)
/// killed with SIGKILL the instant after replying still has every
/// acknowledged update when it starts again, read back from its journal.
/// Without the journal the same run forgets them, which is what shows the
/// journal did the work.
#[test]
fn acknowledged_updates_survive_kill_9() {
    for journal in [true, false] {
        let dir = temp_dir("journal");
        let config = herd_file(&dir, &["A"], &[]);
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port_of(&config, "A")).into();
        let start = || {
            let mut cmd = Command::new(BIN);
            cmd.args(["A", "--config"])
                .arg(&config)
                .arg("--log-dir")
                .arg(&dir);
            if !journal {
                cmd.arg("--no-journal");
            }
            process::start("A", &config, &dir, cmd)
        };
        let mut server = start();
        let mut last = String::new();
        for i in 0..50 {
            last = at_line(&one_shot(addr, &format!("IAMAT c{} +1+1 {i}\n", i % 5)));
        }
        signal(&server, "-KILL");
        wait_exit(&mut server);
        let _server = start();
        let reply = one_shot(addr, "WHATSAT c4 1 1\n");
        if journal {
            assert!(reply.starts_with(&format!("{last}\n")), "{reply}");
            let text = std::fs::read_to_string(dir.join("A.journal")).unwrap();
            assert_eq!(
                text.lines().count(),
                5,
                "compacted to one line per client: {text}"
            );
        } else {
            assert_eq!(reply, "? WHATSAT c4 1 1\n");
        }
    }
}
