//! places-stub: a local stand-in for Google's Nearby Search, legacy and
//! New, serving MADE-UP places. A program of its own, not part of the
//! server library: `made_up.rs` invents the places, `answers.rs` puts
//! them in Google's shapes, `server.rs` serves
//! them over HTTP, and this file is the command line.
//!
//! Tests and the offline demo (`run_herd.sh`) need a Places endpoint that
//! needs no key, no network and no money, answers the same bytes for the
//! same query, and can be told to misbehave (held, failing, not JSON) so
//! the herd's error paths (src/protocol.md#whatsat-what-is-near) can be exercised. This program
//! is that endpoint: a small HTTP server, a thread per connection, answering
//! - `GET …/nearbysearch/json?location=LAT,LNG&radius=METRES&key=KEY` in
//!   Google's legacy shape and layout (src/places/README.md#places-api-new), and
//! - `POST …/places:searchNearby` in the shape of Places API (New)
//!   (src/places/README.md#places-api-new),
//!   with a JSON body `{"locationRestriction": {"circle": {"center":
//!   {"latitude", "longitude"}, "radius"}}, "maxResultCount"}` and the
//!   headers `X-Goog-Api-Key` and `X-Goog-FieldMask`.
//!
//! Both APIs describe the same made-up places for the same query, so a
//! herd in either mode tells its clients the same thing (only the legacy
//! `icon`, which the New API lacks, differs).
//!
//! Every place it invents says so: names end in "(places-stub)", the
//! vicinity reads "Not a real place", place ids start with
//! `places-stub-`, and every URL is on the reserved `.invalid` domain.
//!
//! Legacy answers, by query:
//! - no `key`, or an empty one: `REQUEST_DENIED` (any other key is
//!   accepted; the stub never checks keys);
//! - `location` missing or not `lat,lng` decimals within ±90/±180, or
//!   `radius` missing, not a decimal, not above 0 or above 50000:
//!   `INVALID_REQUEST`;
//! - a radius under [`answers::MIN_RADIUS_WITH_PLACES`] metres: `ZERO_RESULTS`;
//! - otherwise `OK` with [`answers::PLACES_PER_ANSWER`] places inside the radius.
//!
//! Error answers carry `error_message` and, like Google's, list their keys
//! alphabetically: `error_message`, `html_attributions`, `results`,
//! `status`.
//!
//! New answers, by request:
//! - no `X-Goog-Api-Key`, or an empty one: HTTP 403 `PERMISSION_DENIED`;
//! - no `X-Goog-FieldMask`, a body that is not JSON, a missing or
//!   out-of-range center or radius, or a `maxResultCount` outside 1-20:
//!   HTTP 400 `INVALID_ARGUMENT`;
//! - a radius under [`answers::MIN_RADIUS_WITH_PLACES`] metres: `{}` (Google's
//!   answer for no places);
//! - otherwise the first `maxResultCount` (default 20) places, each with
//!   only the fields the field mask names.
//!
//! The stub keeps the last request it got ([`server::PlacesStub::last_request`]),
//! so a test can check what the herd sent: method, headers and body.
//! Tests drive the program as a user would: flags make it hold
//! (`--hold`), fail (`--fail-status`), answer badly (`--not-json`,
//! `--answer-body`), and a control route beside the Places paths
//! (`/_stub/requests`, `held`, `release`, `last`) steers and reads it.

#![forbid(unsafe_code)]

mod answers;
mod http;
mod made_up;
mod server;
#[cfg(test)]
mod tests;

use std::process::ExitCode;
use std::sync::mpsc;

use clap::Parser;
use server::{Behaviour, PlacesStub};

/// Serve MADE-UP Google Places answers (Nearby Search, legacy and New) locally.
///
/// Every place is invented: names end in "(places-stub)" and addresses say
/// "Not a real place". Answers GET /maps/api/place/nearbysearch/json with
/// location=LAT,LNG, radius=METRES (up to 50000) and any non-empty key,
/// and POST /v1/places:searchNearby (Places API (New)) with any non-empty
/// X-Goog-Api-Key, an X-Goog-FieldMask and a JSON body naming the circle
/// and maxResultCount; the same query always gets the same places, in
/// both APIs. Point the herd at it with
/// PLACES_URL=http://HOST:PORT/maps/api/place/nearbysearch/json, or with
/// PLACES_API=new PLACES_URL=http://HOST:PORT/v1/places:searchNearby.
/// Stops with exit status 0 on Ctrl-C or SIGTERM.
#[derive(Parser)]
#[command(name = "places-stub", version, max_term_width = 100)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 8099)]
    port: u16,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Hold every Places request until `POST /_stub/release`: an answer
    /// as slow as a test wants, with no timing in the test.
    #[arg(long, conflicts_with_all = ["fail_status", "not_json", "answer_body"])]
    hold: bool,

    /// Answer every Places request with this HTTP status and a short text
    /// body.
    #[arg(long, value_name = "CODE", conflicts_with_all = ["not_json", "answer_body"])]
    fail_status: Option<u16>,

    /// Answer every Places request with 200 and a body that is not JSON.
    #[arg(long, conflicts_with = "answer_body")]
    not_json: bool,

    /// Answer every Places request with this file's content as JSON (a
    /// New-style error, say), with --answer-status.
    #[arg(long, value_name = "FILE")]
    answer_body: Option<std::path::PathBuf>,

    /// The HTTP status of --answer-body's answers.
    #[arg(
        long,
        value_name = "CODE",
        default_value_t = 200,
        requires = "answer_body"
    )]
    answer_status: u16,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("places-stub: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGINT or SIGTERM. The handler only wakes this thread, so
/// the stub is stopped the ordinary way and the exit status is 0.
fn run(args: Args) -> Result<(), String> {
    // The handlers come first: once the port is bound a connect succeeds,
    // and a SIGTERM sent right after must already find them.
    let (stop_tx, stop_rx) = mpsc::channel();
    let on_ctrl_c = stop_tx.clone();
    ctrlc::set_handler(move || {
        let _ = on_ctrl_c.send(());
    })
    .map_err(|error| format!("cannot handle signals: {error}"))?;
    // ctrlc catches SIGINT only (see the proxy-herd binary for why);
    // run_herd.sh stops the stub with SIGTERM.
    let mut terms = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM])
        .map_err(|error| format!("cannot handle signals: {error}"))?;
    std::thread::spawn(move || {
        if terms.forever().next().is_some() {
            let _ = stop_tx.send(());
        }
    });
    let behaviour = if args.hold {
        Behaviour::Held
    } else if let Some(code) = args.fail_status {
        Behaviour::HttpStatus(code)
    } else if args.not_json {
        Behaviour::NotJson
    } else if let Some(path) = &args.answer_body {
        let body = std::fs::read_to_string(path)
            .map_err(|error| format!("--answer-body {}: {error}", path.display()))?;
        // Served until the program ends.
        Behaviour::Json(args.answer_status, Box::leak(body.into_boxed_str()))
    } else {
        Behaviour::Normal
    };
    let listener = proxy_herd::server::bind_listener((args.host.as_str(), args.port))
        .map_err(|error| format!("cannot listen on {}:{}: {error}", args.host, args.port))?;
    let stub = PlacesStub::start(listener, behaviour)
        .map_err(|error| format!("cannot start serving: {error}"))?;
    println!(
        "places-stub: serving MADE-UP places on {}",
        stub.nearby_url()
    );
    // An error here means the handler is gone; stopping is right then too.
    let _ = stop_rx.recv();
    stub.shutdown();
    Ok(())
}
