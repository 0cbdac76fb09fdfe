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
use std::time::Duration;

use serde_json::Value;

use proxy_herd::places::layout;

use super::catalogue::CATALOGUE;
use super::faults::{faults, restart, shorten};
use super::run::*;
use super::subject::Subject;
use super::{Outcome, Settings, Status};
use crate::client::LOCATION;
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
                status: Status::Skipped,
                reason: None,
                ms: 0.0,
                transcript: Vec::new(),
            })
        })
        .collect()
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
        // The lesser record first, everywhere; then the greater one,
        // with the same time, at another server. Ordered so, not raced:
        // a herd that keeps whichever came first is caught every time.
        // With `a` the lesser name, its AT line is the lesser one
        // (`AT a ` and `AT b ` differ first in the names, and a space
        // sorts before any letter of a longer name).
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        let client = run.client("tie");
        let time = client_time(0.0);
        let lesser = run.iamat_at(log, &a, &client, LOCATION, &time)?;
        let first = [(client.clone(), lesser)];
        if !run.wait_held(log, &names, &first, run.settings.within).is_empty() {
            return Err(Miss::NotChecked(
                "the first record did not reach every server (see flooding.reaches-all)".into(),
            ));
        }
        let winner = run.iamat_at(log, &b, &client, "+34.068931-118.445127", &time)?;
        log.note(format!(
            "the byte-wise greater record, with the same time, which every server should settle on: {winner}"
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
        log.note(match stopped.status {
            Some(status) => format!("{server} stopped by SIGTERM ({status}) after {after} ms"),
            None => format!("{server} still ran {after} ms after SIGTERM: killed (SIGKILL)"),
        });
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
