//! The command line: every mode, every option, and the long help that
//! explains the columns and the exit status.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::spawn;

const AFTER_HELP: &str = "\
Modes:
  check     Grades a herd from outside, through its client ports: replies, bad
            input, WHATSAT (against places-stub), flooding, newest-wins, one and
            two servers killed and restarted, half-close, SIGTERM. A row per
            check, passed, FAIL with its reason, or not checked with why; every
            line sent and received is in --json and the --report page. Checks
            marked \"ours\" are this project's contract beyond the course's
            protocol: they are shown but decide the exit status only with
            --strict. Exit status 0 all passed, 1 a check failed, 2 the herd
            could not be started. `check --list` names every check.
  iamat     C connections (-c), each sending IAMAT and waiting for its AT line
            (closed loop), for D seconds (-d): requests/s, p50/p99/p99.9
            latency, errors. On a spawned five-server herd (--servers 5) it also
            checks that every server ends up with every client's newest record.
  oneshot   The graders' pattern: a new connection per IAMAT, half-close, read
            to end-of-file. Same figures.
  whatsat   WHATSAT against a herd pointed at places-stub, then the same Places
            requests sent straight to the stub; the difference is the proxy's
            own cost. Also counts the HTTP connections the herd opened to the
            stub (keep-alive means a few, not one per request).
  flood     The bench joins the herd as a member linked to a far server, sends
            IAMATs to a near server at a steady rate (--rate) and times each
            update until its AT line reaches it; counts lost updates.
  sustain   The herd under sustained load, measured where it counts: the bench
            joins the five-server herd as a member linked to --far, loads --near
            with C closed-loop connections for D seconds, and times every update
            from its reply until its AT line reaches the bench. Reports the
            acknowledged rate, the propagated rate (updates that crossed the
            herd per second, the drain after the load included), the lag
            (p50/p99/max), the drain time, and the peak memory (VmHWM) of every
            server. --clients 0 makes every update a new client; N cycles
            through N clients. --vs-baseline adds the baseline's iamat rate;
            --vs-ceiling runs the same load on a bare relay herd of the same
            shape (a thread per connection, one lock, a sender per neighbour,
            only the flood: `relay`) and reports ours over its propagated rate.
  relay     One server of that relay herd (the bench starts them itself).
  conns     Opens N connections (-n) and holds them, then one IAMAT on each:
            time to open all, time to answer all, and the server's memory per
            connection (VmRSS from /proc/PID/status; --pid, or the spawned herd).
  baseline  A bare thread-per-connection server inside the bench that answers
            each IAMAT with its AT line and nothing else (no store, no log, no
            flood). Alone, this mode measures it with the iamat load; with
            --serve-for it just serves, for other tools to measure.
  all       Every mode against a spawned herd and the baseline, with the
            settings of the Performance table in the bench's README (c=16,64;
            five servers; oneshot c=16; whatsat c=16; flood at --rate; sustain
            c=64 with --clients 0,100000 against the relay herd; conns -n): one
            command for the whole table. --check grades the herds first.

Targets:
  Without --addr the bench starts its own herd (--spawn-herd, the default):
  release proxy-herd processes (and places-stub for whatsat) from --bin-dir on
  free loopback ports, from a herd file it writes, logging into a temp folder.
  With --addr HOST:PORT it loads that server instead (whatsat then needs
  --stub-url; flood uses --herd FILE; conns uses --pid for memory).

--vs-baseline runs the same load against the baseline (a separate process) in
the same invocation and prints herd/baseline ratios. For flood the baseline is
a chain of baseline relays with as many hops; for whatsat the reference is
always the direct stub call.

Columns of the table (at most 100 wide; each row's notes follow it, indented):
  target    what was loaded: \"herd NAME (N srv)\" is our herd with N servers up,
            loaded at NAME; \"herd A->B\" loads A and counts arrivals at the
            bench's member linked to B; \"baseline\", \"stub direct\".
  setting   c=N: N closed-loop connections; n=N: connections held (conns);
            N/s: the flood rate; \"new\" or a number: sustain's clients.
  requests  requests answered correctly (flood: updates that arrived; conns:
            connections answered); errors: wrong or missing answers.
  per s     requests per second (conns: connections opened per second).
  p50 ... max ms  latency percentiles in milliseconds, request to answer
            (flood and sustain: from the reply to the arrival at the member).
  notes     figures of the mode: lost (updates that never arrived), hops and
            path (flood: links crossed), drain_s, peak_rss_mib, kib_per_conn...
The comparison lines give herd/reference ratios: above 1 for throughput is
better, above 1 for latency is worse. Machines are shared and noisy: a
warning is printed when repeated rounds of the same measurement disagree by
more than a third; compare ratios within one run, not rates across runs.
The last line says what was measured and why the exit status is what it is:
0 when every request was answered and nothing was lost, 2 otherwise.

Rounds and reports:
  --rounds N repeats the whole mode N times on fresh herds; every round is a
  row (its notes say round=N) and the warning above compares them.
  --report DIR writes DIR/index.html, one self-contained page (no scripts, no
  downloads) with SVG plots: requests/s against connections, latency and lag
  percentiles, memory; each herd in its own colour, the baseline grey, every
  round a dot and a bar from the lowest round to the highest. DIR/results.json
  holds every figure, the command line, the time and the core count.

Another herd:
  --herd-cmd 'python3 server.py {name}' --config herd.json starts a second herd
  (an asyncio one, a student's) and loads it right after ours, in the same run:
  iamat, oneshot and conns measure it; whatsat, flood and sustain need our
  Places stand-in or our peer port and say \"not measured\" for it.
  check grades ours and the other herd side by side (--other-only: the other
  alone); its servers also get {places_url}, PLACES_URL and a key for the
  places-stub the bench starts, and are killed and restarted one by one.
  all --check adds the scorecard to the speed comparison.

Examples:
  proxy-herd-bench check
  proxy-herd-bench check --herd-cmd 'python3 server.py {name}' --config herd.json \\
      --report out/
  proxy-herd-bench all --herd-cmd 'python3 server.py {name}' --config herd.json \\
      --rounds 3 --report out/
  proxy-herd-bench iamat -c 16,64 -d 10 --vs-baseline
  proxy-herd-bench iamat --servers 5 -c 16 --vs-baseline
  proxy-herd-bench flood --rate 200 -d 10 --vs-baseline
  proxy-herd-bench sustain -c 64 -d 10 --clients 0,100000 --vs-baseline
  proxy-herd-bench iamat --servers 5 --alone -c 16,64 --vs-baseline
  proxy-herd-bench conns -n 10000 --vs-baseline
  proxy-herd-bench all -d 10 --json > bench.json
  proxy-herd-bench iamat --addr 127.0.0.1:12000 -c 64";

/// Load generator and baseline for proxy herds (the protocol of src/protocol.md), on loopback.
///
/// Measures requests per second, latency percentiles, flood propagation
/// and memory per connection of a herd, and the same figures for a bare
/// thread-per-connection baseline, so the two can be compared in one run.
/// Progress goes to stderr, the summary table (or --json) to stdout. The
/// exit status is 2 when any measurement saw errors or lost updates.
#[derive(Parser, Debug, Clone)]
#[command(name = "proxy-herd-bench", version, after_long_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub mode: Mode,
    /// Options every mode takes.
    #[command(flatten)]
    pub opts: Options,
}

/// Options shared by every mode.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Load this server (its client port, loopback only) instead of
    /// starting a herd.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,

    /// Start the herd as separate proxy-herd processes from --bin-dir (the
    /// default when --addr is not given).
    #[arg(long, global = true, conflicts_with = "addr")]
    pub spawn_herd: bool,

    /// How many servers the spawned herd has: 1, or the built-in five
    /// (src/protocol.md#the-herd).
    #[arg(long, global = true, default_value_t = 1, value_name = "1|5",
          value_parser = parse_servers)]
    pub servers: usize,

    /// The server of a spawned herd to load (default: Riley, or Juzang,
    /// which has three neighbours, in the five-server herd).
    #[arg(long, global = true, value_name = "NAME")]
    pub target: Option<String>,

    /// Where proxy-herd, places-stub and proxy-herd-bench are (default:
    /// the folder of this program).
    #[arg(long, global = true, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// With --servers 5, start only the target server: its neighbours are
    /// in the herd file but down, so its links keep retrying meanwhile.
    #[arg(long, global = true)]
    pub alone: bool,

    /// Also run the same load against the baseline server and print the
    /// herd/baseline ratios.
    #[arg(long, global = true)]
    pub vs_baseline: bool,

    /// Concurrent connections; a comma-separated list runs each in turn.
    #[arg(short = 'c', long, global = true, value_delimiter = ',',
          default_values_t = [16usize], value_name = "C[,C...]")]
    pub connections: Vec<usize>,

    /// Seconds measured per run (flood: seconds of sending).
    #[arg(
        short = 'd',
        long,
        global = true,
        default_value_t = 5.0,
        value_name = "SECS"
    )]
    pub duration: f64,

    /// Seconds of load before measuring starts.
    #[arg(long, global = true, default_value_t = 0.5, value_name = "SECS")]
    pub warmup: f64,

    /// Seconds any connect, read or write may take before it counts as an
    /// error.
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECS")]
    pub timeout: f64,

    /// Print the report as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress lines on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Keep the spawned herd's folder (herd file and logs) instead of
    /// removing it.
    #[arg(long, global = true)]
    pub keep_logs: bool,

    /// Also start another herd (an asyncio one, a student's) from this
    /// command, once per server of --config, and measure or check it
    /// beside ours: {name}, {port} and {config} are replaced by the
    /// server's name, its client port and the herd file's path, and (for
    /// check) {places_url} by the Nearby Search URL of a places-stub,
    /// also given as PLACES_URL with a key in GOOGLE_PLACES_API_KEY. The
    /// command runs in the current folder. check, iamat, oneshot and conns
    /// take it; the other modes say why they do not.
    #[arg(long, global = true, value_name = "COMMAND", requires = "config")]
    pub herd_cmd: Option<String>,

    /// The herd file of --herd-cmd's herd: its servers, ports and links.
    #[arg(long, global = true, value_name = "HERD.json")]
    pub config: Option<PathBuf>,

    /// Run the whole mode this many times (1-20), each round on herds
    /// started afresh (with --addr, the same server each time); the table
    /// and the report show the spread between rounds.
    #[arg(long, global = true, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,

    /// Also write DIR/index.html (one self-contained page of SVG plots and
    /// tables) and DIR/results.json (every figure); DIR is created.
    #[arg(long, global = true, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

fn parse_servers(text: &str) -> Result<usize, String> {
    match text {
        "1" => Ok(1),
        "5" => Ok(5),
        _ => Err(
            "the spawned herd has 1 server or the built-in five (src/protocol.md#the-herd)".into(),
        ),
    }
}

/// The modes (see `--help` for what each measures).
#[derive(Subcommand, Debug, Clone)]
pub enum Mode {
    /// C closed-loop connections sending IAMATs for D seconds.
    Iamat,
    /// A new connection per IAMAT, half-close, read to end-of-file.
    Oneshot,
    /// WHATSAT through the herd vs. the same request straight to the stub.
    Whatsat(WhatsatArgs),
    /// Flood propagation latency, the bench joining the herd as a member.
    Flood(FloodArgs),
    /// Sustained load, counted when updates reach the far end of the herd.
    Sustain(SustainArgs),
    /// Many held connections: open time, answer time, memory per connection.
    Conns(ConnsArgs),
    /// The bare baseline server: measure it, or serve it (--serve-for).
    Baseline(BaselineArgs),
    /// Every mode, spawned herds, against the baseline.
    All(AllArgs),
    /// Grade a herd from outside: replies, bad input, WHATSAT, flooding,
    /// newest-wins, kills and restarts, each with a transcript.
    Check(CheckArgs),
    /// One server of the bare relay herd, the ceiling `sustain
    /// --vs-ceiling` holds ours against (the bench starts these itself).
    Relay(RelayArgs),
}

/// Options of `whatsat`.
#[derive(Args, Debug, Clone)]
pub struct WhatsatArgs {
    /// The Nearby Search URL of the places-stub the herd at --addr uses
    /// (required with --addr; a spawned herd gets its own stub).
    #[arg(long, value_name = "URL")]
    pub stub_url: Option<String>,
    /// WHATSAT radius in kilometres.
    #[arg(long, default_value = "10", value_name = "KM")]
    pub radius: String,
    /// WHATSAT bound on places (1-20).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub bound: usize,
    /// Key for the direct stub calls (the stub takes any non-empty key).
    #[arg(long, default_value = spawn::STUB_KEY, value_name = "KEY")]
    pub api_key: String,
}

/// Options of `flood`.
#[derive(Args, Debug, Clone)]
pub struct FloodArgs {
    /// A herd file naming the bench (--me) as a server linked to --far;
    /// the herd must be running with it. Without it the bench spawns the
    /// five-server herd plus itself.
    #[arg(long, value_name = "HERD.json")]
    pub herd: Option<PathBuf>,
    /// The server the IAMATs go to.
    #[arg(long, default_value = "Riley", value_name = "NAME")]
    pub near: String,
    /// The server the bench is linked to.
    #[arg(long, default_value = "Campbell", value_name = "NAME")]
    pub far: String,
    /// The bench's own name in the herd file.
    #[arg(long, default_value = "Bench", value_name = "NAME")]
    pub me: String,
    /// Updates per second.
    #[arg(long, default_value_t = 200.0, value_name = "PER_SEC")]
    pub rate: f64,
}

/// Options of `sustain`.
#[derive(Args, Debug, Clone)]
pub struct SustainArgs {
    /// The server the load goes to.
    #[arg(long, default_value = "Riley", value_name = "NAME")]
    pub near: String,
    /// The server the bench is linked to (the farthest from --near).
    #[arg(long, default_value = "Campbell", value_name = "NAME")]
    pub far: String,
    /// Distinct clients, cycled through: 0 makes every update a new
    /// client. A comma-separated list runs each, on a fresh herd.
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 100_000],
          value_name = "N[,N...]")]
    pub clients: Vec<usize>,
    /// Seconds to wait after the load for every update to arrive.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub patience: f64,
    /// Also run the same load on a bare relay herd of the same shape (a
    /// thread per connection, one lock, a sender per neighbour, nothing
    /// but the flood) and report ours over it: the ceiling of this design
    /// on this machine.
    #[arg(long)]
    pub vs_ceiling: bool,
}

/// Options of `conns`.
#[derive(Args, Debug, Clone)]
pub struct ConnsArgs {
    /// How many connections to open and hold.
    #[arg(short = 'n', long, default_value_t = 1000, value_name = "N")]
    pub count: usize,
    /// Process id of the server at --addr, for its memory.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
}

/// Options of `baseline`.
#[derive(Args, Debug, Clone)]
pub struct BaselineArgs {
    /// Only serve, for this many seconds (at most 86400), on --listen.
    #[arg(long, value_name = "SECS")]
    pub serve_for: Option<f64>,
    /// Where to serve with --serve-for.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// Relay: also write every AT line made or received to this address.
    #[arg(long, value_name = "HOST:PORT")]
    pub forward: Option<SocketAddr>,
}

/// Options of `relay`.
#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// The server to run, a name of the herd file.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The herd file: its ports and links.
    #[arg(long, value_name = "HERD.json")]
    pub herd: PathBuf,
    /// Serve for this many seconds (at most 86400), then exit.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub serve_for: f64,
}

/// Options of `check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Seconds a reply may take (a WHATSAT gets 5 more, for Places).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub reply_within: f64,
    /// Seconds an update may take to reach every server it can reach.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub within: f64,
    /// Seconds a restarted server may take to catch up with what it
    /// missed (links retry with a backoff).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub catch_up_within: f64,
    /// Run only the checks whose names start with one of these
    /// (comma-separated: `faults,whatsat.bound`).
    #[arg(long, value_delimiter = ',', value_name = "PREFIX[,PREFIX...]")]
    pub only: Vec<String>,
    /// Exit 1 also when a check that only our contract asks for fails
    /// (by default only the course's checks decide the exit status).
    #[arg(long)]
    pub strict: bool,
    /// Ask WHATSAT (to see where updates went) even of a herd that does
    /// not use the Places stand-in it is given: each ask is then a request
    /// to the Places endpoint it calls itself, billed to its key. Without
    /// it, such a herd's flooding, newest-wins and fault checks are not
    /// checked.
    #[arg(long)]
    pub real_places: bool,
    /// With --herd-cmd, check only the other herd, not ours beside it.
    #[arg(long)]
    pub other_only: bool,
    /// List the checks, what each proves and who asks for it, and exit.
    #[arg(long)]
    pub list: bool,
}

impl Default for CheckArgs {
    fn default() -> CheckArgs {
        CheckArgs {
            reply_within: 3.0,
            within: 3.0,
            catch_up_within: 10.0,
            only: Vec::new(),
            real_places: false,
            strict: false,
            other_only: false,
            list: false,
        }
    }
}

/// Options of `all`.
#[derive(Args, Debug, Clone)]
pub struct AllArgs {
    /// Also grade the herds with `check` first, and put the scorecard on
    /// the page.
    #[arg(long)]
    pub check: bool,
    /// Connections held by the conns step.
    #[arg(short = 'n', long, default_value_t = 10_000, value_name = "N")]
    pub count: usize,
    /// Updates per second of the flood step.
    #[arg(long, default_value_t = 200.0, value_name = "PER_SEC")]
    pub rate: f64,
}
