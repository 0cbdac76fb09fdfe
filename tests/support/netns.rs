//! Network namespaces for the tests that need them as root: the `ip`
//! command (iproute2) and what a test checks before it creates anything.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Where `ip` is: PATH first, then the usual places (cargo's environment
/// may lack /usr/sbin).
pub fn ip_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join("ip"))
        .find(|p| p.is_file())
}

/// Runs `ip ARGS`; the error carries the command and its stderr, which is
/// what a reader of a failure needs.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let bin = ip_path().ok_or("no ip command")?;
    let out = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip ARGS` and returns its standard output.
pub fn ip_output(args: &[&str]) -> Result<String, String> {
    let bin = ip_path().ok_or("no ip command")?;
    let out = Command::new(&bin)
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The effective uid, from /proc (the test has no libc binding).
pub fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Checks what the test needs before touching anything; the reason if it
/// cannot run.
pub fn prerequisites() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("network namespaces are Linux only".into());
    }
    match euid() {
        Some(0) => {}
        Some(uid) => return Err(format!("running as uid {uid}, not root")),
        None => return Err("cannot read the uid from /proc/self/status".into()),
    }
    let bin = ip_path().ok_or("no `ip` command (iproute2) found")?;
    match Command::new(&bin).arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`ip -V` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("cannot run {}: {e}", bin.display())),
    }
}

/// Picks X for `{base}.X.0/24` (`base` is two octets, such as "10.231"):
/// derived from the pid so that concurrent runs differ, and skipping any
/// X already used by an address or route in the root namespace (another
/// run, or anything else on the machine).
pub fn choose_subnet(base: &str) -> Result<u8, String> {
    let addrs = ip_output(&["-4", "-o", "addr", "show"])?;
    let routes = ip_output(&["-4", "route", "show", "table", "all"])?;
    let start = std::process::id() % 250;
    (0..250)
        .map(|i| ((start + i) % 250 + 1) as u8)
        .find(|x| {
            let net = format!("{base}.{x}.");
            !addrs.contains(&net) && !routes.contains(&net)
        })
        .ok_or_else(|| format!("every {base}.X.0/24 is in use"))
}
