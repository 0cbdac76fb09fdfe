//! `proxy-herd-bench check` grades herds as a teacher would use it: our
//! herd passes every check, the small asyncio herd of
//! `tests/fixtures/asyncio_herd.py` passes them too, and each of its
//! `--defect` variants, wrong in one behaviour, fails exactly the check
//! named for that behaviour. Everything runs as processes on loopback,
//! read from the bench's `--json` report and exit status.
//!
//! The fixture needs `python3` (standard library only); `.ci/run`
//! installs it where it is missing. Without it these tests fail: a
//! grader that was never run has not passed.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_proxy-herd-bench");

/// The tests here take turns: each runs a bench that starts a herd of
/// five and kills its servers, and two at once on two cores would test
/// the machine's patience more than the herds.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A student's names, not ours: nothing in the check may assume a Riley.
const NAMES: [&str; 5] = ["Bailey", "Bona", "Campbell", "Clark", "Jaquez"];
const LINKS: [(&str, &str); 6] = [
    ("Bailey", "Bona"),
    ("Bailey", "Campbell"),
    ("Clark", "Bona"),
    ("Clark", "Campbell"),
    ("Clark", "Jaquez"),
    ("Campbell", "Jaquez"),
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asyncio_herd.py")
}

/// The bench's exit status and its report's scorecards, by herd, each a
/// map from check name to (status, reason).
struct Graded {
    status: i32,
    cards: BTreeMap<String, BTreeMap<String, (String, String)>>,
    json: Value,
}

fn check(args: &[&str]) -> Graded {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_proxy-herd"))
        .parent()
        .unwrap();
    let out = Command::new(BENCH)
        .arg("check")
        .args(args)
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(["-q", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "check {args:?}: {e}; stdout {text}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut cards = BTreeMap::new();
    for card in json["scorecards"].as_array().unwrap() {
        let outcomes = card["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let status = o["status"].as_str().unwrap().to_string();
                let reason = o["reason"].as_str().unwrap_or("").to_string();
                (o["name"].as_str().unwrap().to_string(), (status, reason))
            })
            .collect();
        cards.insert(card["herd"].as_str().unwrap().to_string(), outcomes);
    }
    Graded {
        status: out.status.code().unwrap_or(-1),
        cards,
        json,
    }
}

/// Checks the fixture herd with these defects, only the checks named by
/// `only`, and returns what the bench said of it.
fn check_fixture(defects: &[&str], only: &[&str]) -> Graded {
    let dir = support::temp_dir("check");
    let config = support::process::herd_file(&dir, &NAMES, &LINKS);
    let mut template = format!(
        "python3 {} {{name}} --config {{config}} --places-url {{places_url}}",
        fixture().display()
    );
    for d in defects {
        template.push_str(&format!(" --defect {d}"));
    }
    let mut args = vec![
        "--other-only",
        "--herd-cmd",
        &template,
        "--config",
        config.to_str().unwrap(),
    ];
    let only = only.join(",");
    if !only.is_empty() {
        args.extend(["--only", &only]);
    }
    check(&args)
}

/// The checks of `card` that ended with `status`.
fn with_status<'a>(card: &'a BTreeMap<String, (String, String)>, status: &str) -> Vec<&'a str> {
    card.iter()
        .filter(|(_, (s, _))| s == status)
        .map(|(n, _)| n.as_str())
        .collect()
}

/// Our herd passes every check, ours and the course's, with --strict;
/// every check ran (none "not checked") and kept a transcript.
#[test]
fn our_herd_passes_every_check() {
    let _turn = turn();
    let graded = check(&["--strict"]);
    let ours = &graded.cards["proxy-herd"];
    assert_eq!(
        with_status(ours, "passed").len(),
        ours.len(),
        "{:?}",
        ours.iter()
            .filter(|(_, (s, _))| s != "passed")
            .collect::<Vec<_>>()
    );
    assert!(ours.len() >= 29, "{ours:?}");
    assert_eq!(graded.status, 0);
    for outcome in graded.json["scorecards"][0]["outcomes"].as_array().unwrap() {
        let events = outcome["transcript"].as_array().unwrap();
        assert!(!events.is_empty(), "no transcript for {}", outcome["name"]);
    }
}

/// The fixture without defects is a correct herd by every check, ours
/// included: the grader does not fail a right herd for flooding over
/// client ports or for names that are not ours.
#[test]
fn asyncio_fixture_passes_every_check() {
    let _turn = turn();
    let graded = check_fixture(&[], &[]);
    let theirs = &graded.cards["other"];
    let not_passed: Vec<_> = theirs.iter().filter(|(_, (s, _))| s != "passed").collect();
    assert!(not_passed.is_empty(), "{not_passed:?}");
    assert_eq!(graded.status, 0);
}

/// Each defect fails the check named for it and no other check that ran
/// (the runs are kept to the checks in question so one defect's knock-on
/// effects do not hide which check caught it). A course check's failure
/// makes the exit status 1; one of our contract's only does not.
#[test]
fn each_defect_fails_its_own_check() {
    let _turn = turn();
    let cases: [(&str, &[&str], &[&str], i32); 18] = [
        (
            "no-flood",
            &["flooding"],
            &["flooding.reaches-all", "flooding.before-reply"],
            1,
        ),
        (
            "older-wins",
            &["newest-wins.older-ignored"],
            &["newest-wins.older-ignored"],
            1,
        ),
        (
            "tie-first-wins",
            &["newest-wins.same-time"],
            &["newest-wins.same-time"],
            0,
        ),
        (
            "no-catchup",
            &["faults.one-down"],
            &["faults.one-down-catch-up"],
            0,
        ),
        (
            "crash-on-bad-location",
            &["bad-input"],
            &["bad-input.location"],
            1,
        ),
        ("unsigned-skew", &["replies"], &["replies.skew"], 1),
        (
            "silent-on-bad-input",
            &["bad-input.fields", "bad-input.unknown-command"],
            &["bad-input.fields", "bad-input.unknown-command"],
            1,
        ),
        (
            "ignore-bound",
            &["whatsat.bound", "whatsat.radius"],
            &["whatsat.bound"],
            1,
        ),
        ("no-blank-line", &["whatsat.reply"], &["whatsat.reply"], 1),
        (
            "no-half-close",
            &["life-cycle.half-close"],
            &["life-cycle.half-close-eof"],
            0,
        ),
        (
            "radius-unchecked",
            &["bad-input.radius"],
            &["bad-input.radius"],
            1,
        ),
        ("slow-stop", &["life-cycle.stop"], &["life-cycle.stop"], 0),
        ("wrong-server-name", &["replies"], &["replies.iamat"], 1),
        (
            "reads-are-lines",
            &["lines"],
            &["lines.joined", "lines.split"],
            1,
        ),
        (
            "radius-in-km",
            &["whatsat"],
            &["whatsat.bound", "whatsat.radius", "whatsat.layout"],
            1,
        ),
        (
            "echo-overlong",
            &["bad-input.overlong"],
            &["bad-input.overlong"],
            0,
        ),
        (
            "close-at-eof",
            &["life-cycle.half-close"],
            &["life-cycle.half-close"],
            1,
        ),
        (
            "flood-everywhere",
            &["faults.two-down"],
            &["faults.two-down"],
            1,
        ),
    ];
    let mut wrong = Vec::new();
    for (defect, only, expected, status) in cases {
        let graded = check_fixture(&[defect], only);
        let card = &graded.cards["other"];
        let failed = with_status(card, "failed");
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        if failed != expected || graded.status != status {
            wrong.push(format!(
                "--defect {defect}: failed {failed:?} (expected {expected:?}), exit status {} \
                 (expected {status}); {card:?}",
                graded.status
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A server that crashes on bad input is named as having exited, and is
/// started again so that the checks after it still grade the herd.
#[test]
fn a_crash_is_named_and_the_server_restarted() {
    let _turn = turn();
    let graded = check_fixture(&["crash-on-bad-location"], &["bad-input", "replies"]);
    let card = &graded.cards["other"];
    let (status, reason) = &card["bad-input.location"];
    assert_eq!(status, "failed");
    assert!(reason.contains("Bailey exited after `IAMAT"), "{reason}");
    assert_eq!(card["replies.iamat"].0, "passed", "{card:?}");
}

/// A herd that calls its own Places URL instead of the one it was given
/// is not failed on WHATSAT's content: those checks say "not checked" and
/// why, and the rest still run and pass.
#[test]
fn a_herd_that_ignores_the_places_url_is_not_checked_on_places() {
    let _turn = turn();
    let graded = check_fixture(&["ignore-places-url"], &["whatsat", "replies"]);
    let card = &graded.cards["other"];
    for name in ["whatsat.bound", "whatsat.radius", "whatsat.layout"] {
        let (status, reason) = &card[name];
        assert_eq!(status, "not_checked", "{name}: {card:?}");
        assert!(reason.contains("it calls another Places URL"), "{reason}");
    }
    assert_eq!(card["whatsat.reply"].0, "passed", "{card:?}");
    assert_eq!(card["replies.iamat"].0, "passed");
    assert_eq!(graded.status, 0);
}

/// A herd that cannot start gives exit status 2 and says why.
#[test]
fn a_herd_that_cannot_start_is_exit_status_2() {
    let _turn = turn();
    let dir = support::temp_dir("check-nostart");
    let config = support::process::herd_file(&dir, &NAMES, &LINKS);
    let out = Command::new(BENCH)
        .args(["check", "--other-only", "-q", "--herd-cmd", "false {name}"])
        .arg("--config")
        .arg(&config)
        .arg("--bin-dir")
        .arg(
            Path::new(env!("CARGO_BIN_EXE_proxy-herd"))
                .parent()
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not start"), "{err}");
}
