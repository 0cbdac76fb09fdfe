//! Places API (New) (src/places/README.md#places-api-new), end to end: real herd servers in
//! `new` mode against the in-process places-stub, checked on what the
//! client gets back and on what the stub received.

#[path = "support/stub.rs"]
mod stub;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use proxy_herd::places::layout::squeeze_newlines;
use proxy_herd::places::new_api::{self, FIELD_MASK, NEW_NEARBY_URL};
use proxy_herd::places::{PlacesApi, PlacesConfig, GOOGLE_NEARBY_URL};
use proxy_herd::protocol::Location;
use serde_json::{json, Value};
use stub::{Behaviour, PlacesStub};

use support::process::{self, Proc, BIN};
use support::*;

const KEY: &str = "SECRET-new-api-key-4711";
const IAMAT: &str = "IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503\n";

/// A stub on a free loopback port.
fn stub(behaviour: Behaviour) -> PlacesStub {
    PlacesStub::start(behaviour).unwrap()
}

/// Places settings for `new` mode against `stub`.
fn new_mode(stub: &PlacesStub, key: Option<&str>) -> PlacesConfig {
    PlacesConfig {
        url: stub.new_nearby_url(),
        key: key.map(str::to_owned),
        timeout: Duration::from_secs(5),
        api: PlacesApi::New,
        ..PlacesConfig::default()
    }
}

/// One server, Riley, that knows kiwi.cs.ucla.edu; returns it and kiwi's
/// AT line.
fn riley_with_kiwi(places: PlacesConfig) -> (TestHerd, String) {
    let herd = TestHerd::start(&["Riley"], &[], places);
    let line = at_line(&one_shot(herd.addr("Riley"), IAMAT));
    (herd, line)
}

/// Splits a WHATSAT reply into its AT line and its JSON, checking the
/// framing of WHATSAT (src/protocol.md#whatsat-what-is-near): one AT line, JSON without blank lines, `\n\n` at the end.
fn split_reply(reply: &str) -> (&str, &str) {
    let body = reply.strip_suffix("\n\n").expect("reply ends with \\n\\n");
    let (line, json) = body.split_once('\n').expect("an AT line, then JSON");
    assert!(!json.contains("\n\n"), "{reply}");
    assert!(json.starts_with('{') && json.ends_with('}'), "{reply}");
    (line, json)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

/// The expected legacy-shaped JSON for the stub's answer to the herd's
/// request, computed without HTTP: the stub's pure answer, mapped.
fn expected_json(location: &str, radius_m: u32, bound: usize) -> String {
    let location = Location::parse(location).unwrap();
    let body = new_api::request_body(&location, radius_m, bound);
    let (status, answer) = stub::new_answer(&body, Some(KEY));
    squeeze_newlines(&new_api::legacy_json(status, &answer))
}

/// A WHATSAT in `new` mode gets the AT line, then the stub's places in
/// the legacy shape and Google's layout (src/places/README.md#places-api-new), then `\n\n`, byte for
/// byte as computed from the stub's answer.
#[test]
fn whatsat_reply_is_legacy_shaped() {
    let stub = stub(Behaviour::Normal);
    let (herd, line) = riley_with_kiwi(new_mode(&stub, Some(KEY)));
    let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
    let expected = expected_json("+34.068930-118.445127", 10_000, 5);
    assert_eq!(reply, format!("{line}\n{expected}\n\n"));
    let (_, json) = split_reply(&reply);
    assert!(
        json.starts_with(
            "{\n   \"html_attributions\" : [],\n   \"results\" : [\n      {\n         \"business_status\" : "
        ),
        "{json}"
    );
    let value = parse(json);
    assert_eq!(value["status"], "OK");
    assert_eq!(value["results"].as_array().unwrap().len(), 5);
    assert!(!json.contains("null"), "{json}");
    assert!(!json.contains("displayName"), "no New field names: {json}");
}

/// A client cannot tell the modes apart: against the same stub, the
/// reply of a `new` herd and of a `legacy` herd to the same WHATSAT have
/// the same keys everywhere, and the same values except `icon` (which the
/// New API lacks) and `photo_reference` (the New photo's name).
#[test]
fn new_and_legacy_replies_match() {
    let stub = stub(Behaviour::Normal);
    let (new_herd, _) = riley_with_kiwi(new_mode(&stub, Some(KEY)));
    let legacy = PlacesConfig {
        url: stub.nearby_url(),
        key: Some(KEY.into()),
        timeout: Duration::from_secs(5),
        api: PlacesApi::Legacy,
        ..PlacesConfig::default()
    };
    let (legacy_herd, _) = riley_with_kiwi(legacy);
    for query in [
        "WHATSAT kiwi.cs.ucla.edu 10 20\n",
        "WHATSAT kiwi.cs.ucla.edu 0.5 3\n",
    ] {
        let new_reply = one_shot(new_herd.addr("Riley"), query);
        let legacy_reply = one_shot(legacy_herd.addr("Riley"), query);
        let mut new = parse(split_reply(&new_reply).1);
        let mut old = parse(split_reply(&legacy_reply).1);
        let places = new["results"].as_array_mut().unwrap();
        let old_places = old["results"].as_array_mut().unwrap();
        assert_eq!(places.len(), old_places.len(), "{query}");
        for (new, old) in places.iter_mut().zip(old_places) {
            let new_keys: Vec<String> = new.as_object().unwrap().keys().cloned().collect();
            let old_keys: Vec<String> = old.as_object().unwrap().keys().cloned().collect();
            assert_eq!(new_keys, old_keys, "same keys, same order");
            for place in [&mut *new, &mut *old] {
                place["icon"] = Value::Null;
                if let Some(photos) = place.get_mut("photos") {
                    photos[0]["photo_reference"] = Value::Null;
                }
            }
            assert_eq!(new, old, "{query}");
        }
        assert_eq!(new, old, "{query}");
    }
}

/// The herd POSTs to the configured URL with the key and the exact field
/// mask in headers, JSON content, and a body whose values are the
/// client's digits, the radius in metres and the bound; the key is not in
/// the URL.
#[test]
fn request_is_what_section_4_1_says() {
    let stub = stub(Behaviour::Normal);
    let (herd, _) = riley_with_kiwi(new_mode(&stub, Some(KEY)));
    for (query, radius, bound) in [
        ("10 5", 10_000, 5),
        ("0.5 20", 500, 20),
        ("1.2345 1", 1235, 1),
    ] {
        one_shot(
            herd.addr("Riley"),
            &format!("WHATSAT kiwi.cs.ucla.edu {query}\n"),
        );
        let request = stub.last_request().expect("the stub got a request");
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/places:searchNearby");
        assert_eq!(request.header("X-Goog-Api-Key"), Some(KEY));
        assert_eq!(request.header("X-Goog-FieldMask"), Some(FIELD_MASK));
        assert_eq!(request.header("Content-Type"), Some("application/json"));
        let body = parse(&request.body);
        // Parsed from text, so the numbers are compared digit for digit.
        let expected = parse(&format!(
            r#"{{"locationRestriction": {{"circle": {{
                   "center": {{"latitude": 34.068930, "longitude": -118.445127}},
                   "radius": {radius}}}}},
               "maxResultCount": {bound}}}"#
        ));
        assert_eq!(body, expected);
        let center = &body["locationRestriction"]["circle"]["center"];
        assert_eq!(
            center["latitude"].as_number().unwrap().as_str(),
            "34.068930"
        );
        assert_eq!(
            center["longitude"].as_number().unwrap().as_str(),
            "-118.445127"
        );
    }
    assert_eq!(stub.requests(), 3);
    assert_eq!(
        FIELD_MASK,
        "places.businessStatus,places.currentOpeningHours,places.displayName,\
         places.formattedAddress,places.iconBackgroundColor,places.iconMaskBaseUri,\
         places.id,places.location,places.photos,places.plusCode,places.priceLevel,\
         places.rating,places.shortFormattedAddress,places.types,\
         places.userRatingCount,places.viewport"
    );
}

/// Four made-up New places, for a server that sends more than asked.
const FOUR_PLACES: &str = r#"{"places": [
    {"id": "p1", "displayName": {"text": "Made-up One (test)"}},
    {"id": "p2", "displayName": {"text": "Made-up Two (test)"}},
    {"id": "p3", "displayName": {"text": "Made-up Three (test)"}},
    {"id": "p4", "displayName": {"text": "Made-up Four (test)"}}
]}"#;

/// `results` holds at most the bound, the first places in order, even
/// when the server sends more than `maxResultCount` asked for.
#[test]
fn bound_cuts_results() {
    let stub = stub(Behaviour::Json(200, FOUR_PLACES));
    let (herd, _) = riley_with_kiwi(new_mode(&stub, Some(KEY)));
    let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 1 2\n");
    let value = parse(split_reply(&reply).1);
    let names: Vec<&str> = value["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|place| place["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Made-up One (test)", "Made-up Two (test)"]);
    assert_eq!(value["status"], "OK");
    let all = parse(
        split_reply(&one_shot(
            herd.addr("Riley"),
            "WHATSAT kiwi.cs.ucla.edu 1 20\n",
        ))
        .1,
    );
    assert_eq!(all["results"].as_array().unwrap().len(), 4);
}

/// No places (the stub's `{}` for a radius under 10 m) is ZERO_RESULTS,
/// exactly as the legacy API words it.
#[test]
fn no_places_is_zero_results() {
    let stub = stub(Behaviour::Normal);
    let (herd, line) = riley_with_kiwi(new_mode(&stub, Some(KEY)));
    let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 0.005 5\n");
    assert_eq!(
        reply,
        format!("{line}\n{{\n   \"html_attributions\" : [],\n   \"results\" : [],\n   \"status\" : \"ZERO_RESULTS\"\n}}\n\n")
    );
}

/// The legacy error reply for `status` and `message`, as a client sees it.
fn error_reply(line: &str, status: &str, message: &str) -> String {
    format!(
        "{line}\n{{\n   \"error_message\" : \"{message}\",\n   \"html_attributions\" : [],\n   \"results\" : [],\n   \"status\" : \"{status}\"\n}}\n\n"
    )
}

/// Each class of New error answer reaches the client as its legacy
/// status, with Google's message as `error_message`.
#[test]
fn error_classes_end_to_end() {
    const DENIED: &str = r#"{"error": {"code": 403, "message": "made-up: API not enabled", "status": "PERMISSION_DENIED"}}"#;
    const UNAUTHENTICATED: &str = r#"{"error": {"code": 401, "message": "made-up: bad credentials", "status": "UNAUTHENTICATED"}}"#;
    const INVALID: &str = r#"{"error": {"code": 400, "message": "made-up: bad radius", "status": "INVALID_ARGUMENT"}}"#;
    const QUOTA: &str = r#"{"error": {"code": 429, "message": "made-up: quota exceeded", "status": "RESOURCE_EXHAUSTED"}}"#;
    const INTERNAL: &str =
        r#"{"error": {"code": 500, "message": "made-up: internal", "status": "INTERNAL"}}"#;
    let cases = [
        (
            Behaviour::Json(403, DENIED),
            "REQUEST_DENIED",
            "made-up: API not enabled",
        ),
        (
            Behaviour::Json(401, UNAUTHENTICATED),
            "REQUEST_DENIED",
            "made-up: bad credentials",
        ),
        (
            Behaviour::Json(400, INVALID),
            "INVALID_REQUEST",
            "made-up: bad radius",
        ),
        (
            Behaviour::Json(429, QUOTA),
            "OVER_QUERY_LIMIT",
            "made-up: quota exceeded",
        ),
        (
            Behaviour::Json(500, INTERNAL),
            "UNKNOWN_ERROR",
            "made-up: internal",
        ),
        (
            Behaviour::HttpStatus(503),
            "UNKNOWN_ERROR",
            "Places (New) answered HTTP 503",
        ),
        (
            Behaviour::HttpStatus(429),
            "OVER_QUERY_LIMIT",
            "Places (New) answered HTTP 429",
        ),
        (
            Behaviour::NotJson,
            "UNKNOWN_ERROR",
            "Places (New) answered with something that is not a JSON object",
        ),
    ];
    for (behaviour, status, message) in cases {
        let stub = stub(behaviour);
        let (herd, line) = riley_with_kiwi(new_mode(&stub, Some(KEY)));
        let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
        assert_eq!(reply, error_reply(&line, status, message), "{behaviour:?}");
        assert_eq!(stub.requests(), 1, "{behaviour:?}");
    }
}

/// The stub's own refusal of a blank key (HTTP 403 PERMISSION_DENIED, in
/// Google's words) reaches the client as REQUEST_DENIED.
#[test]
fn stub_refusal_of_a_blank_key_is_request_denied() {
    let stub = stub(Behaviour::Normal);
    let (herd, line) = riley_with_kiwi(new_mode(&stub, Some("   ")));
    let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
    assert_eq!(
        reply,
        error_reply(
            &line,
            "REQUEST_DENIED",
            "The request is missing a valid API key."
        )
    );
    assert_eq!(stub.requests(), 1);
}

/// Without a key nothing is sent, and the reply says REQUEST_DENIED and
/// where the key goes; a Places server that is not there is
/// UNKNOWN_ERROR.
#[test]
fn no_key_and_no_server() {
    let stub = stub(Behaviour::Normal);
    let (herd, line) = riley_with_kiwi(new_mode(&stub, None));
    let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
    assert_eq!(
        reply,
        error_reply(
            &line,
            "REQUEST_DENIED",
            "no API key is set: put it in GOOGLE_PLACES_API_KEY"
        )
    );
    assert_eq!(stub.requests(), 0);

    let nobody = PlacesConfig {
        url: format!("http://127.0.0.1:{}/v1/places:searchNearby", free_port()),
        ..new_mode(&stub, Some(KEY))
    };
    let (herd, line) = riley_with_kiwi(nobody);
    let reply = one_shot(herd.addr("Riley"), "WHATSAT kiwi.cs.ucla.edu 10 5\n");
    let (at, json) = split_reply(&reply);
    assert_eq!(at, line);
    let value = parse(json);
    assert_eq!(value["status"], "UNKNOWN_ERROR");
    assert!(value["error_message"]
        .as_str()
        .unwrap()
        .starts_with("Places request failed"));
}

/// The key appears in no reply and no log line, whether the request
/// succeeds or fails, and the log names each request's method, URL and
/// outcome.
#[test]
fn key_is_never_in_reply_or_log() {
    let dir = temp_dir("places-new-key");
    let good = stub(Behaviour::Normal);
    const DENIED: &str =
        r#"{"error": {"code": 403, "message": "made-up: denied", "status": "PERMISSION_DENIED"}}"#;
    let bad = stub(Behaviour::Json(403, DENIED));
    let mut replies = String::new();
    for (name, stub) in [("Riley", &good), ("Jaquez", &bad)] {
        let herd = TestHerd::start_with_logs(
            &[name],
            &[],
            new_mode(stub, Some(KEY)),
            Some(dir.join(name)),
        );
        one_shot(herd.addr(name), IAMAT);
        replies.push_str(&one_shot(
            herd.addr(name),
            "WHATSAT kiwi.cs.ucla.edu 10 5\n",
        ));
    }
    assert!(replies.contains("\"status\" : \"OK\""), "{replies}");
    assert!(
        replies.contains("\"status\" : \"REQUEST_DENIED\""),
        "{replies}"
    );
    assert!(!replies.contains(KEY));
    let riley = std::fs::read_to_string(dir.join("Riley").join("Riley.log")).unwrap();
    let jaquez = std::fs::read_to_string(dir.join("Jaquez").join("Jaquez.log")).unwrap();
    assert!(
        riley.contains(&format!("places POST {} ", good.new_nearby_url()))
            && riley.contains(": OK in "),
        "{riley}"
    );
    assert!(
        jaquez.contains("REQUEST_DENIED (made-up: denied)"),
        "{jaquez}"
    );
    for log in [riley, jaquez] {
        assert!(!log.contains(KEY), "{log}");
    }
}

/// Starts the binary as the only server `A` of a herd file on a free
/// port, with these extra flags and environment, and waits until it
/// listens.
fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let port = free_port();
    let config = dir.join("herd.json");
    let herd = json!({"servers": {"A": {"host": "127.0.0.1", "port": port,
                                        "peer_port": free_port()}}});
    std::fs::write(&config, herd.to_string()).unwrap();
    let mut command = Command::new(BIN);
    command
        .arg("A")
        .arg("--config")
        .arg(&config)
        .arg("--log-dir")
        .arg(dir)
        .args(args)
        .env_remove("GOOGLE_PLACES_API_KEY")
        .env_remove("PLACES_URL")
        .env_remove("PLACES_API");
    for (name, value) in env {
        command.env(name, value);
    }
    let child = process::start("A", &config, dir, command);
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The binary's default URL follows the API: with no key (so nothing is
/// sent) its log names Google's New URL under `--places-api new` and the
/// legacy URL by default.
#[test]
fn binary_default_url_follows_the_api() {
    for (args, method, url) in [
        (&["--places-api", "new"][..], "POST", NEW_NEARBY_URL),
        (&[][..], "GET", GOOGLE_NEARBY_URL),
    ] {
        let dir = temp_dir("places-new-default");
        let (_server, addr) = spawn(&dir, args, &[]);
        one_shot(addr, IAMAT);
        let reply = one_shot(addr, "WHATSAT kiwi.cs.ucla.edu 10 5\n");
        assert!(reply.contains("\"status\" : \"REQUEST_DENIED\""), "{reply}");
        // The log is written by its own thread, a moment after the reply
        // may be; wait for the line, which is the assertion.
        let expected = format!("places {method} {url} ");
        wait_until(&expected, || {
            std::fs::read_to_string(dir.join("A.log")).is_ok_and(|log| log.contains(&expected))
        });
    }
}

/// `PLACES_API=new` and `PLACES_URL` in the environment select the New
/// API at that URL, with the key from `GOOGLE_PLACES_API_KEY`: the
/// binary's reply is the stub's places in the legacy shape.
#[test]
fn binary_new_mode_from_environment() {
    let stub = stub(Behaviour::Normal);
    let dir = temp_dir("places-new-env");
    let url = stub.new_nearby_url();
    let (_server, addr) = spawn(
        &dir,
        &[],
        &[
            ("PLACES_API", "new"),
            ("PLACES_URL", &url),
            ("GOOGLE_PLACES_API_KEY", KEY),
        ],
    );
    let line = at_line(&one_shot(addr, IAMAT));
    let reply = one_shot(addr, "WHATSAT kiwi.cs.ucla.edu 10 5\n");
    let expected = expected_json("+34.068930-118.445127", 10_000, 5);
    assert_eq!(reply, format!("{line}\n{expected}\n\n"));
    let request = stub.last_request().unwrap();
    assert_eq!(request.header("X-Goog-Api-Key"), Some(KEY));
}

/// `--help` documents `--places-api` and `PLACES_API` with both values,
/// and an unknown API is refused.
#[test]
fn binary_help_and_bad_api() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--places-api",
        "PLACES_API",
        "legacy",
        "new",
        "places:searchNearby",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    let bad = Command::new(BIN)
        .args(["Riley", "--places-api", "newest"])
        .env_remove("PLACES_API")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("newest"));
}
