//! The benchmark tool runs and its figures are sane: a short run of each
//! mode of the real `proxy-herd-bench` against herds of the real binaries
//! (spawned by the bench) and the baseline, read from its `--json`
//! report. No timing thresholds: a benchmark is not a test.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::process::Proc;

const BENCH: &str = env!("CARGO_BIN_EXE_proxy-herd-bench");

/// The bench's `--json` report, for the assertions below.
#[derive(Debug)]
struct Report {
    measurements: Vec<Value>,
    comparisons: Vec<Value>,
    /// The whole report, as the bench printed it.
    text: String,
}

/// Runs the bench with short settings and the built binaries, and reads
/// its report.
fn bench(args: &[&str]) -> Report {
    let out = run_bench(args);
    assert!(out.status.success(), "proxy-herd-bench {args:?}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let list = |key: &str| json[key].as_array().cloned().unwrap_or_default();
    Report {
        measurements: list("measurements"),
        comparisons: list("comparisons"),
        text,
    }
}

fn run_bench(args: &[&str]) -> Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_proxy-herd"))
        .parent()
        .unwrap();
    Command::new(BENCH)
        .args(args)
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(["-q", "-d", "0.3", "--warmup", "0.05", "--json"])
        .output()
        .unwrap()
}

/// Requests were answered, none failed, and the percentiles are ordered.
fn assert_sane(m: &Value) {
    assert!(m["requests"].as_u64().unwrap() > 0, "no requests: {m}");
    assert_eq!(m["errors"], 0, "errors: {m}");
    assert!(m["per_sec"].as_f64().unwrap() > 0.0, "{m}");
    let l = &m["latency"];
    if !l.is_null() {
        let p = |k: &str| l[k].as_f64().unwrap();
        assert!(p("p50_us") > 0.0, "{m}");
        assert!(
            p("p50_us") <= p("p99_us")
                && p("p99_us") <= p("p999_us")
                && p("p999_us") <= p("max_us"),
            "{m}"
        );
    }
}

fn targets(report: &Report) -> Vec<&str> {
    report
        .measurements
        .iter()
        .map(|m| m["target"].as_str().unwrap())
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
        assert!(c["figures"]["throughput"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["figures"]["p99"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(report.text.contains("throughput"));
}

/// On the five-server herd, every update sent to one server is verified
/// to have reached all five.
#[test]
fn iamat_five_servers_floods_everything() {
    let report = bench(&["iamat", "--servers", "5", "-c", "2"]);
    let m = &report.measurements[0];
    assert_sane(m);
    assert_eq!(m["target"], "herd Juzang (5 srv)");
    assert_eq!(m["extra"]["verified"], true, "{m}");
    assert_eq!(m["extra"]["flooded"], "5/5 servers x 2 clients");
}

/// `oneshot` (a connection per IAMAT, half-close, read to end-of-file)
/// works against the herd and the baseline.
#[test]
fn oneshot_against_the_baseline() {
    let report = bench(&["oneshot", "-c", "2", "--vs-baseline"]);
    assert_eq!(report.measurements.len(), 2);
    report.measurements.iter().for_each(assert_sane);
    assert_eq!(report.comparisons[0]["mode"], "oneshot");
}

/// `whatsat` measures WHATSAT through a herd pointed at places-stub and
/// the same request straight to the stub, reports the difference, and
/// counts the HTTP connections opened to the stub.
#[test]
fn whatsat_through_the_herd_and_direct() {
    let report = bench(&["whatsat", "-c", "2"]);
    assert_eq!(targets(&report), ["herd Riley (1 srv)", "stub direct"]);
    report.measurements.iter().for_each(assert_sane);
    assert!(report.measurements[0]["extra"]["stub_conns_opened"]
        .as_u64()
        .is_some());
    let c = &report.comparisons[0];
    assert_eq!(c["against"], "stub direct");
    assert!(c["figures"]["p50_overhead_us"].as_f64().is_some(), "{c}");
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
        assert_eq!(m["extra"]["lost"], 0, "{m}");
        assert_eq!(m["extra"]["sent"], 30, "{m}");
        assert_eq!(m["extra"]["hops"], 3, "{m}");
    }
    assert!(report.comparisons[0]["figures"]["p99"].as_f64().unwrap() > 0.0);
}

/// `sustain`: for each population the bench loads Riley on a fresh
/// five-server herd and counts what reaches it behind Campbell. Every
/// acknowledged update arrives (new clients), or is overtaken by a newer
/// one of its client that arrives (cycling); the baseline's rate makes
/// the ratios; every server's peak memory is read.
#[test]
fn sustain_counts_what_crosses_the_herd() {
    let report = bench(&["sustain", "-c", "4", "--clients", "0,6", "--vs-baseline"]);
    let sustained: Vec<&Value> = report
        .measurements
        .iter()
        .filter(|m| m["mode"] == "sustain")
        .collect();
    assert_eq!(sustained.len(), 2, "{report:?}");
    for m in &sustained {
        assert_sane(m);
        assert_eq!(m["extra"]["lost"], 0, "{m}");
        let acked = m["extra"]["acked_per_s"].as_f64().unwrap();
        assert!(acked > 0.0, "{m}");
        assert!(m["extra"]["drain_s"].as_f64().unwrap() >= 0.0, "{m}");
        assert!(m["extra"]["peak_rss_mib"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(
            m["extra"]["peak_rss_each_mib"]
                .as_str()
                .unwrap()
                .split(',')
                .count(),
            5,
            "{m}"
        );
    }
    // New clients: nothing to supersede, so every update arrived.
    assert_eq!(sustained[0]["extra"]["superseded"], 0);
    assert_eq!(report.comparisons.len(), 2);
    assert!(
        report.comparisons[0]["figures"]["propagated"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// `sustain --vs-ceiling` runs the same load on the bare relay herd right
/// after ours: every update crosses it too, ours is recorded first and
/// then the relay herd, and ours is held against it.
#[test]
fn sustain_against_the_ceiling() {
    let report = bench(&["sustain", "-c", "4", "--clients", "0", "--vs-ceiling"]);
    assert_eq!(
        targets(&report),
        ["herd Riley->Campbell", "relay Riley->Campbell"]
    );
    for m in &report.measurements {
        assert_sane(m);
        assert_eq!(m["extra"]["lost"], 0, "{m}");
    }
    let against: Vec<&str> = report
        .comparisons
        .iter()
        .map(|c| c["against"].as_str().unwrap())
        .collect();
    assert_eq!(against, ["relay Riley->Campbell"]);
    assert!(
        report.comparisons[0]["figures"]["propagated"]
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
    assert_eq!(report.measurements[0]["target"], "herd Juzang (1/5 up)");
}

/// `conns` opens and holds connections, answers one IAMAT on each, and
/// reads the memory of the server process, herd and baseline alike.
#[test]
fn conns_held_and_answered() {
    let report = bench(&["conns", "-n", "40", "--vs-baseline"]);
    assert_eq!(report.measurements.len(), 2);
    for m in &report.measurements {
        assert_sane(m);
        assert_eq!(m["requests"], 40);
        assert!(m["extra"]["kib_per_conn"].as_f64().is_some(), "{m}");
        assert!(m["extra"]["threads"].as_u64().unwrap() >= 40, "{m}");
    }
    assert!(report.comparisons[0]["figures"]["kib_per_conn"].is_number());
}

/// `baseline` alone measures the baseline with the iamat load.
#[test]
fn baseline_alone() {
    let report = bench(&["baseline", "-c", "2"]);
    assert_eq!(targets(&report), ["baseline"]);
    assert_sane(&report.measurements[0]);
}

/// `--addr` loads a server the bench did not start (here a baseline
/// another bench process serves with `--serve-for`), and a non-loopback
/// address is refused.
#[test]
fn external_address() {
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port())).to_string();
    let _serving = Proc(
        Command::new(BENCH)
            .args(["baseline", "--serve-for", "60", "--listen", &addr])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    support::wait_until("the baseline to listen", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let report = bench(&["iamat", "--addr", &addr, "-c", "2"]);
    assert_eq!(targets(&report), [addr.as_str()]);
    assert_sane(&report.measurements[0]);
    let refused = run_bench(&["iamat", "--addr", "10.1.2.3:80"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback"));
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

/// Without `--json` the report is a table a terminal shows whole: no line
/// wider than 100 characters, the ratios spelt out, and a last line that
/// says what was measured and why the exit status is 0.
#[test]
fn table_fits_a_terminal_and_ends_with_a_verdict() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_proxy-herd"))
        .parent()
        .unwrap();
    let out = Command::new(BENCH)
        .args([
            "iamat",
            "-c",
            "1,2",
            "--vs-baseline",
            "-q",
            "-d",
            "0.3",
            "--warmup",
            "0.05",
        ])
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    assert!(text.contains("throughput"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("4 measurement(s) of iamat") && last.ends_with("(exit status 0)"),
        "{last}"
    );
}

/// `--herd-cmd` starts another herd from a command template, one process
/// per server of `--config` (here our own binary stands in for a
/// student's herd), loads it beside ours under the same load, and
/// compares each with the other and with the baseline; `conns` measures
/// its memory too.
#[test]
fn another_herd_from_a_command() {
    let dir = support::temp_dir("other-herd");
    let config = support::process::herd_file(&dir, &["Riley"], &[]);
    let herd_bin = env!("CARGO_BIN_EXE_proxy-herd");
    let template = format!(
        "{herd_bin} {{name}} --config {{config}} --log-dir {} --no-journal",
        dir.display()
    );
    let report = bench(&[
        "iamat",
        "-c",
        "2",
        "--vs-baseline",
        "--herd-cmd",
        &template,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(
        targets(&report),
        ["herd Riley (1 srv)", "other Riley (1 srv)", "baseline"]
    );
    report.measurements.iter().for_each(assert_sane);
    let against: Vec<(&str, &str)> = report
        .comparisons
        .iter()
        .map(|c| (c["herd"].as_str().unwrap(), c["against"].as_str().unwrap()))
        .collect();
    assert_eq!(
        against,
        [
            ("herd Riley (1 srv)", "other Riley (1 srv)"),
            ("herd Riley (1 srv)", "baseline"),
            ("other Riley (1 srv)", "baseline"),
        ]
    );
    // The other herd's server really ran from the template: it logged.
    let log = std::fs::read_to_string(dir.join("Riley.log")).unwrap();
    assert!(log.contains("<- IAMAT"), "{log}");
    // conns reads the other server's own memory: `exec` makes the process
    // the bench started the server itself, with a thread per connection.
    let report = bench(&[
        "conns",
        "-n",
        "20",
        "--herd-cmd",
        &template,
        "--config",
        config.to_str().unwrap(),
    ]);
    let theirs = &report.measurements[1];
    assert_eq!(theirs["target"], "other Riley (1 srv)", "{report:?}");
    assert!(
        theirs["extra"]["threads"].as_u64().unwrap() >= 20,
        "{theirs}"
    );
    assert!(
        theirs["extra"]["kib_per_conn"].as_f64().is_some(),
        "{theirs}"
    );
}

/// `--rounds 2 --report DIR` measures everything twice, marks each
/// measurement with its round, and writes a page that stands alone (SVG
/// plots inline, no scripts, nothing loaded from elsewhere) naming every
/// target, beside a `results.json` holding every measurement of the run.
#[test]
fn rounds_and_a_report_page() {
    let dir = support::temp_dir("report");
    let out_dir = dir.join("out");
    let report = bench(&[
        "iamat",
        "-c",
        "1,2",
        "--vs-baseline",
        "--rounds",
        "2",
        "--report",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(report.measurements.len(), 8, "{report:?}");
    let rounds: Vec<u64> = report
        .measurements
        .iter()
        .map(|m| m["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, [1, 1, 1, 1, 2, 2, 2, 2]);

    let page = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page:.200}");
    assert!(
        page.matches("<svg").count() >= 2,
        "a throughput and a latency plot"
    );
    assert!(page.contains("iamat: requests per second against connections"));
    assert!(page.contains("IAMAT latency"));
    // Each target has a key in a plot's legend, in its own colour.
    for target in ["herd Riley (1 srv)", "baseline"] {
        assert!(
            page.contains(&format!("</span>{target}</span>")),
            "no legend key for {target}"
        );
    }
    for outside in ["<script", "<link", "src=", "@import"] {
        assert!(!page.contains(outside), "page loads or runs {outside}");
    }
    assert!(page.contains("every request answered"), "the verdict");

    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["measurements"].as_array().unwrap().len(), 8);
    assert_eq!(results["rounds"], 2);
    assert!(results["cores"].as_u64().unwrap() >= 1);
    assert!(results["command"].as_str().unwrap().contains("--rounds 2"));
}

/// A mode the other herd of `--herd-cmd` cannot take part in (flood needs
/// our peer port) measures ours and says, in the report, that the other
/// herd was not measured and why, instead of leaving it out silently.
#[test]
fn modes_the_other_herd_cannot_take_say_so() {
    let dir = support::temp_dir("other-skip");
    let config = support::process::herd_file(&dir, &["Riley"], &[]);
    let out = run_bench(&[
        "flood",
        "--rate",
        "50",
        "--herd-cmd",
        "true {name}",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = json["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{json}");
    assert!(
        skipped[0]
            .as_str()
            .unwrap()
            .starts_with("flood of the other herd"),
        "{json}"
    );
    assert_eq!(json["measurements"][0]["target"], "herd Riley");
}
