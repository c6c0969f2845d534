//! What the node shows while it runs: a live view (stage, progress bar,
//! rates, p99) redrawn in place when stderr is a terminal, a plain log line
//! every few seconds otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::stats::{NodeStats, Stage};

pub struct View {
    live: bool,
    last: Instant,
    period: Duration,
    drawn: bool,
}

impl View {
    pub fn new() -> Self {
        let live = std::io::stderr().is_terminal();
        View {
            live,
            last: Instant::now(),
            period: if live {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            },
            drawn: false,
        }
    }

    /// Redraws (or logs) if the period has passed.
    pub fn update(&mut self, stats: &NodeStats) {
        if self.last.elapsed() < self.period {
            return;
        }
        self.last = Instant::now();
        if self.live {
            let l = stats.live();
            let width = 30usize;
            let filled = ((l.progress.clamp(0.0, 1.0) * width as f32).round() as usize).min(width);
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
            let (_, p99, _) = stats.percentiles(Stage::EndToEnd);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K episode {} {} frame {:>5}  stage {:<16} [{bar}] {:5.3}  p99 {p99:.1} ms\n\x1b[2K {}\x1b[1A\r",
                l.episode_index,
                if l.in_episode { "●" } else { "○" },
                l.frame_index,
                l.stage_name,
                l.progress,
                stats.summary_line(),
            );
            let _ = err.flush();
            self.drawn = true;
        } else {
            tracing::info!("{}", stats.summary_line());
        }
    }

    /// Leaves the terminal tidy.
    pub fn finish(&mut self) {
        if self.live && self.drawn {
            eprint!("\n\n");
        }
    }
}

impl Default for View {
    fn default() -> Self {
        Self::new()
    }
}
