//! `proxy-herd NAME`: runs one server of the herd.
//!
//! Kept thin on purpose: parse the flags, validate the herd, bind, start,
//! wait for a signal. All the work lives in the library.
#![doc = include_str!("proxy-herd.md")]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use proxy_herd::auth::HerdSecret;
use proxy_herd::herd::Herd;
use proxy_herd::journal;
use proxy_herd::logging::{LogFiles, ServerLog, DEFAULT_LOG_KEEP};
use proxy_herd::places::{PlacesApi, PlacesConfig, DEFAULT_MAX_BYTES};
use proxy_herd::server::{
    self, Limits, Listeners, ServerConfig, DEFAULT_CLIENT_NICE, DEFAULT_LINE_TIMEOUT,
    DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FUTURE, DEFAULT_MAX_LINE,
};

/// One server of a proxy herd: takes client locations (IAMAT), floods them
/// to its neighbours, and answers WHATSAT by asking Google Places.
///
/// The API key is read from GOOGLE_PLACES_API_KEY and is never logged.
/// SIGINT or SIGTERM stops the server cleanly (exit status 0); SIGHUP
/// reopens the log file.
#[derive(Parser, Debug)]
#[command(version, about, long_about, max_term_width = 100)]
struct Args {
    /// The server to run: a name from the herd (Riley, Jaquez, Juzang,
    /// Campbell or Bernard in the built-in herd).
    #[arg(value_name = "NAME")]
    name: Option<String>,

    /// Print the herd's servers, one `NAME HOST PORT PEER_PORT WHERE` line
    /// each in client-port order, and exit (run_herd.sh reads this). WHERE
    /// is `here` when HOST is an address of this machine (one it can bind
    /// to), `elsewhere` when not.
    #[arg(long, conflicts_with = "name")]
    list_herd: bool,

    /// Serve metrics in the Prometheus text format at
    /// http://HOST:PORT/metrics, a port of its own (off by default; the
    /// client and peer ports never carry them).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,

    /// Herd file (JSON) replacing the built-in five-server herd on
    /// 127.0.0.1:12000-12004 (peer ports 22000-22004).
    #[arg(long, value_name = "HERD.json")]
    config: Option<PathBuf>,

    /// Folder for the log file NAME.log (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    log_dir: PathBuf,

    /// Rotate the log past this size: NAME.log becomes NAME.log.1 and a
    /// new NAME.log begins (a number of bytes, or with K, M or G). Off by
    /// default; SIGHUP also reopens the log, for logrotate.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    log_max_bytes: Option<u64>,

    /// How many rotated logs (NAME.log.1 ...) to keep; older ones are
    /// deleted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_KEEP,
          requires = "log_max_bytes")]
    log_keep: usize,

    /// Which Places API to call. A key made for a new Google Cloud project
    /// usually works only with "new" (the legacy endpoint answers
    /// REQUEST_DENIED); replies to clients look the same either way.
    #[arg(long, value_name = "API", env = "PLACES_API", value_enum, ignore_case = true,
          default_value_t = ApiArg::Legacy)]
    places_api: ApiArg,

    /// The whole Nearby Search URL, to use a local Places stand-in such
    /// as places-stub instead of Google. [default: Google's URL for the
    /// chosen --places-api:
    /// https://maps.googleapis.com/maps/api/place/nearbysearch/json or
    /// https://places.googleapis.com/v1/places:searchNearby]
    #[arg(long, value_name = "URL", env = "PLACES_URL")]
    places_url: Option<String>,

    /// Longest line accepted, in bytes; a longer line closes its
    /// connection.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE,
          value_parser = clap::value_parser!(usize))]
    max_line: usize,

    /// The largest Places answer accepted, in bytes; a larger one makes
    /// the reply UNKNOWN_ERROR.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    places_max_bytes: u64,

    /// How long a Places request may take, in seconds, before the reply
    /// says UNKNOWN_ERROR.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    places_timeout: f64,

    /// Most client connections open at once; past it new connections are
    /// closed at once and open ones carry on.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Most connections open at once on the peer port, where neighbours'
    /// links arrive; past it new ones are closed at once [default: four
    /// per neighbour, at least 8].
    #[arg(long, value_name = "N")]
    max_peer_connections: Option<usize>,

    /// Close a client connection that sends nothing for this many seconds
    /// (off by default, so people typing into nc are not cut off).
    #[arg(long, value_name = "SECONDS")]
    idle_timeout: Option<f64>,

    /// A line a client has begun must end within this many seconds of its
    /// first byte, or the connection is closed; 0 for no limit. nc sends
    /// a whole line when Enter is pressed, so people typing never meet
    /// it; a connection trickling a line byte by byte does.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_LINE_TIMEOUT.as_secs_f64())]
    line_timeout: f64,

    /// With the client port full (--max-connections), refuse newcomers
    /// instead of letting one in from an address that holds at least two
    /// fewer connections than the address that holds the most, by closing
    /// that address's longest-idle connection.
    #[arg(long)]
    no_evict: bool,

    /// Journal file: every new record is appended here before the reply
    /// and read back at start [default: LOG-DIR/NAME.journal].
    #[arg(long, value_name = "FILE", conflicts_with = "no_journal")]
    journal: Option<PathBuf>,

    /// Keep no journal: a server killed while no neighbour is up can then
    /// lose updates it has acknowledged.
    #[arg(long)]
    no_journal: bool,

    /// File holding the herd secret (or set HERD_SECRET): links must then
    /// prove it (an HMAC challenge) before their AT lines are accepted,
    /// and ours prove it to neighbours. Every server of the herd needs the
    /// same secret. Off by default.
    #[arg(long, value_name = "FILE")]
    herd_secret_file: Option<PathBuf>,

    /// Refuse (as invalid) client times more than this many seconds ahead
    /// of this server's clock.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MAX_FUTURE.as_secs_f64())]
    max_future: f64,

    /// Most clients stored; past it an IAMAT for a new client gets `?`
    /// and a neighbour's update for one is dropped (known clients keep
    /// updating).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS)]
    max_clients: usize,

    /// How many nice values client connection threads run below the rest
    /// of the server (0-19) when they start while a link to a neighbour is
    /// up: on a busy machine the threads that flood updates to the
    /// neighbours then run first, so the herd stays fresh. 0 runs clients
    /// at the server's own priority.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CLIENT_NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    client_nice: i32,
}

/// Reads a size: a number of bytes, or with a K, M or G suffix (powers
/// of 1024), at least 1.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let scale: u64 = match unit {
        'B' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?}: use K, M or G")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 1048576, 512K or 64M"))?;
    match n.checked_mul(scale) {
        Some(0) => Err("must be at least 1 byte".into()),
        Some(bytes) => Ok(bytes),
        None => Err("too large".into()),
    }
}

/// Reads a flag given in seconds, refusing what is not a positive number.
fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    if value > 0.0 && value.is_finite() && value < 1e12 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "{flag} must be a positive number of seconds, not {value}"
        ))
    }
}

/// The values of --places-api; a flag-side twin of [`PlacesApi`], so the
/// library does not depend on clap's derive.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ApiArg {
    /// Legacy Nearby Search (GET …/maps/api/place/nearbysearch/json).
    Legacy,
    /// Nearby Search (New) (POST …/v1/places:searchNearby), its answer
    /// turned into the legacy shape.
    New,
}

impl From<ApiArg> for PlacesApi {
    fn from(arg: ApiArg) -> PlacesApi {
        match arg {
            ApiArg::Legacy => PlacesApi::Legacy,
            ApiArg::New => PlacesApi::New,
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            proxy_herd::logging::to_stderr(format_args!("{message}"));
            ExitCode::FAILURE
        }
    }
}

/// Whether `host` names an address of this machine: one a socket can be
/// bound to. Asking the kernel is the one answer that agrees with what
/// the server will do when it binds there.
fn is_here(host: &str) -> bool {
    use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
    (host, 0)
        .to_socket_addrs()
        .into_iter()
        .flatten()
        .any(|a| TcpListener::bind(SocketAddr::new(a.ip(), 0)).is_ok())
}

fn run(args: Args) -> Result<(), String> {
    let herd = match &args.config {
        Some(path) => Herd::from_file(path).map_err(|e| e.to_string())?,
        None => Herd::default_herd(),
    };
    if args.list_herd {
        let mut specs: Vec<_> = herd.servers().collect();
        specs.sort_by_key(|s| (s.port, s.host.clone()));
        for s in specs {
            let place = if is_here(&s.host) {
                "here"
            } else {
                "elsewhere"
            };
            println!("{} {} {} {} {place}", s.name, s.host, s.port, s.peer_port);
        }
        return Ok(());
    }
    let Some(name) = args.name.as_deref() else {
        let mut names: Vec<&str> = herd.servers().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        return Err(format!(
            "which server? Give its name: {} (see proxy-herd --help)",
            names.join(", ")
        ));
    };
    let spec = herd.server(name).map_err(|e| e.to_string())?.clone();
    let places_timeout = seconds("--places-timeout", args.places_timeout)?;
    let limits = Limits {
        max_line: args.max_line,
        max_connections: args.max_connections,
        max_peer_connections: args.max_peer_connections,
        idle_timeout: args
            .idle_timeout
            .map(|s| seconds("--idle-timeout", s))
            .transpose()?,
        line_timeout: match args.line_timeout {
            0.0 => None,
            s => Some(seconds("--line-timeout", s)?),
        },
        evict_when_full: !args.no_evict,
        max_future: seconds("--max-future", args.max_future)?,
        max_clients: args.max_clients,
        client_nice: args.client_nice,
    };
    limits.validate().map_err(|e| e.to_string())?;
    // The secret file wins over HERD_SECRET; neither means no secret.
    let secret = match (&args.herd_secret_file, std::env::var_os("HERD_SECRET")) {
        (Some(path), _) => Some(HerdSecret::from_file(path).map_err(|e| e.to_string())?),
        (None, Some(value)) => Some(
            HerdSecret::new(value.as_encoded_bytes()).map_err(|e| format!("HERD_SECRET: {e}"))?,
        ),
        (None, None) => None,
    };
    // The handlers come before the ports: once a port is bound a
    // connect succeeds, and a signal sent right after must find them.
    // What they catch waits until the log is open.
    let signals = catch_signals()?;
    // Bind before opening the log, so a port in use fails with nothing
    // else done.
    let mut listeners = Listeners::bind(&spec).map_err(|e| e.to_string())?;
    if let Some(addr) = &args.metrics_addr {
        listeners = listeners
            .with_metrics(addr.as_str())
            .map_err(|e| format!("--metrics-addr: {e}"))?;
    }
    let files = LogFiles {
        max_bytes: args.log_max_bytes,
        keep: args.log_keep,
    };
    let (log, log_path) = ServerLog::to_file(&args.log_dir, &spec.name, files)
        .map_err(|e| format!("cannot open log in {}: {e}", args.log_dir.display()))?;
    let signal_rx = signals.serve(&log)?;

    let api = PlacesApi::from(args.places_api);
    let places = PlacesConfig {
        // Each API has its own endpoint, so the default follows the API;
        // a URL given replaces the whole of it.
        url: args
            .places_url
            .unwrap_or_else(|| api.default_url().to_string()),
        key: std::env::var("GOOGLE_PLACES_API_KEY").ok(),
        timeout: places_timeout,
        api,
        max_bytes: args.places_max_bytes,
    };
    let config = ServerConfig {
        name: spec.name.clone(),
        herd,
        places,
        limits,
        secret,
        journal: (!args.no_journal).then(|| {
            args.journal
                .unwrap_or_else(|| journal::default_path(&args.log_dir, &spec.name))
        }),
        log: log.clone(),
    };
    let server = server::start(config, listeners).map_err(|e| e.to_string())?;
    // run_herd.sh waits for "serving clients": it means both ports are
    // bound and the server is up.
    proxy_herd::logging::to_stderr(format_args!(
        "{} serving clients on {}, neighbours on {}, log {}{}",
        spec.name,
        server.client_addr(),
        server.peer_addr(),
        log_path.display(),
        server
            .metrics_addr()
            .map(|a| format!(", metrics on http://{a}/metrics"))
            .unwrap_or_default()
    ));

    let _ = signal_rx.recv();
    // The log writer holds lines for at most a couple of milliseconds;
    // `flush` waits until every line logged so far is in the file. Then
    // exit at once rather than join threads that may be waiting on a slow
    // Places call: src/protocol.md#log-and-life-cycle gives us 250 ms.
    log.info(format_args!("{} got a stop signal; exiting", spec.name));
    log.flush();
    std::process::exit(0);
}

/// The signals caught, waiting for [`Caught::serve`]: SIGINT (Ctrl-C)
/// and SIGTERM stop the server, SIGHUP reopens the log.
struct Caught {
    signals: signal_hook::iterator::Signals,
    stop_tx: crossbeam_channel::Sender<()>,
    stop_rx: crossbeam_channel::Receiver<()>,
}

/// Installs the signal handlers; nothing acts on a signal until
/// [`Caught::serve`], but none is lost meanwhile (the iterator keeps what
/// arrived, and the stop channel holds a Ctrl-C).
///
/// ctrlc catches Ctrl-C, as in every version of this herd. Its
/// `termination` feature would map SIGTERM and SIGHUP to the same handler,
/// which cannot tell a stop from logrotate's "reopen your log"; so SIGTERM
/// and SIGHUP come through signal-hook instead, whose iterator hands each
/// signal by number to an ordinary thread.
fn catch_signals() -> Result<Caught, String> {
    use signal_hook::consts::{SIGHUP, SIGTERM};
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(2);
    let on_ctrl_c = stop_tx.clone();
    ctrlc::set_handler(move || {
        let _ = on_ctrl_c.try_send(());
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install the signal handlers: {e}"))?;
    Ok(Caught {
        signals,
        stop_tx,
        stop_rx,
    })
}

impl Caught {
    /// Starts the thread that acts on SIGTERM and SIGHUP with `log`
    /// open; returns the channel a stop arrives on.
    fn serve(self, log: &ServerLog) -> Result<crossbeam_channel::Receiver<()>, String> {
        use signal_hook::consts::SIGHUP;
        let Caught {
            mut signals,
            stop_tx,
            stop_rx,
        } = self;
        let log = log.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        log.info(format_args!("got SIGHUP; reopening the log"));
                        log.reopen();
                        log.info(format_args!("log reopened after SIGHUP"));
                    } else {
                        let _ = stop_tx.try_send(());
                    }
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(stop_rx)
    }
}
