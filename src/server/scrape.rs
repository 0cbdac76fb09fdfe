//! The metrics port: `GET /metrics` answered over HTTP/1.x with the
//! page of [`crate::metrics`], and nothing else.
//!
//! Scrapes are rare (every few seconds), so this is the plainest HTTP
//! that Prometheus, curl and a browser accept: read the request head,
//! answer once, close. Whoever can reach the port is a stranger until
//! proven otherwise, so everything it could make us spend is bounded: at
//! most [`MAX_SCRAPES`] requests are served at once (more are closed at
//! once), a request head is at most [`MAX_HEAD`] bytes and must arrive
//! within [`READ_TIMEOUT`], and the answer must be taken within
//! [`WRITE_TIMEOUT`].

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::Shared;
use crate::metrics::CONTENT_TYPE;

/// Requests served at once; another connection is closed unanswered.
pub const MAX_SCRAPES: usize = 4;
/// The longest request head read (the request line and its headers).
const MAX_HEAD: usize = 8 * 1024;
/// How long a whole request head may take to arrive (not each read: a
/// byte every second would otherwise hold a slot for hours).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the answer may take to be taken.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts on the metrics port until the server stops.
pub(super) fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors, most likely: the client port's
            // accept loop reports that; here a pause is enough.
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_SCRAPES {
            busy.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let (shared, done) = (Arc::clone(shared), Arc::clone(&busy));
        let spawned = thread::Builder::new()
            .name(format!("{} scrape", shared.name))
            .stack_size(256 * 1024)
            .spawn(move || {
                serve(&shared, stream);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads one request head and answers it.
fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Some(head) = read_head(&mut stream) else {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    let (status, kind, body) = match route(&head) {
        Route::Metrics => (
            "200 OK",
            CONTENT_TYPE,
            shared.metrics.render(&shared.snapshot()),
        ),
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "Only /metrics is served here.\n".to_string(),
        ),
        Route::NotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "Only GET is served here.\n".to_string(),
        ),
        Route::Bad => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "Not an HTTP request.\n".to_string(),
        ),
    };
    let head_only = head.starts_with("HEAD ");
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        answer.push_str(&body);
    }
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// The request head up to its blank line, or `None` if it is too long,
/// not all there within [`READ_TIMEOUT`], or not text.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    if method != "GET" && method != "HEAD" {
        return Route::NotAllowed;
    }
    // Prometheus may add a query string; it changes nothing here.
    match target.split('?').next() {
        Some("/metrics") => Route::Metrics,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request line decides: GET or HEAD of /metrics (any query), a
    /// 404 elsewhere, a 405 for other methods, 400 for what is not HTTP.
    #[test]
    fn routes() {
        assert_eq!(route("GET /metrics HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(route("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route("IAMAT a +1+1 1\n"), Route::Bad);
        assert_eq!(route(""), Route::Bad);
    }
}
