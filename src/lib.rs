//! proxy-herd: an application server herd, one thread per connection.
//!
//! A herd is a few TCP servers that take location updates from mobile
//! clients (`IAMAT`), flood them to each other, and answer "what is near
//! this client?" (`WHATSAT`) by asking Google Places. The contract is
//! src/protocol.md, shown as the doc of [`protocol`]; this crate implements it with
//! blocking `std::net`, a thread for every connection, and no async
//! runtime, so it can be read side by side with an asyncio version of the
//! same herd.
//!
//! # Layout
//!
//! Read in this order:
//!
//! - [`protocol`]: parsing and formatting of every line. Pure: no sockets,
//!   no clocks. A bad line is the value `Invalid`, not an error path.
//! - [`store`]: the newest record of every client, one map behind a
//!   `parking_lot::RwLock`, and the "newer" rule that ends floods.
//! - [`server`]: the listeners, the thread per connection, and what each
//!   line does, a file per part: `config`, `listen` (accept threads and
//!   connection limits), `handler` (a connection's life), `connection`
//!   (the line reader), `client` (IAMAT, WHATSAT), `peer` (a neighbour's
//!   AT lines). The only place that reads from clients.
//! - [`flood`]: the queues, one bounded `crossbeam-channel` per
//!   neighbour, and what a full one does (a client waits for room, a
//!   relayed update is kept aside, newest per client), so that the herd
//!   never acknowledges updates faster than it floods them; then
//!   [`flood::link`], the sender thread per neighbour, which reconnects
//!   and resyncs every record when a link comes (back) up.
//! - [`places`]: the Places client over blocking `ureq`, and
//!   [`places::layout`], Google's JSON layout for cut answers.
//! - [`journal`]: every new record appended to `<Name>.journal` before
//!   the reply (one write per update, or per burst from a neighbour),
//!   read back at start, and compacted while the server runs.
//! - [`auth`]: the optional herd secret, proved on every link by an
//!   HMAC challenge before any AT line is accepted; both halves of the
//!   handshake.
//! - [`herd`]: the herd file, read raw and validated in one place.
//! - [`logging`]: each server's `<Name>.log`, through fern.
//! - [`metrics`]: what a server counts, served in the Prometheus text
//!   format on a port of its own (`--metrics-addr`).
//! - [`os`]: what the herd asks of the operating system beyond sockets:
//!   a thread's priority, the watch on a vanished link's other end, the
//!   address that reaches a listener on every interface.
//!
//! The library is the server. `src/bin/proxy-herd.rs` is its program:
//! it parses flags, binds, calls [`server::start`] and waits for a
//! signal. The three other programs have module trees of their own, each
//! mapped in its `main.rs`, and use the library only for the herd file,
//! the protocol's parsers, the Places JSON layout and
//! `server::bind_listener`:
//! - `src/bin/places-stub/`: a local Places stand-in serving made-up
//!   places, for running without an API key (`run_herd.sh` starts it) and
//!   for the tests, which compile its answers and server into themselves
//!   to make it misbehave on purpose;
//! - `src/bin/proxy-herd-bench/`: the load generator and the baseline
//!   server;
//! - `src/bin/herd-watch/`: the live view of a running herd, drawn from
//!   its servers' metrics (`run_herd.sh watch`).
//!
//! # Threads of one server
//!
//! | thread | blocks on | owns |
//! |---|---|---|
//! | accept (client port) | `accept()` | the client listener |
//! | accept (peer port) | `accept()` | the peer listener |
//! | one per connection (clients' at a lower priority) | `read()`, a Places request, room in a link's queue | that socket |
//! | one link per neighbour | its queue, `connect()`, `write()` | the link socket |
//! | one watcher per live link | `read()` of the link | nothing |
//! | the log writer | its channel, then a short pause to gather lines | the log file (rotated or reopened on SIGHUP) |
//! | the journal compactor | its channel, until the journal has doubled (and a little more); during a rewrite, the store's lock a chunk at a time, then the rewrite thread | the `.compact` file while it rewrites |
//! | a journal rewrite, 10 nice values below the flood, while one writes | `write()` of the new journal | the records copied |
//! | accept (metrics port, with `--metrics-addr`) and up to four scrape threads | `accept()`, a request | the metrics listener |
//!
//! No lock is held across a socket write, a blocking channel send or an
//! HTTP call.
#![doc = include_str!("design.md")]
#![forbid(unsafe_code)]

pub mod auth;
pub mod flood;
pub mod herd;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod os;
pub mod places;
pub mod protocol;
pub mod server;
pub mod store;
