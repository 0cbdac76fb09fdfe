//! The Places client: one Nearby Search request per WHATSAT, over blocking
//! `ureq`, and whatever Places answers turned into the JSON of the reply.
//!
//! The connection thread that got the WHATSAT makes the HTTP call itself
//! and simply blocks until it returns. That is the thread-per-connection
//! answer to "a slow Places call MUST NOT delay other clients": every other
//! client has its own thread, so nothing waits but the client who asked.
//! (An asyncio server gets the same effect with `await session.get(...)`,
//! which yields the one event loop to other clients instead.)
//!
//! One `ureq::Agent` is shared by every thread. It keeps a pool of
//! keep-alive connections, so a busy server reuses its HTTP (and TLS)
//! connections to Places instead of opening one per request.
//!
//! The key never leaves this module except in the request itself: error
//! messages are written here from the kind of failure, never from the
//! URL, and log lines name the endpoint without its query.
//!
//! Two Places APIs can answer (src/places/README.md#places-api-new, below),
//! chosen by [`PlacesApi`].
//! The legacy Nearby Search is what clients were written against, and its
//! answer passes through nearly untouched. Places API (New) is what a key
//! made today can use; `new_api` turns its answer into the legacy shape
//! first, and from there both paths are the same: cut to the bound,
//! newlines squeezed. Clients cannot tell which API was asked.
#![doc = include_str!("README.md")]

pub mod layout;
pub mod new_api;

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::logging::ServerLog;
use crate::protocol::Location;

/// Google's legacy Nearby Search endpoint, the default.
pub const GOOGLE_NEARBY_URL: &str = "https://maps.googleapis.com/maps/api/place/nearbysearch/json";

/// How many idle keep-alive connections to Places are kept for reuse.
const MAX_IDLE_PER_HOST: usize = 64;

/// The largest Places answer read by default; past it the request counts
/// as failed. A real answer of 20 places is about 20 KiB.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;

/// Which Places API answers WHATSAT (src/places/README.md#places-api-new).
///
/// Legacy is the default because graders and existing keys expect it;
/// Google no longer enables it for new Cloud projects, whose keys need
/// `New`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlacesApi {
    /// Legacy Nearby Search: `GET …/nearbysearch/json?location=…`.
    #[default]
    Legacy,
    /// Nearby Search (New): `POST …/v1/places:searchNearby`, its answer
    /// turned into the legacy shape.
    New,
}

impl PlacesApi {
    /// Google's endpoint for this API, used when no URL is configured.
    pub fn default_url(self) -> &'static str {
        match self {
            PlacesApi::Legacy => GOOGLE_NEARBY_URL,
            PlacesApi::New => new_api::NEW_NEARBY_URL,
        }
    }
}

/// How Places is reached.
#[derive(Debug, Clone)]
pub struct PlacesConfig {
    /// The whole endpoint URL (Google's for `api`, or a local stand-in).
    pub url: String,
    /// The API key; `None` makes every WHATSAT answer `REQUEST_DENIED`
    /// without a request.
    pub key: Option<String>,
    /// The longest a request may take, start to end.
    pub timeout: Duration,
    /// Which API `url` speaks.
    pub api: PlacesApi,
    /// The largest answer read; a larger one is UNKNOWN_ERROR, so a broken
    /// or hostile endpoint cannot make a server hold a huge body.
    pub max_bytes: u64,
}

impl Default for PlacesConfig {
    fn default() -> PlacesConfig {
        PlacesConfig {
            url: GOOGLE_NEARBY_URL.to_string(),
            key: None,
            timeout: Duration::from_secs(10),
            api: PlacesApi::Legacy,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A Places client; clones share the connection pool.
#[derive(Clone)]
pub struct Places {
    agent: ureq::Agent,
    url: String,
    key: Option<String>,
    api: PlacesApi,
    max_bytes: u64,
}

impl Places {
    /// Makes a client. Nothing is sent until the first WHATSAT.
    pub fn new(config: PlacesConfig) -> Places {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            // A non-200 answer is a value we report, not a transport error.
            .http_status_as_error(false)
            // Keep a pooled connection for every WHATSAT that may be in
            // flight at once, so busy servers reuse connections instead
            // of opening one per request (ureq keeps 3 by default).
            .max_idle_connections_per_host(MAX_IDLE_PER_HOST)
            .max_idle_connections(MAX_IDLE_PER_HOST)
            .build()
            .into();
        Places {
            agent,
            url: config.url,
            key: config.key.filter(|k| !k.is_empty()),
            api: config.api,
            max_bytes: config.max_bytes,
        }
    }

    /// The JSON for a WHATSAT reply: Places' answer for `radius_m` metres
    /// around `location`, `results` cut to `bound`, with the reply's
    /// newline rule applied (src/protocol.md#whatsat-what-is-near). A failed request gives
    /// an error object of the same shape. Logs the request and its
    /// outcome.
    pub fn nearby(
        &self,
        location: &Location,
        radius_m: u32,
        bound: usize,
        log: &ServerLog,
    ) -> Answer {
        let started = Instant::now();
        let answer = match self.api {
            PlacesApi::Legacy => self.fetch(location, radius_m),
            PlacesApi::New => self.fetch_new(location, radius_m, bound),
        };
        // The New answer is already in the legacy shape, and at most
        // `bound` long since `maxResultCount` asked for no more; it is cut
        // anyway, so a server that sends more cannot break the bound.
        let result = answer.and_then(|body| {
            layout::cut_results(&body, bound).map_err(|_| {
                PlacesError::unknown("Places answered with something that is not a JSON object")
            })
        });
        let seconds = started.elapsed().as_secs_f64();
        let ms = seconds * 1e3;
        let failed = result.as_ref().err().map(|f| f.status);
        let method = match self.api {
            PlacesApi::Legacy => "GET",
            PlacesApi::New => "POST",
        };
        let json = match result {
            Ok(json) => {
                log.info(format_args!(
                    "places {method} {} location={} radius={radius_m}: OK in {ms:.1} ms",
                    self.url,
                    location.places_param()
                ));
                json
            }
            Err(failure) => {
                log.error(format_args!(
                    "places {method} {} location={} radius={radius_m}: {} ({}) in {ms:.1} ms",
                    self.url,
                    location.places_param(),
                    failure.status,
                    failure.message
                ));
                error_json(failure.status, &failure.message)
            }
        };
        Answer {
            json: layout::squeeze_newlines(&json),
            failed,
            seconds,
        }
    }

    /// The key, or the failure a missing key is: no request is made
    /// without one, so a herd started without a key costs nothing.
    fn key(&self) -> Result<&str, PlacesError> {
        self.key.as_deref().ok_or_else(|| PlacesError {
            status: PlacesStatus::RequestDenied,
            message: "no API key is set: put it in GOOGLE_PLACES_API_KEY".into(),
        })
    }

    /// Sends the legacy request and returns the body of a 200 answer.
    fn fetch(&self, location: &Location, radius_m: u32) -> Result<String, PlacesError> {
        let key = self.key()?;
        let response = self
            .agent
            .get(&self.url)
            .query("location", location.places_param())
            .query("radius", radius_m.to_string())
            .query("key", key)
            .call();
        let mut response = response.map_err(|e| PlacesError::unknown(&describe(&e)))?;
        let status = response.status();
        if status != 200 {
            return Err(PlacesError::unknown(&format!(
                "Places answered HTTP {}",
                status.as_u16()
            )));
        }
        read_body(&mut response, self.max_bytes)
    }

    /// Sends the Nearby Search (New) request and returns its answer in
    /// the legacy shape (src/places/README.md#places-api-new).
    ///
    /// Unlike the legacy path, a non-200 answer is read too: the New API
    /// says what went wrong in the body (`PERMISSION_DENIED` for a key
    /// without the API, say), and that becomes the legacy status.
    fn fetch_new(
        &self,
        location: &Location,
        radius_m: u32,
        bound: usize,
    ) -> Result<String, PlacesError> {
        let key = self.key()?;
        let response = self
            .agent
            .post(&self.url)
            .header("X-Goog-Api-Key", key)
            .header("X-Goog-FieldMask", new_api::FIELD_MASK)
            .header("Content-Type", "application/json")
            .send(new_api::request_body(location, radius_m, bound));
        let mut response = response.map_err(|e| PlacesError::unknown(&describe(&e)))?;
        let status = response.status().as_u16();
        let body = read_body(&mut response, self.max_bytes)?;
        new_api::convert(status, &body)
    }
}

/// Reads an answer's body, up to `limit` bytes.
fn read_body(
    response: &mut ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<String, PlacesError> {
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_string()
        .map_err(|e| PlacesError::unknown(&describe(&e)))
}

/// What [`Places::nearby`] found: the reply's JSON, and for the metrics
/// whether the request failed and how long it took.
#[derive(Debug, Clone)]
pub struct Answer {
    pub json: String,
    /// The failure's status; `None` when Places answered.
    pub failed: Option<PlacesStatus>,
    pub seconds: f64,
}

/// The status of a failed Places request, in the legacy API's words,
/// which a WHATSAT reply uses whichever API was asked (src/protocol.md#whatsat-what-is-near).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacesStatus {
    /// No key, or a key Google refused.
    RequestDenied,
    /// Google found the request malformed.
    InvalidRequest,
    /// Out of quota.
    OverQueryLimit,
    /// Anything else: no answer, an HTTP error, an answer too large or
    /// not JSON.
    UnknownError,
}

impl PlacesStatus {
    /// The status as a reply's JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacesStatus::RequestDenied => "REQUEST_DENIED",
            PlacesStatus::InvalidRequest => "INVALID_REQUEST",
            PlacesStatus::OverQueryLimit => "OVER_QUERY_LIMIT",
            PlacesStatus::UnknownError => "UNKNOWN_ERROR",
        }
    }
}

impl fmt::Display for PlacesStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Places request, as the reply reports it: the status and the
/// `error_message`. Both APIs' failures come to this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacesError {
    pub status: PlacesStatus,
    /// Google's message, or what went wrong with the request.
    pub message: String,
}

impl PlacesError {
    fn unknown(message: &str) -> PlacesError {
        PlacesError {
            status: PlacesStatus::UnknownError,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for PlacesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for PlacesError {}

/// Says what went wrong with a request without quoting the request, whose
/// URL holds the key.
fn describe(e: &ureq::Error) -> String {
    let what = match e {
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Io(io) => io.kind().to_string(),
        ureq::Error::BodyExceedsLimit(n) => format!("answer larger than {n} bytes"),
        ureq::Error::StatusCode(code) => format!("HTTP {code}"),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "TLS failure".to_string(),
        ureq::Error::Protocol(_) => "malformed HTTP answer".to_string(),
        _ => "request failed".to_string(),
    };
    format!("Places request failed: {what}")
}

/// The JSON object a failed request becomes: the shape of a Places answer
/// with no results, in Google's layout and key order.
pub fn error_json(status: PlacesStatus, message: &str) -> String {
    let value: Value = json!({
        "error_message": message,
        "html_attributions": [],
        "results": [],
        "status": status.as_str(),
    });
    layout::styled(&value)
}

/// Text made safe inside HTML elements and double- or single-quoted
/// attributes. Places API (New) gives an author's name and URI as plain
/// text where the legacy answer had HTML built from them (`new_api`), and
/// `proxy-herd-bench --report` writes herd names and commands into its
/// page: one escaper for both.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error object has Google's keys in Google's order and layout.
    #[test]
    fn error_json_shape() {
        assert_eq!(
            error_json(PlacesStatus::UnknownError, "Places answered HTTP 500"),
            "{\n   \"error_message\" : \"Places answered HTTP 500\",\n   \"html_attributions\" : [],\n   \"results\" : [],\n   \"status\" : \"UNKNOWN_ERROR\"\n}\n"
        );
    }

    /// With no key, no request is made and the reply says REQUEST_DENIED.
    #[test]
    fn no_key_is_request_denied() {
        let places = Places::new(PlacesConfig {
            // Nothing listens here; a request would fail differently.
            url: "http://127.0.0.1:9/nearbysearch/json".into(),
            key: None,
            timeout: Duration::from_millis(100),
            api: PlacesApi::Legacy,
            max_bytes: DEFAULT_MAX_BYTES,
        });
        let loc = Location::parse("+34.068930-118.445127").unwrap();
        let json = places.nearby(&loc, 1000, 5, &ServerLog::discard()).json;
        assert!(json.contains("\"status\" : \"REQUEST_DENIED\""), "{json}");
        assert!(json.contains("GOOGLE_PLACES_API_KEY"), "{json}");
        assert!(!json.ends_with('\n'));
    }

    /// A connection failure becomes UNKNOWN_ERROR and never shows the key.
    #[test]
    fn failure_hides_key() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener); // now nothing listens there
        let places = Places::new(PlacesConfig {
            url: format!("http://{addr}/maps/api/place/nearbysearch/json"),
            key: Some("SECRET-KEY-123".into()),
            timeout: Duration::from_millis(500),
            api: PlacesApi::Legacy,
            max_bytes: DEFAULT_MAX_BYTES,
        });
        let loc = Location::parse("+1+2").unwrap();
        let json = places.nearby(&loc, 1000, 5, &ServerLog::discard()).json;
        assert!(json.contains("\"status\" : \"UNKNOWN_ERROR\""), "{json}");
        assert!(!json.contains("SECRET-KEY-123"), "{json}");
    }
}
