//! places-stub: a local stand-in for Google's Nearby Search, legacy and
//! New, serving MADE-UP places.
//!
//! Tests and the offline demo (`run_herd.sh`) need a Places endpoint that
//! needs no key, no network and no money, answers the same bytes for the
//! same query, and can be told to misbehave (slow, failing, not JSON) so
//! the herd's error paths (PROTOCOL.md §4) can be exercised. This module
//! is that endpoint: a small HTTP server on tiny_http, answering
//! - `GET …/nearbysearch/json?location=LAT,LNG&radius=METRES&key=KEY` in
//!   Google's legacy shape and layout (§4.2), and
//! - `POST …/places:searchNearby` in the shape of Places API (New) (§4.1),
//!   with a JSON body `{"locationRestriction": {"circle": {"center":
//!   {"latitude", "longitude"}, "radius"}}, "maxResultCount"}` and the
//!   headers `X-Goog-Api-Key` and `X-Goog-FieldMask`.
//!
//! Both APIs describe the same made-up places for the same query, so a
//! herd in either mode tells its clients the same thing (only the legacy
//! `icon`, which the New API lacks, differs).
//!
//! Every place it invents says so: names end in "(places-stub)", the
//! vicinity reads "Not a real place", place ids start with
//! `places-stub-`, and every URL is on the reserved `.invalid` domain.
//!
//! Legacy answers, by query:
//! - no `key`, or an empty one: `REQUEST_DENIED` (any other key is
//!   accepted; the stub never checks keys);
//! - `location` missing or not `lat,lng` decimals within ±90/±180, or
//!   `radius` missing, not a decimal, not above 0 or above 50000:
//!   `INVALID_REQUEST`;
//! - a radius under [`MIN_RADIUS_WITH_PLACES`] metres: `ZERO_RESULTS`;
//! - otherwise `OK` with [`PLACES_PER_ANSWER`] places inside the radius.
//!
//! Error answers carry `error_message` and, like Google's, list their keys
//! alphabetically: `error_message`, `html_attributions`, `results`,
//! `status`.
//!
//! New answers, by request:
//! - no `X-Goog-Api-Key`, or an empty one: HTTP 403 `PERMISSION_DENIED`;
//! - no `X-Goog-FieldMask`, a body that is not JSON, a missing or
//!   out-of-range center or radius, or a `maxResultCount` outside 1-20:
//!   HTTP 400 `INVALID_ARGUMENT`;
//! - a radius under [`MIN_RADIUS_WITH_PLACES`] metres: `{}` (Google's
//!   answer for no places);
//! - otherwise the first `maxResultCount` (default 20) places, each with
//!   only the fields the field mask names.
//!
//! The stub keeps the last request it got ([`PlacesStub::last_request`]),
//! so a test can check what the herd sent: method, headers and body.

use std::f64::consts::PI;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::{Map, Value};
use tiny_http::{Header, Request, Response, Server};

use crate::places::layout::styled;

/// How many places an `OK` answer holds: Google's legacy page size, so the
/// herd's cutting to a bound of 1-20 is always exercised.
pub const PLACES_PER_ANSWER: usize = 20;

/// Radii under this many metres get `ZERO_RESULTS`, so the herd's handling
/// of an empty answer can be tested (a WHATSAT radius of 0.001-0.009 km).
pub const MIN_RADIUS_WITH_PLACES: f64 = 10.0;

/// Google's largest accepted radius, in metres.
const MAX_RADIUS: f64 = 50_000.0;

/// Mean Earth radius in metres, for placing points at a distance.
const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// What Google answers, in its own words, when a request has no key.
const NO_KEY_MESSAGE: &str =
    "You must use an API key to authenticate each request to Google Maps Platform APIs.";

/// What Places API (New) answers, in its own words, when a request has
/// no key.
const NEW_NO_KEY_MESSAGE: &str = "The request is missing a valid API key.";

/// The most of a request body the stub reads; the herd's are ~150 bytes.
const MAX_REQUEST_BODY: u64 = 64 * 1024;

/// How the stub answers every request, so tests can drive the herd's
/// failure paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer like Google: legacy Nearby Search and Nearby Search (New),
    /// by path (404 for other paths).
    Normal,
    /// Hold each request until the test calls [`PlacesStub::release`],
    /// then answer normally: a Places answer as slow as the test wants,
    /// with no timing in the test.
    Held,
    /// Answer every request with this HTTP status and a short text body.
    HttpStatus(u16),
    /// Answer every request with 200 and a body that is not JSON.
    NotJson,
    /// Answer every request with this HTTP status and this JSON body (a
    /// New-style error, say).
    Json(u16, &'static str),
}

/// A request as the stub received it, for tests to check what the herd
/// sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent: path and query, e.g.
    /// `/v1/places:searchNearby`.
    pub path: String,
    /// Every header, names as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body, lossily decoded as UTF-8 (at most 64 KiB of it).
    pub body: String,
}

impl RecordedRequest {
    /// The value of the first header of that name (names compare without
    /// regard to case, as HTTP says).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Reads the method, target, headers and body of a request.
    fn read(request: &mut Request) -> RecordedRequest {
        let mut body = Vec::new();
        // A body that cannot be read is recorded as far as it was read.
        let _ = request
            .as_reader()
            .take(MAX_REQUEST_BODY)
            .read_to_end(&mut body);
        RecordedRequest {
            method: request.method().as_str().to_owned(),
            path: request.url().to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|header| {
                    (
                        header.field.as_str().as_str().to_owned(),
                        header.value.as_str().to_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// A running stub server. Dropping it stops it, like [`PlacesStub::shutdown`].
pub struct PlacesStub {
    server: Arc<Server>,
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<RecordedRequest>>>,
    stopping: Arc<AtomicBool>,
    gate: Arc<Gate>,
    accept: Option<JoinHandle<()>>,
}

/// Where [`Behaviour::Held`] requests wait until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    /// Requests waiting here now.
    waiting: AtomicUsize,
}

impl Gate {
    /// Waits until the gate is open.
    fn pass(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
        drop(open);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Opens the gate for good: every held request is answered, and later
    /// ones are not held.
    fn open(&self) {
        *self.open.lock() = true;
        self.opened.notify_all();
    }
}

impl PlacesStub {
    /// Serves on an already-bound listener (tests bind 127.0.0.1:0). Each request is answered on its own thread so a slow answer delays no other.
    pub fn start(listener: TcpListener, behaviour: Behaviour) -> io::Result<PlacesStub> {
        let addr = listener.local_addr()?;
        let server = Arc::new(Server::from_listener(listener, None).map_err(io::Error::other)?);
        let requests = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(None));
        let stopping = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let accept = {
            let server = Arc::clone(&server);
            let requests = Arc::clone(&requests);
            let answering = Answering {
                behaviour,
                last: Arc::clone(&last),
                gate: Arc::clone(&gate),
            };
            let stopping = Arc::clone(&stopping);
            thread::Builder::new()
                .name("places-stub-accept".into())
                .spawn(move || accept_loop(&server, &answering, &requests, &stopping))?
        };
        Ok(PlacesStub {
            server,
            addr,
            requests,
            last,
            stopping,
            gate,
            accept: Some(accept),
        })
    }

    /// Where it listens; with port 0 this is how a test learns the port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The legacy Nearby Search URL on this stub: "http://ADDR/maps/api/place/nearbysearch/json"
    pub fn nearby_url(&self) -> String {
        format!("http://{}/maps/api/place/nearbysearch/json", self.addr)
    }

    /// The Nearby Search (New) URL on this stub: "http://ADDR/v1/places:searchNearby"
    pub fn new_nearby_url(&self) -> String {
        format!("http://{}/v1/places:searchNearby", self.addr)
    }

    /// How many requests it has received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// How many requests [`Behaviour::Held`] holds right now.
    pub fn held(&self) -> usize {
        self.gate.waiting.load(Ordering::SeqCst)
    }

    /// Lets every held request be answered, and stops holding new ones.
    pub fn release(&self) {
        self.gate.open();
    }

    /// The last request received, as received. It is recorded before the
    /// answer is sent, so once a client has its answer, this is its
    /// request (unless another came in after).
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.last.lock().clone()
    }

    /// Stops serving and joins its accept thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Wakes the accept thread out of `recv` and waits for it. Answers
    /// already being written (a slow one, say) finish on their own threads.
    fn stop(&mut self) {
        self.gate.open();
        if let Some(accept) = self.accept.take() {
            self.stopping.store(true, Ordering::SeqCst);
            self.server.unblock();
            let _ = accept.join();
        }
    }
}

impl Drop for PlacesStub {
    /// A test that fails half-way must not leave a server running.
    fn drop(&mut self) {
        self.stop();
    }
}

/// How requests are answered, shared by the request threads.
#[derive(Clone)]
struct Answering {
    behaviour: Behaviour,
    last: Arc<Mutex<Option<RecordedRequest>>>,
    gate: Arc<Gate>,
}

/// Hands each request to a thread of its own until told to stop.
fn accept_loop(
    server: &Server,
    answering: &Answering,
    requests: &AtomicUsize,
    stopping: &AtomicBool,
) {
    loop {
        match server.recv() {
            Ok(request) => {
                requests.fetch_add(1, Ordering::SeqCst);
                let answering = answering.clone();
                // If no thread can be made the request is dropped, and
                // tiny_http answers it with an error status.
                let _ = thread::Builder::new()
                    .name("places-stub-request".into())
                    .spawn(move || answer(request, &answering));
            }
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            // An accept error (out of file descriptors, say): wait a
            // little rather than spin, then keep serving.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Records one request, then answers it according to the behaviour.
fn answer(mut request: Request, answering: &Answering) {
    let recorded = RecordedRequest::read(&mut request);
    *answering.last.lock() = Some(recorded.clone());
    let (status, content_type, body) = match answering.behaviour {
        Behaviour::Normal => normal_answer(&recorded),
        Behaviour::Held => {
            answering.gate.pass();
            normal_answer(&recorded)
        }
        Behaviour::HttpStatus(code) => (
            code,
            "text/plain; charset=UTF-8",
            format!("places-stub: made-up HTTP {code} answer\n"),
        ),
        Behaviour::NotJson => (
            200,
            "text/html; charset=UTF-8",
            "<html><body>places-stub: this answer is deliberately not JSON</body></html>\n"
                .to_owned(),
        ),
        Behaviour::Json(code, body) => (code, JSON, body.to_owned()),
    };
    let header = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("constant header is valid");
    let response = Response::from_data(body)
        .with_status_code(status)
        .with_header(header)
        // Always a Content-Length, never chunked: simplest for any client.
        .with_chunked_threshold(usize::MAX);
    // The client may have gone; nothing to do about it.
    let _ = request.respond(response);
}

const JSON: &str = "application/json; charset=UTF-8";

/// What Google would answer: legacy JSON for `GET …/nearbysearch/json`,
/// New JSON for `POST …/places:searchNearby`, 405 for another method
/// there, 404 elsewhere.
fn normal_answer(request: &RecordedRequest) -> (u16, &'static str, String) {
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let (served, method) = if path.ends_with("/nearbysearch/json") {
        (Api::Legacy, "GET")
    } else if path.ends_with("/places:searchNearby") {
        (Api::New, "POST")
    } else {
        return (
            404,
            "text/plain; charset=UTF-8",
            "places-stub: not found (only …/nearbysearch/json and …/places:searchNearby are served)\n"
                .to_owned(),
        );
    };
    if request.method != method {
        return (
            405,
            "text/plain; charset=UTF-8",
            format!("places-stub: only {method} is served here\n"),
        );
    }
    match served {
        Api::Legacy => {
            let params = parse_query(query);
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.as_str())
            };
            let body = legacy_answer(param("location"), param("radius"), param("key"));
            (200, JSON, body)
        }
        Api::New => {
            let (status, value) = match request.header("X-Goog-FieldMask") {
                // The key is checked before the mask, as Google does.
                _ if is_blank(request.header("X-Goog-Api-Key")) => new_value(&request.body, None),
                None => new_error(
                    400,
                    "INVALID_ARGUMENT",
                    "FieldMask is a required parameter: send the X-Goog-FieldMask header.",
                ),
                Some(mask) => {
                    let (status, mut value) =
                        new_value(&request.body, request.header("X-Goog-Api-Key"));
                    apply_field_mask(&mut value, mask);
                    (status, value)
                }
            };
            (status, JSON, new_text(&value))
        }
    }
}

/// The two APIs the stub serves.
enum Api {
    Legacy,
    New,
}

fn is_blank(key: Option<&str>) -> bool {
    key.is_none_or(|key| key.trim().is_empty())
}

/// Splits a query string into decoded name/value pairs, in order. A pair
/// without `=` has an empty value.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space, in form encoding). A `%` not
/// followed by two hex digits is kept as is; bytes that are not UTF-8
/// become U+FFFD.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| Some(hex_value(hex[0])? * 16 + hex_value(hex[1])?));
        match (byte, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                index += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                index += 1;
            }
            (other, None) => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
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
pub fn new_answer(body: &str, key: Option<&str>) -> (u16, String) {
    let (status, value) = new_value(body, key);
    (status, new_text(&value))
}

/// Google's New answers are pretty-printed with two-space indents.
fn new_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a Value always serializes");
    text.push('\n');
    text
}

fn new_value(body: &str, key: Option<&str>) -> (u16, Value) {
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
fn new_error(code: u16, status: &str, message: &str) -> (u16, Value) {
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
fn apply_field_mask(answer: &mut Value, mask: &str) {
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
fn parse_location(text: &str) -> Option<(f64, f64)> {
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

/// One kind of made-up place: how it is named, drawn and typed.
struct Kind {
    label: &'static str,
    icon: &'static str,
    color: &'static str,
    types: &'static [&'static str],
    priced: bool,
}

const KINDS: &[Kind] = &[
    Kind {
        label: "Cafe",
        icon: "cafe",
        color: "#FF9E67",
        types: &["cafe", "food", "point_of_interest", "establishment"],
        priced: true,
    },
    Kind {
        label: "Restaurant",
        icon: "restaurant",
        color: "#FF9E67",
        types: &["restaurant", "food", "point_of_interest", "establishment"],
        priced: true,
    },
    Kind {
        label: "Bakery",
        icon: "bakery",
        color: "#FF9E67",
        types: &[
            "bakery",
            "store",
            "food",
            "point_of_interest",
            "establishment",
        ],
        priced: true,
    },
    Kind {
        label: "Bookshop",
        icon: "shopping",
        color: "#4B96F3",
        types: &["book_store", "store", "point_of_interest", "establishment"],
        priced: false,
    },
    Kind {
        label: "Park",
        icon: "park",
        color: "#4DB546",
        types: &[
            "park",
            "tourist_attraction",
            "point_of_interest",
            "establishment",
        ],
        priced: false,
    },
    Kind {
        label: "Library",
        icon: "library",
        color: "#7B9EB0",
        types: &["library", "point_of_interest", "establishment"],
        priced: false,
    },
    Kind {
        label: "Museum",
        icon: "museum",
        color: "#13B5C7",
        types: &[
            "museum",
            "tourist_attraction",
            "point_of_interest",
            "establishment",
        ],
        priced: false,
    },
];

/// [`PLACES_PER_ANSWER`] places around the point, each between 5% and 90%
/// of the radius away. The same query always gives the same places, in
/// both APIs.
fn made_up_places(lat: f64, lng: f64, radius: f64) -> Vec<MadeUpPlace> {
    let mut rng = SplitMix64(fnv1a(format!("{lat:.7},{lng:.7},{radius}").as_bytes()));
    (1..=PLACES_PER_ANSWER)
        .map(|number| MadeUpPlace::draw(&mut rng, number, lat, lng, radius))
        .collect()
}

/// One made-up place, before it is written in either API's words: the
/// legacy answer and the New one describe the same places, so a herd
/// asked through either API tells its clients the same thing.
struct MadeUpPlace {
    number: usize,
    kind: &'static Kind,
    lat: f64,
    lng: f64,
    /// Half the side of the viewport square, in degrees.
    half_view: f64,
    id: String,
    closed: bool,
    /// Whether it is open now, when the place says.
    open_now: Option<bool>,
    photo: Option<MadeUpPhoto>,
    /// 1-3, for kinds that have prices.
    price_level: Option<u64>,
    /// The rating times ten: 30-50.
    rating_tenths: u64,
    user_ratings_total: u64,
    street_number: u64,
}

/// The one photo a made-up place may have.
struct MadeUpPhoto {
    contributor: u64,
    landscape: bool,
    reference: String,
}

impl MadeUpPlace {
    /// Draws a place. The order of the draws is part of the answer: a
    /// change here changes every answer the stub gives.
    fn draw(rng: &mut SplitMix64, number: usize, lat: f64, lng: f64, radius: f64) -> MadeUpPlace {
        let kind = &KINDS[rng.below(KINDS.len() as u64) as usize];
        // sqrt spreads the places evenly over the disc's area.
        let distance = radius * (0.05 + 0.85 * rng.unit().sqrt());
        let bearing = 2.0 * PI * rng.unit();
        let (place_lat, place_lng) = destination(lat, lng, distance, bearing);
        let half_view = 0.0012 + 0.0003 * rng.unit();
        let id = format!("places-stub-{:016x}", rng.next());
        let closed = number % 7 == 0;
        let open_now = (!closed && rng.below(4) != 0).then(|| rng.below(3) != 0);
        let photo = (rng.below(5) < 3).then(|| MadeUpPhoto {
            contributor: rng.below(900) + 100,
            landscape: rng.below(2) == 0,
            reference: format!("places-stub-photo-{:016x}", rng.next()),
        });
        let price_level = kind.priced.then(|| rng.below(3) + 1);
        let rating_tenths = 30 + rng.below(21);
        let user_ratings_total = rng.below(5000) + 1;
        let street_number = rng.below(9000) + 100;
        MadeUpPlace {
            number,
            kind,
            lat: place_lat,
            lng: place_lng,
            half_view,
            id,
            closed,
            open_now,
            photo,
            price_level,
            rating_tenths,
            user_ratings_total,
            street_number,
        }
    }

    fn business_status(&self) -> &'static str {
        if self.closed {
            "CLOSED_TEMPORARILY"
        } else {
            "OPERATIONAL"
        }
    }

    fn name(&self) -> String {
        format!("Made-up {} {} (places-stub)", self.kind.label, self.number)
    }

    fn icon_mask_base_uri(&self) -> String {
        format!(
            "https://places-stub.invalid/icons/{}_pinlet",
            self.kind.icon
        )
    }

    fn rating(&self) -> Value {
        number_value(format!(
            "{}.{}",
            self.rating_tenths / 10,
            self.rating_tenths % 10
        ))
    }

    fn plus_codes(&self) -> (String, String) {
        let global_code = plus_code(self.lat, self.lng);
        let compound = format!("{} Made-up Town (places-stub)", &global_code[4..]);
        (global_code, compound)
    }

    fn vicinity(&self) -> String {
        format!(
            "{} Made-up Street, Not a real place (places-stub)",
            self.street_number
        )
    }

    fn types(&self) -> Value {
        Value::Array(self.kind.types.iter().map(|&t| t.into()).collect())
    }

    /// The place in Google's legacy fields, in Google's (alphabetical)
    /// key order.
    fn legacy(&self) -> Value {
        let (lat, lng, half) = (self.lat, self.lng, self.half_view);
        let mut place = Map::new();
        place.insert("business_status".into(), self.business_status().into());
        place.insert(
            "geometry".into(),
            object([
                ("location", lat_lng(lat, lng)),
                (
                    "viewport",
                    object([
                        ("northeast", lat_lng(lat + half, lng + half)),
                        ("southwest", lat_lng(lat - half, lng - half)),
                    ]),
                ),
            ]),
        );
        place.insert(
            "icon".into(),
            format!(
                "https://places-stub.invalid/icons/{}-71.png",
                self.kind.icon
            )
            .into(),
        );
        place.insert("icon_background_color".into(), self.kind.color.into());
        place.insert(
            "icon_mask_base_uri".into(),
            self.icon_mask_base_uri().into(),
        );
        place.insert("name".into(), self.name().into());
        if let Some(open_now) = self.open_now {
            place.insert(
                "opening_hours".into(),
                object([("open_now", open_now.into())]),
            );
        }
        if let Some(photo) = &self.photo {
            let attribution = format!(
                "<a href=\"{}\">{}</a>",
                photo.contributor_uri(),
                photo.contributor_name()
            );
            let (width, height) = photo.size();
            place.insert(
                "photos".into(),
                Value::Array(vec![object([
                    ("height", height.into()),
                    ("html_attributions", Value::Array(vec![attribution.into()])),
                    ("photo_reference", photo.reference.clone().into()),
                    ("width", width.into()),
                ])]),
            );
        }
        place.insert("place_id".into(), self.id.clone().into());
        let (global_code, compound_code) = self.plus_codes();
        place.insert(
            "plus_code".into(),
            object([
                ("compound_code", compound_code.into()),
                ("global_code", global_code.into()),
            ]),
        );
        if let Some(level) = self.price_level {
            place.insert("price_level".into(), level.into());
        }
        place.insert("rating".into(), self.rating());
        place.insert("reference".into(), self.id.clone().into());
        place.insert("scope".into(), "GOOGLE".into());
        place.insert("types".into(), self.types());
        place.insert("user_ratings_total".into(), self.user_ratings_total.into());
        place.insert("vicinity".into(), self.vicinity().into());
        Value::Object(place)
    }

    /// The place in Places API (New) fields, in the order Google's proto
    /// declares them (not alphabetical, so a client that sorts is tested).
    ///
    /// Written so that the legacy mapping of PROTOCOL.md §4.1 gives back
    /// [`MadeUpPlace::legacy`] except for `icon`, which the New API does
    /// not have (the mapping builds it from the mask URI). Every fifth
    /// place has no `shortFormattedAddress`, only a `formattedAddress`,
    /// so the mapping's fallback is exercised; places lack opening hours,
    /// photos and prices where their legacy twins do.
    fn new_api(&self) -> Value {
        let (lat, lng, half) = (self.lat, self.lng, self.half_view);
        let mut place = Map::new();
        place.insert("id".into(), self.id.clone().into());
        place.insert("types".into(), self.types());
        let with_short = self.number % 5 != 0;
        let formatted = if with_short {
            format!("{}, Made-up Country", self.vicinity())
        } else {
            self.vicinity()
        };
        place.insert("formattedAddress".into(), formatted.into());
        let (global_code, compound_code) = self.plus_codes();
        place.insert(
            "plusCode".into(),
            object([
                ("globalCode", global_code.into()),
                ("compoundCode", compound_code.into()),
            ]),
        );
        place.insert("location".into(), new_lat_lng(lat, lng));
        place.insert(
            "viewport".into(),
            object([
                ("low", new_lat_lng(lat - half, lng - half)),
                ("high", new_lat_lng(lat + half, lng + half)),
            ]),
        );
        place.insert("rating".into(), self.rating());
        place.insert("businessStatus".into(), self.business_status().into());
        if let Some(level) = self.price_level {
            let level = [
                "PRICE_LEVEL_INEXPENSIVE",
                "PRICE_LEVEL_MODERATE",
                "PRICE_LEVEL_EXPENSIVE",
            ][(level - 1) as usize];
            place.insert("priceLevel".into(), level.into());
        }
        place.insert("userRatingCount".into(), self.user_ratings_total.into());
        place.insert("iconMaskBaseUri".into(), self.icon_mask_base_uri().into());
        place.insert("iconBackgroundColor".into(), self.kind.color.into());
        place.insert(
            "displayName".into(),
            object([("text", self.name().into()), ("languageCode", "en".into())]),
        );
        if let Some(open_now) = self.open_now {
            place.insert(
                "currentOpeningHours".into(),
                object([("openNow", open_now.into())]),
            );
        }
        if let Some(photo) = &self.photo {
            let (width, height) = photo.size();
            place.insert(
                "photos".into(),
                Value::Array(vec![object([
                    (
                        "name",
                        format!("places/{}/photos/{}", self.id, photo.reference).into(),
                    ),
                    ("widthPx", width.into()),
                    ("heightPx", height.into()),
                    (
                        "authorAttributions",
                        Value::Array(vec![object([
                            ("displayName", photo.contributor_name().into()),
                            ("uri", photo.contributor_uri().into()),
                        ])]),
                    ),
                ])]),
            );
        }
        if with_short {
            place.insert("shortFormattedAddress".into(), self.vicinity().into());
        }
        Value::Object(place)
    }
}

impl MadeUpPhoto {
    fn contributor_uri(&self) -> String {
        format!(
            "https://places-stub.invalid/contributors/{}",
            self.contributor
        )
    }

    fn contributor_name(&self) -> String {
        format!("Made-up Contributor {}", self.contributor)
    }

    /// Width and height in pixels.
    fn size(&self) -> (u32, u32) {
        if self.landscape {
            (4032, 3024)
        } else {
            (3024, 4032)
        }
    }
}

/// The point `distance` metres from (`lat`, `lng`) along the great circle
/// starting at `bearing` radians from north. Exact on the sphere, so it
/// holds near the poles and across the date line too.
fn destination(lat: f64, lng: f64, distance: f64, bearing: f64) -> (f64, f64) {
    let angle = distance / EARTH_RADIUS_M;
    let (phi1, lambda1) = (lat.to_radians(), lng.to_radians());
    let phi2 = (phi1.sin() * angle.cos() + phi1.cos() * angle.sin() * bearing.cos()).asin();
    let lambda2 = lambda1
        + (bearing.sin() * angle.sin() * phi1.cos()).atan2(angle.cos() - phi1.sin() * phi2.sin());
    let lng2 = (lambda2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
    (phi2.to_degrees(), lng2)
}

/// `{"lat": …, "lng": …}` with seven decimals, as Google writes them;
/// clamped into range so a viewport near a pole or the date line stays
/// valid.
fn lat_lng(lat: f64, lng: f64) -> Value {
    object([
        ("lat", number_value(seven_decimals(lat.clamp(-90.0, 90.0)))),
        (
            "lng",
            number_value(seven_decimals(lng.clamp(-180.0, 180.0))),
        ),
    ])
}

/// A Places API (New) `LatLng`: the same numbers as [`lat_lng`], under
/// the New API's names.
fn new_lat_lng(lat: f64, lng: f64) -> Value {
    object([
        (
            "latitude",
            number_value(seven_decimals(lat.clamp(-90.0, 90.0))),
        ),
        (
            "longitude",
            number_value(seven_decimals(lng.clamp(-180.0, 180.0))),
        ),
    ])
}

/// Seven decimals, never "-0.0000000".
fn seven_decimals(degrees: f64) -> String {
    let text = format!("{degrees:.7}");
    match text.strip_prefix('-') {
        Some(unsigned) if unsigned.bytes().all(|b| b == b'0' || b == b'.') => unsigned.to_owned(),
        _ => text,
    }
}

/// The 10-digit Open Location Code ("plus code") of a point, like
/// "8553XCG3+6Q": pairs of base-20 digits for latitude and longitude,
/// down to cells of 1/8000 degree.
fn plus_code(lat: f64, lng: f64) -> String {
    const DIGITS: &[u8; 20] = b"23456789CFGHJMPQRVWX";
    const CELLS_PER_DEGREE: f64 = 8000.0;
    let lat_cells = ((lat + 90.0) * CELLS_PER_DEGREE).floor() as u64;
    let lat_cells = lat_cells.min(180 * 8000 - 1);
    let lng_cells = ((lng + 180.0) * CELLS_PER_DEGREE).floor() as u64 % (360 * 8000);
    let mut code = String::with_capacity(11);
    for place in (0..5).rev() {
        let scale = 20u64.pow(place);
        code.push(char::from(DIGITS[((lat_cells / scale) % 20) as usize]));
        code.push(char::from(DIGITS[((lng_cells / scale) % 20) as usize]));
        if place == 1 {
            code.push('+');
        }
    }
    code
}

/// A JSON number with exactly this text (kept as is thanks to
/// serde_json's `arbitrary_precision`).
fn number_value(text: String) -> Value {
    Value::Number(text.parse().expect("the stub writes valid JSON numbers"))
}

/// An object with these members, in this order.
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// FNV-1a: a tiny, stable hash, so the same query seeds the same places
/// on every run and every platform (std's hasher is randomly keyed).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: a small deterministic generator; enough for made-up data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in [0, bound).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    const UCLA: &str = "34.068930,-118.445127";

    /// Parses an answer, keeping digits and key order.
    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("the stub answers JSON")
    }

    /// Great-circle distance in metres (haversine), written independently
    /// of `destination` so it checks it.
    fn haversine(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
        let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
        let dp = p2 - p1;
        let dl = (lng2 - lng1).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }

    /// A coordinate of an answer as a float.
    fn as_f64(value: &Value) -> f64 {
        value.as_number().unwrap().as_str().parse().unwrap()
    }

    /// The same query gives the same bytes, and another query other places.
    #[test]
    fn answers_are_deterministic() {
        let first = legacy_answer(Some(UCLA), Some("10000"), Some("k"));
        let second = legacy_answer(Some(UCLA), Some("10000"), Some("other-key"));
        assert_eq!(first, second);
        let elsewhere = legacy_answer(Some("34.068931,-118.445127"), Some("10000"), Some("k"));
        assert_ne!(first, elsewhere);
    }

    /// An OK answer has Google's top-level keys in order, 20 places, and
    /// is laid out exactly as `styled` lays out its own value.
    #[test]
    fn ok_answer_shape_and_layout() {
        let text = legacy_answer(Some(UCLA), Some("10000"), Some("k"));
        let value = parse(&text);
        assert_eq!(styled(&value), text);
        let top: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(top, ["html_attributions", "results", "status"]);
        assert_eq!(value["status"], "OK");
        assert_eq!(value["html_attributions"], Value::Array(Vec::new()));
        assert_eq!(
            value["results"].as_array().unwrap().len(),
            PLACES_PER_ANSWER
        );
        assert!(text.starts_with("{\n   \"html_attributions\" : [],\n   \"results\" : [\n      {\n         \"business_status\" : "), "{text}");
    }

    /// Every place carries Google's legacy fields in alphabetical order,
    /// says it is made up, and writes coordinates with seven decimals.
    #[test]
    fn places_look_like_google_but_say_made_up() {
        let value = parse(&legacy_answer(Some(UCLA), Some("5000"), Some("k")));
        let mut with_hours = 0;
        let mut with_photos = 0;
        for place in value["results"].as_array().unwrap() {
            let keys: Vec<&String> = place.as_object().unwrap().keys().collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted, "keys alphabetical");
            for key in [
                "business_status",
                "geometry",
                "icon",
                "icon_background_color",
                "icon_mask_base_uri",
                "name",
                "place_id",
                "plus_code",
                "rating",
                "reference",
                "scope",
                "types",
                "user_ratings_total",
                "vicinity",
            ] {
                assert!(place.get(key).is_some(), "{key} missing in {place}");
            }
            with_hours += usize::from(place.get("opening_hours").is_some());
            with_photos += usize::from(place.get("photos").is_some());
            assert!(place["name"].as_str().unwrap().starts_with("Made-up "));
            assert!(place["name"].as_str().unwrap().ends_with("(places-stub)"));
            assert!(place["vicinity"]
                .as_str()
                .unwrap()
                .contains("Not a real place"));
            assert_eq!(place["scope"], "GOOGLE");
            assert_eq!(place["place_id"], place["reference"]);
            let lat = place["geometry"]["location"]["lat"]
                .as_number()
                .unwrap()
                .as_str();
            let decimals = lat.split_once('.').unwrap().1.len();
            assert_eq!(decimals, 7, "{lat}");
            let global = place["plus_code"]["global_code"].as_str().unwrap();
            assert_eq!(global.len(), 11);
            assert_eq!(&global[8..9], "+");
        }
        assert!(with_hours > 0 && with_hours < PLACES_PER_ANSWER);
        assert!(with_photos > 0 && with_photos < PLACES_PER_ANSWER);
    }

    /// Every place lies within the radius of the asked point, also near a
    /// pole, across the date line and for small and Google's largest radii.
    #[test]
    fn places_lie_within_radius() {
        let cases = [
            (UCLA, 10000.0),
            ("34.068930,-118.445127", 10.0),
            ("-89.9999,179.9999", 50000.0),
            ("90,0", 2000.0),
            ("0,-180", 123.5),
            ("51.5,-0.12", 500.0),
        ];
        for (location, radius) in cases {
            let text = legacy_answer(Some(location), Some(&radius.to_string()), Some("k"));
            let value = parse(&text);
            assert_eq!(value["status"], "OK", "{location} {radius}");
            let (lat, lng) = parse_location(location).unwrap();
            for place in value["results"].as_array().unwrap() {
                let spot = &place["geometry"]["location"];
                let distance = haversine(lat, lng, as_f64(&spot["lat"]), as_f64(&spot["lng"]));
                assert!(distance <= radius, "{location}: {distance} > {radius}");
                assert!(
                    distance >= 0.04 * radius,
                    "{location}: {distance} too close"
                );
            }
        }
    }

    /// No key, or an empty one, is denied with Google's message, whatever
    /// else the request holds.
    #[test]
    fn missing_key_is_denied() {
        for key in [None, Some(""), Some("  ")] {
            let text = legacy_answer(Some(UCLA), Some("10000"), key);
            let value = parse(&text);
            assert_eq!(styled(&value), text);
            assert_eq!(value["status"], "REQUEST_DENIED");
            assert_eq!(value["error_message"], NO_KEY_MESSAGE);
            assert_eq!(value["results"], Value::Array(Vec::new()));
            let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                ["error_message", "html_attributions", "results", "status"]
            );
        }
        let bad_everything = parse(&legacy_answer(None, Some("-1"), None));
        assert_eq!(bad_everything["status"], "REQUEST_DENIED");
    }

    /// Missing or malformed locations and radii are INVALID_REQUEST with
    /// an error message.
    #[test]
    fn malformed_queries_are_invalid() {
        let cases: [(Option<&str>, Option<&str>); 16] = [
            (None, Some("100")),
            (Some(""), Some("100")),
            (Some("34.06"), Some("100")),
            (Some("91,0"), Some("100")),
            (Some("0,180.5"), Some("100")),
            (Some("1e1,2"), Some("100")),
            (Some("nan,2"), Some("100")),
            (Some("1,2,3"), Some("100")),
            (Some("+34.068930-118.445127"), Some("100")),
            (Some(UCLA), None),
            (Some(UCLA), Some("")),
            (Some(UCLA), Some("0")),
            (Some(UCLA), Some("-5")),
            (Some(UCLA), Some("50000.1")),
            (Some(UCLA), Some("inf")),
            (Some(UCLA), Some("ten")),
        ];
        for (location, radius) in cases {
            let value = parse(&legacy_answer(location, radius, Some("k")));
            assert_eq!(
                value["status"], "INVALID_REQUEST",
                "{location:?} {radius:?}"
            );
            assert!(value["error_message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid request."));
            assert_eq!(value["results"], Value::Array(Vec::new()));
        }
    }

    /// Accepted spellings: signs, fractions, spaces around numbers, the
    /// edges of the ranges and of the radius.
    #[test]
    fn well_formed_queries_are_ok() {
        for (location, radius) in [
            ("+34.5,-118", "1000"),
            (" -90 , 180 ", "50000"),
            ("0.,.5", "10"),
            (UCLA, "10.0"),
        ] {
            let value = parse(&legacy_answer(Some(location), Some(radius), Some("k")));
            assert_eq!(value["status"], "OK", "{location} {radius}");
        }
    }

    /// Radii under 10 metres answer ZERO_RESULTS with an empty list and no
    /// error message.
    #[test]
    fn tiny_radius_has_zero_results() {
        let text = legacy_answer(Some(UCLA), Some("9.99"), Some("k"));
        assert_eq!(
            text,
            "{\n   \"html_attributions\" : [],\n   \"results\" : [],\n   \"status\" : \"ZERO_RESULTS\"\n}\n"
        );
    }

    /// Query strings decode `%XX` and `+`, keep malformed escapes, and
    /// split pairs on the first `=`.
    #[test]
    fn query_decoding() {
        assert_eq!(percent_decode("34.1%2C-118.2"), "34.1,-118.2");
        assert_eq!(percent_decode("a+b%20c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(
            parse_query("location=1%2C2&radius=5&&key=a=b&flag"),
            [
                ("location".to_owned(), "1,2".to_owned()),
                ("radius".to_owned(), "5".to_owned()),
                ("key".to_owned(), "a=b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }

    /// Plus codes follow the Open Location Code digits (checked against a
    /// hand computation for (0, 0) and the shape elsewhere).
    #[test]
    fn plus_codes() {
        // (0,0): lat cells 90*8000 = 720000 = 4*20^4 + 10*20^3 → "6", "G"…;
        // lng cells 180*8000 = 1440000 = 9*20^4 → "F", "2"…
        assert_eq!(plus_code(0.0, 0.0), "6FG22222+22");
        assert_eq!(plus_code(90.0, 180.0).len(), 11);
        assert_eq!(seven_decimals(-0.00000001), "0.0000000");
        assert_eq!(seven_decimals(-1.5), "-1.5000000");
    }

    /// Sends a raw HTTP/1.1 request and returns the status code and body.
    fn http(addr: SocketAddr, request_line: &str) -> (u16, String, String) {
        exchange(
            addr,
            &format!("{request_line} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        )
    }

    /// Writes `request` as it is on a new connection and reads the whole
    /// answer: its status code, head and body.
    fn exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    /// A stub on a free local port.
    fn start(behaviour: Behaviour) -> PlacesStub {
        PlacesStub::start(TcpListener::bind("127.0.0.1:0").unwrap(), behaviour).unwrap()
    }

    /// Over real HTTP the stub answers a legacy query with 200, JSON
    /// content type, a Content-Length and exactly `legacy_answer`'s
    /// bytes; other paths get 404, and requests are counted.
    #[test]
    fn serves_over_http() {
        let stub = start(Behaviour::Normal);
        assert!(stub.nearby_url().starts_with("http://127.0.0.1:"));
        assert!(stub
            .nearby_url()
            .ends_with("/maps/api/place/nearbysearch/json"));
        assert_eq!(stub.requests(), 0);
        let (status, head, body) = http(
            stub.addr(),
            "GET /maps/api/place/nearbysearch/json?location=34.068930%2C-118.445127&radius=10000&key=test",
        );
        assert_eq!(status, 200);
        assert!(head.contains("application/json"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert_eq!(body, legacy_answer(Some(UCLA), Some("10000"), Some("test")));
        let (status, _, body) = http(stub.addr(), "GET /maps/api/place/textsearch/json?key=k");
        assert_eq!(status, 404);
        assert!(body.contains("places-stub"));
        assert_eq!(stub.requests(), 2);
        stub.shutdown();
    }

    /// After shutdown the port stops accepting connections.
    #[test]
    fn shutdown_stops_serving() {
        let stub = start(Behaviour::Normal);
        let addr = stub.addr();
        stub.shutdown();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "still accepting after shutdown");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// HttpStatus(500) answers 500 with a short text body, NotJson a 200
    /// whose body does not parse as JSON.
    #[test]
    fn failing_behaviours() {
        let stub = start(Behaviour::HttpStatus(500));
        let (status, _, body) = http(stub.addr(), "GET /maps/api/place/nearbysearch/json?key=k");
        assert_eq!(status, 500);
        assert!(body.contains("places-stub") && body.len() < 100, "{body}");
        stub.shutdown();

        let stub = start(Behaviour::NotJson);
        let (status, _, body) = http(stub.addr(), "GET /maps/api/place/nearbysearch/json?key=k");
        assert_eq!(status, 200);
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
        stub.shutdown();
    }

    /// Held answers are held side by side, not queued: three concurrent
    /// requests are all held at once, and once released each gets the
    /// normal answer.
    #[test]
    fn held_answers_do_not_queue() {
        let stub = start(Behaviour::Held);
        let addr = stub.addr();
        let clients: Vec<_> = (0..3)
            .map(|_| {
                thread::spawn(move || {
                    http(
                        addr,
                        "GET /x/nearbysearch/json?location=1,2&radius=100&key=k",
                    )
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while stub.held() < 3 {
            assert!(Instant::now() < deadline, "only {} held", stub.held());
            thread::sleep(Duration::from_millis(5));
        }
        assert!(clients.iter().all(|c| !c.is_finished()));
        stub.release();
        for client in clients {
            let (status, _, body) = client.join().unwrap();
            assert_eq!(status, 200);
            assert_eq!(body, legacy_answer(Some("1,2"), Some("100"), Some("k")));
        }
        assert_eq!(stub.requests(), 3);
        stub.shutdown();
    }

    /// A Nearby Search (New) body for `lat,lng`, radius and count.
    fn new_body(lat: &str, lng: &str, radius: &str, count: Option<u32>) -> String {
        let count = count.map_or(String::new(), |n| format!(", \"maxResultCount\": {n}"));
        format!(
            r#"{{"locationRestriction": {{"circle": {{"center": {{"latitude": {lat}, "longitude": {lng}}}, "radius": {radius}}}}}{count}}}"#
        )
    }

    /// The New answer describes the same places as the legacy one for
    /// the same query: mapped to the legacy shape (§4.1), it equals the
    /// legacy answer except for `icon`, which the New API lacks (the
    /// mapping builds it from the mask URI), and `photo_reference`, which
    /// is the New photo's resource name (ending in the legacy reference).
    #[test]
    fn new_answer_describes_the_legacy_places() {
        let body = new_body("34.068930", "-118.445127", "10000", None);
        let (status, text) = new_answer(&body, Some("k"));
        assert_eq!(status, 200);
        let mut mapped = parse(&crate::places::new_api::legacy_json(200, &text));
        let mut legacy = parse(&legacy_answer(Some(UCLA), Some("10000"), Some("k")));
        let mut photos = 0;
        let places = mapped["results"].as_array_mut().unwrap();
        assert_eq!(places.len(), PLACES_PER_ANSWER);
        for (new, old) in places
            .iter_mut()
            .zip(legacy["results"].as_array_mut().unwrap())
        {
            let (new, old) = (new.as_object_mut().unwrap(), old.as_object_mut().unwrap());
            let new_icon = new.shift_remove("icon").unwrap();
            let old_icon = old.shift_remove("icon").unwrap();
            assert!(new_icon.as_str().unwrap().ends_with("_pinlet.png"));
            assert!(old_icon.as_str().unwrap().ends_with("-71.png"));
            if let (Some(Value::Array(new)), Some(Value::Array(old))) =
                (new.get_mut("photos"), old.get_mut("photos"))
            {
                let new_ref = new[0]
                    .as_object_mut()
                    .unwrap()
                    .shift_remove("photo_reference");
                let old_ref = old[0]
                    .as_object_mut()
                    .unwrap()
                    .shift_remove("photo_reference");
                let (new_ref, old_ref) = (new_ref.unwrap(), old_ref.unwrap());
                assert!(new_ref
                    .as_str()
                    .unwrap()
                    .ends_with(old_ref.as_str().unwrap()));
                photos += 1;
            }
        }
        assert!(photos > 0);
        assert_eq!(mapped, legacy);
    }

    /// New places are labelled made-up, carry the New field names in
    /// Google's (not alphabetical) order, and some lack the optional
    /// fields while others have every field the herd maps.
    #[test]
    fn new_places_are_new_shaped_and_mixed() {
        let (_, text) = new_answer(&new_body("51.5", "-0.12", "5000", None), Some("k"));
        assert!(
            text.starts_with("{\n  \"places\": [\n    {\n      \"id\": \"places-stub-"),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        let value = parse(&text);
        let mask_fields: Vec<&str> = crate::places::new_api::FIELD_MASK
            .split(',')
            .map(|path| path.strip_prefix("places.").unwrap())
            .collect();
        let mut complete = 0;
        let mut without_short_address = 0;
        for place in value["places"].as_array().unwrap() {
            let keys: Vec<&str> = place
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys[0], "id");
            assert!(keys.iter().all(|key| mask_fields.contains(key)), "{keys:?}");
            assert!(place["displayName"]["text"]
                .as_str()
                .unwrap()
                .ends_with("(places-stub)"));
            assert!(place["formattedAddress"]
                .as_str()
                .unwrap()
                .contains("Not a real place"));
            complete += usize::from(keys.len() == mask_fields.len());
            without_short_address += usize::from(place.get("shortFormattedAddress").is_none());
        }
        assert!(complete > 0, "no place has every field");
        assert!(
            complete < PLACES_PER_ANSWER,
            "no place lacks an optional field"
        );
        assert_eq!(without_short_address, PLACES_PER_ANSWER / 5);
    }

    /// `maxResultCount` bounds the places (the first ones, in order);
    /// without it there are 20; a tiny radius gives `{}`.
    #[test]
    fn new_answer_honours_count_and_radius() {
        let all = parse(&new_answer(&new_body("1", "2", "100", None), Some("k")).1);
        assert_eq!(all["places"].as_array().unwrap().len(), PLACES_PER_ANSWER);
        let three = parse(&new_answer(&new_body("1", "2", "100", Some(3)), Some("k")).1);
        assert_eq!(
            three["places"].as_array().unwrap()[..],
            all["places"].as_array().unwrap()[..3]
        );
        let (status, text) = new_answer(&new_body("1", "2", "9.5", Some(3)), Some("k"));
        assert_eq!((status, text.as_str()), (200, "{}\n"));
        for place in all["places"].as_array().unwrap() {
            let distance = haversine(
                1.0,
                2.0,
                as_f64(&place["location"]["latitude"]),
                as_f64(&place["location"]["longitude"]),
            );
            assert!(distance <= 100.0, "{distance}");
        }
    }

    /// No key, or an empty one, is HTTP 403 PERMISSION_DENIED in the New
    /// error shape, whatever the body.
    #[test]
    fn new_missing_key_is_permission_denied() {
        for key in [None, Some(""), Some(" ")] {
            for body in [new_body("1", "2", "100", None), "junk".to_owned()] {
                let (status, text) = new_answer(&body, key);
                assert_eq!(status, 403);
                assert_eq!(
                    parse(&text),
                    serde_json::json!({"error": {"code": 403, "message": NEW_NO_KEY_MESSAGE,
                                                 "status": "PERMISSION_DENIED"}})
                );
            }
        }
    }

    /// Bad bodies are HTTP 400 INVALID_ARGUMENT with a message.
    #[test]
    fn new_bad_bodies_are_invalid_argument() {
        let bodies = [
            "".to_owned(),
            "not json".to_owned(),
            "[]".to_owned(),
            "{}".to_owned(),
            r#"{"locationRestriction": {}}"#.to_owned(),
            new_body("91", "0", "100", None),
            new_body("0", "-180.5", "100", None),
            new_body("\"1\"", "2", "100", None),
            new_body("1", "2", "0", None),
            new_body("1", "2", "50000.5", None),
            new_body("1", "2", "100", Some(0)),
            new_body("1", "2", "100", Some(21)),
            r#"{"locationRestriction": {"circle": {"center": {"latitude": 1}, "radius": 5}}}"#
                .to_owned(),
        ];
        for body in bodies {
            let (status, text) = new_answer(&body, Some("k"));
            let value = parse(&text);
            assert_eq!(status, 400, "{body}");
            assert_eq!(value["error"]["status"], "INVALID_ARGUMENT", "{body}");
            assert_eq!(value["error"]["code"], 400);
            assert!(!value["error"]["message"].as_str().unwrap().is_empty());
        }
    }

    /// Sends a raw HTTP/1.1 POST with these extra header lines and body.
    fn post(addr: SocketAddr, path: &str, headers: &str, body: &str) -> (u16, String, String) {
        exchange(
            addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// Over real HTTP the New endpoint answers `new_answer`'s bytes, keeps
    /// only the masked fields, wants the key and the mask, refuses GET,
    /// and records each request as received.
    #[test]
    fn serves_new_api_over_http() {
        let stub = start(Behaviour::Normal);
        assert!(stub.new_nearby_url().ends_with("/v1/places:searchNearby"));
        assert_eq!(stub.last_request(), None);
        let body = new_body("34.068930", "-118.445127", "10000", Some(4));
        let mask = crate::places::new_api::FIELD_MASK;
        let headers = format!("X-Goog-Api-Key: secret\r\nX-Goog-FieldMask: {mask}\r\n");
        let (status, head, answer) = post(stub.addr(), "/v1/places:searchNearby", &headers, &body);
        assert_eq!(status, 200);
        assert!(head.contains("application/json"), "{head}");
        assert_eq!(answer, new_answer(&body, Some("secret")).1);
        let recorded = stub.last_request().unwrap();
        assert_eq!(recorded.method, "POST");
        assert_eq!(recorded.path, "/v1/places:searchNearby");
        assert_eq!(recorded.header("x-goog-api-key"), Some("secret"));
        assert_eq!(recorded.header("X-GOOG-FIELDMASK"), Some(mask));
        assert_eq!(recorded.body, body);

        let narrow = "X-Goog-Api-Key: k\r\nX-Goog-FieldMask: places.id,places.displayName.text\r\n";
        let (status, _, answer) = post(stub.addr(), "/v1/places:searchNearby", narrow, &body);
        assert_eq!(status, 200);
        for place in parse(&answer)["places"].as_array().unwrap() {
            let keys: Vec<&String> = place.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["id", "displayName"]);
        }

        let (status, _, answer) = post(
            stub.addr(),
            "/v1/places:searchNearby",
            "X-Goog-FieldMask: *\r\n",
            &body,
        );
        assert_eq!(status, 403);
        assert_eq!(parse(&answer)["error"]["status"], "PERMISSION_DENIED");
        let (status, _, answer) = post(
            stub.addr(),
            "/v1/places:searchNearby",
            "X-Goog-Api-Key: k\r\n",
            &body,
        );
        assert_eq!(status, 400);
        assert_eq!(parse(&answer)["error"]["status"], "INVALID_ARGUMENT");
        let (status, _, _) = http(stub.addr(), "GET /v1/places:searchNearby");
        assert_eq!(status, 405);
        assert_eq!(stub.last_request().unwrap().method, "GET");
        assert_eq!(stub.requests(), 5);
        stub.shutdown();
    }

    /// `Json` answers every request with its status and body.
    #[test]
    fn json_behaviour() {
        const BODY: &str = r#"{"error": {"code": 429, "message": "made-up quota", "status": "RESOURCE_EXHAUSTED"}}"#;
        let stub = start(Behaviour::Json(429, BODY));
        let (status, head, body) = post(stub.addr(), "/v1/places:searchNearby", "", "{}");
        assert_eq!((status, body.as_str()), (429, BODY));
        assert!(head.contains("application/json"), "{head}");
        stub.shutdown();
    }
}
