//! How each check of the [catalogue](super::catalogue) is made.
//!
//! A check talks to client ports only, a connection per question as
//! graders do, and proves flooding by asking each server WHATSAT for the
//! client: the first line of the reply is the record that server holds.
//! Waiting is bounded by the settings and ends as soon as every server
//! holds what it should; a check never passes by waiting out a timer.
//! Where something must be shown not to have happened (an older update
//! spreading, a cut-off server learning of an update), a later update
//! sent the same way serves as the gate: once it has arrived everywhere,
//! the earlier one had every chance to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use proxy_herd::places::layout;

use super::catalogue::CATALOGUE;
use super::probe::{Probe, Transcript};
use super::subject::Subject;
use super::{Outcome, Settings, Status};
use crate::client::LOCATION;
use crate::spawn::STUB_KEY;

/// Why a check did not pass.
enum Miss {
    Failed(String),
    NotChecked(String),
}

impl From<String> for Miss {
    fn from(reason: String) -> Miss {
        Miss::Failed(reason)
    }
}

type Verdict = Result<(), Miss>;

/// Fails with `reason` unless `ok`.
fn ensure(ok: bool, reason: impl FnOnce() -> String) -> Verdict {
    if ok {
        Ok(())
    } else {
        Err(Miss::Failed(reason()))
    }
}

/// Whether WHATSAT answers with the places of the stand-in the herd was
/// given, learnt by the first WHATSAT check.
enum Places {
    Unknown,
    Works,
    /// Not the stand-in's places, or no usable reply: the reason.
    Ignored(String),
}

/// One run of the catalogue against one herd.
struct Run<'a> {
    subject: &'a mut Subject,
    settings: &'a Settings,
    progress: &'a dyn Fn(&str),
    outcomes: BTreeMap<&'static str, Outcome>,
    next_id: usize,
    places: Places,
    /// Whether checks may ask WHATSAT to see where updates went: not
    /// when each ask would be a Places request the herd makes on its own
    /// key (see [`probe_places`]); the reason then.
    polling: Result<(), String>,
}

/// Runs every check the settings ask for, in the catalogue's order, and
/// returns an outcome for each (those not asked for say so).
pub fn run_all(
    subject: &mut Subject,
    settings: &Settings,
    progress: &dyn Fn(&str),
) -> Vec<Outcome> {
    let mut run = Run {
        subject,
        settings,
        progress,
        outcomes: BTreeMap::new(),
        next_id: 0,
        places: Places::Unknown,
        polling: Ok(()),
    };
    probe_places(&mut run);
    if run.polling.is_ok() {
        settle(&mut run);
    }
    let groups: [fn(&mut Run); 8] = [
        replies,
        lines,
        bad_input,
        whatsat,
        flooding,
        newest_wins,
        faults,
        life_cycle,
    ];
    for group in groups {
        group(&mut run);
    }
    CATALOGUE
        .iter()
        .map(|spec| {
            run.outcomes.remove(spec.name).unwrap_or(Outcome {
                name: spec.name.to_string(),
                course: spec.course,
                status: Status::NotChecked,
                reason: Some("not asked for (--only)".into()),
                ms: 0.0,
                transcript: Vec::new(),
            })
        })
        .collect()
}

/// How long a poll waits between rounds of WHATSAT asks.
const POLL: Duration = Duration::from_millis(50);

/// Whether two AT lines are the same record: the same server made it,
/// for the same client and client time. A herd that re-formats the line
/// it stored (a float for the time, say) still holds the record; that
/// its WHATSAT does not echo the stored line byte for byte is
/// `whatsat.reply`'s business, not every flooding check's.
fn same_record(held: &str, want: &str) -> bool {
    let (h, w): (Vec<&str>, Vec<&str>) = (
        held.split_whitespace().collect(),
        want.split_whitespace().collect(),
    );
    if h.len() != 6 || w.len() != 6 || h[0] != "AT" || h[1] != w[1] || h[3] != w[3] {
        return false;
    }
    h[5] == w[5]
        || matches!(
            (h[5].parse::<f64>(), w[5].parse::<f64>()),
            (Ok(a), Ok(b)) if (a - b).abs() < 1e-6
        )
}

/// Asks one WHATSAT before anything else: every flooding check watches
/// the herd through WHATSAT, and a herd that ignores the Places URL it
/// was given (a student's often calls Google with a key in its code)
/// would make each of those thousands of asks a real, billed Places
/// request. Unless `--real-places`, such a herd is not polled at all.
fn probe_places(run: &mut Run) {
    let log = Transcript::new();
    let server = run.names()[0].clone();
    let client = run.client("places-probe");
    if run.update(&log, &server, &client).is_err() {
        return;
    }
    let answer = Probe::open(
        &log,
        &server,
        run.subject.addr(&server),
        run.settings.reply + Duration::from_secs(5),
    )
    .and_then(|mut probe| {
        probe.send(format!("WHATSAT {client} 10 5\n"))?;
        Ok(probe.up_to(b"\n\n"))
    })
    .unwrap_or_default();
    if answer.contains("(places-stub)") || run.settings.real_places {
        return;
    }
    let status = answer
        .split("\"status\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .unwrap_or("none");
    let why = format!(
        "its WHATSAT does not answer with the places of the stand-in it was given (status {status}): \
         it calls another Places endpoint, and each WHATSAT this check would ask to see where \
         updates went would be a request there, on its key (--real-places to allow)"
    );
    (run.progress)(&format!("not polling with WHATSAT: {why}"));
    run.polling = Err(why);
}

/// How long a herd just started may take to link up before the checks
/// begin.
const SETTLE: Duration = Duration::from_secs(10);

/// Waits until an update at each server has reached every server, with
/// fresh updates each try, so that no check runs while the herd's links
/// are still being made (a herd may connect them lazily). A herd that
/// never links up is checked anyway: its flooding checks will say so.
fn settle(run: &mut Run) {
    let log = Transcript::new();
    let started = Instant::now();
    if linked(run, &log, SETTLE) {
        (run.progress)(&format!(
            "linked: an update at each server reached every server, {} ms after the start",
            started.elapsed().as_millis()
        ));
    } else {
        (run.progress)(&format!(
            "not linked after {} s (an update at each server did not reach every server); \
             checking anyway",
            SETTLE.as_secs()
        ));
    }
}

/// Whether, within `patience`, a round of fresh updates, one at each
/// server, reaches every server.
fn linked(run: &mut Run, log: &Transcript, patience: Duration) -> bool {
    let names = run.names();
    if names.len() < 2 {
        return true;
    }
    let started = Instant::now();
    while started.elapsed() < patience {
        let mut expected = Vec::new();
        for server in &names {
            let client = run.client("settle");
            if let Ok(at) = run.update(log, server, &client) {
                expected.push((client, at));
            }
        }
        let left = patience.saturating_sub(started.elapsed());
        let missing =
            log.muted(|| run.wait_held(log, &names, &expected, left.min(Duration::from_secs(2))));
        if missing.is_empty() && expected.len() == names.len() {
            return true;
        }
    }
    false
}

impl Run<'_> {
    /// Makes the checks `names` with one transcript (checks that share
    /// their steps, such as a kill and the catch-up after it), if any of
    /// them is asked for; `f` returns a verdict per name.
    fn checks<const N: usize>(
        &mut self,
        names: [&'static str; N],
        f: impl FnOnce(&mut Self, &Transcript) -> [Verdict; N],
    ) {
        if !names.iter().any(|n| self.settings.wants(n)) {
            return;
        }
        let log = Transcript::new();
        let started = Instant::now();
        let verdicts = f(self, &log);
        self.revive(&log);
        let ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
        for (name, verdict) in names.into_iter().zip(verdicts) {
            let course = CATALOGUE
                .iter()
                .find(|s| s.name == name)
                .is_some_and(|s| s.course);
            let (status, reason) = match verdict {
                Ok(()) => (Status::Passed, None),
                Err(Miss::Failed(r)) => (Status::Failed, Some(r)),
                Err(Miss::NotChecked(r)) => (Status::NotChecked, Some(r)),
            };
            let shown = match status {
                Status::Passed => "pass",
                Status::Failed => "FAIL",
                Status::NotChecked => "not checked",
            };
            (self.progress)(&format!(
                "{shown:<11} {name} ({ms:.0} ms){}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
            self.outcomes.insert(
                name,
                Outcome {
                    name: name.to_string(),
                    course,
                    status,
                    reason,
                    ms,
                    transcript: log.events(),
                },
            );
        }
    }

    /// Not checked when the herd may not be polled with WHATSAT.
    fn may_poll(&self) -> Verdict {
        self.polling.clone().map_err(Miss::NotChecked)
    }

    /// A check made of one verdict.
    fn check(&mut self, name: &'static str, f: impl FnOnce(&mut Self, &Transcript) -> Verdict) {
        self.checks([name], |run, log| [f(run, log)]);
    }

    /// Starts again any server that died during the last check, so that
    /// one crash fails its own check and not every check after it.
    fn revive(&mut self, log: &Transcript) {
        for name in self.subject.names() {
            if !self.subject.alive(&name) {
                log.note(format!(
                    "{name} had exited; starting it again for the next check"
                ));
                if let Err(e) = self.subject.start(&name) {
                    log.note(format!("cannot start {name} again: {e}"));
                }
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.subject.names()
    }

    /// A client id no other check uses.
    fn client(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("check-{}-{}-{what}", std::process::id(), self.next_id)
    }

    fn open(&self, log: &Transcript, server: &str) -> Result<Probe, String> {
        Probe::open(log, server, self.subject.addr(server), self.settings.reply)
    }

    /// Sends one line on a connection of its own and returns the first
    /// reply line.
    fn ask(&self, log: &Transcript, server: &str, line: &str) -> Result<String, String> {
        let mut probe = self.open(log, server)?;
        probe.send(format!("{line}\n"))?;
        probe.line()
    }

    /// IAMAT `client` at `server` with `time`; the reply must be an AT
    /// line, which is returned.
    fn iamat_at(
        &self,
        log: &Transcript,
        server: &str,
        client: &str,
        location: &str,
        time: &str,
    ) -> Result<String, String> {
        let reply = self.ask(log, server, &format!("IAMAT {client} {location} {time}"))?;
        if reply.starts_with("AT ") && reply.ends_with(&format!(" {client} {location} {time}")) {
            Ok(reply)
        } else {
            Err(format!("{server} answered an IAMAT with `{reply}`"))
        }
    }

    /// IAMAT `client` at `server`, now, from the usual place.
    fn update(&self, log: &Transcript, server: &str, client: &str) -> Result<String, String> {
        self.iamat_at(log, server, client, LOCATION, &client_time(0.0))
    }

    /// The record `server` holds for `client` (the first line of a
    /// WHATSAT reply), or `None` when it answers `?`.
    fn held(&self, log: &Transcript, server: &str, client: &str) -> Result<Option<String>, String> {
        let first = self.ask(log, server, &format!("WHATSAT {client} 1 1"))?;
        Ok((!first.starts_with('?')).then_some(first))
    }

    /// Asks each of `servers` until it holds each expected record, for at
    /// most `patience`. Notes when each arrived; returns what is still
    /// missing, in words.
    fn wait_held(
        &self,
        log: &Transcript,
        servers: &[String],
        expected: &[(String, String)],
        patience: Duration,
    ) -> Vec<String> {
        let wants: Vec<(String, String, String)> = servers
            .iter()
            .flat_map(|s| {
                expected
                    .iter()
                    .map(move |(c, l)| (s.clone(), c.clone(), l.clone()))
            })
            .collect();
        self.wait_for(log, &wants, patience)
    }

    /// Asks each server of `wants` (server, client, record) until it
    /// holds that record (see [`same_record`]), all within one
    /// `patience`. Notes when they arrived; returns what is still
    /// missing, in words.
    fn wait_for(
        &self,
        log: &Transcript,
        wants: &[(String, String, String)],
        patience: Duration,
    ) -> Vec<String> {
        let started = Instant::now();
        let mut pending: Vec<&(String, String, String)> = wants.iter().collect();
        let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut asks = 0usize;
        loop {
            log.muted(|| {
                pending.retain(|(server, client, line)| {
                    asks += 1;
                    let held = self.held(log, server, client);
                    let now = match &held {
                        Ok(Some(h)) => h.clone(),
                        Ok(None) => "nothing (`?`)".to_string(),
                        Err(e) => e.clone(),
                    };
                    last.insert((server.to_string(), client.clone()), now);
                    !matches!(held, Ok(Some(h)) if same_record(&h, line))
                });
            });
            if pending.is_empty() || started.elapsed() >= patience {
                break;
            }
            std::thread::sleep(POLL);
        }
        let waited = started.elapsed().as_millis();
        if pending.is_empty() {
            log.note(format!(
                "all {} record(s) were where they should be after {waited} ms ({asks} WHATSAT asks)",
                wants.len()
            ));
            return Vec::new();
        }
        let missing: Vec<String> = pending
            .iter()
            .map(|(server, client, _)| {
                let had = last
                    .get(&(server.to_string(), client.clone()))
                    .cloned()
                    .unwrap_or_default();
                format!("{server} lacks {client} (holds: {had})")
            })
            .collect();
        log.note(format!(
            "after {waited} ms ({asks} WHATSAT asks): {}",
            missing.join("; ")
        ));
        missing
    }

    /// Sends each of `lines` on one connection to `server`, expecting
    /// `? ` and the line for each, then checks that the server still
    /// answers an IAMAT.
    fn refuses(&mut self, log: &Transcript, server: &str, lines: &[&[u8]]) -> Verdict {
        let mut wrong = Vec::new();
        let mut probe = self.open(log, server)?;
        for line in lines {
            let shown = String::from_utf8_lossy(line).into_owned();
            let reply = probe
                .send([*line, b"\n"].concat())
                .and_then(|()| probe.line());
            match reply {
                Ok(reply) => {
                    let ok = reply == format!("? {shown}")
                        || reply.trim() == format!("? {}", shown.trim());
                    if !ok {
                        wrong.push(format!("`{shown}` got `{reply}`, not `? {shown}`"));
                    }
                }
                Err(e) => {
                    if self.subject.exits_within(server, Duration::from_secs(2)) {
                        wrong.push(format!("{server} exited after `{shown}`"));
                        break;
                    }
                    wrong.push(format!("`{shown}`: {e}"));
                    // Go on with the next line on a new connection.
                    probe = self.open(log, server)?;
                }
            }
        }
        if let Some(first) = wrong.first() {
            let more = match wrong.len() {
                1 => String::new(),
                n => format!(" (and {} more of the {} lines)", n - 1, lines.len()),
            };
            return Err(Miss::Failed(format!("{first}{more}")));
        }
        self.still_serving(log, server)
    }

    /// The server is alive and answers a fresh IAMAT.
    fn still_serving(&mut self, log: &Transcript, server: &str) -> Verdict {
        ensure(self.subject.alive(server), || format!("{server} exited"))?;
        let client = self.client("after");
        self.update(log, server, &client)
            .map(|_| ())
            .map_err(|e| Miss::Failed(format!("afterwards: {e}")))
    }

    /// The stand-in's own answer for our location and `radius_m`, as
    /// raw text.
    fn stub_answer(&self, radius_m: u32) -> Result<String, String> {
        let location = LOCATION.replacen('+', "", 1).replacen('+', "", 1);
        let (lat, lng) = location
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '-' || *c == '+')
            .map(|(at, _)| (&location[..at], &location[at..]))
            .unwrap_or((&location, ""));
        let url = format!(
            "{}?location={lat},{lng}&radius={radius_m}&key={STUB_KEY}",
            self.subject.stub_url
        );
        ureq::get(&url)
            .call()
            .map_err(|e| format!("the stand-in itself failed: {e}"))?
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("the stand-in's answer: {e}"))
    }

    /// A whole WHATSAT reply: its first line and the JSON after it, with
    /// the check that it ends in exactly one blank line.
    fn whatsat(
        &self,
        log: &Transcript,
        server: &str,
        line: &str,
    ) -> Result<(String, String), String> {
        let mut probe = Probe::open(
            log,
            server,
            self.subject.addr(server),
            self.settings.reply + Duration::from_secs(5),
        )?;
        probe.send(format!("{line}\n"))?;
        let reply = probe.until(b"\n\n").map_err(|e| {
            if e.starts_with("no complete reply") {
                format!("{e}: its WHATSAT reply never ended with a blank line (\\n\\n)")
            } else {
                e
            }
        })?;
        let (first, json) = reply.split_once('\n').unwrap_or((&reply, ""));
        Ok((first.to_string(), json.trim_end_matches('\n').to_string()))
    }

    /// Not checked unless WHATSAT has been seen to answer with the
    /// stand-in's places (`whatsat.reply` learns it; it runs first).
    fn places_known(&self) -> Verdict {
        match &self.places {
            Places::Works => Ok(()),
            Places::Ignored(why) => Err(Miss::NotChecked(why.clone())),
            Places::Unknown => Err(Miss::NotChecked(
                "needs whatsat.reply, which did not run".into(),
            )),
        }
    }

    /// The results of a WHATSAT reply's JSON, once Places is known to
    /// work; not checked otherwise.
    fn results_of(&self, json: &str) -> Result<Value, Miss> {
        if let Places::Ignored(why) = &self.places {
            return Err(Miss::NotChecked(why.clone()));
        }
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Miss::Failed(format!("the JSON does not parse: {e}")))?;
        Ok(value.get("results").cloned().unwrap_or(Value::Null))
    }
}

/// A client time `offset` seconds from now: POSIX seconds with nine
/// decimals, as a phone would send it.
fn client_time(offset: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let t = now + (offset * 1e9) as i128;
    format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000)
}

/// The skew of an AT line, if it has a sign and nine decimals.
fn signed_skew(field: &str) -> Option<f64> {
    let rest = field.strip_prefix(['+', '-'])?;
    let (whole, fraction) = rest.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction) && fraction.len() == 9).then(|| field.parse().ok())?
}

fn replies(run: &mut Run) {
    run.check("replies.iamat", |run, log| {
        for server in run.names() {
            let client = run.client("reply");
            let time = client_time(0.0);
            let reply = run.ask(log, &server, &format!("IAMAT {client} {LOCATION} {time}"))?;
            let f: Vec<&str> = reply.split_whitespace().collect();
            ensure(f.len() == 6 && f[0] == "AT", || {
                format!("{server} answered `{reply}`, not `AT {server} SKEW {client} {LOCATION} {time}`")
            })?;
            ensure(f[1] == server, || {
                format!("{server}'s reply names `{}` as the server", f[1])
            })?;
            ensure(f[3..] == [client.as_str(), LOCATION, &time], || {
                format!("{server}'s reply `{reply}` does not echo `{client} {LOCATION} {time}`")
            })?;
        }
        Ok(())
    });
    run.check("replies.skew", |run, log| {
        let server = run.names()[0].clone();
        for (offset, sign) in [(-100.5, '+'), (1000.25, '-')] {
            let client = run.client("skew");
            let reply = run.iamat_at(log, &server, &client, LOCATION, &client_time(offset))?;
            let field = reply.split_whitespace().nth(2).unwrap_or("");
            let skew = signed_skew(field).ok_or_else(|| {
                format!("skew `{field}` is not a sign, digits and nine decimals (as `{sign}0.000012345`)")
            })?;
            ensure(field.starts_with(sign), || {
                format!("a time {} s in the {} got skew `{field}`", offset.abs(), if sign == '+' { "past" } else { "future" })
            })?;
            ensure((skew + offset).abs() < 5.0, || {
                format!("a time {offset} s from now got skew {field}, off by more than 5 s")
            })?;
        }
        Ok(())
    });
}

fn lines(run: &mut Run) {
    run.check("lines.joined", |run, log| {
        let server = run.names()[0].clone();
        let (a, b) = (run.client("joined"), run.client("joined"));
        let (ta, tb) = (client_time(0.0), client_time(0.0));
        let mut probe = run.open(log, &server)?;
        probe.send(format!(
            "IAMAT {a} {LOCATION} {ta}\nIAMAT {b} {LOCATION} {tb}\n"
        ))?;
        for (client, time) in [(&a, &ta), (&b, &tb)] {
            let reply = probe.line()?;
            ensure(
                reply.ends_with(&format!(" {client} {LOCATION} {time}")),
                || format!("expected the reply for {client}, got `{reply}`"),
            )?;
        }
        Ok(())
    });
    run.check("lines.split", |run, log| {
        let server = run.names()[0].clone();
        let client = run.client("split");
        let time = client_time(0.0);
        let line = format!("IAMAT {client} {LOCATION} {time}\n");
        let mut probe = run.open(log, &server)?;
        let (head, tail) = line.split_at(line.len() / 2);
        let (head, middle) = head.split_at(head.len() / 2);
        for part in [head, middle, tail] {
            probe.send(part)?;
            // Spacing the writes only shapes the input into three
            // segments; the proof is the reply below.
            std::thread::sleep(Duration::from_millis(30));
        }
        let reply = probe.line()?;
        ensure(
            reply.ends_with(&format!(" {client} {LOCATION} {time}")),
            || format!("a line in three writes got `{reply}`"),
        )
    });
}

fn bad_input(run: &mut Run) {
    let server = run.names()[0].clone();
    let shapes: [(&'static str, &[&[u8]]); 4] = [
        (
            "bad-input.fields",
            &[
                b"IAMAT kiwi +34.068930-118.445127",
                b"IAMAT kiwi +34.068930-118.445127 1621464827.959498503 extra",
                b"WHATSAT kiwi 10",
                b"WHATSAT kiwi 10 5 extra",
                b"IAMAT",
            ],
        ),
        (
            "bad-input.location",
            &[
                b"IAMAT kiwi 34.068930-118.445127 1621464827.959498503",
                b"IAMAT kiwi +34.068930118.445127 1621464827.959498503",
                b"IAMAT kiwi +91.000000-118.445127 1621464827.959498503",
                b"IAMAT kiwi +34.068930-181.000000 1621464827.959498503",
                b"IAMAT kiwi +34.068930-118.445127x 1621464827.959498503",
                b"IAMAT kiwi ucla 1621464827.959498503",
            ],
        ),
        (
            "bad-input.time",
            &[
                b"IAMAT kiwi +34.068930-118.445127 noon",
                b"IAMAT kiwi +34.068930-118.445127 12:00",
                b"IAMAT kiwi +34.068930-118.445127 1621464827.95.3",
            ],
        ),
        (
            "bad-input.unknown-command",
            &[
                b"HELLO world",
                b"iamat kiwi +34.068930-118.445127 1621464827",
                b"FOO",
            ],
        ),
    ];
    for (name, lines) in shapes {
        run.check(name, |run, log| run.refuses(log, &server, lines));
    }
    for (name, bad) in [
        ("bad-input.radius", ["0 5", "51 5", "-1 5", "ten 5"]),
        ("bad-input.bound", ["10 0", "10 21", "10 2.5", "10 five"]),
    ] {
        run.check(name, |run, log| {
            let client = run.client("known");
            run.update(log, &server, &client)?;
            let lines: Vec<Vec<u8>> = bad
                .iter()
                .map(|b| format!("WHATSAT {client} {b}").into_bytes())
                .collect();
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            run.refuses(log, &server, &refs)
        });
    }
    run.check("bad-input.unknown-client", |run, log| {
        let nobody = format!("WHATSAT {} 10 5", run.client("nobody"));
        run.refuses(log, &server, &[nobody.as_bytes()])
    });
    run.check("bad-input.time-forms", |run, log| {
        run.refuses(
            log,
            &server,
            &[
                b"IAMAT kiwi +34.068930-118.445127 1.6e9",
                b"IAMAT kiwi +34.068930-118.445127 inf",
                b"IAMAT kiwi +34.068930-118.445127 nan",
                b"IAMAT kiwi +34.068930-118.445127 -5",
                b"IAMAT kiwi +34.068930-118.445127 +1621464827",
            ],
        )
    });
    run.check("bad-input.invalid-utf8", |run, log| {
        run.refuses(
            log,
            &server,
            &[b"IAMAT ki\xffwi +34.068930-118.445127 1621464827"],
        )
    });
    run.check("bad-input.empty-lines", |run, log| {
        let client = run.client("after-blank");
        let time = client_time(0.0);
        let mut probe = run.open(log, &server)?;
        probe.send(format!("\n \t \n\nIAMAT {client} {LOCATION} {time}\n"))?;
        let reply = probe.line()?;
        ensure(reply.starts_with("AT "), || {
            format!(
                "after three empty or blank lines the first reply was `{reply}`, not the IAMAT's"
            )
        })
    });
    run.check("bad-input.overlong", |run, log| {
        let mut probe = run.open(log, &server)?;
        let long = format!("IAMAT {} {LOCATION} 1621464827\n", "x".repeat(70_000));
        // The server may close before it has read it all: a failed write
        // is what closing looks like from here.
        let _ = probe.send(&long);
        let got = probe
            .until_closed()
            .map_err(|e| format!("{e}: the connection stayed open after a 70,000-byte line"))?;
        ensure(!got.contains(&"x".repeat(1000)), || {
            "the 70,000-byte line was echoed back instead of the connection closed".into()
        })?;
        run.still_serving(log, &server)
    });
}

fn whatsat(run: &mut Run) {
    let server = run.names()[0].clone();
    let client = run.client("places");
    run.check("whatsat.reply", |run, log| {
        let at = run.update(log, &server, &client)?;
        run.places = Places::Ignored("whatsat.reply failed: no reply to compare".into());
        let (first, json) = run.whatsat(log, &server, &format!("WHATSAT {client} 10 5"))?;
        ensure(first == at, || {
            format!("the reply's first line is `{first}`, not the stored `{at}`")
        })?;
        let value: Value = serde_json::from_str(&json).map_err(|e| {
            format!("what follows the AT line is not JSON ending in one blank line: {e}")
        })?;
        let status = value.get("status").and_then(Value::as_str).unwrap_or("");
        let from_stub = value
            .get("results")
            .and_then(Value::as_array)
            .is_some_and(|r| {
                !r.is_empty()
                    && r.iter().all(|p| {
                        p.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.ends_with("(places-stub)"))
                    })
            });
        run.places = if status == "OK" && from_stub {
            Places::Works
        } else {
            let said = value
                .get("error_message")
                .and_then(Value::as_str)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            Places::Ignored(format!(
                "its WHATSAT answered status `{status}`{said}, not the places of the stand-in \
                 it was given ({{places_url}} and PLACES_URL, {}): it calls another Places URL",
                run.subject.stub_url
            ))
        };
        Ok(())
    });
    run.check("whatsat.bound", |run, log| {
        run.places_known()?;
        let (_, json) = run.whatsat(log, &server, &format!("WHATSAT {client} 10 2"))?;
        let results = run.results_of(&json)?;
        let stub: Value =
            serde_json::from_str(&run.stub_answer(10_000)?).map_err(|e| e.to_string())?;
        let want: Vec<Value> = stub["results"]
            .as_array()
            .map(|r| r.iter().take(2).cloned().collect())
            .unwrap_or_default();
        let got = results.as_array().cloned().unwrap_or_default();
        ensure(got == want, || {
            format!(
                "bound 2 returned {} place(s), not the first 2 of the answer's {}",
                got.len(),
                stub["results"].as_array().map_or(0, Vec::len)
            )
        })
    });
    run.check("whatsat.radius", |run, log| {
        run.places_known()?;
        for (km, metres) in [("0.5", 500), ("50", 50_000)] {
            let (_, json) = run.whatsat(log, &server, &format!("WHATSAT {client} {km} 20"))?;
            let results = run.results_of(&json)?;
            let stub: Value =
                serde_json::from_str(&run.stub_answer(metres)?).map_err(|e| e.to_string())?;
            ensure(results == stub["results"], || {
                format!("radius {km} km returned other places than Places gives for radius={metres} (metres)")
            })?;
        }
        Ok(())
    });
    run.check("whatsat.layout", |run, log| {
        run.places_known()?;
        let (_, json) = run.whatsat(log, &server, &format!("WHATSAT {client} 10 5"))?;
        run.results_of(&json)?;
        let raw = run.stub_answer(10_000)?;
        let cut = layout::cut_results(&raw, 5).map_err(|e| e.to_string())?;
        let want = layout::squeeze_newlines(&cut);
        let at = want
            .bytes()
            .zip(json.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(json.len()));
        ensure(json == want, || {
            let line = want[..at].matches('\n').count() + 1;
            format!("the JSON differs from Google's layout at line {line} (byte {at})")
        })
    });
}

fn flooding(run: &mut Run) {
    run.check("flooding.reaches-all", |run, log| {
        run.may_poll()?;
        let names = run.names();
        let mut expected = Vec::new();
        for server in &names {
            let client = run.client(&format!("from-{server}"));
            let at = run.update(log, server, &client)?;
            expected.push((client, at));
        }
        let missing = run.wait_held(log, &names, &expected, run.settings.within);
        ensure(missing.is_empty(), || {
            format!(
                "after {:.1} s: {}",
                run.settings.within.as_secs_f64(),
                shorten(&missing)
            )
        })
    });
    run.check("flooding.before-reply", |run, log| {
        run.may_poll()?;
        let names = run.names();
        let Some(server) = names
            .iter()
            .max_by_key(|n| run.subject.neighbours(n).len())
            .filter(|n| !run.subject.neighbours(n).is_empty())
            .cloned()
        else {
            return Err(Miss::NotChecked("no server has a neighbour".into()));
        };
        let client = run.client("graders");
        let at = run.update(log, &server, &client)?;
        for next in run.subject.neighbours(&server) {
            let held = run.held(log, &next, &client)?;
            ensure(held.as_deref().is_some_and(|h| same_record(h, &at)), || {
                format!(
                    "right after {server}'s reply, neighbour {next} held {}",
                    held.unwrap_or("nothing".into())
                )
            })?;
        }
        Ok(())
    });
}

/// The two servers farthest apart over the herd's links (the first
/// server twice when it is alone).
fn far_apart(subject: &Subject) -> (String, String) {
    let names = subject.names();
    let mut best = (names[0].clone(), names[0].clone(), 0);
    for a in &names {
        let mut ring = BTreeSet::from([a.clone()]);
        let mut distance = 0;
        loop {
            let next: BTreeSet<String> = ring
                .iter()
                .flat_map(|n| subject.neighbours(n))
                .chain(ring.iter().cloned())
                .collect();
            if next.len() == ring.len() {
                break;
            }
            distance += 1;
            for b in next.difference(&ring) {
                if distance > best.2 {
                    best = (a.clone(), b.clone(), distance);
                }
            }
            ring = next;
        }
    }
    (best.0, best.1)
}

fn newest_wins(run: &mut Run) {
    run.check("newest-wins.older-ignored", |run, log| {
        run.may_poll()?;
        let names = run.names();
        let (near, far) = far_apart(run.subject);
        let client = run.client("newest");
        let now = client_time(0.0);
        let newer = run.iamat_at(log, &near, &client, LOCATION, &now)?;
        let newer_held = [(client.clone(), newer.clone())];
        if !run
            .wait_held(log, &names, &newer_held, run.settings.within)
            .is_empty()
        {
            return Err(Miss::NotChecked(
                "the newer update did not reach every server (see flooding.reaches-all)".into(),
            ));
        }
        let older_time = client_time(-60.0);
        let older = run.ask(
            log,
            &far,
            &format!("IAMAT {client} +10.000000+010.000000 {older_time}"),
        )?;
        ensure(older.starts_with("AT "), || {
            format!("an older IAMAT got `{older}`: it should still get its AT reply")
        })?;
        // The gate: a later update from the same server, once everywhere,
        // has followed the older one's path.
        let gate = run.client("gate");
        let gate_at = run.update(log, &far, &gate)?;
        let gate_missing = run.wait_held(log, &names, &[(gate, gate_at)], run.settings.within);
        if !gate_missing.is_empty() {
            return Err(Miss::NotChecked(format!(
                "the gate update did not spread: {}",
                shorten(&gate_missing)
            )));
        }
        for server in &names {
            let held = run.held(log, server, &client)?;
            ensure(
                held.as_deref().is_some_and(|h| same_record(h, &newer)),
                || {
                    format!(
                        "{server} holds `{}` instead of the newer record",
                        held.unwrap_or_default()
                    )
                },
            )?;
        }
        Ok(())
    });
    run.check("newest-wins.same-time", |run, log| {
        run.may_poll()?;
        let names = run.names();
        let (a, b) = far_apart(run.subject);
        if a == b {
            return Err(Miss::NotChecked("needs two servers".into()));
        }
        let client = run.client("tie");
        let time = client_time(0.0);
        // Both lines are written before either reply is read, so each
        // server takes its own before the other's can arrive by flooding.
        let mut pa = run.open(log, &a)?;
        let mut pb = run.open(log, &b)?;
        pa.send(format!("IAMAT {client} {LOCATION} {time}\n"))?;
        pb.send(format!("IAMAT {client} +34.068931-118.445127 {time}\n"))?;
        let (la, lb) = (pa.line()?, pb.line()?);
        let winner = la.clone().max(lb.clone());
        log.note(format!(
            "the byte-wise greater record, which every server should settle on: {winner}"
        ));
        let missing = run.wait_held(log, &names, &[(client, winner)], run.settings.within);
        ensure(missing.is_empty(), || {
            format!(
                "after {:.1} s: {}",
                run.settings.within.as_secs_f64(),
                shorten(&missing)
            )
        })
    });
}

fn faults(run: &mut Run) {
    run.checks(
        ["faults.one-down", "faults.one-down-catch-up"],
        |run, log| {
            let names = run.names();
            if names.len() < 2 {
                let why = || Err(Miss::NotChecked("needs two servers".into()));
                return [why(), why()];
            }
            if let Err(why) = &run.polling {
                let why = || Err(Miss::NotChecked(why.clone()));
                return [why(), why()];
            }
            let (mut spread, mut caught) = (Vec::new(), Vec::new());
            for down in &names {
                let gone = BTreeSet::from([down.clone()]);
                if let Err(e) = kill(run, log, &gone, Duration::from_secs(1)) {
                    return [
                        Err(Miss::Failed(e)),
                        Err(Miss::NotChecked("the kill failed".into())),
                    ];
                }
                let mut sent = Vec::new();
                let mut wants = Vec::new();
                for from in names.iter().filter(|n| *n != down) {
                    let client = run.client(&format!("without-{down}"));
                    match run.update(log, from, &client) {
                        Ok(at) => {
                            for server in run.subject.reachable(from, &gone) {
                                wants.push((server, client.clone(), at.clone()));
                            }
                            sent.push((client, at));
                        }
                        Err(e) => spread.push(e),
                    }
                }
                spread.extend(run.wait_for(log, &wants, run.settings.within));
                if let Err(e) = restart(run, log, &gone) {
                    caught.push(e);
                } else {
                    caught.extend(run.wait_held(
                        log,
                        std::slice::from_ref(down),
                        &sent,
                        run.settings.catch_up,
                    ));
                    relink(run, log);
                }
                if stop_at_failure(log, &spread, &caught, &format!("with {down} down")) {
                    break;
                }
            }
            [
                verdict_of(&spread, run.settings.within),
                verdict_of(&caught, run.settings.catch_up),
            ]
        },
    );
    run.checks(
        ["faults.two-down", "faults.two-down-catch-up"],
        |run, log| {
            let names = run.names();
            if names.len() < 3 {
                let why = || Err(Miss::NotChecked("needs three servers".into()));
                return [why(), why()];
            }
            if let Err(why) = &run.polling {
                let why = || Err(Miss::NotChecked(why.clone()));
                return [why(), why()];
            }
            let (mut spread, mut caught) = (Vec::new(), Vec::new());
            'pairs: for (i, x) in names.iter().enumerate() {
                for y in &names[i + 1..] {
                    let gone = BTreeSet::from([x.clone(), y.clone()]);
                    if let Err(e) = kill(run, log, &gone, Duration::ZERO) {
                        return [
                            Err(Miss::Failed(e)),
                            Err(Miss::NotChecked("the kill failed".into())),
                        ];
                    }
                    let alive: Vec<String> = names
                        .iter()
                        .filter(|n| !gone.contains(*n))
                        .cloned()
                        .collect();
                    let mut sent = Vec::new();
                    let mut wants = Vec::new();
                    for from in &alive {
                        let client = run.client(&format!("without-{x}-{y}"));
                        match run.update(log, from, &client) {
                            Ok(at) => {
                                for server in run.subject.reachable(from, &gone) {
                                    wants.push((server, client.clone(), at.clone()));
                                }
                                sent.push((client, at));
                            }
                            Err(e) => spread.push(e),
                        }
                    }
                    spread.extend(run.wait_for(log, &wants, run.settings.within));
                    // Every update has reached the servers it can by now (or
                    // failed to); one that reached a cut-off server went
                    // around the herd's links.
                    for (client, at) in &sent {
                        let from = at.split_whitespace().nth(1).unwrap_or("");
                        let reach = run.subject.reachable(from, &gone);
                        for cut in alive.iter().filter(|n| !reach.contains(*n)) {
                            match run.held(log, cut, client) {
                                Ok(Some(held)) if same_record(&held, at) => spread.push(format!(
                                "{cut} holds {client} from {from} although {x} and {y} cut it off"
                            )),
                                Ok(_) => {}
                                Err(e) => spread.push(e),
                            }
                        }
                    }
                    if let Err(e) = restart(run, log, &gone) {
                        caught.push(e);
                    } else {
                        caught.extend(run.wait_held(log, &names, &sent, run.settings.catch_up));
                        relink(run, log);
                    }
                    if stop_at_failure(log, &spread, &caught, &format!("with {x} and {y} down")) {
                        break 'pairs;
                    }
                }
            }
            [
                verdict_of(&spread, run.settings.within),
                verdict_of(&caught, run.settings.catch_up),
            ]
        },
    );
}

/// After a restart, waits until the herd links up again (fresh updates
/// at every server reach every server), so that the next round does not
/// blame a herd for updates sent before its links were back. The wait
/// is noted; a herd that does not relink is checked on regardless.
fn relink(run: &mut Run, log: &Transcript) {
    let started = Instant::now();
    if linked(run, log, run.settings.catch_up) {
        log.note(format!(
            "linked again after {} ms",
            started.elapsed().as_millis()
        ));
    } else {
        log.note("did not link up again; going on");
    }
}

/// After a failing kill round, notes it and says to stop: a herd that
/// fails one kill mostly fails them all, and each would cost the whole
/// wait again. The failures are marked with the round.
fn stop_at_failure(log: &Transcript, spread: &[String], caught: &[String], round: &str) -> bool {
    if spread.is_empty() && caught.is_empty() {
        return false;
    }
    log.note(format!("stopping at the first failing round ({round})"));
    true
}

/// Stops the servers `gone`: SIGTERM with `grace` to exit, then SIGKILL
/// (SIGKILL at once for a zero grace).
fn kill(
    run: &mut Run,
    log: &Transcript,
    gone: &BTreeSet<String>,
    grace: Duration,
) -> Result<(), String> {
    for name in gone {
        let stopped = run.subject.stop(name, grace)?;
        log.note(match stopped.status {
            Some(status) => format!(
                "{name} stopped by SIGTERM ({status}) after {} ms",
                stopped.after.as_millis()
            ),
            None if grace.is_zero() => format!("{name} killed (SIGKILL)"),
            None => format!(
                "{name} still ran {} ms after SIGTERM: killed (SIGKILL)",
                stopped.after.as_millis()
            ),
        });
    }
    Ok(())
}

/// Starts the servers `gone` again.
fn restart(run: &mut Run, log: &Transcript, gone: &BTreeSet<String>) -> Result<(), String> {
    for name in gone {
        run.subject
            .start(name)
            .map_err(|e| format!("{name} could not be started again: {e}"))?;
        log.note(format!("{name} started again"));
    }
    Ok(())
}

fn verdict_of(missing: &[String], within: Duration) -> Verdict {
    ensure(missing.is_empty(), || {
        format!("within {:.1} s: {}", within.as_secs_f64(), shorten(missing))
    })
}

/// The first three of a list of misses, and how many more.
fn shorten(missing: &[String]) -> String {
    let mut text = missing
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if missing.len() > 3 {
        text.push_str(&format!("; and {} more", missing.len() - 3));
    }
    text
}

fn life_cycle(run: &mut Run) {
    run.checks(
        ["life-cycle.half-close", "life-cycle.half-close-eof"],
        |run, log| {
            let server = run.names()[0].clone();
            let mut replied = Ok(());
            let mut ended = Ok(());
            for end in ["\n", ""] {
                let how = if end.is_empty() {
                    "without its newline"
                } else {
                    "with its newline"
                };
                let client = run.client("oneshot");
                let time = client_time(0.0);
                let tail = format!(" {client} {LOCATION} {time}");
                let result = run.open(log, &server).and_then(|mut probe| {
                    probe.send(format!("IAMAT {client} {LOCATION} {time}{end}"))?;
                    probe.shut_write()?;
                    let reply = probe.line();
                    let rest = probe.until_closed();
                    Ok((reply, rest))
                });
                let (reply, rest) = match result {
                    Ok(got) => got,
                    Err(e) => return [Err(Miss::Failed(e.clone())), Err(Miss::Failed(e))],
                };
                // What graders read: the reply after their half-close.
                // Only the line with its newline is the course's case.
                let good = reply
                    .as_ref()
                    .is_ok_and(|r| r.starts_with("AT ") && r.ends_with(&tail));
                if !good {
                    let why = format!(
                        "a half-closed IAMAT {how} got {}",
                        match &reply {
                            Ok(r) => format!("`{r}`, not its AT line"),
                            Err(e) => e.clone(),
                        }
                    );
                    if end.is_empty() {
                        ended = ended.and(Err(Miss::Failed(why)));
                    } else {
                        replied = replied.and(Err(Miss::Failed(why)));
                    }
                    continue;
                }
                // Then the connection ends, nothing more said: our contract.
                match rest {
                    Ok(more) if more.is_empty() => {}
                    Ok(more) => {
                        ended = ended.and(Err(Miss::Failed(format!(
                            "after the reply to a half-closed IAMAT {how} came {more:?}"
                        ))))
                    }
                    Err(e) => {
                        ended = ended.and(Err(Miss::Failed(format!(
                            "a half-closed IAMAT {how} got its reply but no end-of-file: {e}"
                        ))))
                    }
                }
            }
            [replied, ended]
        },
    );
    run.check("life-cycle.stop", |run, log| {
        let names = run.names();
        let server = names[names.len() - 1].clone();
        let stopped = run.subject.stop(&server, Duration::from_secs(2))?;
        let after = stopped.after.as_millis();
        log.note(format!(
            "SIGTERM to {server}: {:?} after {after} ms",
            stopped.status
        ));
        restart(run, log, &BTreeSet::from([server.clone()]))?;
        match stopped.status {
            None => Err(Miss::Failed(format!(
                "{server} still ran 2 s after SIGTERM"
            ))),
            Some(status) if !status.success() => Err(Miss::Failed(format!(
                "{server} exited with {status} on SIGTERM"
            ))),
            Some(_) => ensure(after <= 250, || {
                format!("{server} took {after} ms to exit on SIGTERM")
            }),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A skew needs its sign and exactly nine decimals.
    #[test]
    fn skews() {
        assert_eq!(signed_skew("+0.000012345"), Some(0.000012345));
        assert_eq!(signed_skew("-3.500000000"), Some(-3.5));
        assert_eq!(signed_skew("0.000012345"), None);
        assert_eq!(signed_skew("+0.00001234"), None);
        assert_eq!(signed_skew("+1e-5"), None);
    }

    /// Client times have nine decimals and follow the clock.
    #[test]
    fn client_times() {
        let t = client_time(-1.5);
        let (whole, fraction) = t.split_once('.').unwrap();
        assert_eq!(fraction.len(), 9);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let whole: u64 = whole.parse().unwrap();
        assert!(whole < now && whole + 3 > now, "{t} vs {now}");
    }
}
