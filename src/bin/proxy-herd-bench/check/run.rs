//! What every check is made of: the run against one herd (its
//! settings, its client ids, what it has learnt of Places), asking a
//! server and waiting until servers hold what they should, and the
//! verdicts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::catalogue::CATALOGUE;
use super::probe::{Probe, Transcript};
use super::subject::Subject;
use super::{Outcome, Settings, Status};
use crate::client::LOCATION;
use crate::spawn::STUB_KEY;

/// Why a check did not pass.
pub(super) enum Miss {
    Failed(String),
    NotChecked(String),
}

impl From<String> for Miss {
    fn from(reason: String) -> Miss {
        Miss::Failed(reason)
    }
}

pub(super) type Verdict = Result<(), Miss>;

/// Fails with `reason` unless `ok`.
pub(super) fn ensure(ok: bool, reason: impl FnOnce() -> String) -> Verdict {
    if ok {
        Ok(())
    } else {
        Err(Miss::Failed(reason()))
    }
}

/// Whether WHATSAT answers with the places of the stand-in the herd was
/// given, learnt by the first WHATSAT check.
pub(super) enum Places {
    Unknown,
    Works,
    /// Not the stand-in's places, or no usable reply: the reason.
    Ignored(String),
}

/// One run of the catalogue against one herd.
pub(super) struct Run<'a> {
    pub(super) subject: &'a mut Subject,
    pub(super) settings: &'a Settings,
    pub(super) progress: &'a dyn Fn(&str),
    pub(super) outcomes: BTreeMap<&'static str, Outcome>,
    pub(super) next_id: usize,
    pub(super) places: Places,
    /// Whether checks may ask WHATSAT to see where updates went: not
    /// when each ask would be a Places request the herd makes on its own
    /// key (see [`probe_places`]); the reason then.
    pub(super) polling: Result<(), String>,
}

/// How long a poll waits between rounds of WHATSAT asks.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// Whether two AT lines are the same record: the same server made it,
/// for the same client and client time. A herd that re-formats the line
/// it stored (a float for the time, say) still holds the record; that
/// its WHATSAT does not echo the stored line byte for byte is
/// `whatsat.reply`'s business, not every flooding check's.
pub(super) fn same_record(held: &str, want: &str) -> bool {
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
pub(super) fn probe_places(run: &mut Run) {
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
pub(super) const SETTLE: Duration = Duration::from_secs(10);

/// Waits until an update at each server has reached every server, with
/// fresh updates each try, so that no check runs while the herd's links
/// are still being made (a herd may connect them lazily). A herd that
/// never links up is checked anyway: its flooding checks will say so.
pub(super) fn settle(run: &mut Run) {
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
pub(super) fn linked(run: &mut Run, log: &Transcript, patience: Duration) -> bool {
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
    pub(super) fn checks<const N: usize>(
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
                Status::Skipped => "not asked for",
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
    pub(super) fn may_poll(&self) -> Verdict {
        self.polling.clone().map_err(Miss::NotChecked)
    }

    /// A check made of one verdict.
    pub(super) fn check(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut Self, &Transcript) -> Verdict,
    ) {
        self.checks([name], |run, log| [f(run, log)]);
    }

    /// Starts again any server that died during the last check, so that
    /// one crash fails its own check and not every check after it.
    pub(super) fn revive(&mut self, log: &Transcript) {
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

    pub(super) fn names(&self) -> Vec<String> {
        self.subject.names()
    }

    /// A client id no other check uses.
    pub(super) fn client(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("check-{}-{}-{what}", std::process::id(), self.next_id)
    }

    pub(super) fn open(&self, log: &Transcript, server: &str) -> Result<Probe, String> {
        Probe::open(log, server, self.subject.addr(server), self.settings.reply)
    }

    /// Sends one line on a connection of its own and returns the first
    /// reply line.
    pub(super) fn ask(&self, log: &Transcript, server: &str, line: &str) -> Result<String, String> {
        let mut probe = self.open(log, server)?;
        probe.send(format!("{line}\n"))?;
        probe.line()
    }

    /// IAMAT `client` at `server` with `time`; the reply must be an AT
    /// line, which is returned.
    pub(super) fn iamat_at(
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
    pub(super) fn update(
        &self,
        log: &Transcript,
        server: &str,
        client: &str,
    ) -> Result<String, String> {
        self.iamat_at(log, server, client, LOCATION, &client_time(0.0))
    }

    /// The record `server` holds for `client` (the first line of a
    /// WHATSAT reply), or `None` when it answers `?`.
    pub(super) fn held(
        &self,
        log: &Transcript,
        server: &str,
        client: &str,
    ) -> Result<Option<String>, String> {
        let first = self.ask(log, server, &format!("WHATSAT {client} 1 1"))?;
        Ok((!first.starts_with('?')).then_some(first))
    }

    /// Asks each of `servers` until it holds each expected record, for at
    /// most `patience`. Notes when each arrived; returns what is still
    /// missing, in words.
    pub(super) fn wait_held(
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
    pub(super) fn wait_for(
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
    pub(super) fn refuses(&mut self, log: &Transcript, server: &str, lines: &[&[u8]]) -> Verdict {
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
                    // A herd that says nothing to one bad line says
                    // nothing to the next: each would cost the whole wait.
                    if e.starts_with("no reply") {
                        break;
                    }
                    // Otherwise go on with the next line on a new
                    // connection.
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
    pub(super) fn still_serving(&mut self, log: &Transcript, server: &str) -> Verdict {
        ensure(self.subject.alive(server), || format!("{server} exited"))?;
        let client = self.client("after");
        self.update(log, server, &client)
            .map(|_| ())
            .map_err(|e| Miss::Failed(format!("afterwards: {e}")))
    }

    /// The stand-in's own answer for our location and `radius_m`, as
    /// raw text.
    pub(super) fn stub_answer(&self, radius_m: u32) -> Result<String, String> {
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
    pub(super) fn whatsat(
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
    pub(super) fn places_known(&self) -> Verdict {
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
    pub(super) fn results_of(&self, json: &str) -> Result<Value, Miss> {
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
pub(super) fn client_time(offset: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let t = now + (offset * 1e9) as i128;
    format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000)
}

/// The skew of an AT line, if it has a sign and nine decimals.
pub(super) fn signed_skew(field: &str) -> Option<f64> {
    let rest = field.strip_prefix(['+', '-'])?;
    let (whole, fraction) = rest.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction) && fraction.len() == 9).then(|| field.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A skew needs its sign and exactly nine decimals.
    #[test]
    pub(super) fn skews() {
        assert_eq!(signed_skew("+0.000012345"), Some(0.000012345));
        assert_eq!(signed_skew("-3.500000000"), Some(-3.5));
        assert_eq!(signed_skew("0.000012345"), None);
        assert_eq!(signed_skew("+0.00001234"), None);
        assert_eq!(signed_skew("+1e-5"), None);
    }

    /// Client times have nine decimals and follow the clock.
    #[test]
    pub(super) fn client_times() {
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
