//! The fault checks: every one server killed (SIGTERM, then SIGKILL),
//! then every two (SIGKILL), each time updates sent at the servers still
//! up and looked for where the herd's links can carry them, and the
//! killed servers started again and looked at for what they missed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::probe::Transcript;
use super::run::*;

pub(super) fn faults(run: &mut Run) {
    run.checks(
        ["faults.one-down", "faults.one-down-catch-up"],
        |run, log| {
            let names = run.names();
            if let Some(why) = cannot_kill(run, 2) {
                return why;
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
                let up: Vec<String> = names.iter().filter(|n| *n != down).cloned().collect();
                let sent = spread_round(
                    run,
                    log,
                    &up,
                    &gone,
                    &format!("without-{down}"),
                    &mut spread,
                );
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
            if let Some(why) = cannot_kill(run, 3) {
                return why;
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
                    let tag = format!("without-{x}-{y}");
                    let sent = spread_round(run, log, &alive, &gone, &tag, &mut spread);
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
                                // No answer is no sign of the update: a
                                // herd silent on a client it does not know
                                // is failed for that by bad-input checks.
                                Err(e) => log.note(format!("{cut} about {client}: {e}")),
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

/// One update at each server of `up`, and one wait until each has
/// reached every server the links still connect it to (all within one
/// `--within`); what was not where it should be goes to `spread`.
/// Returns the updates sent, for the catch-up after the restart.
fn spread_round(
    run: &mut Run,
    log: &Transcript,
    up: &[String],
    gone: &BTreeSet<String>,
    tag: &str,
    spread: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut sent = Vec::new();
    let mut wants = Vec::new();
    for from in up {
        let client = run.client(tag);
        match run.update(log, from, &client) {
            Ok(at) => {
                for server in run.subject.reachable(from, gone) {
                    wants.push((server, client.clone(), at.clone()));
                }
                sent.push((client, at));
            }
            Err(e) => spread.push(e),
        }
    }
    spread.extend(run.wait_for(log, &wants, run.settings.within));
    sent
}

/// Why a kill check cannot be made: too few servers, or a herd that may
/// not be polled; for both of its verdicts.
fn cannot_kill(run: &Run, least: usize) -> Option<[Verdict; 2]> {
    let why = if run.names().len() < least {
        format!("needs {least} servers")
    } else {
        run.polling.clone().err()?
    };
    Some([
        Err(Miss::NotChecked(why.clone())),
        Err(Miss::NotChecked(why)),
    ])
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
pub(super) fn restart(
    run: &mut Run,
    log: &Transcript,
    gone: &BTreeSet<String>,
) -> Result<(), String> {
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
pub(super) fn shorten(missing: &[String]) -> String {
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
