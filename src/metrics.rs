//! What a server counts, in the Prometheus text format, for monitoring
//! tools and for `run_herd.sh watch`.
//!
//! Served only with `--metrics-addr`, on a port of its own
//! ([`crate::server`] answers `GET /metrics` there), never on the client
//! or peer port: a grader or an `nc` user sees not one extra byte.
//!
//! Two kinds of figures, so that counting costs the hot path nothing but
//! an atomic add:
//! - **counted as they happen**: lines by kind, records stored and
//!   superseded, AT lines sent, link connects, resyncs and disconnects,
//!   Places requests and their time. Each is a `prometheus` counter made
//!   once at start (a label's counter is looked up then, not per line),
//!   so a line costs one relaxed atomic increment and no lock.
//! - **read when scraped**: connections, threads, stored clients, each
//!   link's state and what it holds waiting, the journal's size, and the
//!   journal's and log's failed writes (counted where they happen, read
//!   from there). The server gathers them into a [`Snapshot`] only when
//!   someone asks.
//!
//! Names follow Prometheus' conventions: a `herd_` prefix, `_total` on
//! counters, base units (`_seconds`, `_bytes`), and labels only for what
//! has a few values (a link's neighbour, a kind, a status), never for a
//! client id.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::places::PlacesStatus;

/// Every figure of one server.
pub struct Metrics {
    registry: Registry,
    /// Held while a scrape sets the read-when-scraped figures and encodes
    /// the page, so that two scrapes at once neither add a total twice
    /// (see [`catch_up`]) nor mix two snapshots in one page. Scrapes are
    /// rare; the hot path never takes it.
    rendering: parking_lot::Mutex<()>,
    /// Lines received, by kind.
    pub lines: Lines,
    /// Records that became a client's newest, from clients and from
    /// neighbours.
    pub stored_from_client: IntCounter,
    pub stored_from_peer: IntCounter,
    /// Records not newer than the one stored: a flood's duplicates and
    /// repeated or late updates. Dropped.
    pub superseded: IntCounter,
    /// Updates for a new client refused at `--max-clients`.
    pub refused_full: IntCounter,
    /// Client connections closed to let a newcomer in on a full port.
    pub evicted: IntCounter,
    /// Client connections closed for a line not ended in time.
    pub line_timeouts: IntCounter,
    places_ok: IntCounter,
    places_failed: [IntCounter; 4],
    /// How long Places requests take, answered or not.
    pub places_seconds: Histogram,
    link_sent: IntCounterVec,
    link_resyncs: IntCounterVec,
    link_connects: IntCounterVec,
    link_disconnects: IntCounterVec,
    // Read when scraped.
    journal_failures: IntCounter,
    log_lost: IntCounter,
    client_connections: IntGauge,
    peer_connections: IntGauge,
    threads: IntGauge,
    clients: IntGauge,
    journal_bytes: IntGauge,
    link_up: IntGaugeVec,
    link_waiting: IntGaugeVec,
    link_oldest: GaugeVec,
}

/// The counters of received lines, one per kind.
pub struct Lines {
    pub iamat: IntCounter,
    pub whatsat: IntCounter,
    pub at: IntCounter,
    pub invalid: IntCounter,
}

/// One link's counters, made when the link starts.
#[derive(Clone)]
pub struct LinkMetrics {
    /// AT lines written to the neighbour (resyncs included).
    pub sent: IntCounter,
    /// Resyncs: the whole store sent after the link came (back) up.
    pub resyncs: IntCounter,
    /// Connections made (and proved, with a herd secret).
    pub connects: IntCounter,
    /// Connections lost after they were made.
    pub disconnects: IntCounter,
}

/// What the server reads for a scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub client_connections: usize,
    pub peer_connections: usize,
    /// The process's threads (`/proc/self/status`), 0 where unknown.
    pub threads: usize,
    pub clients: usize,
    pub journal_bytes: u64,
    /// Journal appends that failed, since start.
    pub journal_failures: u64,
    /// Log lines lost to failed writes, since start.
    pub log_lines_lost: u64,
    pub links: Vec<LinkSnapshot>,
}

/// One link, as a scrape sees it.
#[derive(Debug, Clone, Default)]
pub struct LinkSnapshot {
    pub neighbour: String,
    /// Connected and resynced.
    pub up: bool,
    /// Records queued or kept behind for it.
    pub waiting: usize,
    /// How long the oldest of those has waited at most, in seconds (0
    /// when none waits).
    pub oldest_seconds: f64,
}

/// The statuses a failed Places request can have, in the order of
/// `Metrics::places_failed`.
const FAILED: [PlacesStatus; 4] = [
    PlacesStatus::RequestDenied,
    PlacesStatus::InvalidRequest,
    PlacesStatus::OverQueryLimit,
    PlacesStatus::UnknownError,
];

/// The Places request time histogram's buckets, in seconds: a local
/// stand-in answers in a millisecond, Google in tens to hundreds, and
/// the timeout is 10 s.
const PLACES_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    /// Every figure at zero, registered under the `herd_` names.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let add = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let v = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid name");
            add(Box::new(v.clone()));
            v
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid name");
            add(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid name");
            add(Box::new(c.clone()));
            c
        };
        let lines = counter_vec(
            "herd_lines_received_total",
            "Lines received, by kind: iamat and whatsat from clients, at from neighbours, invalid for every line of either answered with ?.",
            "kind",
        );
        let stored = counter_vec(
            "herd_records_stored_total",
            "Records that became a client's newest, by where they came from.",
            "from",
        );
        let places = counter_vec(
            "herd_places_requests_total",
            "WHATSAT answers from Places, by status: OK, or the error status (REQUEST_DENIED also when no key is set and nothing was sent).",
            "status",
        );
        let places_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "herd_places_request_seconds",
                "Time a Places request took, answered or failed.",
            )
            .buckets(PLACES_BUCKETS.to_vec()),
        )
        .expect("valid buckets");
        add(Box::new(places_seconds.clone()));
        let link_gauge = |name: &str, help: &str| {
            let v = IntGaugeVec::new(Opts::new(name, help), &["link"]).expect("valid name");
            add(Box::new(v.clone()));
            v
        };
        let link_oldest = GaugeVec::new(
            Opts::new(
                "herd_link_oldest_waiting_seconds",
                "At most how long the oldest record waiting for this link has waited (0: none waits).",
            ),
            &["link"],
        )
        .expect("valid name");
        add(Box::new(link_oldest.clone()));
        Metrics {
            lines: Lines {
                iamat: lines.with_label_values(&["iamat"]),
                whatsat: lines.with_label_values(&["whatsat"]),
                at: lines.with_label_values(&["at"]),
                invalid: lines.with_label_values(&["invalid"]),
            },
            stored_from_client: stored.with_label_values(&["client"]),
            stored_from_peer: stored.with_label_values(&["peer"]),
            superseded: counter(
                "herd_records_superseded_total",
                "Records that arrived not newer than the one stored (flood duplicates, repeated or late updates) and were dropped.",
            ),
            refused_full: counter(
                "herd_records_refused_total",
                "Updates for a new client refused because --max-clients clients are stored.",
            ),
            evicted: counter(
                "herd_client_connections_evicted_total",
                "Client connections closed on a full client port to let in a newcomer from an address holding fewer (the longest-idle of the address holding the most).",
            ),
            line_timeouts: counter(
                "herd_line_timeouts_total",
                "Client connections closed because a line they began did not end within --line-timeout.",
            ),
            places_ok: places.with_label_values(&["OK"]),
            places_failed: FAILED.map(|s| places.with_label_values(&[s.as_str()])),
            places_seconds,
            link_sent: counter_vec(
                "herd_link_at_lines_sent_total",
                "AT lines written to a neighbour, resyncs included.",
                "link",
            ),
            link_resyncs: counter_vec(
                "herd_link_resyncs_total",
                "Resyncs: every stored record sent to a neighbour whose link came (back) up.",
                "link",
            ),
            link_connects: counter_vec(
                "herd_link_connects_total",
                "Links made to a neighbour (and proved, with a herd secret).",
                "link",
            ),
            link_disconnects: counter_vec(
                "herd_link_disconnects_total",
                "Links to a neighbour lost after they were made.",
                "link",
            ),
            journal_failures: counter(
                "herd_journal_write_failures_total",
                "Journal writes that failed: of a client's update (which then gets no AT reply) or of a neighbour's burst.",
            ),
            log_lost: counter(
                "herd_log_lines_lost_total",
                "Log lines lost to failed log writes.",
            ),
            client_connections: gauge(
                "herd_client_connections",
                "Open connections on the client port.",
            ),
            peer_connections: gauge(
                "herd_peer_connections",
                "Open connections on the peer port (neighbours' links to us).",
            ),
            threads: gauge("herd_threads", "Threads of the server process."),
            clients: gauge("herd_clients_stored", "Clients whose newest record is stored."),
            journal_bytes: gauge("herd_journal_bytes", "Size of the journal file."),
            link_up: link_gauge(
                "herd_link_up",
                "1 while the link to a neighbour is connected and resynced, else 0.",
            ),
            link_waiting: link_gauge(
                "herd_link_waiting_records",
                "Records queued or kept behind for a neighbour, not yet written.",
            ),
            link_oldest,
            registry,
            rendering: parking_lot::Mutex::new(()),
        }
    }

    /// The counters of the link to `neighbour`, made (at zero) so that a
    /// link that never came up still shows.
    pub fn link(&self, neighbour: &str) -> LinkMetrics {
        for gauge in [&self.link_up, &self.link_waiting] {
            gauge.with_label_values(&[neighbour]).set(0);
        }
        self.link_oldest.with_label_values(&[neighbour]).set(0.0);
        LinkMetrics {
            sent: self.link_sent.with_label_values(&[neighbour]),
            resyncs: self.link_resyncs.with_label_values(&[neighbour]),
            connects: self.link_connects.with_label_values(&[neighbour]),
            disconnects: self.link_disconnects.with_label_values(&[neighbour]),
        }
    }

    /// Counts one Places request's outcome and time.
    pub fn places_request(&self, failed: Option<PlacesStatus>, seconds: f64) {
        match failed {
            None => self.places_ok.inc(),
            Some(status) => {
                let i = FAILED.iter().position(|s| *s == status).unwrap_or(3);
                self.places_failed[i].inc();
            }
        }
        self.places_seconds.observe(seconds);
    }

    /// The page a scrape gets: `snapshot`'s figures set, then everything
    /// in the Prometheus text format (version 0.0.4).
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let _one_at_a_time = self.rendering.lock();
        let set = |g: &IntGauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        set(&self.client_connections, snapshot.client_connections as u64);
        set(&self.peer_connections, snapshot.peer_connections as u64);
        set(&self.threads, snapshot.threads as u64);
        set(&self.clients, snapshot.clients as u64);
        set(&self.journal_bytes, snapshot.journal_bytes);
        catch_up(&self.journal_failures, snapshot.journal_failures);
        catch_up(&self.log_lost, snapshot.log_lines_lost);
        for link in &snapshot.links {
            let l = [link.neighbour.as_str()];
            self.link_up.with_label_values(&l).set(i64::from(link.up));
            set(
                &self.link_waiting.with_label_values(&l),
                link.waiting as u64,
            );
            self.link_oldest
                .with_label_values(&l)
                .set(link.oldest_seconds);
        }
        let mut out = Vec::new();
        // Encoding into memory fails only for a metric the registry would
        // not have taken.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Brings a counter up to a total counted elsewhere (counters only go
/// up; a total that went down, which cannot happen, is ignored).
fn catch_up(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The content type of [`Metrics::render`]'s page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// This process's thread count, from `/proc/self/status`; 0 where there
/// is no such file.
pub fn process_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters made once and incremented show in the page under their
    /// labels, scrape-time figures are set from the snapshot, and a
    /// catch-up counter follows its total.
    #[test]
    fn page_shows_counters_and_snapshot() {
        let m = Metrics::new();
        m.lines.iamat.inc();
        m.lines.iamat.inc();
        m.lines.invalid.inc();
        let link = m.link("Juzang");
        link.sent.inc_by(5);
        m.places_request(Some(PlacesStatus::RequestDenied), 0.002);
        m.places_request(None, 0.02);
        let snapshot = Snapshot {
            clients: 7,
            journal_failures: 3,
            links: vec![LinkSnapshot {
                neighbour: "Juzang".into(),
                up: true,
                waiting: 4,
                oldest_seconds: 0.5,
            }],
            ..Snapshot::default()
        };
        let page = m.render(&snapshot);
        for line in [
            "herd_lines_received_total{kind=\"iamat\"} 2",
            "herd_lines_received_total{kind=\"invalid\"} 1",
            "herd_lines_received_total{kind=\"at\"} 0",
            "herd_link_at_lines_sent_total{link=\"Juzang\"} 5",
            "herd_link_up{link=\"Juzang\"} 1",
            "herd_link_waiting_records{link=\"Juzang\"} 4",
            "herd_link_oldest_waiting_seconds{link=\"Juzang\"} 0.5",
            "herd_places_requests_total{status=\"REQUEST_DENIED\"} 1",
            "herd_places_requests_total{status=\"OK\"} 1",
            "herd_places_request_seconds_count 2",
            "herd_clients_stored 7",
            "herd_journal_write_failures_total 3",
            "# TYPE herd_places_request_seconds histogram",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line:?} missing in:\n{page}"
            );
        }
        let again = m.render(&Snapshot {
            journal_failures: 5,
            ..snapshot
        });
        assert!(again
            .lines()
            .any(|l| l == "herd_journal_write_failures_total 5"));
    }
}
