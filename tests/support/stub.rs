//! places-stub, the program, driven as a user would: started with the
//! flags that make it hold, fail or answer badly, steered and read
//! through its control route (`/_stub/...`). Tests that need a Places
//! server they can steer declare this module themselves
//! (`#[path = "support/stub.rs"] mod stub;`), so the others do not
//! compile it; each uses only part of it.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const PROGRAM: &str = env!("CARGO_BIN_EXE_places-stub");

/// How the stub answers Places requests.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Like Google.
    Normal,
    /// Held until [`PlacesStub::release`] (`--hold`).
    Held,
    /// This HTTP status and a short text body (`--fail-status`).
    HttpStatus(u16),
    /// 200 and a body that is not JSON (`--not-json`).
    NotJson,
    /// This status and this JSON body (`--answer-body`, `--answer-status`).
    Json(u16, &'static str),
}

/// A request as the stub received it (`GET /_stub/last`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RecordedRequest {
    /// The value of the first header of that name, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A running places-stub, stopped when dropped.
pub struct PlacesStub {
    child: Child,
    /// Its legacy Nearby Search URL, as it printed it.
    url: String,
    addr: SocketAddr,
    /// The file of `Behaviour::Json`'s body, kept while it serves.
    _body: Option<tempfile::NamedTempFile>,
}

impl PlacesStub {
    /// Starts the program on a port the kernel gives it and reads where
    /// it listens from the line it prints.
    pub fn start(behaviour: Behaviour) -> std::io::Result<PlacesStub> {
        let mut command = Command::new(PROGRAM);
        command.args(["--host", "127.0.0.1", "--port", "0"]);
        let mut body = None;
        match behaviour {
            Behaviour::Normal => {}
            Behaviour::Held => {
                command.arg("--hold");
            }
            Behaviour::HttpStatus(code) => {
                command.args(["--fail-status", &code.to_string()]);
            }
            Behaviour::NotJson => {
                command.arg("--not-json");
            }
            Behaviour::Json(code, text) => {
                let file = tempfile::NamedTempFile::new()?;
                std::fs::write(file.path(), text)?;
                command
                    .arg("--answer-body")
                    .arg(file.path())
                    .args(["--answer-status", &code.to_string()]);
                body = Some(file);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let url = line
            .split("serving MADE-UP places on ")
            .nth(1)
            .map(|u| u.trim().to_string())
            .ok_or_else(|| std::io::Error::other(format!("places-stub said {line:?}")))?;
        let addr = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no address in {url}")))?;
        Ok(PlacesStub {
            child,
            url,
            addr,
            _body: body,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its legacy Nearby Search URL.
    pub fn nearby_url(&self) -> String {
        self.url.clone()
    }

    /// Its Nearby Search (New) URL.
    pub fn new_nearby_url(&self) -> String {
        format!("http://{}/v1/places:searchNearby", self.addr)
    }

    /// How many Places requests it has received so far.
    pub fn requests(&self) -> usize {
        self.control("GET", "requests")
            .trim()
            .parse()
            .expect("a count")
    }

    /// How many requests `--hold` holds right now.
    pub fn held(&self) -> usize {
        self.control("GET", "held").trim().parse().expect("a count")
    }

    /// Lets every held request be answered, and stops holding new ones.
    pub fn release(&self) {
        self.control("POST", "release");
    }

    /// The last Places request it received, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        let (status, text) = http("GET", &format!("http://{}/_stub/last", self.addr), &[], "");
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&text).expect("the stub's JSON");
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Some(RecordedRequest {
            method: field("method"),
            path: field("path"),
            headers: v["headers"]
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h[0].as_str().unwrap_or_default().to_string(),
                                h[1].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body: field("body"),
        })
    }

    /// Stops it.
    pub fn shutdown(self) {}

    fn control(&self, method: &str, what: &str) -> String {
        let (status, text) = http(
            method,
            &format!("http://{}/_stub/{what}", self.addr),
            &[],
            "",
        );
        assert_eq!(status, 200, "/_stub/{what}: {text}");
        text
    }
}

impl Drop for PlacesStub {
    /// A test that fails half-way must not leave a server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request; its status and body, whatever the status.
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = if method == "POST" {
        let mut request = agent.post(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send(body)
    } else {
        let mut request = agent.get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.call()
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// What the program answers a legacy Nearby Search for these parameters
/// (each left out when `None`).
pub fn legacy_answer(location: Option<&str>, radius: Option<&str>, key: Option<&str>) -> String {
    let stub = PlacesStub::start(Behaviour::Normal).expect("places-stub starts");
    let query: Vec<String> = [("location", location), ("radius", radius), ("key", key)]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    let (_, text) = http(
        "GET",
        &format!("{}?{}", stub.nearby_url(), query.join("&")),
        &[],
        "",
    );
    text
}

/// What the program answers a Nearby Search (New) with this body and
/// key, every field asked for: its status and body.
pub fn new_answer(body: &str, key: Option<&str>) -> (u16, String) {
    let stub = PlacesStub::start(Behaviour::Normal).expect("places-stub starts");
    let mut headers = vec![
        ("X-Goog-FieldMask", "*"),
        ("Content-Type", "application/json"),
    ];
    if let Some(key) = key {
        headers.push(("X-Goog-Api-Key", key));
    }
    http("POST", &stub.new_nearby_url(), &headers, body)
}
