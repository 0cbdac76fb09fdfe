//! Hostile input, generated: property tests of the line parsers and the
//! Places re-layout. Each property runs `PROPTEST_CASES` cases (proptest's
//! default, 256, in `cargo test`); for a long fuzzing run:
//!
//! ```text
//! PROPTEST_CASES=2000000 cargo test --release --test fuzz
//! ```

use proptest::prelude::*;
use serde_json::Value;

use proxy_herd::places::layout::{cut_results, squeeze_newlines, styled};
use proxy_herd::protocol::{
    self, parse_client_line, parse_peer_line, AtRecord, ClientCommand, PeerCommand,
};

/// Any JSON value, nested a few levels, with awkward strings and numbers.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
            .prop_map(|t| serde_json::from_str(&t).unwrap()),
        any::<String>().prop_map(Value::String),
        "[<>&\"\\\\\n\t\u{0}-\u{1f}a-z]{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 30, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..30).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Lines built mostly from protocol-ish pieces, so that the parser's
/// deeper branches are reached, not just "unknown command".
fn line() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("IAMAT".to_string()),
        Just("WHATSAT".to_string()),
        Just("AT".to_string()),
        Just("Riley".to_string()),
        "[+-][0-9]{1,4}(\\.[0-9]{0,12})?[+-][0-9]{1,4}(\\.[0-9]{0,12})?",
        "[+-]?[0-9]{0,30}(\\.[0-9]{0,30})?",
        "[ \t\r\u{b}\u{c}]{1,3}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.join(" "))
}

proptest! {
    // Failures are printed with their input; no file is written beside
    // the tests.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// No client line makes the parser panic, and an invalid line's reply
    /// is exactly one line, `? ` and the line.
    #[test]
    fn client_lines_never_panic(line in line()) {
        let line = line.replace('\n', "");
        let command = parse_client_line(&line);
        if command == ClientCommand::Invalid {
            let reply = protocol::invalid_reply(&line);
            prop_assert_eq!(reply.matches('\n').count(), 1);
            prop_assert!(reply.ends_with('\n') && reply.starts_with("? "));
        }
        if let ClientCommand::WhatsAt(w) = &command {
            prop_assert!((1..=20).contains(&w.bound) && w.radius_m <= 50_000);
        }
    }

    /// Every IAMAT the parser accepts makes an AT line that a neighbour's
    /// parser accepts back with the same update, on one line.
    #[test]
    fn accepted_iamat_round_trips(line in line(), received in any::<i64>()) {
        let line = line.replace('\n', "");
        if let ClientCommand::IAmAt(update) = parse_client_line(&line) {
            let at = AtRecord::new("Riley", i128::from(received), update.clone());
            prop_assert!(!at.line.contains('\n'));
            match parse_peer_line(&at.line, |s| s == "Riley") {
                PeerCommand::At(back) => {
                    prop_assert_eq!(back.update, update);
                    prop_assert_eq!(back.line, at.line);
                }
                other => prop_assert!(false, "{:?} from {:?}", other, at.line),
            }
        }
    }

    /// No peer line makes the parser panic.
    #[test]
    fn peer_lines_never_panic(line in line()) {
        let _ = parse_peer_line(&line, |s| s == "Riley");
    }

    /// Re-laying any JSON value gives text that parses back to the same
    /// value, ends with one newline, and has no blank line.
    #[test]
    fn layout_round_trips(value in json()) {
        let text = styled(&value);
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, value);
        prop_assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
        prop_assert!(!squeeze_newlines(&text).contains("\n\n"));
    }

    /// Cutting any answer keeps at most `bound` results, in order, and
    /// never panics on bodies that are not JSON objects.
    #[test]
    fn cut_keeps_first_results(results in prop::collection::vec(json(), 0..30), bound in 1usize..=20, junk in any::<String>()) {
        let body = serde_json::json!({"html_attributions": [], "results": results.clone(), "status": "OK"});
        let cut: Value = serde_json::from_str(&cut_results(&body.to_string(), bound).unwrap()).unwrap();
        let kept = cut["results"].as_array().unwrap();
        prop_assert_eq!(kept.as_slice(), &results[..results.len().min(bound)]);
        let _ = cut_results(&junk, bound);
    }
}
