//! What the screen shows, from the scrapes: pure, so it can be tested
//! without a terminal or a herd.
//!
//! Each refresh gives every server's samples (or why it did not answer).
//! The view keeps the previous refresh to turn counters into rates and to
//! notice changes, which it lists as events: a server that stops or comes
//! back, a link that goes up or down, a resync.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::scrape::Samples;

/// The screen: a terminal's classic size, which every frame fits.
pub const WIDTH: usize = 80;
pub const HEIGHT: usize = 24;

/// How long a resync stays marked on its link.
const RESYNC_SHOWN: Duration = Duration::from_secs(5);

/// A server of the herd and where its metrics are.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub metrics: SocketAddr,
}

/// One sender's view of one neighbour: the direction `from -> to`.
type Direction = (usize, usize);

/// The state the screen is drawn from.
pub struct View {
    servers: Vec<Server>,
    /// Every link, both ways, in the order the screen lists them.
    directions: Vec<Direction>,
    /// This refresh's scrape of each server.
    current: Vec<Result<Samples, String>>,
    /// Each server's previous answered scrape, for rates.
    previous: Vec<Option<(Instant, Samples)>>,
    /// IAMAT and AT lines received, and AT lines sent, per second.
    rates: Vec<Option<(f64, f64)>>,
    /// When each direction last resynced.
    resynced: BTreeMap<Direction, Instant>,
    events: VecDeque<String>,
    refreshes: u64,
}

impl View {
    /// A view of `servers`, whose links are `links` (pairs of indexes).
    pub fn new(servers: Vec<Server>, links: &[(usize, usize)]) -> View {
        let mut directions: Vec<Direction> =
            links.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
        directions.sort_unstable();
        let n = servers.len();
        View {
            servers,
            directions,
            current: vec![Err("not asked yet".into()); n],
            previous: vec![None; n],
            rates: vec![None; n],
            resynced: BTreeMap::new(),
            events: VecDeque::new(),
            refreshes: 0,
        }
    }

    /// Where each server's metrics are, in screen order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.metrics).collect()
    }

    /// Takes one refresh's scrapes (in the order of [`View::addrs`]),
    /// made at `at`, and notes what changed at wall-clock time `clock`.
    pub fn update(&mut self, clock: &str, at: Instant, scraped: Vec<Result<Samples, String>>) {
        let first = self.refreshes == 0;
        self.refreshes += 1;
        let old = std::mem::replace(&mut self.current, scraped);
        for (i, now) in self.current.iter().enumerate() {
            let name = &self.servers[i].name;
            match (&old[i], now) {
                (Ok(_), Err(why)) => self.events.push_back(format!(
                    "{clock}  {name} is DOWN: its metrics port does not answer ({why})"
                )),
                (Err(_), Ok(_)) if !first => self
                    .events
                    .push_back(format!("{clock}  {name} is up again")),
                _ => {}
            }
            self.rates[i] = match (&self.previous[i], now) {
                (Some((then, before)), Ok(samples)) => {
                    let secs = at.duration_since(*then).as_secs_f64().max(1e-3);
                    let received = |s: &Samples| {
                        s.get("herd_lines_received_total", Some("kind=\"iamat\""))
                            .unwrap_or(0.0)
                            + s.get("herd_lines_received_total", Some("kind=\"at\""))
                                .unwrap_or(0.0)
                    };
                    let sent = |s: &Samples| s.sum("herd_link_at_lines_sent_total");
                    Some((
                        (received(samples) - received(before)).max(0.0) / secs,
                        (sent(samples) - sent(before)).max(0.0) / secs,
                    ))
                }
                _ => None,
            };
        }
        for &(from, to) in &self.directions {
            let (Ok(now), Ok(before)) = (&self.current[from], &old[from]) else {
                continue;
            };
            let label = format!("link=\"{}\"", self.servers[to].name);
            let up = |s: &Samples| s.get("herd_link_up", Some(&label)) == Some(1.0);
            let resyncs = |s: &Samples| s.get("herd_link_resyncs_total", Some(&label));
            let arrow = format!("{} -> {}", self.servers[from].name, self.servers[to].name);
            if resyncs(now) > resyncs(before) && !first {
                self.resynced.insert((from, to), at);
                self.events.push_back(format!(
                    "{clock}  {arrow}: RESYNC, every stored record sent (#{})",
                    resyncs(now).unwrap_or(0.0)
                ));
            }
            if up(now) != up(before) && !first {
                let state = if up(now) { "up" } else { "DOWN" };
                self.events
                    .push_back(format!("{clock}  {arrow}: link {state}"));
            }
        }
        for (i, now) in self.current.iter().enumerate() {
            self.previous[i] = now.as_ref().ok().map(|s| (at, s.clone()));
        }
        self.resynced
            .retain(|_, when| at.duration_since(*when) < RESYNC_SHOWN);
        while self.events.len() > HEIGHT {
            self.events.pop_front();
        }
    }

    /// The screen, at most [`HEIGHT`] lines of at most [`WIDTH`]
    /// characters.
    pub fn frame(&self, clock: &str, every: Duration) -> Vec<String> {
        let up = self.current.iter().filter(|s| s.is_ok()).count();
        let mut lines = vec![
            format!(
                "herd watch  {clock}  every {} s  (q quits){:>width$}",
                every.as_secs_f64(),
                format!("{up} of {} servers up", self.servers.len()),
                width = 34
            ),
            format!(
                "{:<10} {:<5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "SERVER", "STATE", "CLIENTS", "STORED", "IN/s", "OUT/s", "THREADS", "WAITING"
            ),
        ];
        let rows = self.servers.len().min(8);
        for (i, server) in self.servers.iter().enumerate().take(rows) {
            lines.push(match &self.current[i] {
                Err(why) => format!(
                    "{:<10} {:<5} no answer from {} ({why})",
                    server.name, "DOWN", server.metrics
                ),
                Ok(s) => {
                    let count = |name: &str| {
                        s.get(name, None)
                            .map_or("-".to_string(), |v| format!("{v:.0}"))
                    };
                    let (rate_in, rate_out) = match self.rates[i] {
                        Some((a, b)) => (format!("{a:.0}"), format!("{b:.0}")),
                        None => ("-".into(), "-".into()),
                    };
                    format!(
                        "{:<10} {:<5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                        server.name,
                        "up",
                        count("herd_client_connections"),
                        count("herd_clients_stored"),
                        rate_in,
                        rate_out,
                        count("herd_threads"),
                        format!("{:.0}", s.sum("herd_link_waiting_records")),
                    )
                }
            });
        }
        if self.servers.len() > rows {
            lines.push(format!(
                "... and {} more servers",
                self.servers.len() - rows
            ));
        }
        lines.push(String::new());
        lines.push("LINKS  sender -> neighbour: state, records waiting, oldest wait".into());
        let cells: Vec<String> = self.directions.iter().map(|&d| self.link_cell(d)).collect();
        const LINK_ROWS: usize = 8;
        for pair in cells.chunks(2).take(LINK_ROWS) {
            lines.push(format!(
                "{:<39} {}",
                pair[0],
                pair.get(1).map_or("", String::as_str)
            ));
        }
        if cells.len() > 2 * LINK_ROWS {
            lines.push(format!(
                "... and {} more link directions",
                cells.len() - 2 * LINK_ROWS
            ));
        }
        lines.push(String::new());
        lines.push("EVENTS".into());
        let room = HEIGHT.saturating_sub(lines.len());
        if self.events.is_empty() && room > 0 {
            lines.push("(none yet: stop a server, or send updates, to see some)".into());
        }
        let skip = self.events.len().saturating_sub(room);
        lines.extend(self.events.iter().skip(skip).cloned());
        lines.truncate(HEIGHT);
        lines
            .into_iter()
            .map(|l| l.chars().take(WIDTH).collect())
            .collect()
    }

    /// One direction as its sender sees it.
    fn link_cell(&self, (from, to): Direction) -> String {
        let arrow = format!("{} -> {}", self.servers[from].name, self.servers[to].name);
        let Ok(s) = &self.current[from] else {
            return format!("{arrow:<20} ? (sender down)");
        };
        let label = format!("link=\"{}\"", self.servers[to].name);
        let up = s.get("herd_link_up", Some(&label)) == Some(1.0);
        let waiting = s
            .get("herd_link_waiting_records", Some(&label))
            .unwrap_or(0.0);
        let oldest = s
            .get("herd_link_oldest_waiting_seconds", Some(&label))
            .unwrap_or(0.0);
        // At most 39 characters, so two cells fit a line.
        let resync = self.resynced.contains_key(&(from, to));
        match (up, resync) {
            (true, true) => format!("{arrow:<20} up {waiting:>5.0} RESYNC"),
            (true, false) if waiting > 0.0 => {
                format!("{arrow:<20} up {waiting:>5.0} {oldest:>4.1}s")
            }
            (true, false) => format!("{arrow:<20} up {waiting:>5.0}"),
            (false, true) => format!("{arrow:<20} DOWN RESYNC"),
            (false, false) => format!("{arrow:<20} DOWN"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::parse;

    fn view() -> View {
        let servers = ["A", "B"]
            .iter()
            .zip(19000u16..)
            .map(|(n, p)| Server {
                name: n.to_string(),
                metrics: ([127, 0, 0, 1], p).into(),
            })
            .collect();
        View::new(servers, &[(0, 1)])
    }

    fn page(iamat: u32, sent: u32, up: u8, resyncs: u32, to: &str) -> Result<Samples, String> {
        Ok(parse(&format!(
            "herd_lines_received_total{{kind=\"iamat\"}} {iamat}\n\
             herd_link_at_lines_sent_total{{link=\"{to}\"}} {sent}\n\
             herd_link_up{{link=\"{to}\"}} {up}\nherd_link_resyncs_total{{link=\"{to}\"}} {resyncs}\n\
             herd_clients_stored 3\nherd_client_connections 1\nherd_threads 9\n"
        )))
    }

    /// Counters become rates over the time between refreshes; a server
    /// that stops answering turns DOWN with an event, and its links are
    /// unknown; a resync is listed and marked on its link; every frame
    /// fits 80x24.
    #[test]
    fn rates_events_and_size() {
        let mut v = view();
        let t0 = Instant::now();
        v.update(
            "00:00:00",
            t0,
            vec![page(10, 0, 1, 1, "B"), page(0, 10, 1, 1, "A")],
        );
        v.update(
            "00:00:01",
            t0 + Duration::from_secs(2),
            vec![page(30, 20, 1, 1, "B"), page(0, 10, 1, 1, "A")],
        );
        let frame = v.frame("00:00:01", Duration::from_secs(1));
        let a = frame.iter().find(|l| l.starts_with("A ")).unwrap();
        assert!(a.contains(" up ") && a.contains("      10 "), "{a}");
        v.update(
            "00:00:02",
            t0 + Duration::from_secs(3),
            vec![page(30, 20, 1, 2, "B"), Err("connection refused".into())],
        );
        let frame = v.frame("00:00:02", Duration::from_secs(1));
        let text = frame.join("\n");
        assert!(text.contains("B          DOWN  no answer"), "{text}");
        assert!(
            text.contains("B -> A               ? (sender down)"),
            "{text}"
        );
        assert!(
            text.contains("A -> B               up     0 RESYNC"),
            "{text}"
        );
        assert!(text.contains("00:00:02  B is DOWN"), "{text}");
        assert!(text.contains("A -> B: RESYNC"), "{text}");
        assert!(frame.len() <= HEIGHT);
        assert!(frame.iter().all(|l| l.chars().count() <= WIDTH));
    }

    /// A server that flaps for a week makes events without end; the view
    /// keeps only a screen's worth, and the frame still fits.
    #[test]
    fn events_are_bounded() {
        let mut v = view();
        let t0 = Instant::now();
        for i in 0..500u32 {
            let b = if i % 2 == 0 {
                Err("connection refused".to_string())
            } else {
                page(0, 0, 1, i, "A")
            };
            let at = t0 + Duration::from_secs(u64::from(i));
            v.update("00:00:00", at, vec![page(i, i, (i % 2) as u8, i, "B"), b]);
        }
        assert!(v.events.len() <= HEIGHT, "{} events kept", v.events.len());
        let frame = v.frame("00:00:00", Duration::from_secs(1));
        assert!(frame.len() <= HEIGHT);
        assert!(frame.iter().all(|l| l.chars().count() <= WIDTH));
    }
}
