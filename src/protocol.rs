//! The wire protocol: parsing and formatting lines, and nothing else.
//!
//! This module never touches a socket or a clock. The server reads a line,
//! hands the bytes here, gets back a [`ClientCommand`] or [`PeerCommand`]
//! value, and acts on it; a line that is not a valid command is the value
//! `Invalid`, not an error path, so the `? <line>` reply is one `match` arm.
//! Everything here is therefore testable with plain strings (see the tests
//! at the bottom, which walk through the protocol below, src/protocol.md).
//!
//! ```text
//! IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503
//! AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503
//! WHATSAT kiwi.cs.ucla.edu 10 5
//! ```
#![doc = include_str!("protocol.md")]

use std::fmt;

/// A point in time as integer nanoseconds since the POSIX epoch.
///
/// Client times are parsed straight from their decimal text into integers,
/// never through `f64`: a binary float cannot hold `1621464827.959498503`
/// exactly, and src/protocol.md#iamat-here-i-am asks for the difference to the nanosecond.
/// `i128` leaves room for any time a client may send without overflow.
pub type Nanos = i128;

/// The current time as nanoseconds since the epoch.
pub fn now_nanos() -> Nanos {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since.as_nanos() as Nanos
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The longest line src/protocol.md#lines asks a server to take, in bytes
/// without its `\n` (`--max-line` can raise or lower it).
pub const MAX_LINE: usize = 64 * 1024;

/// The protocol's white space: space, tab, CR, LF, form feed and vertical
/// tab. Note that Rust's `is_ascii_whitespace` leaves out vertical tab, so
/// it cannot be used here.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c | 0x0b)
}

/// The most fields [`fields`] keeps: one more than any line of the
/// protocol has (an AT line has six), so a longer line still shows as too
/// long and matches no pattern.
const MAX_FIELDS: usize = 7;

/// The fields of a line, kept in place: a relaying server splits every
/// line it receives, and collecting them into a `Vec` was an allocation
/// per line that showed in profiles.
pub struct Fields<'a> {
    found: [&'a str; MAX_FIELDS],
    len: usize,
}

impl<'a> Fields<'a> {
    /// The fields, at most seven of them.
    pub fn as_slice(&self) -> &[&'a str] {
        &self.found[..self.len]
    }
}

/// Splits a line into its fields, separated by runs of white space.
pub fn fields(line: &str) -> Fields<'_> {
    let mut found = Fields {
        found: [""; MAX_FIELDS],
        len: 0,
    };
    let words = line
        .split(|c: char| c.is_ascii() && is_space(c as u8))
        .filter(|f| !f.is_empty());
    for (slot, word) in found.found.iter_mut().zip(words) {
        *slot = word;
        found.len += 1;
    }
    found
}

/// A location as the client wrote it, e.g. `+34.068930-118.445127`.
///
/// The text is kept so that replies copy it byte for byte and the Places
/// request uses exactly the digits the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Latitude with its sign, e.g. `+34.068930`.
    pub lat: String,
    /// Longitude with its sign, e.g. `-118.445127`.
    pub lng: String,
}

impl Location {
    /// Parses `[+-]DD[.ddd][+-]DDD[.ddd]`, checking the ranges exactly on
    /// the decimal text (so `+90.0000000001` is refused, where an `f64`
    /// comparison would round it to 90 and accept it).
    pub fn parse(text: &str) -> Option<Location> {
        let b = text.as_bytes();
        if b.is_empty() || !matches!(b[0], b'+' | b'-') {
            return None;
        }
        // The longitude starts at the second sign.
        let split = 1 + b[1..].iter().position(|&c| c == b'+' || c == b'-')?;
        let (lat, lng) = text.split_at(split);
        if !in_range(lat, 90) || !in_range(lng, 180) {
            return None;
        }
        Some(Location {
            lat: lat.to_string(),
            lng: lng.to_string(),
        })
    }

    /// The `lat,lng` pair for the Places request: the client's digits
    /// without `+` signs, as src/protocol.md#whatsat-what-is-near asks.
    pub fn places_param(&self) -> String {
        format!(
            "{},{}",
            self.lat.trim_start_matches('+'),
            self.lng.trim_start_matches('+')
        )
    }

    /// The original text, e.g. `+34.068930-118.445127`.
    pub fn text(&self) -> String {
        format!("{}{}", self.lat, self.lng)
    }
}

/// Whether a signed decimal like `-118.445127` is well formed and its
/// magnitude is at most `limit`.
fn in_range(signed: &str, limit: u32) -> bool {
    let Some((int, frac)) = split_decimal(&signed[1..]) else {
        return false;
    };
    // Leading zeros are allowed (`+034.5`), so compare by value, with a
    // cap on length so the parse below cannot overflow.
    let int = int.trim_start_matches('0');
    if int.len() > 3 {
        return false;
    }
    let whole: u32 = if int.is_empty() {
        0
    } else {
        int.parse().unwrap_or(u32::MAX)
    };
    whole < limit || (whole == limit && frac.bytes().all(|d| d == b'0'))
}

/// Splits `DIGITS[.DIGITS]` into its whole and fraction digits. Both parts
/// must be non-empty when present: `5.` and `.5` are not accepted.
fn split_decimal(text: &str) -> Option<(&str, &str)> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) if !f.is_empty() => (i, f),
        Some(_) => return None,
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|d| d.is_ascii_digit());
    (!int.is_empty() && digits(int) && digits(frac)).then_some((int, frac))
}

/// Parses a client time, `DIGITS[.DIGITS]` POSIX seconds, into nanoseconds.
/// Digits past the ninth decimal are dropped, as src/protocol.md#iamat-here-i-am says.
/// Signs, exponents, `inf` and `nan` are refused, as is a value too large
/// for [`Nanos`].
pub fn parse_time(text: &str) -> Option<Nanos> {
    let (int, frac) = split_decimal(text)?;
    let mut secs: i128 = 0;
    for d in int.bytes() {
        secs = secs.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
    }
    let mut nanos: i128 = 0;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |d| d - b'0');
        nanos = nanos * 10 + i128::from(d);
    }
    secs.checked_mul(NANOS_PER_SEC)?.checked_add(nanos)
}

/// Formats a time difference as src/protocol.md#iamat-here-i-am wants it: a sign, always,
/// then seconds with exactly nine decimals (`+0.263873386`, `-1.000000000`).
pub fn format_delta(delta: Nanos) -> String {
    let sign = if delta < 0 { '-' } else { '+' };
    let ns = delta.unsigned_abs();
    let per_sec = NANOS_PER_SEC as u128;
    format!("{sign}{}.{:09}", ns / per_sec, ns % per_sec)
}

/// Whether `text` is a time difference as a server writes it: a sign, then
/// `DIGITS[.DIGITS]`. Used to check AT lines arriving from neighbours.
fn is_delta(text: &str) -> bool {
    matches!(text.as_bytes().first(), Some(b'+' | b'-')) && split_decimal(&text[1..]).is_some()
}

/// A location update: the data of an IAMAT, and of the AT line a server
/// makes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The client id, any run of non-white-space characters.
    pub client: String,
    /// Where the client says it is.
    pub location: Location,
    /// The client's time, exactly as sent (copied into the AT line).
    pub time_text: String,
    /// The client's time in nanoseconds, for ordering and the difference.
    pub time: Nanos,
}

/// A location record as stored and flooded: the whole AT line, plus the
/// parsed fields the store and the Places request need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtRecord {
    /// The AT line without its `\n`, exactly as the first server made it.
    pub line: String,
    /// The update it carries.
    pub update: Update,
}

impl AtRecord {
    /// Makes the AT line for an IAMAT that `server` received at `received`
    /// (nanoseconds since the epoch).
    pub fn new(server: &str, received: Nanos, update: Update) -> AtRecord {
        let line = format!(
            "AT {server} {} {} {} {}",
            format_delta(received - update.time),
            update.client,
            update.location.text(),
            update.time_text
        );
        AtRecord { line, update }
    }

    /// The server that made this record: the second field of its line.
    /// Server names hold no space (the herd file refuses them).
    pub fn origin(&self) -> &str {
        self.line
            .strip_prefix("AT ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default()
    }

    /// Whether this record should replace `other` for the same client: a
    /// later client time wins, and for equal times the byte-wise greater AT
    /// line, so that every server settles on the same record whatever order
    /// the updates arrive in (src/protocol.md#iamat-here-i-am).
    pub fn is_newer_than(&self, other: &AtRecord) -> bool {
        (self.update.time, self.line.as_bytes()) > (other.update.time, other.line.as_bytes())
    }
}

/// A WHATSAT query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsAt {
    /// The client whose surroundings are asked for.
    pub client: String,
    /// The radius in whole metres, as sent to Places.
    pub radius_m: u32,
    /// How many places at most the reply may hold.
    pub bound: usize,
}

/// What a line on the client port asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// An empty or all-white-space line: no reply at all.
    Blank,
    /// `IAMAT client location time`.
    IAmAt(Update),
    /// `WHATSAT client radius bound`.
    WhatsAt(WhatsAt),
    /// Anything else: the reply is `? ` and the line.
    Invalid,
}

/// What a line on the peer port carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    /// An empty or all-white-space line: ignored.
    Blank,
    /// A valid AT line from a neighbour.
    At(AtRecord),
    /// `HELLO <server>`: the link says which neighbour it is, a hint for
    /// not sending its records back to it (never proof of anything).
    Hello(String),
    /// Anything else: the reply is `? ` and the line.
    Invalid,
}

/// Parses one line from a client (without its `\n`).
pub fn parse_client_line(line: &str) -> ClientCommand {
    let f = fields(line);
    match f.as_slice() {
        [] => ClientCommand::Blank,
        ["IAMAT", client, location, time] => match parse_update(client, location, time) {
            Some(update) => ClientCommand::IAmAt(update),
            None => ClientCommand::Invalid,
        },
        ["WHATSAT", client, radius, bound] => match (parse_radius(radius), parse_bound(bound)) {
            (Some(radius_m), Some(bound)) => ClientCommand::WhatsAt(WhatsAt {
                client: client.to_string(),
                radius_m,
                bound,
            }),
            _ => ClientCommand::Invalid,
        },
        _ => ClientCommand::Invalid,
    }
}

/// Parses one line from a neighbour (without its `\n`). `known_server`
/// says whether a server name belongs to the herd: an AT naming a server
/// the herd does not have is invalid (src/protocol.md#flooding).
pub fn parse_peer_line(line: &str, known_server: impl Fn(&str) -> bool) -> PeerCommand {
    let f = fields(line);
    match f.as_slice() {
        [] => PeerCommand::Blank,
        ["HELLO", server] if known_server(server) => PeerCommand::Hello(server.to_string()),
        ["AT", server, delta, client, location, time]
            if known_server(server) && is_delta(delta) =>
        {
            match parse_update(client, location, time) {
                // The stored line is rebuilt from the fields with single
                // spaces, so stray white space from a neighbour never
                // reaches a WHATSAT reply.
                Some(update) => PeerCommand::At(AtRecord {
                    line: f.as_slice().join(" "),
                    update,
                }),
                None => PeerCommand::Invalid,
            }
        }
        _ => PeerCommand::Invalid,
    }
}

/// A guess at the client of a line shaped like a stored AT line: `AT`,
/// then five pieces split at single spaces (possibly empty ones), the
/// client the third. Nothing is checked: this is only what
/// [`crate::store::Store::holds_line`] is asked with, which compares the
/// whole line, so a wrong guess costs one look-up. `None` for any other
/// shape, which then takes the whole parse.
pub fn at_line_client(line: &str) -> Option<&str> {
    let mut f = line.strip_prefix("AT ")?.split(' ');
    let client = f.nth(2)?;
    (f.count() == 2).then_some(client)
}

fn parse_update(client: &str, location: &str, time: &str) -> Option<Update> {
    Some(Update {
        client: client.to_string(),
        location: Location::parse(location)?,
        time_text: time.to_string(),
        time: parse_time(time)?,
    })
}

/// Parses a radius in kilometres (`10`, `0.5`; greater than 0, at most 50)
/// into whole metres, rounding half up. Done on the decimal text, so
/// `50.0000001` is refused and `0.0005` rounds to 1 m exactly.
pub fn parse_radius(text: &str) -> Option<u32> {
    let (int, frac) = split_decimal(text)?;
    let int = int.trim_start_matches('0');
    if int.len() > 2 {
        return None;
    }
    let km: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let all_zero = frac.bytes().all(|d| d == b'0');
    if km > 50 || (km == 50 && !all_zero) || (km == 0 && all_zero) {
        return None;
    }
    let digit = |i: usize| frac.as_bytes().get(i).map_or(0, |d| u32::from(d - b'0'));
    let metres = km * 1000 + digit(0) * 100 + digit(1) * 10 + digit(2);
    Some(metres + u32::from(digit(3) >= 5))
}

/// Parses the bound on the number of places: a whole number from 1 to 20.
pub fn parse_bound(text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    let n: usize = text.parse().ok()?;
    (1..=20).contains(&n).then_some(n)
}

/// The reply to an invalid line: `? ` and the line as received.
pub fn invalid_reply(line: &str) -> String {
    format!("? {line}\n")
}

/// Formats a WHATSAT reply: the stored AT line, the Places JSON, and the
/// blank line that ends it, ready to go out in one write.
pub fn whatsat_reply(at_line: &str, places_json: &str) -> String {
    format!("{at_line}\n{places_json}\n\n")
}

/// A line as the log shows it: `\n`, `\r` and other control characters
/// escaped, so one log entry is always one line of the log file.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Copy runs of ordinary characters in one go: a WHATSAT reply is
        // kilobytes long, and it is logged whole.
        let mut rest = self.0;
        // Searched byte by byte: any byte that is not printable ASCII may
        // start a character to escape (C1 controls are two bytes long).
        while let Some(at) = rest
            .bytes()
            .position(|b| !(0x20..0x7f).contains(&b) || b == b'\\')
        {
            let c = rest[at..].chars().next().expect("found above");
            if !(c.is_control() || c == '\\') {
                // Printable text beyond ASCII: copy it as it is.
                f.write_str(&rest[..at + c.len_utf8()])?;
                rest = &rest[at + c.len_utf8()..];
                continue;
            }
            f.write_str(&rest[..at])?;
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                c => write!(f, "\\x{:02x}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(line: &str) -> Update {
        match parse_client_line(line) {
            ClientCommand::IAmAt(u) => u,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    /// The example IAMAT of src/protocol.md#iamat-here-i-am parses with its fields intact.
    #[test]
    fn iamat_example() {
        let u = update("IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503");
        assert_eq!(u.client, "kiwi.cs.ucla.edu");
        assert_eq!(u.location.lat, "+34.068930");
        assert_eq!(u.location.lng, "-118.445127");
        assert_eq!(u.time, 1_621_464_827_959_498_503);
        assert_eq!(u.time_text, "1621464827.959498503");
    }

    /// The AT line is built from the exact nanosecond difference and copies
    /// the client's fields byte for byte.
    #[test]
    fn at_line_example() {
        let u = update("IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503");
        let received = 1_621_464_828_223_371_889;
        let at = AtRecord::new("Riley", received, u);
        assert_eq!(
            at.line,
            "AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503"
        );
    }

    /// Differences keep their sign and exactly nine decimals, including
    /// zero, negative and sub-second negative values.
    #[test]
    fn delta_format() {
        assert_eq!(format_delta(0), "+0.000000000");
        assert_eq!(format_delta(1), "+0.000000001");
        assert_eq!(format_delta(-1), "-0.000000001");
        assert_eq!(format_delta(-1_500_000_000), "-1.500000000");
        assert_eq!(format_delta(12_000_000_000), "+12.000000000");
        assert!(format_delta(i128::MIN + 1).len() > 30);
    }

    /// Times parse exactly; digits past the ninth are dropped, not rounded.
    #[test]
    fn time_parse() {
        assert_eq!(parse_time("1621464827"), Some(1_621_464_827_000_000_000));
        assert_eq!(parse_time("0.5"), Some(500_000_000));
        assert_eq!(parse_time("1.9999999999"), Some(1_999_999_999));
        assert_eq!(parse_time("007"), Some(7_000_000_000));
        for bad in [
            "", "-1", "+1", "1e9", "inf", "nan", "1.", ".5", "1.2.3", "0x10", "1,5", "١",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
        // Too big for i128 nanoseconds: refused, not wrapped.
        assert_eq!(parse_time(&"9".repeat(40)), None);
        assert!(parse_time(&"9".repeat(29)).is_some());
    }

    /// Locations need both signs and stay within the ranges, checked
    /// exactly on the text.
    #[test]
    fn location_parse() {
        let ok = [
            "+34.068930-118.445127",
            "-90+180",
            "+90.000-180.0",
            "+0.0+0.0",
            "+00034.5-0118.2",
            "+1-2",
        ];
        for text in ok {
            let loc = Location::parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(loc.text(), text);
        }
        let bad = [
            "",
            "34.068930-118.445127",
            "+34.068930",
            "+34.068930118.445127",
            "+90.0000001+0",
            "+91+0",
            "+0+180.5",
            "+0-181",
            "+34.-118",
            "+.5-118",
            "++34-118",
            "+34-118-5",
            "+34e1-118",
            "+34.0-118.0x",
            "+1000-0",
        ];
        for text in bad {
            assert_eq!(Location::parse(text), None, "{text}");
        }
    }

    /// The Places location drops `+` signs and keeps the client's digits.
    #[test]
    fn places_param() {
        let loc = Location::parse("+34.068930-118.445127").unwrap();
        assert_eq!(loc.places_param(), "34.068930,-118.445127");
        let loc = Location::parse("-33.8670+151.1957").unwrap();
        assert_eq!(loc.places_param(), "-33.8670,151.1957");
    }

    /// Any white space src/protocol.md#lines names separates fields, including vertical tab and
    /// form feed, and leading or trailing white space is ignored.
    #[test]
    fn white_space() {
        let u = update("\t IAMAT\x0bkiwi\x0c+1+2   3\r");
        assert_eq!((u.client.as_str(), u.time), ("kiwi", 3_000_000_000));
        assert_eq!(parse_client_line(""), ClientCommand::Blank);
        assert_eq!(parse_client_line(" \t\r\x0b\x0c"), ClientCommand::Blank);
        // A non-breaking space is not protocol white space: it is part of
        // the client id.
        let u = update("IAMAT a\u{a0}b +1+2 3");
        assert_eq!(u.client, "a\u{a0}b");
    }

    /// WHATSAT takes radius in (0, 50] km and a bound in 1..=20.
    #[test]
    fn whatsat_parse() {
        let w = |line: &str| match parse_client_line(line) {
            ClientCommand::WhatsAt(w) => Some((w.client, w.radius_m, w.bound)),
            _ => None,
        };
        assert_eq!(w("WHATSAT kiwi 10 5"), Some(("kiwi".into(), 10_000, 5)));
        assert_eq!(w("WHATSAT kiwi 0.5 1"), Some(("kiwi".into(), 500, 1)));
        assert_eq!(w("WHATSAT kiwi 50 20"), Some(("kiwi".into(), 50_000, 20)));
        assert_eq!(
            w("WHATSAT kiwi 50.000 20"),
            Some(("kiwi".into(), 50_000, 20))
        );
        assert_eq!(w("WHATSAT kiwi 0.0005 1"), Some(("kiwi".into(), 1, 1)));
        assert_eq!(w("WHATSAT kiwi 1.2344 1"), Some(("kiwi".into(), 1_234, 1)));
        assert_eq!(w("WHATSAT kiwi 1.2345 1"), Some(("kiwi".into(), 1_235, 1)));
        for bad in [
            "WHATSAT kiwi 0 5",
            "WHATSAT kiwi 0.0 5",
            "WHATSAT kiwi 50.1 5",
            "WHATSAT kiwi 51 5",
            "WHATSAT kiwi -1 5",
            "WHATSAT kiwi 10 0",
            "WHATSAT kiwi 10 21",
            "WHATSAT kiwi 10 5.0",
            "WHATSAT kiwi 10 -5",
            "WHATSAT kiwi 1e1 5",
            "WHATSAT kiwi nan 5",
            "WHATSAT kiwi 10",
            "WHATSAT kiwi 10 5 extra",
            "whatsat kiwi 10 5",
        ] {
            assert_eq!(w(bad), None, "{bad}");
        }
    }

    /// Lines that are not valid commands are `Invalid`, whatever they are.
    #[test]
    fn invalid_client_lines() {
        for bad in [
            "HELLO",
            "IAMAT",
            "IAMAT kiwi +34-118",
            "IAMAT kiwi +34-118 1 extra",
            "iamat kiwi +34-118 1",
            "IAMAT kiwi +34-118 -1",
            "AT Riley +0.1 kiwi +34-118 1",
            "IAMAT kiwi 34-118 1",
        ] {
            assert_eq!(parse_client_line(bad), ClientCommand::Invalid, "{bad}");
        }
        assert_eq!(invalid_reply("HELLO there"), "? HELLO there\n");
    }

    /// A neighbour's AT line is accepted only with a known server, a signed
    /// difference, and a valid location and time.
    #[test]
    fn peer_lines() {
        let known = |s: &str| s == "Riley";
        let line = "AT Riley +0.263873386 kiwi +34.068930-118.445127 1621464827.959498503";
        match parse_peer_line(line, known) {
            PeerCommand::At(at) => {
                assert_eq!(at.line, line);
                assert_eq!(at.update.client, "kiwi");
            }
            other => panic!("{other:?}"),
        }
        // Extra white space is normalised away in the stored line.
        match parse_peer_line(&format!("  {}\r", line.replace(' ', "\t ")), known) {
            PeerCommand::At(at) => assert_eq!(at.line, line),
            other => panic!("{other:?}"),
        }
        for bad in [
            "AT Nobody +0.1 kiwi +34-118 1",
            "AT Riley 0.1 kiwi +34-118 1",
            "AT Riley +x kiwi +34-118 1",
            "AT Riley +0.1 kiwi +34 1",
            "AT Riley +0.1 kiwi +34-118 x",
            "AT Riley +0.1 kiwi +34-118",
            "IAMAT kiwi +34-118 1",
            "WHATSAT kiwi 10 5",
        ] {
            assert_eq!(parse_peer_line(bad, known), PeerCommand::Invalid, "{bad}");
        }
        assert_eq!(parse_peer_line(" ", known), PeerCommand::Blank);
    }

    /// The newer rule: later time wins; equal times go to the greater line.
    #[test]
    fn newer_rule() {
        let rec = |server: &str, t: &str| {
            let u = update(&format!("IAMAT kiwi +1+2 {t}"));
            AtRecord::new(server, 10_000_000_000, u)
        };
        assert!(rec("A", "2").is_newer_than(&rec("B", "1")));
        assert!(!rec("B", "1").is_newer_than(&rec("A", "2")));
        // Same time: "AT B ..." > "AT A ..." byte-wise.
        assert!(rec("B", "1").is_newer_than(&rec("A", "1")));
        assert!(!rec("A", "1").is_newer_than(&rec("B", "1")));
        assert!(!rec("A", "1").is_newer_than(&rec("A", "1")));
        // "1.0" and "1" are the same time; the lines differ, so one wins.
        assert!(rec("A", "1.0").is_newer_than(&rec("A", "1")));
    }

    /// The client of a line shaped like a stored AT line is found without
    /// reading the other fields; a line of five pieces with an empty one
    /// still gives a guess (the store's comparison of whole lines turns
    /// it down); any other count of pieces, or another command, gives
    /// none, and takes the whole parse.
    #[test]
    fn client_of_a_stored_shape_line() {
        assert_eq!(at_line_client("AT Riley +0.2 kiwi +1+2 17.5"), Some("kiwi"));
        assert_eq!(at_line_client("AT Riley x kiwi y z"), Some("kiwi"));
        assert_eq!(at_line_client("AT Riley  kiwi +1+2 17.5"), Some("kiwi"));
        assert_eq!(at_line_client("AT a b c d "), Some("c"));
        for other in [
            "AT Riley +0.2 kiwi +1+2",
            "AT Riley +0.2 kiwi +1+2 17.5 extra",
            "AT  Riley +0.2 kiwi +1+2 17.5",
            "AT Riley +0.2  kiwi +1+2 17.5",
            "AT\tRiley +0.2 kiwi +1+2 17.5",
            "IAMAT kiwi +1+2 17.5",
            "AT",
            "",
        ] {
            assert_eq!(at_line_client(other), None, "{other:?}");
        }
    }

    /// The log escaping keeps one entry on one line.
    #[test]
    fn escaped() {
        assert_eq!(
            Escaped("a\nb\r\t\\\x07").to_string(),
            "a\\nb\\r\\t\\\\\\x07"
        );
        assert_eq!(Escaped("plain é \u{85}end").to_string(), "plain é \\x85end");
        assert_eq!(Escaped("").to_string(), "");
    }
}
