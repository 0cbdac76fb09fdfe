//! What a server is told: its name, its herd, how to reach Places, and
//! the limits that keep one client from hurting the others.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::HerdSecret;
use crate::herd::Herd;
use crate::logging::ServerLog;
use crate::places::PlacesConfig;

/// The line limit of src/protocol.md#lines.
pub const DEFAULT_MAX_LINE: usize = crate::protocol::MAX_LINE;

/// How many client connections may be open at once by default. Each costs
/// a thread and a file descriptor; the process's descriptor limit
/// (`ulimit -n`) must be above this for it to be reached.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// How far in the future a client time may be, by default: one day. One
/// IAMAT with a time far ahead would otherwise pin that client's location
/// for ever, since no later update could be newer.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a client's line may take from its first byte to its end, by
/// default: far longer than any honest client takes to send 64 KiB.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many clients the store holds at most, by default. A record costs
/// about half a kilobyte, so this is about 500 MiB: far more clients than
/// a class or a lab makes, and a bound on what a stranger inventing
/// client ids can make a server spend.
pub const DEFAULT_MAX_CLIENTS: usize = 1_000_000;

/// How much lower client connection threads run than the threads that
/// carry the flood, by default; see `yield_to_the_flood`.
pub const DEFAULT_CLIENT_NICE: i32 = 10;

/// The limits that keep one client from hurting the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest line accepted, in bytes without the `\n`; a longer line
    /// closes its connection.
    pub max_line: usize,
    /// Most client connections open at once; past it a new connection is
    /// closed at once, and the ones already open carry on.
    pub max_connections: usize,
    /// Most peer-port connections open at once, likewise; `None` means
    /// [`default_max_peers`] of the server's neighbours. Anyone who can
    /// reach the peer port can open connections there, and each costs a
    /// thread.
    pub max_peer_connections: Option<usize>,
    /// A client connection silent for this long is closed. `None` (the
    /// default) never closes one, so a person typing into `nc` is not cut
    /// off.
    pub idle_timeout: Option<Duration>,
    /// A line a client has begun must end within this long of its first
    /// byte, or the connection is closed. `nc` sends a whole line when
    /// Enter is pressed, so people typing never meet it; a connection
    /// that trickles a line a byte at a time does. `None`: no limit.
    pub line_timeout: Option<Duration>,
    /// On a full client port, let a newcomer in by closing the
    /// longest-idle connection of the address that holds the most (see
    /// `open`), when that address holds at least two more.
    pub evict_when_full: bool,
    /// Client times further ahead of this server's clock are invalid.
    pub max_future: Duration,
    /// Most clients the store holds; past it an update for a new client
    /// is refused (known clients keep updating).
    pub max_clients: usize,
    /// How many nice values client connection threads run below the rest
    /// of the server (0 to 19; 0 keeps them level); see
    /// `yield_to_the_flood`.
    pub client_nice: i32,
}

/// A limit that cannot work, named by its flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsError {
    /// A count that must be at least 1 is 0.
    Zero(&'static str),
    /// `--client-nice` outside 0-19.
    Nice(i32),
}

impl std::fmt::Display for LimitsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitsError::Zero(flag) => write!(f, "{flag} must be at least 1"),
            LimitsError::Nice(n) => write!(f, "--client-nice must be between 0 and 19, not {n}"),
        }
    }
}

impl std::error::Error for LimitsError {}

impl Limits {
    /// Checks that every limit can work: the one place they are checked,
    /// by the program before it starts anything and by [`super::start`]
    /// for any other caller.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let counts = [
            (self.max_line, "--max-line"),
            (self.max_connections, "--max-connections"),
            (
                self.max_peer_connections.unwrap_or(1),
                "--max-peer-connections",
            ),
            (self.max_clients, "--max-clients"),
        ];
        if let Some((_, flag)) = counts.iter().find(|(n, _)| *n == 0) {
            return Err(LimitsError::Zero(flag));
        }
        if !(0..=19).contains(&self.client_nice) {
            return Err(LimitsError::Nice(self.client_nice));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_peer_connections: None,
            idle_timeout: None,
            line_timeout: Some(DEFAULT_LINE_TIMEOUT),
            evict_when_full: true,
            max_future: DEFAULT_MAX_FUTURE,
            max_clients: DEFAULT_MAX_CLIENTS,
            client_nice: DEFAULT_CLIENT_NICE,
        }
    }
}

/// Everything a server needs besides its listeners.
pub struct ServerConfig {
    /// This server's name in the herd.
    pub name: String,
    /// The herd it belongs to.
    pub herd: Herd,
    /// How to reach Places.
    pub places: PlacesConfig,
    /// Limits on what clients may do.
    pub limits: Limits,
    /// Where new records are journaled before replies (`None`: nowhere,
    /// so a server with no neighbour up can lose acknowledged updates if
    /// it is killed).
    pub journal: Option<PathBuf>,
    /// With a herd secret, AT lines are accepted on the peer port only
    /// from links that prove they know it, and our links prove it.
    pub secret: Option<HerdSecret>,
    /// Where its log goes.
    pub log: ServerLog,
}

/// The peer-port limit when `--max-peer-connections` is not given: four
/// per neighbour (a link that reconnects may briefly hold a second one,
/// and a neighbour's old connection lingers until found dead), and at
/// least eight.
pub fn default_max_peers(neighbours: usize) -> usize {
    (4 * neighbours).max(8)
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    /// The defaults pass, and each limit that cannot work is named by
    /// its flag.
    #[test]
    fn validate_names_the_flag() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let zero = Limits {
            max_clients: 0,
            ..Limits::default()
        };
        assert_eq!(zero.validate(), Err(LimitsError::Zero("--max-clients")));
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "--max-clients must be at least 1"
        );
        let peers = Limits {
            max_peer_connections: Some(0),
            ..Limits::default()
        };
        assert_eq!(
            peers.validate(),
            Err(LimitsError::Zero("--max-peer-connections"))
        );
        let nice = Limits {
            client_nice: 20,
            ..Limits::default()
        };
        assert_eq!(nice.validate(), Err(LimitsError::Nice(20)));
    }
}
