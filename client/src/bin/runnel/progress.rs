//! The one-line progress report of long runs: on standard error, rewritten in place at most
//! once a second, and only when standard error is a terminal, so logs and pipes stay clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    shown_at: Option<Instant>,
    terminal: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { shown_at: None, terminal: std::io::stderr().is_terminal() }
    }

    /// Shows `line` unless a line was shown less than a second ago.
    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if !self.terminal || self.shown_at.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.shown_at = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\x1b[K", line());
        let _ = err.flush();
    }

    /// Ends the progress line (if one was shown) so the next output starts on its own line.
    pub fn finish(&mut self) {
        if self.shown_at.take().is_some() {
            eprintln!();
        }
    }
}
