//! The terminal while the view runs: keys read one at a time without
//! echo, the screen of its own (the alternate screen, as `less` and
//! `top` use), and everything put back as it was when the view ends,
//! however it ends (`q`, Ctrl-C, an error, a panic).

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Termios};

/// The terminal in the view's mode; dropping it restores the terminal.
pub struct Screen {
    saved: Termios,
}

/// A key the view acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    Quit,
    Other,
}

impl Screen {
    /// Takes over the terminal on standard input and output: no echo,
    /// no line editing, Ctrl-C read as a key (so the view can restore
    /// the terminal itself), reads that wait at most a tenth of a second.
    pub fn open() -> io::Result<Screen> {
        let stdin = io::stdin();
        if !termios::isatty(&stdin) {
            return Err(io::Error::other(
                "standard input is not a terminal (use --once for a single frame)",
            ));
        }
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.local_modes -= LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG;
        raw.special_codes[SpecialCodeIndex::VMIN] = 0;
        raw.special_codes[SpecialCodeIndex::VTIME] = 1;
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        let screen = Screen { saved };
        // The alternate screen, the cursor hidden.
        let mut stdout = io::stdout();
        stdout.write_all(b"\x1b[?1049h\x1b[?25l")?;
        stdout.flush()?;
        Ok(screen)
    }

    /// Draws `lines` from the top left, clearing what the last frame left.
    pub fn draw(&self, lines: &[String]) -> io::Result<()> {
        let mut out = String::from("\x1b[H");
        for (i, line) in lines.iter().enumerate() {
            // No line break after the last line: on a screen exactly as
            // tall as the frame it would scroll the first line away.
            if i > 0 {
                out.push_str("\r\n");
            }
            out.push_str(&highlight(line));
            out.push_str("\x1b[K");
        }
        out.push_str("\x1b[J");
        let mut stdout = io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()
    }

    /// Waits up to `pause` for a key, and looks at least once even when
    /// `pause` is zero (a refresh that took longer than the interval),
    /// so that `q` always works. A signal that asks the view to end
    /// (`stop`) counts as `q`.
    pub fn key(&self, pause: Duration, stop: &AtomicBool) -> Option<Key> {
        let deadline = Instant::now() + pause;
        let mut byte = [0u8; 1];
        loop {
            if stop.load(Ordering::Relaxed) {
                return Some(Key::Quit);
            }
            // Returns after a tenth of a second with nothing (VTIME).
            if let Ok(1) = io::stdin().read(&mut byte) {
                return Some(match byte[0] {
                    b'q' | b'Q' | 3 | 4 => Key::Quit,
                    _ => Key::Other,
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}

impl Drop for Screen {
    /// The terminal's modes back first (writing can fail, and must not
    /// keep that from happening), then the cursor and the normal screen.
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
        let mut stdout = io::stdout();
        let _ = stdout.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = stdout.flush();
    }
}

/// What must catch the eye, in reverse video: a server or link DOWN, a
/// RESYNC.
fn highlight(line: &str) -> String {
    line.replace("DOWN", "\x1b[7mDOWN\x1b[0m")
        .replace("RESYNC", "\x1b[7mRESYNC\x1b[0m")
}
