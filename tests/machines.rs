//! A herd over two machines, started the way its users would: the same
//! herd file and `run_herd.sh start` on each machine, and each starts
//! only the servers whose hosts are its own.
//!
//! The two machines are network namespaces this test makes, joined by one
//! veth pair: machine A (10.232.X.1) holds Riley and Jaquez, machine B
//! (10.232.X.2) holds Juzang, linked Riley - Jaquez - Juzang, so an update
//! sent to Riley must cross from A to B. The test checks that:
//!
//! - without a shared HERD_SECRET, a start on a machine of a herd that
//!   spans machines refuses, and says what to set;
//! - `start` on A starts Riley and Jaquez, names Juzang as skipped (its
//!   host is the other machine's), and starts nothing for it; on B the
//!   other way round;
//! - `status` shows the other machine's servers as such;
//! - an IAMAT sent to Riley on A is what Juzang on B answers a WHATSAT
//!   with: the links crossed machines and proved the shared secret;
//! - `stop` on each machine stops what it started there.
//!
//! Creating namespaces needs root and `ip`, so this runs under
//! `support::own_harness`: elsewhere it says loudly that it did not run,
//! and `PROXY_HERD_REQUIRE_MACHINES=1` (set by `.ci/run`) makes that a
//! failure. All traffic stays inside the two namespaces.

mod support;

use std::path::Path;
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use support::netns::{choose_subnet, ip, ip_path, prerequisites};
use support::own_harness::{self, Outcome};
use support::temp_dir;

const NAME: &str = "machines";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/run_herd.sh");
const HERD_BIN: &str = env!("CARGO_BIN_EXE_proxy-herd");
/// Client ports; each server's peer port is its client port + 10000.
const PORTS: [(&str, u16, char); 3] = [
    ("Riley", 12000, 'a'),
    ("Jaquez", 12001, 'a'),
    ("Juzang", 12002, 'b'),
];
/// How long an update may take to cross the herd before the test fails.
const CROSSING: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    own_harness::main(
        NAME,
        "PROXY_HERD_REQUIRE_MACHINES",
        "needs root and ip",
        run,
    )
}

/// The two namespaces of this run, deleted (after `run_herd.sh stop` in
/// each) when dropped, however the test ends.
struct Machines {
    prefix: String,
    subnet: u8,
    /// Each machine's HERD_RUN_DIR.
    dirs: [std::path::PathBuf; 2],
    created: Vec<String>,
}

impl Machines {
    fn ns(&self, m: char) -> String {
        format!("{}{m}", self.prefix)
    }

    fn host(&self, m: char) -> String {
        format!("10.232.{}.{}", self.subnet, if m == 'a' { 1 } else { 2 })
    }

    fn dir(&self, m: char) -> &Path {
        &self.dirs[usize::from(m == 'b')]
    }

    /// `bash run_herd.sh ARGS` inside machine `m`, with its own run
    /// folder, the shared herd file, the debug binaries and no Places key.
    fn script(&self, m: char, args: &[&str], secret: Option<&str>) -> Output {
        let bin_dir = Path::new(HERD_BIN).parent().unwrap();
        let mut cmd = Command::new(ip_path().expect("checked"));
        cmd.args(["netns", "exec", &self.ns(m), "bash", SCRIPT])
            .args(args)
            .env_remove("GOOGLE_PLACES_API_KEY")
            .env_remove("PLACES_URL")
            .env_remove("HERD_AUTH")
            .env_remove("HERD_SECRET")
            .env("HERD_CONFIG", self.dirs[0].join("herd.json"))
            .env("HERD_RUN_DIR", self.dir(m))
            .env("PROXY_HERD_BIN_DIR", bin_dir)
            .stdin(Stdio::null());
        if let Some(secret) = secret {
            cmd.env("HERD_SECRET", secret);
        }
        cmd.output().expect("run ip netns exec")
    }

    /// One request on a new connection inside machine `m`, with bash's
    /// /dev/tcp: the first line of the reply, or "" if none came.
    fn ask(&self, m: char, host: &str, port: u16, line: &str) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/{host}/{port} && printf '%s\\n' \"$0\" >&3 && \
             IFS= read -r -t 5 reply <&3; printf '%s' \"$reply\""
        );
        let out = Command::new(ip_path().expect("checked"))
            .args(["netns", "exec", &self.ns(m), "bash", "-c", &script, line])
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Machines {
    /// Stops both machines' herds, then deletes the namespaces (which
    /// takes the veth pair with them).
    fn drop(&mut self) {
        for m in ['a', 'b'] {
            if self.created.contains(&self.ns(m)) {
                let _ = self.script(m, &["stop"], None);
            }
        }
        for ns in &self.created {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("{NAME}: WARNING: could not delete namespace {ns}: {e}");
            }
        }
    }
}

/// Runs the scenario where it can: not run without root or `ip`, failed
/// with both machines' logs kept if any step goes wrong.
fn run() -> Outcome {
    if let Err(why) = prerequisites() {
        return Outcome::NotRun(why);
    }
    let subnet = match choose_subnet("10.232") {
        Ok(x) => x,
        Err(e) => return Outcome::Failed(e),
    };
    let (dir_a, dir_b) = (temp_dir("machine-a"), temp_dir("machine-b"));
    let mut machines = Machines {
        prefix: format!("phm{}", std::process::id()),
        subnet,
        dirs: [dir_a.to_path_buf(), dir_b.to_path_buf()],
        created: Vec::new(),
    };
    match scenario(&mut machines) {
        Ok(()) => Outcome::Passed,
        Err(Outcome::Failed(why)) => {
            // Keep both machines' logs for the reader of the failure.
            let (a, b) = (dir_a.keep(), dir_b.keep());
            Outcome::Failed(format!(
                "{why} (logs kept in {} and {})",
                a.display(),
                b.display()
            ))
        }
        Err(other) => other,
    }
}

/// Makes the two machines and runs the steps of the module doc on them.
fn scenario(m: &mut Machines) -> Result<(), Outcome> {
    let failed = Outcome::Failed;
    let first = m.ns('a');
    if let Err(e) = ip(&["netns", "add", &first]) {
        return Err(Outcome::NotRun(format!(
            "cannot create a network namespace: {e}"
        )));
    }
    m.created.push(first);
    let second = m.ns('b');
    ip(&["netns", "add", &second]).map_err(failed)?;
    m.created.push(second);
    let (ea, eb) = (format!("{}a0", m.prefix), format!("{}b0", m.prefix));
    ip(&[
        "link",
        "add",
        &ea,
        "netns",
        &m.ns('a'),
        "type",
        "veth",
        "peer",
        "name",
        &eb,
        "netns",
        &m.ns('b'),
    ])
    .map_err(failed)?;
    for (machine, dev) in [('a', &ea), ('b', &eb)] {
        let ns = m.ns(machine);
        let addr = format!("{}/24", m.host(machine));
        ip(&["-n", &ns, "link", "set", "lo", "up"]).map_err(failed)?;
        ip(&["-n", &ns, "addr", "add", &addr, "dev", dev]).map_err(failed)?;
        ip(&["-n", &ns, "link", "set", dev, "up"]).map_err(failed)?;
    }
    write_herd_file(m);
    println!(
        "{NAME}: machines {} ({}) and {} ({}), run folders {} and {}",
        m.ns('a'),
        m.host('a'),
        m.ns('b'),
        m.host('b'),
        m.dir('a').display(),
        m.dir('b').display()
    );

    let check = |ok: bool, what: &str, out: &Output| -> Result<(), Outcome> {
        if ok {
            Ok(())
        } else {
            Err(Outcome::Failed(format!(
                "{what}: status {:?}\nstdout:\n{}\nstderr:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };

    // No shared secret: refused before anything starts, with the fix.
    let out = m.script('a', &["start"], None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    check(
        !out.status.success() && stderr.contains("HERD_SECRET") && stderr.contains("Juzang"),
        "start without HERD_SECRET should refuse and name the fix",
        &out,
    )?;
    check(
        !m.dir('a').join("run/Riley.pid").exists(),
        "the refused start left a server behind",
        &out,
    )?;

    let secret = "machines-test-shared-secret";
    for (machine, mine, other) in [
        ('a', &["Riley", "Jaquez"][..], &["Juzang"][..]),
        ('b', &["Juzang"][..], &["Riley", "Jaquez"][..]),
    ] {
        let out = m.script(machine, &["start"], Some(secret));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        check(out.status.success(), "start", &out)?;
        let skipped = stdout
            .lines()
            .find(|l| l.contains("skipped"))
            .unwrap_or_default();
        for name in mine {
            check(
                stdout.contains(&format!("Started {name} (PID")),
                &format!("machine {machine} should start {name}"),
                &out,
            )?;
        }
        for name in other {
            check(
                skipped.contains(name)
                    && !stdout.contains(&format!("Started {name}"))
                    && !m.dir(machine).join(format!("run/{name}.pid")).exists(),
                &format!("machine {machine} should skip {name}, saying so"),
                &out,
            )?;
        }
        let out = m.script(machine, &["status"], None);
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        for name in other {
            check(
                status
                    .lines()
                    .any(|l| l.starts_with(name) && l.contains("on another machine")),
                &format!("status on {machine} should show {name} on another machine"),
                &out,
            )?;
        }
    }

    // An update sent to Riley on A reaches Juzang on B, through Jaquez
    // and the link between the machines.
    let client = "machines-test-phone";
    let iamat = format!(
        "IAMAT {client} +34.068930-118.445127 {}",
        support::now_secs()
    );
    let at = m.ask('a', &m.host('a'), PORTS[0].1, &iamat);
    if !at.starts_with("AT Riley ") {
        return Err(Outcome::Failed(format!(
            "Riley answered {at:?} to {iamat:?}"
        )));
    }
    let deadline = Instant::now() + CROSSING;
    let whatsat = format!("WHATSAT {client} 10 1");
    loop {
        let reply = m.ask('b', &m.host('b'), PORTS[2].1, &whatsat);
        if reply == at {
            println!("{NAME}: Juzang on machine B answers with Riley's {at:?}");
            break;
        }
        if Instant::now() > deadline {
            return Err(Outcome::Failed(format!(
                "Juzang still answers {reply:?} {CROSSING:?} after Riley acknowledged {at:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The link between the machines proved the shared secret.
    let log = std::fs::read_to_string(m.dir('b').join("logs/Juzang.log")).unwrap_or_default();
    if !log.contains("link from Jaquez proved the herd secret") {
        return Err(Outcome::Failed(format!(
            "Juzang's log shows no proved link from Jaquez:\n{log}"
        )));
    }

    for machine in ['a', 'b'] {
        let out = m.script(machine, &["stop"], None);
        check(out.status.success(), "stop", &out)?;
        let out = m.script(machine, &["status"], None);
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        check(
            !status.contains("running"),
            &format!("everything on {machine} stopped"),
            &out,
        )?;
    }
    Ok(())
}

/// The herd file both machines read: Riley and Jaquez on A, Juzang on
/// B, in a chain.
fn write_herd_file(m: &Machines) {
    let servers: serde_json::Map<String, serde_json::Value> = PORTS
        .iter()
        .map(|(name, port, machine)| {
            let entry = serde_json::json!({"host": m.host(*machine), "port": port});
            (name.to_string(), entry)
        })
        .collect();
    let json = serde_json::json!({
        "servers": servers,
        "links": [["Riley", "Jaquez"], ["Jaquez", "Juzang"]],
    });
    std::fs::write(
        m.dirs[0].join("herd.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
