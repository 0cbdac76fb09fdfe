//! places-stub: serves MADE-UP Google Places answers on a local port, so
//! the herd can be run and demonstrated without a key or a network.
//!
//! `main` only maps `run`'s result to an exit code; the server itself is
//! `proxy_herd::stub`.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::mpsc;

use clap::Parser;
use proxy_herd::stub::{Behaviour, PlacesStub};

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
#[command(name = "places-stub", version)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 8099)]
    port: u16,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
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
    let listener = proxy_herd::server::bind_listener((args.host.as_str(), args.port))
        .map_err(|error| format!("cannot listen on {}:{}: {error}", args.host, args.port))?;
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
    let stub = PlacesStub::start(listener, Behaviour::Normal)
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
