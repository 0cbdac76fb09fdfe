//! The benchmark tool runs and its figures are sane: a short run of each
//! mode against herds of the real binaries (spawned by the bench) and the
//! baseline. No timing thresholds: a benchmark is not a test.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use proxy_herd::bench::{self, baseline::Baseline, Cli, Measurement, Report};

const BENCH: &str = env!("CARGO_BIN_EXE_proxy-herd-bench");

/// Runs the bench in-process with short settings and the built binaries.
fn bench(args: &[&str]) -> Report {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_proxy-herd"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap();
    let mut argv = vec!["proxy-herd-bench"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--bin-dir", bin_dir, "-q", "-d", "0.3", "--warmup", "0.05"]);
    let cli = Cli::try_parse_from(&argv).unwrap();
    bench::run(&cli).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Requests were answered, none failed, and the percentiles are ordered.
fn assert_sane(m: &Measurement) {
    assert!(m.requests > 0, "no requests: {m:?}");
    assert_eq!(m.errors, 0, "errors: {m:?}");
    assert!(m.per_sec > 0.0, "{m:?}");
    if let Some(l) = &m.latency {
        assert!(l.p50_us > 0.0, "{m:?}");
        assert!(
            l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us,
            "{m:?}"
        );
    }
}

fn targets(report: &Report) -> Vec<&str> {
    report
        .measurements
        .iter()
        .map(|m| m.target.as_str())
        .collect()
}

/// `iamat --vs-baseline` measures the herd and the baseline for each
/// connection count, and prints a herd/baseline throughput ratio.
#[test]
fn iamat_against_the_baseline() {
    let report = bench(&["iamat", "-c", "1,3", "--vs-baseline"]);
    assert_eq!(report.measurements.len(), 4, "{report:?}");
    report.measurements.iter().for_each(assert_sane);
    assert_eq!(
        targets(&report),
        [
            "herd Riley (1 srv)",
            "baseline",
            "herd Riley (1 srv)",
            "baseline"
        ]
    );
    assert_eq!(report.comparisons.len(), 2);
    for c in &report.comparisons {
        assert!(c.figures["throughput"].as_f64().unwrap() > 0.0, "{c:?}");
        assert!(c.figures["p99"].as_f64().unwrap() > 0.0, "{c:?}");
    }
    assert!(report.table().contains("throughput"));
    assert!(report.clean());
}

/// On the five-server herd, every update sent to one server is verified
/// to have reached all five.
#[test]
fn iamat_five_servers_floods_everything() {
    let report = bench(&["iamat", "--servers", "5", "-c", "2"]);
    let m = &report.measurements[0];
    assert_sane(m);
    assert_eq!(m.target, "herd Juzang (5 srv)");
    assert_eq!(m.extra["verified"], true, "{m:?}");
    assert_eq!(m.extra["flooded"], "5/5 servers x 2 clients");
}

/// `oneshot` (a connection per IAMAT, half-close, read to end-of-file)
/// works against the herd and the baseline.
#[test]
fn oneshot_against_the_baseline() {
    let report = bench(&["oneshot", "-c", "2", "--vs-baseline"]);
    assert_eq!(report.measurements.len(), 2);
    report.measurements.iter().for_each(assert_sane);
    assert_eq!(report.comparisons[0].mode, "oneshot");
}

/// `whatsat` measures WHATSAT through a herd pointed at places-stub and
/// the same request straight to the stub, reports the difference, and
/// counts the HTTP connections opened to the stub.
#[test]
fn whatsat_through_the_herd_and_direct() {
    let report = bench(&["whatsat", "-c", "2"]);
    assert_eq!(targets(&report), ["herd Riley (1 srv)", "stub direct"]);
    report.measurements.iter().for_each(assert_sane);
    assert!(report.measurements[0].extra["stub_conns_opened"]
        .as_u64()
        .is_some());
    let c = &report.comparisons[0];
    assert_eq!(c.against, "stub direct");
    assert!(c.figures["p50_overhead_us"].as_f64().is_some(), "{c:?}");
}

/// `flood`: the bench joins the five-server herd as a member linked to
/// Campbell, and every update sent to Riley reaches it; the baseline relay
/// chain delivers every update too.
#[test]
fn flood_every_update_arrives() {
    let report = bench(&["flood", "--rate", "100", "--vs-baseline"]);
    assert_eq!(report.measurements.len(), 2);
    for m in &report.measurements {
        assert_sane(m);
        assert_eq!(m.extra["lost"], 0, "{m:?}");
        assert_eq!(m.extra["sent"], 30, "{m:?}");
        assert_eq!(m.extra["hops"], 3, "{m:?}");
    }
    assert!(report.comparisons[0].figures["p99"].as_f64().unwrap() > 0.0);
}

/// `sustain`: for each population the bench loads Riley on a fresh
/// five-server herd and counts what reaches it behind Campbell. Every
/// acknowledged update arrives (new clients), or is overtaken by a newer
/// one of its client that arrives (cycling); the baseline's rate makes
/// the ratios; every server's peak memory is read.
#[test]
fn sustain_counts_what_crosses_the_herd() {
    let report = bench(&["sustain", "-c", "4", "--clients", "0,6", "--vs-baseline"]);
    let sustained: Vec<&Measurement> = report
        .measurements
        .iter()
        .filter(|m| m.mode == "sustain")
        .collect();
    assert_eq!(sustained.len(), 2, "{report:?}");
    for m in &sustained {
        assert_sane(m);
        assert_eq!(m.extra["lost"], 0, "{m:?}");
        let acked = m.extra["acked_per_s"].as_f64().unwrap();
        assert!(acked > 0.0, "{m:?}");
        assert!(m.extra["drain_s"].as_f64().unwrap() >= 0.0, "{m:?}");
        assert!(m.extra["peak_rss_mib"].as_u64().unwrap() > 0, "{m:?}");
        assert_eq!(
            m.extra["peak_rss_each_mib"]
                .as_str()
                .unwrap()
                .split(',')
                .count(),
            5,
            "{m:?}"
        );
    }
    // New clients: nothing to supersede, so every update arrived.
    assert_eq!(sustained[0].extra["superseded"], 0);
    assert_eq!(report.comparisons.len(), 2);
    assert!(
        report.comparisons[0].figures["propagated"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// `iamat --servers 5 --alone` starts only the target of the five-server
/// herd, its neighbours down, and serves every request.
#[test]
fn iamat_with_neighbours_down() {
    let report = bench(&["iamat", "--servers", "5", "--alone", "-c", "2"]);
    assert_eq!(report.measurements.len(), 1);
    assert_sane(&report.measurements[0]);
    assert_eq!(report.measurements[0].target, "herd Juzang (1 of 5 up)");
}

/// `conns` opens and holds connections, answers one IAMAT on each, and
/// reads the memory of the server process, herd and baseline alike.
#[test]
fn conns_held_and_answered() {
    let report = bench(&["conns", "-n", "40", "--vs-baseline"]);
    assert_eq!(report.measurements.len(), 2);
    for m in &report.measurements {
        assert_sane(m);
        assert_eq!(m.requests, 40);
        assert!(m.extra["kib_per_conn"].as_f64().is_some(), "{m:?}");
        assert!(m.extra["threads"].as_u64().unwrap() >= 40, "{m:?}");
    }
    assert!(report.comparisons[0].figures.contains_key("kib_per_conn"));
}

/// `baseline` alone measures the baseline with the iamat load.
#[test]
fn baseline_alone() {
    let report = bench(&["baseline", "-c", "2"]);
    assert_eq!(targets(&report), ["baseline"]);
    assert_sane(&report.measurements[0]);
}

/// `--addr` loads a server the bench did not start (here an in-process
/// baseline), and a non-loopback address is refused.
#[test]
fn external_address() {
    let server = Baseline::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        None,
        Duration::from_secs(1),
    )
    .unwrap();
    let addr = server.addr().to_string();
    let report = bench(&["iamat", "--addr", &addr, "-c", "2"]);
    assert_eq!(targets(&report), [addr.as_str()]);
    assert_sane(&report.measurements[0]);
    let cli = Cli::try_parse_from(["b", "iamat", "--addr", "10.1.2.3:80"]).unwrap();
    assert!(bench::run(&cli).unwrap_err().contains("loopback"));
}

/// The binary: `--help` explains every mode, and `--json` prints a report
/// that scripts can read.
#[test]
fn binary_help_and_json() {
    let help = Command::new(BENCH).arg("--help").output().unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for mode in [
        "iamat",
        "oneshot",
        "whatsat",
        "flood",
        "conns",
        "baseline",
        "--vs-baseline",
        "--json",
    ] {
        assert!(text.contains(mode), "{mode} missing from --help");
    }
    let out = Command::new(BENCH)
        .args([
            "baseline", "-c", "1", "-d", "0.2", "--warmup", "0", "--json", "-q",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["measurements"][0]["requests"].as_u64().unwrap() > 0);
}
