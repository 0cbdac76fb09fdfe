//! `herd-watch`: a live view of a running herd in the terminal, drawn
//! once a second from every server's metrics (`proxy-herd
//! --metrics-addr`). `run_herd.sh watch` runs it for the herd it
//! started.
//!
//! - [`scrape`]: one GET of one server's `/metrics`, read into samples.
//! - [`view`]: what the screen shows and the events it lists, from the
//!   scrapes (pure, tested without a terminal).
//! - [`terminal`]: the terminal taken over and put back.
//!
//! Each refresh scrapes every server at once, a thread each, so one
//! server that does not answer delays the frame by a timeout, not by one
//! per server.
#![forbid(unsafe_code)]

mod scrape;
mod terminal;
mod view;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use proxy_herd::herd::Herd;
use terminal::{Key, Screen};
use view::{Server, View};

/// A live view of a running herd, from its servers' metrics.
///
/// Each server's metrics are expected at its host and its client port
/// plus --metrics-offset (run_herd.sh starts them so: 19000-19004 for the
/// built-in herd). Shows each server up or down with its clients, stored
/// clients and updates per second in and out, each link up or down with
/// the records it holds waiting, and events: a server that stops or comes
/// back, a link that goes down or up, a resync. q or Ctrl-C quits and
/// puts the terminal back.
#[derive(Parser, Debug)]
#[command(name = "herd-watch", version, max_term_width = 100)]
struct Args {
    /// Herd file (JSON) of the herd to watch, instead of the built-in
    /// five servers.
    #[arg(long, value_name = "HERD.json")]
    config: Option<PathBuf>,
    /// Each server's metrics port is its client port plus this.
    #[arg(
        long,
        default_value_t = 7000,
        value_name = "N",
        allow_hyphen_values = true
    )]
    metrics_offset: i32,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    every: f64,
    /// Print one frame (two scrapes, --every apart, for the rates) and
    /// exit, without taking over the terminal.
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("herd-watch: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !(args.every.is_finite() && (0.1..=60.0).contains(&args.every)) {
        return Err(format!(
            "--every must be between 0.1 and 60, not {}",
            args.every
        ));
    }
    let every = Duration::from_secs_f64(args.every);
    let herd = match &args.config {
        Some(path) => Herd::from_file(path).map_err(|e| e.to_string())?,
        None => Herd::default_herd(),
    };
    let mut view = view_of(&herd, args.metrics_offset)?;
    if args.once {
        refresh(&mut view);
        thread::sleep(every);
        let clock = refresh(&mut view);
        for line in view.frame(&clock, every) {
            println!("{line}");
        }
        return Ok(());
    }
    // SIGTERM, SIGHUP (a closed terminal) and SIGINT from another
    // program end the view like q, so the terminal is put back; Ctrl-C
    // typed here arrives as a key.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGHUP, SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let screen = Screen::open().map_err(|e| format!("cannot take over the terminal: {e}"))?;
    loop {
        let began = Instant::now();
        let clock = refresh(&mut view);
        screen
            .draw(&view.frame(&clock, every))
            .map_err(|e| e.to_string())?;
        if let Some(Key::Quit) = screen.key(every.saturating_sub(began.elapsed()), &stop) {
            return Ok(());
        }
    }
}

/// The view of `herd`'s servers, in client-port order, with their
/// metrics addresses.
fn view_of(herd: &Herd, offset: i32) -> Result<View, String> {
    let mut specs: Vec<_> = herd.servers().collect();
    specs.sort_by_key(|s| (s.port, s.host.clone()));
    let mut servers = Vec::new();
    for s in &specs {
        let port = u16::try_from(i32::from(s.port) + offset)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                format!(
                    "{}: client port {} + --metrics-offset {offset} is not a port",
                    s.name, s.port
                )
            })?;
        let metrics: SocketAddr = (s.host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("{}: cannot resolve host {}", s.name, s.host))?;
        servers.push(Server {
            name: s.name.clone(),
            metrics,
        });
    }
    let index = |name: &str| specs.iter().position(|s| s.name == name);
    let mut links = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        for n in herd.neighbours(&s.name) {
            if let Some(j) = index(&n.name) {
                if i < j {
                    links.push((i, j));
                }
            }
        }
    }
    Ok(View::new(servers, &links))
}

/// Scrapes every server at once and updates the view; returns the
/// wall-clock time of the refresh, as the screen shows it.
fn refresh(view: &mut View) -> String {
    let addrs = view.addrs();
    let scraped = thread::scope(|scope| {
        let handles: Vec<_> = addrs
            .iter()
            .map(|&addr| scope.spawn(move || scrape::scrape(addr)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("scrape failed".into())))
            .collect()
    });
    let clock = clock();
    view.update(&clock, Instant::now(), scraped);
    clock
}

/// HH:MM:SS, UTC (the herd's logs use UTC too).
fn clock() -> String {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    stamp.get(11..19).map(str::to_string).unwrap_or(stamp)
}
