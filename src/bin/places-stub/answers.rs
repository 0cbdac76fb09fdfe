//! What places-stub answers: made-up places for a query, in the legacy
//! Nearby Search shape and layout (src/places/README.md#places-api-new and
//! src/protocol.md#whatsat-what-is-near) and in the shape of Places API
//! (New) (src/places/README.md#places-api-new). Pure functions of the
//! query: the same query always gets the same bytes. The HTTP side is `server.rs`.

use proxy_herd::places::layout::styled;
use serde_json::{Map, Value};

use super::made_up::{made_up_places, object, MadeUpPlace};

/// How many places an `OK` answer holds: Google's legacy page size, so the
/// herd's cutting to a bound of 1-20 is always exercised.
pub const PLACES_PER_ANSWER: usize = 20;

/// Radii under this many metres get `ZERO_RESULTS`, so the herd's handling
/// of an empty answer can be tested (a WHATSAT radius of 0.001-0.009 km).
pub const MIN_RADIUS_WITH_PLACES: f64 = 10.0;

/// Google's largest accepted radius, in metres.
const MAX_RADIUS: f64 = 50_000.0;

/// Mean Earth radius in metres, for placing points at a distance.
pub(crate) const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// What Google answers, in its own words, when a request has no key.
pub(crate) const NO_KEY_MESSAGE: &str =
    "You must use an API key to authenticate each request to Google Maps Platform APIs.";

/// What Places API (New) answers, in its own words, when a request has
/// no key.
pub(crate) const NEW_NO_KEY_MESSAGE: &str = "The request is missing a valid API key.";

/// Whether a key is missing or blank.
pub fn is_blank(key: Option<&str>) -> bool {
    key.is_none_or(|key| key.trim().is_empty())
}

/// The body the stub answers for a legacy request's query parameters (pure; lets tests compute the expected reply without HTTP).
pub fn legacy_answer(location: Option<&str>, radius: Option<&str>, key: Option<&str>) -> String {
    styled(&legacy_value(location, radius, key))
}

fn legacy_value(location: Option<&str>, radius: Option<&str>, key: Option<&str>) -> Value {
    if key.is_none_or(|key| key.trim().is_empty()) {
        return error_answer("REQUEST_DENIED", NO_KEY_MESSAGE);
    }
    let Some(location) = location.filter(|text| !text.trim().is_empty()) else {
        return error_answer(
            "INVALID_REQUEST",
            "Invalid request. Missing the 'location' parameter.",
        );
    };
    let Some((lat, lng)) = parse_location(location) else {
        return error_answer(
            "INVALID_REQUEST",
            "Invalid request. Invalid 'location' parameter.",
        );
    };
    let Some(radius) = radius.filter(|text| !text.trim().is_empty()) else {
        return error_answer(
            "INVALID_REQUEST",
            "Invalid request. Missing the 'radius' parameter.",
        );
    };
    let Some(radius) = parse_decimal(radius).filter(|r| *r > 0.0 && *r <= MAX_RADIUS) else {
        return error_answer(
            "INVALID_REQUEST",
            "Invalid request. Invalid 'radius' parameter (a number of metres above 0, at most 50000).",
        );
    };
    let results = if radius < MIN_RADIUS_WITH_PLACES {
        Vec::new()
    } else {
        made_up_places(lat, lng, radius)
            .iter()
            .map(MadeUpPlace::legacy)
            .collect()
    };
    let status = if results.is_empty() {
        "ZERO_RESULTS"
    } else {
        "OK"
    };
    object([
        ("html_attributions", Value::Array(Vec::new())),
        ("results", Value::Array(results)),
        ("status", status.into()),
    ])
}

/// Google's error shape: keys in alphabetical order, no results.
fn error_answer(status: &str, message: &str) -> Value {
    object([
        ("error_message", message.into()),
        ("html_attributions", Value::Array(Vec::new())),
        ("results", Value::Array(Vec::new())),
        ("status", status.into()),
    ])
}

/// The HTTP status and body the stub answers for a Nearby Search (New)
/// request with this JSON body and `X-Goog-Api-Key` header (pure; lets
/// tests compute the expected reply without HTTP). The field mask is not
/// applied: every field the stub knows is there.
// The program answers through `new_value`; tests compare with this.
#[allow(dead_code)]
pub fn new_answer(body: &str, key: Option<&str>) -> (u16, String) {
    let (status, value) = new_value(body, key);
    (status, new_text(&value))
}

/// Google's New answers are pretty-printed with two-space indents.
pub(crate) fn new_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a Value always serializes");
    text.push('\n');
    text
}

pub(crate) fn new_value(body: &str, key: Option<&str>) -> (u16, Value) {
    if is_blank(key) {
        return new_error(403, "PERMISSION_DENIED", NEW_NO_KEY_MESSAGE);
    }
    let invalid = |message: &str| new_error(400, "INVALID_ARGUMENT", message);
    let Ok(Value::Object(request)) = serde_json::from_str::<Value>(body) else {
        return invalid("Invalid JSON payload received: the body is not a JSON object.");
    };
    let Some(circle) = request
        .get("locationRestriction")
        .and_then(|restriction| restriction.get("circle"))
    else {
        return invalid("Invalid request: locationRestriction.circle is required.");
    };
    let coordinate = |name: &str, limit: f64| {
        circle
            .get("center")?
            .get(name)?
            .as_f64()
            .filter(|value| value.abs() <= limit)
    };
    let (Some(lat), Some(lng)) = (coordinate("latitude", 90.0), coordinate("longitude", 180.0))
    else {
        return invalid(
            "Invalid request: locationRestriction.circle.center needs a latitude within [-90, 90] and a longitude within [-180, 180].",
        );
    };
    let Some(radius) = circle
        .get("radius")
        .and_then(Value::as_f64)
        .filter(|radius| *radius > 0.0 && *radius <= MAX_RADIUS)
    else {
        return invalid(
            "Invalid request: locationRestriction.circle.radius must be greater than 0 and at most 50000.",
        );
    };
    let count = match request.get("maxResultCount") {
        None => Some(PLACES_PER_ANSWER),
        Some(count) => count
            .as_u64()
            .and_then(|count| usize::try_from(count).ok())
            .filter(|count| (1..=PLACES_PER_ANSWER).contains(count)),
    };
    let Some(count) = count else {
        return invalid("Invalid request: maxResultCount must be between 1 and 20, inclusive.");
    };
    if radius < MIN_RADIUS_WITH_PLACES {
        // Proto3 JSON leaves out an empty list, so "no places" is `{}`.
        return (200, Value::Object(Map::new()));
    }
    let places = made_up_places(lat, lng, radius)
        .iter()
        .take(count)
        .map(MadeUpPlace::new_api)
        .collect();
    (200, object([("places", Value::Array(places))]))
}

/// A New-style error: `{"error": {"code", "message", "status"}}`.
pub(crate) fn new_error(code: u16, status: &str, message: &str) -> (u16, Value) {
    let error = object([
        ("code", code.into()),
        ("message", message.into()),
        ("status", status.into()),
    ]);
    (code, object([("error", error)]))
}

/// Keeps, in each place, only the fields the field mask names, as Google
/// does (the herd is billed by them). `*` or `places` keeps everything;
/// `places.a.b` keeps all of `a` (finer than a top-level field is not
/// worth modelling in a stand-in). An error answer is left as it is.
pub(crate) fn apply_field_mask(answer: &mut Value, mask: &str) {
    let paths: Vec<&str> = mask.split(',').map(str::trim).collect();
    if paths.iter().any(|path| *path == "*" || *path == "places") {
        return;
    }
    let fields: Vec<&str> = paths
        .iter()
        .filter_map(|path| path.strip_prefix("places."))
        .map(|field| field.split('.').next().unwrap_or(field))
        .collect();
    if let Some(Value::Array(places)) = answer.get_mut("places") {
        for place in places {
            if let Value::Object(place) = place {
                place.retain(|key, _| fields.contains(&key.as_str()));
            }
        }
    }
}

/// `lat,lng` in decimal degrees, each within range.
pub(crate) fn parse_location(text: &str) -> Option<(f64, f64)> {
    let (lat, lng) = text.split_once(',')?;
    let lat = parse_decimal(lat).filter(|lat| (-90.0..=90.0).contains(lat))?;
    let lng = parse_decimal(lng).filter(|lng| (-180.0..=180.0).contains(lng))?;
    Some((lat, lng))
}

/// A plain decimal: optional sign, digits, optional fraction. No
/// exponent, `inf` or `nan`, which Rust's float parser would accept.
fn parse_decimal(text: &str) -> Option<f64> {
    let text = text.trim();
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let plain =
        all_digits(whole) && all_digits(fraction) && !(whole.is_empty() && fraction.is_empty());
    if plain {
        text.parse().ok()
    } else {
        None
    }
}
