//! The soak test of issue 5: steady updates to all five servers from many
//! clients while servers are killed with SIGKILL and restarted in random
//! order. Afterwards every server must hold, for every client, the same
//! record, and it must be the newest update the herd acknowledged (or a
//! later one whose reply was lost when its server died). Bounded: about
//! 15 s of load, well under the 2 minutes CI allows.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::process::*;
use support::*;

/// How long updates flow while servers are being killed.
const LOAD: Duration = Duration::from_secs(12);
const CLIENTS: usize = 40;
const FAULTS: usize = 8;

/// Prints a line past the test harness's output capture (it captures
/// only the `print!` family), so the figures show in every run, CI's
/// included, and not only when the test fails.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A small xorshift generator, so the test needs no crate; its seed is
/// printed so a failing order can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One IAMAT on its own connection; the AT line if the server replied.
fn try_iamat(addr: SocketAddr, line: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(line.as_bytes()).ok()?;
    stream.shutdown(Shutdown::Write).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply
        .strip_suffix('\n')
        .filter(|r| r.starts_with("AT "))
        .map(str::to_string)
}

/// What the clients did, per client id.
#[derive(Default)]
struct Client {
    /// The newest acknowledged AT line and its client time (as sent).
    acked: Option<(u64, String)>,
    /// Every client time sent (acknowledged or not).
    sent: Vec<u64>,
}

/// Kills and restarts servers at random under load; every server ends up
/// with the newest acknowledged location of every client, and none is
/// lost or crashed (each restart comes up and serves).
#[test]
fn servers_killed_under_load_lose_nothing() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    say(&format!("soak: seed {seed}"));
    let dir = temp_dir("soak");
    let config = herd_file(&dir, &FIVE, &FIVE_LINKS);
    let addrs: Vec<SocketAddr> = FIVE.iter().map(|n| addr_of(&config, n)).collect();
    let servers: Mutex<Vec<Option<Proc>>> =
        Mutex::new(FIVE.iter().map(|n| Some(spawn(n, &config, &dir))).collect());
    let clients: Vec<Mutex<Client>> = (0..CLIENTS).map(|_| Mutex::default()).collect();
    let stop = AtomicBool::new(false);
    let refused = AtomicUsize::new(0);
    let started = Instant::now();
    // Client times are counted up from here, so each is newer than the
    // last one that client sent.
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        * 1000;
    let clock = AtomicUsize::new(0);

    thread::scope(|s| {
        for worker in 0..8 {
            let (clients, stop, refused, clock, addrs) =
                (&clients, &stop, &refused, &clock, &addrs);
            s.spawn(move || {
                let mut rng = Rng(seed ^ ((worker as u64 + 1) * 0x9e37_79b9));
                while !stop.load(Ordering::SeqCst) {
                    let c = rng.below(CLIENTS);
                    let mut client = clients[c].lock().unwrap();
                    let time = base + clock.fetch_add(1, Ordering::SeqCst) as u64;
                    client.sent.push(time);
                    // Times are milliseconds written as seconds.millis.
                    let line = format!(
                        "IAMAT soak{c} +1.{c}-2.{c} {}.{:03}\n",
                        time / 1000,
                        time % 1000
                    );
                    let addr = addrs[rng.below(addrs.len())];
                    match try_iamat(addr, &line) {
                        Some(at) => client.acked = Some((time, at)),
                        None => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        // The fault injector: kill one server, let the herd run without
        // it, start it again.
        let mut rng = Rng(seed);
        for _ in 0..FAULTS {
            thread::sleep(LOAD / (FAULTS as u32 * 2));
            let victim = rng.below(FIVE.len());
            let mut proc = servers.lock().unwrap()[victim].take().unwrap();
            signal(&proc, "-KILL");
            wait_exit(&mut proc);
            thread::sleep(LOAD / (FAULTS as u32 * 2));
            servers.lock().unwrap()[victim] = Some(spawn(FIVE[victim], &config, &dir));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let load_time = started.elapsed();

    // Convergence: every server answers every client with one line.
    let settle = Instant::now();
    let mut agreed: HashMap<usize, String> = HashMap::new();
    wait_until("the herd to converge", || {
        agreed.clear();
        (0..CLIENTS).all(|c| {
            let lines: Vec<String> = addrs
                .iter()
                .map(|a| one_shot(*a, &format!("WHATSAT soak{c} 1 1\n")))
                .map(|r| r.lines().next().unwrap_or_default().to_string())
                .collect();
            let same = lines.iter().all(|l| l == &lines[0] && l.starts_with("AT "));
            if same {
                agreed.insert(c, lines[0].clone());
            }
            same
        })
    });
    let converge_time = settle.elapsed();

    let mut sent = 0;
    let mut acked = 0;
    for (c, client) in clients.iter().enumerate() {
        let client = client.lock().unwrap();
        sent += client.sent.len();
        let Some((acked_time, acked_line)) = &client.acked else {
            continue;
        };
        acked += 1;
        let held = &agreed[&c];
        if held != acked_line {
            // Only a later update, whose reply was lost, may replace it.
            let held_time: Vec<&str> = held.rsplit(' ').next().unwrap().split('.').collect();
            let held_ms: u64 =
                held_time[0].parse::<u64>().unwrap() * 1000 + held_time[1].parse::<u64>().unwrap();
            assert!(
                held_ms > *acked_time && client.sent.contains(&held_ms),
                "soak{c}: the herd holds {held:?}, but {acked_line:?} was acknowledged later"
            );
        }
    }
    say(&format!(
        "soak: {sent} updates sent in {:.1} s, {} refused or cut by faults, {FAULTS} servers killed (SIGKILL) and restarted, {acked} clients checked, converged {:.0} ms after the last restart",
        load_time.as_secs_f64(),
        refused.load(Ordering::Relaxed),
        converge_time.as_secs_f64() * 1e3
    ));
    assert_eq!(agreed.len(), CLIENTS);
    // Every server is alive at the end (a crashed one would refuse).
    for addr in &addrs {
        assert!(one_shot(*addr, "IAMAT alive +1+1 1\n").starts_with("AT "));
    }
}
