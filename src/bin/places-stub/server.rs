//! places-stub's serving side: a thread per connection (over `http.rs`)
//! answering each request with the answers of `answers.rs`.
//!
//! Besides answering like Google ([`Behaviour::Normal`], all the
//! `places-stub` program does), it can be told to misbehave (held until
//! released, an HTTP error, not JSON, a given JSON answer) and keeps the
//! last request it got, so that tests can drive the herd's error paths
//! (src/protocol.md#whatsat-what-is-near) and check what the herd sent. The tests compile this
//! file into themselves (`tests/support/stub.rs`), which is why the
//! program itself leaves some of it unused.
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::http::{self, HttpRequest, HttpResponse};

use super::answers::{apply_field_mask, is_blank, legacy_answer, new_error, new_text, new_value};

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

    /// The request as it came off the connection.
    fn of(request: HttpRequest) -> RecordedRequest {
        RecordedRequest {
            method: request.method,
            path: request.target,
            headers: request.headers,
            body: String::from_utf8_lossy(&request.body).into_owned(),
        }
    }
}

/// A running stub server. Dropping it stops it, like [`PlacesStub::shutdown`].
pub struct PlacesStub {
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
    /// Serves on an already-bound listener (tests bind 127.0.0.1:0), a
    /// thread per connection, so a slow answer delays no other client.
    pub fn start(listener: TcpListener, behaviour: Behaviour) -> io::Result<PlacesStub> {
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(None));
        let stopping = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let accept = {
            let answering = Answering {
                behaviour,
                requests: Arc::clone(&requests),
                last: Arc::clone(&last),
                gate: Arc::clone(&gate),
            };
            let stopping = Arc::clone(&stopping);
            thread::Builder::new()
                .name("places-stub-accept".into())
                .spawn(move || accept_loop(&listener, &answering, &stopping))?
        };
        Ok(PlacesStub {
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

    /// Wakes the accept thread (by connecting to it, as the herd does)
    /// and waits for it. Connections already open end on their own
    /// threads when their clients go or fall idle.
    fn stop(&mut self) {
        self.gate.open();
        if let Some(accept) = self.accept.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
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

/// How requests are answered, shared by the connection threads.
#[derive(Clone)]
struct Answering {
    behaviour: Behaviour,
    requests: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<RecordedRequest>>>,
    gate: Arc<Gate>,
}

/// Gives each connection a thread of its own until told to stop.
fn accept_loop(listener: &TcpListener, answering: &Answering, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) => {
                let answering = answering.clone();
                // If no thread can be made the connection is dropped, and
                // its client sees it closed.
                let _ = thread::Builder::new()
                    .name("places-stub-conn".into())
                    .spawn(move || http::serve(stream, |request| answer(request, &answering)));
            }
            // An accept error (out of file descriptors, say): wait a
            // little rather than spin, then keep serving.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Records one request, then answers it according to the behaviour.
/// Requests under `/_stub/` are the control route instead (see
/// [`control`]): never counted, recorded or held.
fn answer(request: HttpRequest, answering: &Answering) -> HttpResponse {
    if request.target.starts_with(CONTROL) {
        return control(&request, answering);
    }
    answering.requests.fetch_add(1, Ordering::SeqCst);
    let recorded = RecordedRequest::of(request);
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
    HttpResponse {
        status,
        content_type,
        body,
    }
}

const JSON: &str = "application/json; charset=UTF-8";

/// Where the control route lives, beside the Places paths.
pub const CONTROL: &str = "/_stub/";

/// The control route, for tests that drive the program from outside as a
/// user would: `GET /_stub/requests` (requests answered so far), `GET
/// /_stub/held` (requests `--hold` holds now), `POST /_stub/release`
/// (answer them, and hold no more), `GET /_stub/last` (the last request
/// as JSON: method, path, headers as pairs, body; 404 before any).
fn control(request: &HttpRequest, answering: &Answering) -> HttpResponse {
    let text = |status: u16, body: String| HttpResponse {
        status,
        content_type: "text/plain; charset=UTF-8",
        body,
    };
    match (request.method.as_str(), &request.target[CONTROL.len()..]) {
        ("GET", "requests") => text(
            200,
            format!("{}\n", answering.requests.load(Ordering::SeqCst)),
        ),
        ("GET", "held") => text(
            200,
            format!("{}\n", answering.gate.waiting.load(Ordering::SeqCst)),
        ),
        ("POST", "release") => {
            answering.gate.open();
            text(200, "released\n".into())
        }
        ("GET", "last") => match answering.last.lock().clone() {
            Some(last) => HttpResponse {
                status: 200,
                content_type: JSON,
                body: serde_json::json!({
                    "method": last.method,
                    "path": last.path,
                    "headers": last.headers,
                    "body": last.body,
                })
                .to_string(),
            },
            None => text(404, "places-stub: no request yet\n".into()),
        },
        _ => text(
            404,
            "places-stub: the control route has requests, held, release, last\n".into(),
        ),
    }
}

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

/// Splits a query string into decoded name/value pairs, in order. A pair
/// without `=` has an empty value.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
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
pub(crate) fn percent_decode(text: &str) -> String {
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
