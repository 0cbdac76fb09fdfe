//! WHATSAT end to end: a real herd server asking a real (local, made-up)
//! Places server over HTTP, and every way that can go wrong.

#[path = "support/stub.rs"]
mod stub;
mod support;

use std::time::Duration;

use proxy_herd::places::layout::{cut_results, squeeze_newlines};
use proxy_herd::places::{PlacesApi, PlacesConfig};
use stub::{Behaviour, PlacesStub};
use support::*;

const KEY: &str = "test-key-5f3a9c";
const KIWI: &str = "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n";

fn stub(behaviour: Behaviour) -> PlacesStub {
    PlacesStub::start(behaviour).unwrap()
}

fn places(stub: &PlacesStub) -> PlacesConfig {
    PlacesConfig {
        url: stub.nearby_url(),
        key: Some(KEY.into()),
        timeout: Duration::from_secs(5),
        api: PlacesApi::Legacy,
        ..PlacesConfig::default()
    }
}

/// Splits a WHATSAT reply into its AT line and JSON, checking the frame:
/// one AT line, the JSON, and the final blank line, with no blank line
/// inside the JSON.
fn split_reply(reply: &str) -> (&str, &str) {
    assert!(reply.ends_with("}\n\n"), "{reply:?}");
    let body = &reply[..reply.len() - 2];
    assert!(
        !body.contains("\n\n"),
        "blank line inside the reply: {reply:?}"
    );
    body.split_once('\n').unwrap()
}

/// The reply's JSON is exactly what Places answered, cut to the bound in
/// Google's layout, for the client's own digits and the radius in metres.
#[test]
fn whatsat_cuts_places_answer_to_bound() {
    let stub = stub(Behaviour::Normal);
    let herd = TestHerd::start(&["Riley", "Jaquez"], &[("Riley", "Jaquez")], places(&stub));
    let at = at_line(&one_shot(herd.addr("Riley"), KIWI));
    herd.wait_converged("kiwi.cs.ucla.edu", &at);
    let answer = stub::legacy_answer(Some("34.068930,-118.445127"), Some("10000"), Some(KEY));
    for bound in [1, 5, 19] {
        let reply = one_shot(
            herd.addr("Jaquez"),
            &format!("WHATSAT kiwi.cs.ucla.edu 10 {bound}\n"),
        );
        let (line, json) = split_reply(&reply);
        assert_eq!(line, at);
        let expected = squeeze_newlines(&cut_results(&answer, bound).unwrap());
        assert_eq!(json, expected, "bound {bound}");
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["results"].as_array().unwrap().len(), bound);
        assert_eq!(value["status"], "OK");
    }
}

/// When nothing needs cutting, the JSON is Places' answer byte for byte
/// (only the newline rule applied), and a fractional radius becomes whole
/// metres.
#[test]
fn whatsat_uncut_is_byte_identical() {
    let stub = stub(Behaviour::Normal);
    let herd = TestHerd::start(&["Riley"], &[], places(&stub));
    one_shot(herd.addr("Riley"), KIWI);
    let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 0.5 20\n");
    let (_, json) = split_reply(&reply);
    let answer = stub::legacy_answer(Some("34.068930,-118.445127"), Some("500"), Some(KEY));
    assert_eq!(json, squeeze_newlines(&answer));
    assert!(json.contains("(places-stub)"), "made-up data is labelled");
}

/// Each Places failure (refused, too large, HTTP 500, not JSON, no key)
/// still gives the AT line and a JSON object of the Places shape with no
/// results and the contract's status.
#[test]
fn places_failures_become_json_errors() {
    let refused = no_places();
    let failing = stub(Behaviour::HttpStatus(500));
    let garbage = stub(Behaviour::NotJson);
    let normal = stub(Behaviour::Normal);
    let cases = [
        (refused, "UNKNOWN_ERROR", "Places request failed"),
        (
            PlacesConfig {
                max_bytes: 1000,
                ..places(&normal)
            },
            "UNKNOWN_ERROR",
            "answer larger than 1000 bytes",
        ),
        (places(&failing), "UNKNOWN_ERROR", "HTTP 500"),
        (places(&garbage), "UNKNOWN_ERROR", "not a JSON object"),
        (
            PlacesConfig {
                key: None,
                ..places(&failing)
            },
            "REQUEST_DENIED",
            "GOOGLE_PLACES_API_KEY",
        ),
    ];
    for (config, status, message) in cases {
        let herd = TestHerd::start(&["Riley"], &[], config);
        let at = at_line(&one_shot(herd.addr("Riley"), KIWI));
        let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
        let (line, json) = split_reply(&reply);
        assert_eq!(line, at);
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["status"], status, "{json}");
        assert_eq!(value["results"], serde_json::json!([]));
        assert_eq!(value["html_attributions"], serde_json::json!([]));
        let error = value["error_message"].as_str().unwrap();
        assert!(error.contains(message), "{error}");
        assert!(!json.contains(KEY));
    }
    // With no key, Places was never asked.
    assert_eq!(failing.requests(), 1);
}

/// A slow Places answer delays only the client who asked: while one
/// WHATSAT waits on Places (held by the stub until the test releases it),
/// another client of the same server is served.
#[test]
fn slow_places_delays_no_one_else() {
    let slow = stub(Behaviour::Held);
    let herd = TestHerd::start(&["Riley"], &[], places(&slow));
    one_shot(herd.addr("Riley"), KIWI);
    std::thread::scope(|s| {
        let waiting = s.spawn(|| one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n"));
        wait_until("the WHATSAT to be held at Places", || slow.held() == 1);
        let reply = one_shot(herd.addr("Riley"), "IAMAT other +1+1 1\n");
        assert!(reply.ends_with(" other +1+1 1\n"));
        assert_eq!(one_shot(herd.addr("Riley"), "BAD\n"), "? BAD\n");
        assert!(!waiting.is_finished(), "the held WHATSAT finished first");
        slow.release();
        let reply = waiting.join().unwrap();
        let (_, json) = split_reply(&reply);
        assert!(json.contains("\"status\" : \"OK\""));
    });
}

/// The log records the Places request and its outcome, and never the key.
#[test]
fn log_records_places_without_key() {
    let stub = stub(Behaviour::Normal);
    let dir = temp_dir("placeslog");
    let herd = TestHerd::start_with_logs(&["Riley"], &[], places(&stub), Some(dir.to_path_buf()));
    one_shot(herd.addr("Riley"), KIWI);
    one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
    drop(herd);
    let log = std::fs::read_to_string(dir.join("Riley.log")).unwrap();
    assert!(log.contains("places GET"), "{log}");
    assert!(
        log.contains("location=34.068930,-118.445127 radius=10000: OK"),
        "{log}"
    );
    assert!(log.contains("<- WHATSAT kiwi.cs.ucla.edu 10 5"));
    assert!(!log.contains(KEY), "the key leaked into the log");
}
