//! The server log: `<Name>.log`, one line per event, built with fern.
//!
//! Each server owns its logger as a value ([`ServerLog`]) instead of
//! installing a global one with `fern::Dispatch::apply`. A process can
//! then hold several servers, each writing its own file, which is how the
//! integration tests run a whole herd in one test binary; the `proxy-herd`
//! binary simply owns one.
//!
//! fern's file output writes and flushes every record as it is logged, so
//! a line that has been logged is in the kernel's hands: it survives a
//! Ctrl-C, a `kill`, or a panic, which PROTOCOL.md §6 asks for.
//!
//! A line looks like
//! ```text
//! 2026-11-24T20:31:07.412331Z INFO  127.0.0.1:51234 <- IAMAT kiwi +34.06-118.44 1621464827.9
//! 2026-11-24T20:31:07.412367Z INFO  127.0.0.1:51234 -> AT Riley +0.2 kiwi +34.06-118.44 1621464827.9
//! ```
//! `<-` is a line received, `->` a line sent; control characters inside a
//! line (the newlines of a WHATSAT reply) are escaped so one event is one
//! line of the file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Record};

/// A handle to one server's log; clones write to the same file.
#[derive(Clone)]
pub struct ServerLog {
    sink: Arc<dyn Log>,
}

impl ServerLog {
    /// Opens (appending, creating the folder if needed) `dir/<name>.log`.
    pub fn to_file(dir: &Path, name: &str) -> io::Result<(ServerLog, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.log"));
        let file = fern::log_file(&path)?;
        let (_, sink) = fern::Dispatch::new()
            .level(LevelFilter::Info)
            .format(|out, message, record| {
                out.finish(format_args!(
                    "{} {:<5} {}",
                    humantime::format_rfc3339_micros(SystemTime::now()),
                    record.level(),
                    message
                ))
            })
            .chain(file)
            .into_log();
        Ok((
            ServerLog {
                sink: Arc::from(sink),
            },
            path,
        ))
    }

    /// A log that drops everything, for tests that do not look at logs.
    pub fn discard() -> ServerLog {
        let (_, sink) = fern::Dispatch::new().level(LevelFilter::Off).into_log();
        ServerLog {
            sink: Arc::from(sink),
        }
    }

    fn write(&self, level: Level, args: fmt::Arguments<'_>) {
        self.sink
            .log(&Record::builder().level(level).args(args).build());
    }

    /// An ordinary event: a line in or out, a connection, a link.
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.write(Level::Info, args);
    }

    /// Something off that the server carries on through.
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.write(Level::Warn, args);
    }

    /// A failure (a Places error, a failed write).
    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.write(Level::Error, args);
    }

    /// Pushes anything buffered to the file (called on shutdown).
    pub fn flush(&self) {
        self.sink.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logged lines reach the file at once, each on one line with a
    /// timestamp and level.
    #[test]
    fn lines_reach_the_file() {
        let dir = std::env::temp_dir().join(format!("proxy-herd-log-{}", std::process::id()));
        let (log, path) = ServerLog::to_file(&dir, "Riley").unwrap();
        log.info(format_args!("hello {}", 42));
        log.error(format_args!("bad thing"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("INFO  hello 42"), "{}", lines[0]);
        assert!(lines[1].ends_with("ERROR bad thing"), "{}", lines[1]);
        assert!(lines[0].starts_with("20"), "{}", lines[0]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
