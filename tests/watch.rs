//! `run_herd.sh watch` the way a person uses it: in a real terminal
//! (tmux, 80x24), read off the screen with `tmux capture-pane`.
//!
//! A three-server herd (A - B - C) is started by `run_herd.sh start` with
//! its metrics on; the view runs in a shell inside tmux. The screen must
//! show every server and link up; an update sent to A reach every row's
//! STORED column; B stopped turn its row and its neighbours' links to it
//! DOWN with an event; B started again bring it back with a RESYNC on
//! the links to it; `q` and Ctrl-C each end the view and give the shell
//! its terminal back as it was (normal screen, line editing and echo).
//!
//! tmux is not on every machine, so this runs under
//! `support::own_harness`: without tmux it says loudly that it did not
//! run, and `PROXY_HERD_REQUIRE_WATCH=1` (set by `.ci/run`, which
//! installs tmux) makes that a failure.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use support::own_harness::{self, Outcome};
use support::process::{herd_file, port_of};
use support::{now_secs, one_shot, temp_dir};

const NAME: &str = "watch";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/run_herd.sh");
const HERD_BIN: &str = env!("CARGO_BIN_EXE_proxy-herd");
const WATCH_BIN: &str = env!("CARGO_BIN_EXE_herd-watch");
/// How long the screen may take to show a change before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    own_harness::main(NAME, "PROXY_HERD_REQUIRE_WATCH", "needs tmux", || {
        match Command::new("tmux").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            _ => return Outcome::NotRun("no tmux command".into()),
        }
        match scenario() {
            Ok(()) => Outcome::Passed,
            Err(why) => Outcome::Failed(why),
        }
    })
}

/// The herd's folder and the tmux server of this run, both ended when
/// dropped: the herd stopped, the tmux server killed.
struct Run {
    dir: PathBuf,
    /// `tmux -L SOCKET`: a tmux server of our own, so the user's is never
    /// touched.
    socket: String,
    offset: i32,
    stub_port: u16,
}

impl Run {
    /// The environment `run_herd.sh` runs with, as `env` arguments.
    fn env(&self) -> Vec<String> {
        let bin_dir = Path::new(HERD_BIN).parent().unwrap();
        assert_eq!(Path::new(WATCH_BIN).parent().unwrap(), bin_dir);
        vec![
            format!("HERD_RUN_DIR={}", self.dir.display()),
            format!("HERD_CONFIG={}", self.dir.join("herd.json").display()),
            format!("PROXY_HERD_BIN_DIR={}", bin_dir.display()),
            format!("HERD_METRICS_OFFSET={}", self.offset),
            format!("STUB_PORT={}", self.stub_port),
            "HERD_AUTH=off".into(),
        ]
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("env")
            .args(["-u", "GOOGLE_PLACES_API_KEY", "-u", "PLACES_URL"])
            .args(self.env())
            .args(["bash", SCRIPT])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Types `text` into the shell and presses Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "view", "-l", text]);
        self.tmux(&["send-keys", "-t", "view", "Enter"]);
    }

    /// What the terminal shows now.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "view"]).stdout)
            .into_owned()
    }

    /// Waits until the screen satisfies `shows`; the screen, or the last
    /// one seen and `what` if it never did.
    fn wait_for(&self, what: &str, shows: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if shows(&screen) {
                println!("{NAME}: the screen shows {what}:\n{}", screen.trim_end());
                return Ok(screen);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the screen never showed {what} in {PATIENCE:?}; it shows:\n{screen}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        let _ = self.script(&["stop"]);
    }
}

/// A metrics offset that puts every client port of `ports` on a port
/// free now.
fn free_offset(ports: &[u16]) -> i32 {
    for _ in 0..100 {
        let base = support::free_port();
        let offset = i32::from(base) - i32::from(ports[0]);
        let free = ports.iter().all(|&p| {
            u16::try_from(i32::from(p) + offset)
                .is_ok_and(|m| TcpListener::bind(("127.0.0.1", m)).is_ok())
        });
        if free {
            return offset;
        }
    }
    panic!("no metrics offset leaves every port free");
}

/// The row of server `name` on the screen.
fn row<'a>(screen: &'a str, name: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.starts_with(&format!("{name:<10} ")))
        .unwrap_or("")
}

/// The whole scenario of the module doc; the first thing the screen
/// failed to show, if any.
fn scenario() -> Result<(), String> {
    let dir = temp_dir("watch");
    let names = ["A", "B", "C"];
    let config = herd_file(&dir, &names, &[("A", "B"), ("B", "C")]);
    let ports: Vec<u16> = names.iter().map(|n| port_of(&config, n)).collect();
    let run = Run {
        dir: dir.to_path_buf(),
        socket: format!("proxy-herd-watch-{}", std::process::id()),
        offset: free_offset(&ports),
        stub_port: support::free_port(),
    };
    let out = run.script(&["start"]);
    if !out.status.success() {
        return Err(format!("run_herd.sh start: {out:?}"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("Watch it live: ./run_herd.sh watch") {
        return Err(format!("start did not point to watch:\n{stdout}"));
    }

    // A plain shell in an 80x24 terminal, its environment the script's.
    let shell = format!(
        "env {} PS1='watch-test$ ' bash --norc --noprofile -i",
        run.env().join(" ")
    );
    let started = run.tmux(&[
        "new-session",
        "-d",
        "-s",
        "view",
        "-x",
        "80",
        "-y",
        "24",
        &shell,
    ]);
    if !started.status.success() {
        return Err(format!("tmux new-session: {started:?}"));
    }
    run.wait_for("the shell's prompt", |s| s.contains("watch-test$"))?;
    run.type_line(&format!("bash {SCRIPT} watch"));
    run.wait_for("every server and link up", |s| {
        s.contains("3 of 3 servers up")
            && s.matches(" up     0").count() == 4
            && names.iter().all(|n| row(s, n).contains(" up "))
    })?;

    let at = one_shot(
        ([127, 0, 0, 1], ports[0]).into(),
        &format!("IAMAT watch-phone +34.1-118.4 {}\n", now_secs()),
    );
    if !at.starts_with("AT A ") {
        return Err(format!("A answered {at:?}"));
    }
    run.wait_for("the update stored on every server", |s| {
        names.iter().all(|n| {
            let cells: Vec<&str> = row(s, n).split_whitespace().collect();
            cells.get(3) == Some(&"1")
        })
    })?;

    let out = run.script(&["stop", "B"]);
    if !out.status.success() {
        return Err(format!("stop B: {out:?}"));
    }
    run.wait_for("B down, and the links to it", |s| {
        row(s, "B").contains("DOWN")
            && s.contains("2 of 3 servers up")
            && s.contains("A -> B               DOWN")
            && s.contains("C -> B               DOWN")
            && s.contains("B -> A               ? (sender down)")
            && s.contains("B is DOWN")
    })?;

    let out = run.script(&["start", "B"]);
    if !out.status.success() {
        return Err(format!("start B: {out:?}"));
    }
    run.wait_for("B back, resynced by both neighbours", |s| {
        s.contains("3 of 3 servers up")
            && s.contains("A -> B: RESYNC")
            && s.contains("C -> B: RESYNC")
            && row(s, "B").split_whitespace().nth(3) == Some("1")
    })?;

    // q ends the view; the shell is back on its own screen, with its
    // modes restored.
    run.tmux(&["send-keys", "-t", "view", "q"]);
    run.wait_for("the shell again after q", |s| {
        s.contains("watch-test$") && !s.contains("servers up")
    })?;
    restored(&run, &dir.join("stty-after-q.txt"))?;

    // Ctrl-C ends it too, with the modes restored.
    run.type_line(&format!("bash {SCRIPT} watch"));
    run.wait_for("the view again", |s| s.contains("3 of 3 servers up"))?;
    run.tmux(&["send-keys", "-t", "view", "C-c"]);
    run.wait_for("the shell again after Ctrl-C", |s| {
        s.contains("watch-test$") && !s.contains("servers up")
    })?;
    restored(&run, &dir.join("stty-after-ctrl-c.txt"))?;
    Ok(())
}

/// Has the shell write its terminal's modes to `file` and checks that
/// line editing, echo and signals are back on.
fn restored(run: &Run, file: &Path) -> Result<(), String> {
    run.type_line(&format!("stty -a > {}", file.display()));
    let deadline = Instant::now() + PATIENCE;
    let stty = loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains("icanon") {
            break text;
        }
        if Instant::now() > deadline {
            return Err("stty -a wrote nothing".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let words: Vec<&str> = stty.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        if !words.contains(&mode) {
            return Err(format!("{mode} not restored: {stty}"));
        }
    }
    Ok(())
}
