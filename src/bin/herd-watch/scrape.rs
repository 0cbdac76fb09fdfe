//! One scrape of one server's metrics port: a plain HTTP/1.0 GET over
//! `std::net`, and the text format read into samples.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a server may take to connect, or to send its page, before
/// the view calls it down. A refresh waits for the slowest server, so
/// this bounds how late a frame can be.
const TIMEOUT: Duration = Duration::from_millis(600);
/// The largest page read; a herd server's is a few KiB.
const MAX_PAGE: u64 = 1 << 20;

/// A server's samples by name and labels, as the page spells them:
/// `herd_link_up{link="Juzang"}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    /// The sample of `name` without labels, or with exactly `label`
    /// (`link="Juzang"`).
    pub fn get(&self, name: &str, label: Option<&str>) -> Option<f64> {
        let key = match label {
            Some(label) => format!("{name}{{{label}}}"),
            None => name.to_string(),
        };
        self.0.get(&key).copied()
    }

    /// The sum over every label of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }
}

/// An error as the screen shows it: short, without the OS's number.
fn short(e: std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_lowercase(),
        None => text.to_lowercase(),
    }
}

/// Reads `http://addr/metrics`.
pub fn scrape(addr: SocketAddr) -> Result<Samples, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(short)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(short)?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .map_err(short)?;
    let mut answer = String::new();
    stream
        .take(MAX_PAGE)
        .read_to_string(&mut answer)
        .map_err(short)?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    Ok(parse(body))
}

/// The samples of a page in the text format; comments and lines that
/// are not `key value` are skipped.
pub fn parse(page: &str) -> Samples {
    Samples(
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples are found by name and label; sums add every label.
    #[test]
    fn reads_samples() {
        let s = parse(
            "# HELP x y\n# TYPE herd_link_up gauge\nherd_link_up{link=\"A\"} 1\n\
             herd_link_up{link=\"B\"} 0\nherd_clients_stored 12\nbroken\n",
        );
        assert_eq!(s.get("herd_link_up", Some("link=\"A\"")), Some(1.0));
        assert_eq!(s.get("herd_clients_stored", None), Some(12.0));
        assert_eq!(s.sum("herd_link_up"), 1.0);
        assert_eq!(s.get("herd_link_up", Some("link=\"C\"")), None);
    }
}
