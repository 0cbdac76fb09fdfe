//! The terminal while the view runs: keys read one at a time without
//! echo, the screen of its own (the alternate screen, as `less` and
//! `top` use), and everything put back as it was when the view ends,
//! however it ends (`q`, Ctrl-C, an error, a panic).

use std::io::{self, Read, Write};
use std::time::Duration;

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
        print!("\x1b[?1049h\x1b[?25l");
        io::stdout().flush()?;
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

    /// Waits up to `pause` for a key.
    pub fn key(&self, pause: Duration) -> Option<Key> {
        let deadline = std::time::Instant::now() + pause;
        let mut byte = [0u8; 1];
        while std::time::Instant::now() < deadline {
            // Returns after a tenth of a second with nothing (VTIME).
            if let Ok(1) = io::stdin().read(&mut byte) {
                return Some(match byte[0] {
                    b'q' | b'Q' | 3 | 4 => Key::Quit,
                    _ => Key::Other,
                });
            }
        }
        None
    }
}

impl Drop for Screen {
    /// The cursor back, the normal screen back, the terminal's modes
    /// back.
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = io::stdout().flush();
        let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// What must catch the eye, in reverse video: a server or link DOWN, a
/// RESYNC.
fn highlight(line: &str) -> String {
    line.replace("DOWN", "\x1b[7mDOWN\x1b[0m")
        .replace("RESYNC", "\x1b[7mRESYNC\x1b[0m")
}
