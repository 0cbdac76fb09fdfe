//! Link authentication: proving knowledge of a shared herd secret.
//!
//! Clients cannot send AT lines on the client port, but anyone who can
//! reach a peer port could inject them. With a herd secret (off by
//! default, so the plain protocol keeps working) a server accepts AT lines
//! on its peer port only from a connection that has proved it knows the
//! secret, by one challenge and one answer before anything else:
//!
//! ```text
//! server (peer port)             neighbour's link
//!   CHALLENGE <32 hex digits>  ->
//!                              <-  PROOF <its name> <64 hex digits>
//!   ... AT lines follow as usual ...
//! ```
//!
//! The proof is HMAC-SHA256 over a fixed label, the challenge and the
//! name, keyed with the secret. The challenge is fresh randomness for
//! every connection, so a recorded proof is useless on another one, and
//! the name is bound in, so a proof cannot be replayed under another
//! name. The secret itself never crosses the wire. This authenticates the
//! link, it does not encrypt it: anyone on the path can still read the AT
//! lines (which say where clients are). Use a private network
//! (`peer_host`) for that.
//!
//! Both halves of the handshake live here: [`challenge`], run by a
//! server's peer-port connection, and [`prove`], run by a link before it
//! sends anything.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Separates this use of the secret from any other.
const LABEL: &[u8] = b"proxy-herd link v1\n";

/// How long either side of a link waits for the other's half of the
/// handshake. A connection to the peer port that has not proved the
/// secret by then is closed, so strangers cannot hold its threads.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest challenge line a link reads; a real one is 43 bytes.
const MAX_CHALLENGE_LINE: usize = 256;

/// Why a handshake failed, on either side. Shown in the log line that
/// says the link was refused or could not prove itself.
#[derive(Debug)]
pub enum HandshakeError {
    /// The operating system gave no randomness for a challenge.
    NoRandomness(io::Error),
    /// The socket failed, or the other side said nothing in time.
    Silent(io::Error),
    /// The other side closed the connection first.
    Closed,
    /// A line too long to be a challenge or a proof.
    TooLong,
    /// Something else came where a challenge or a proof belonged.
    Unexpected(String),
    /// A proof that does not match, or for a server not in the herd.
    WrongProof(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NoRandomness(e) => write!(f, "no randomness: {e}"),
            HandshakeError::Silent(e) => write!(f, "nothing in time ({e})"),
            HandshakeError::Closed => f.write_str("closed before the handshake ended"),
            HandshakeError::TooLong => f.write_str("sent an over-long line"),
            HandshakeError::Unexpected(line) => write!(f, "sent {line:?} instead"),
            HandshakeError::WrongProof(name) => write!(f, "wrong proof for {name:?}"),
        }
    }
}

/// The server's half, on a new peer-port connection: sends a fresh
/// challenge and checks the proof that comes back. The proof line is
/// read with `next_line`, the connection's own line reader, so AT lines
/// sent right behind it stay buffered for the connection. `in_herd` says
/// whether a name belongs to the herd. Returns the proven server's name.
pub fn challenge(
    stream: &TcpStream,
    secret: &HerdSecret,
    in_herd: impl Fn(&str) -> bool,
    next_line: impl FnOnce() -> Result<Vec<u8>, HandshakeError>,
) -> Result<String, HandshakeError> {
    let challenge = new_challenge().map_err(HandshakeError::NoRandomness)?;
    (&*stream)
        .write_all(challenge_line(&challenge).as_bytes())
        .map_err(HandshakeError::Silent)?;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(HandshakeError::Silent)?;
    let raw = next_line()?;
    let text = String::from_utf8_lossy(&raw);
    let printable = || crate::protocol::Escaped(&text).to_string();
    let (name, proof) =
        parse_proof(&text).ok_or_else(|| HandshakeError::Unexpected(printable()))?;
    if !in_herd(name) || !secret.verify(&challenge, name, proof) {
        return Err(HandshakeError::WrongProof(
            crate::protocol::Escaped(name).to_string(),
        ));
    }
    stream
        .set_read_timeout(None)
        .map_err(HandshakeError::Silent)?;
    Ok(name.to_string())
}

/// The link's half, before it sends anything: reads the neighbour's
/// challenge and answers with the proof that `me` knows the secret. The
/// challenge is read a byte at a time, so that nothing after its newline
/// is taken from the socket here.
pub fn prove(stream: &TcpStream, secret: &HerdSecret, me: &str) -> Result<(), HandshakeError> {
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(HandshakeError::Silent)?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match (&*stream).read(&mut byte) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == MAX_CHALLENGE_LINE => return Err(HandshakeError::TooLong),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeError::Silent(e)),
        }
    }
    let text = String::from_utf8_lossy(&line);
    let challenge = parse_challenge(&text)
        .ok_or_else(|| HandshakeError::Unexpected(crate::protocol::Escaped(&text).to_string()))?;
    (&*stream)
        .write_all(proof_line(me, &secret.proof(challenge, me)).as_bytes())
        .map_err(HandshakeError::Silent)?;
    stream
        .set_read_timeout(None)
        .map_err(HandshakeError::Silent)
}

/// The secret a herd's servers share. Its `Debug` never shows it.
#[derive(Clone)]
pub struct HerdSecret(Arc<Vec<u8>>);

impl fmt::Debug for HerdSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HerdSecret(..)")
    }
}

/// Why a herd secret cannot be had.
#[derive(Debug)]
pub enum SecretError {
    /// The secret is empty: every link would prove it.
    Empty,
    /// The secret file cannot be read.
    Unreadable(std::path::PathBuf, std::io::Error),
    /// The secret file holds an empty secret.
    EmptyFile(std::path::PathBuf),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => f.write_str("the herd secret is empty"),
            SecretError::Unreadable(path, e) => {
                write!(f, "cannot read herd secret file {}: {e}", path.display())
            }
            SecretError::EmptyFile(path) => {
                write!(
                    f,
                    "herd secret file {}: the herd secret is empty",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for SecretError {}

impl HerdSecret {
    /// A secret from its bytes; an empty one is refused.
    pub fn new(bytes: &[u8]) -> Result<HerdSecret, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(HerdSecret(Arc::new(bytes.to_vec())))
    }

    /// Reads a secret file; one trailing newline (as editors add) is not
    /// part of the secret.
    pub fn from_file(path: &Path) -> Result<HerdSecret, SecretError> {
        let mut bytes =
            std::fs::read(path).map_err(|e| SecretError::Unreadable(path.to_path_buf(), e))?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        HerdSecret::new(&bytes).map_err(|_| SecretError::EmptyFile(path.to_path_buf()))
    }

    fn mac(&self, challenge: &str, name: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(LABEL);
        mac.update(challenge.as_bytes());
        mac.update(b"\n");
        mac.update(name.as_bytes());
        mac
    }

    /// The proof that `name` knows the secret, for this challenge.
    pub fn proof(&self, challenge: &str, name: &str) -> String {
        hex(&self.mac(challenge, name).finalize().into_bytes())
    }

    /// Whether `proof` is right for `name` and `challenge`. The comparison
    /// takes the same time however many digits match.
    pub fn verify(&self, challenge: &str, name: &str, proof: &str) -> bool {
        match unhex(proof) {
            Some(tag) => self.mac(challenge, name).verify_slice(&tag).is_ok(),
            None => false,
        }
    }
}

/// A fresh random challenge: 16 bytes from the operating system, in hex.
pub fn new_challenge() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex(&bytes))
}

/// The line a server sends first on its peer port.
pub fn challenge_line(challenge: &str) -> String {
    format!("CHALLENGE {challenge}\n")
}

/// The challenge in a `CHALLENGE` line.
pub fn parse_challenge(line: &str) -> Option<&str> {
    match crate::protocol::fields(line).as_slice() {
        ["CHALLENGE", challenge] if unhex(challenge).is_some() => Some(challenge),
        _ => None,
    }
}

/// The line a link sends in answer.
pub fn proof_line(name: &str, proof: &str) -> String {
    format!("PROOF {name} {proof}\n")
}

/// The name and proof in a `PROOF` line.
pub fn parse_proof(line: &str) -> Option<(&str, &str)> {
    match crate::protocol::fields(line).as_slice() {
        ["PROOF", name, proof] => Some((name, proof)),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.is_empty() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proof made with the secret verifies; a proof from another secret,
    /// for another name or another challenge, or malformed, does not.
    #[test]
    fn proofs() {
        let secret = HerdSecret::new(b"s3cret").unwrap();
        let other = HerdSecret::new(b"guess").unwrap();
        let challenge = new_challenge().unwrap();
        let proof = secret.proof(&challenge, "Riley");
        assert_eq!(proof.len(), 64);
        assert!(secret.verify(&challenge, "Riley", &proof));
        assert!(!secret.verify(&challenge, "Jaquez", &proof));
        assert!(!other.verify(&challenge, "Riley", &proof));
        let fresh = new_challenge().unwrap();
        assert_ne!(fresh, challenge);
        assert!(!secret.verify(&fresh, "Riley", &proof));
        assert!(!secret.verify(&challenge, "Riley", "zz"));
        assert!(!secret.verify(&challenge, "Riley", ""));
        assert!(!secret.verify(&challenge, "Riley", &proof[..62]));
    }

    /// The lines parse back, and malformed ones do not.
    #[test]
    fn lines() {
        let line = challenge_line("00ff");
        assert_eq!(parse_challenge(&line), Some("00ff"));
        assert_eq!(parse_challenge("CHALLENGE xyz"), None);
        assert_eq!(parse_challenge("AT Riley +1 a +1+1 1"), None);
        assert_eq!(
            parse_proof(&proof_line("Riley", "abcd")),
            Some(("Riley", "abcd"))
        );
        assert_eq!(parse_proof("PROOF Riley"), None);
    }

    /// A secret file's trailing newline is dropped; an empty secret is
    /// refused; `Debug` hides the secret.
    #[test]
    fn secret_file() {
        let tmp = tempfile::Builder::new()
            .prefix("proxy-herd-secret-")
            .tempdir()
            .unwrap();
        let path = tmp.path().join("secret");
        std::fs::write(&path, "abc\n").unwrap();
        let secret = HerdSecret::from_file(&path).unwrap();
        assert!(secret.verify(
            "00",
            "A",
            &HerdSecret::new(b"abc").unwrap().proof("00", "A")
        ));
        assert!(!format!("{secret:?}").contains("abc"));
        std::fs::write(&path, "\n").unwrap();
        assert!(HerdSecret::from_file(&path)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
