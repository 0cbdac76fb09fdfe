//! The little HTTP/1.1 the stand-in needs, in the herd's own pattern: a
//! thread per connection reads a request (its line, its headers and a
//! `Content-Length` body), has it answered, writes the answer with a
//! `Content-Length` in one write, and reads the next one while the client
//! keeps the connection open.
//!
//! This replaced tiny_http. tiny_http 0.12 serves each connection as a
//! task of a thread pool, and its count of idle threads can be stale: when
//! two connections arrive together, the second task can be queued for a
//! thread that is about to take the first, and since a keep-alive
//! connection is one long task, the queued one waits, unread, until some
//! other connection ends. Under 16 keep-alive clients, about one WHATSAT
//! in 2,500 never got its Places answer. With a thread per connection
//! there is no queue to wait in.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The longest request line or header line read.
const MAX_LINE: usize = 8 * 1024;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 100;
/// The most of a body kept; the herd's are about 150 bytes. The rest of a
/// longer one is read and dropped.
pub const MAX_BODY: u64 = 64 * 1024;
/// A connection idle this long is closed (clients reconnect), so threads
/// of a stopped stub do not wait for ever on a client that keeps its
/// connection.
const IDLE: Duration = Duration::from_secs(30);

/// A request as read off the connection.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Every header, names as sent, in order.
    pub headers: Vec<(String, String)>,
    /// At most [`MAX_BODY`] bytes of the body.
    pub body: Vec<u8>,
    /// HTTP/1.0, or `Connection: close`: close after the answer.
    pub close: bool,
}

/// An answer: status, content type and body.
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Serves one connection until the client closes it, asks to, sends
/// something that is not HTTP, or stays idle past [`IDLE`].
pub fn serve(stream: TcpStream, answer: impl Fn(HttpRequest) -> HttpResponse) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = writer;
    let mut reader = BufReader::new(stream);
    // Anything that is not a request ends the connection without a word:
    // the stand-in only ever talks to HTTP clients.
    while let Ok(Some(request)) = read_request(&mut reader) {
        let close = request.close;
        let response = answer(request);
        if write_response(&mut writer, &response, close).is_err() || close {
            return;
        }
    }
}

/// Reads the next request; `None` if the connection ended cleanly first.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    // Empty lines before a request are allowed (RFC 9112 §2.2).
    loop {
        line.clear();
        if read_line(reader, &mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_http("malformed request line"));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut close = version != "HTTP/1.1";
    let mut headers = Vec::new();
    loop {
        line.clear();
        if read_line(reader, &mut line)? == 0 {
            return Err(not_http("end of input inside the headers"));
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(not_http("too many headers"));
        }
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| not_http("header without a colon"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _): &&(String, String)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    match header("connection").map(str::to_ascii_lowercase).as_deref() {
        Some("close") => close = true,
        Some("keep-alive") => close = false,
        _ => {}
    }
    if header("transfer-encoding").is_some() {
        return Err(not_http("chunked bodies are not served"));
    }
    let length: u64 = match header("content-length") {
        Some(value) => value.parse().map_err(|_| not_http("bad Content-Length"))?,
        None => 0,
    };
    let mut body = Vec::new();
    reader.take(length.min(MAX_BODY)).read_to_end(&mut body)?;
    if length > MAX_BODY {
        io::copy(&mut reader.take(length - MAX_BODY), &mut io::sink())?;
    }
    Ok(Some(HttpRequest {
        method,
        target,
        headers,
        body,
        close,
    }))
}

/// Reads a line of at most [`MAX_LINE`] bytes into `line`; 0 at the end
/// of input.
fn read_line(reader: &mut impl BufRead, line: &mut String) -> io::Result<usize> {
    let read = reader.take(MAX_LINE as u64 + 1).read_line(line)?;
    if read > MAX_LINE {
        return Err(not_http("line too long"));
    }
    Ok(read)
}

fn not_http(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// Writes an answer, head and body, in one write.
fn write_response(writer: &mut impl Write, response: &HttpResponse, close: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&response.body);
    writer.write_all(out.as_bytes())?;
    writer.flush()
}

/// The reason phrase of the statuses the stand-in sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
