//! Progress for long runs: a bar on a terminal, a line every 10 s otherwise (logs, CI), or nothing.
//!
//! Used by every command that works through many items (ingest, eval, copy). Not for: the final
//! summary, which each command prints itself.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
pub enum Progress {
    Bar {
        bar: ProgressBar,
        failed: u64,
    },
    Lines {
        what: &'static str,
        last: Instant,
        total: u64,
        done: u64,
        failed: u64,
        start: Instant,
    },
    Quiet,
}

impl Progress {
    /// Progress over `total` items; `what` names what is counted in the periodic lines ("embedded").
    pub fn new(total: u64, quiet: bool, what: &'static str) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar { bar, failed: 0 }
        } else {
            let now = Instant::now();
            Progress::Lines {
                what,
                last: now,
                total,
                done: 0,
                failed: 0,
                start: now,
            }
        }
    }

    /// `done` more items went well, `failed` more did not.
    pub fn advance(&mut self, done: u64, failed: u64) {
        match self {
            Progress::Bar {
                bar,
                failed: total_failed,
            } => {
                bar.inc(done + failed);
                if failed > 0 {
                    *total_failed += failed;
                    bar.set_message(format!("{total_failed} failed"));
                }
            }
            Progress::Lines {
                what,
                last,
                total,
                done: d,
                failed: f,
                start,
            } => {
                *d += done;
                *f += failed;
                if last.elapsed() >= Duration::from_secs(10) || *d + *f == *total {
                    *last = Instant::now();
                    let rate = *d as f64 / start.elapsed().as_secs_f64().max(1e-9);
                    eprintln!(
                        "imgvec: {}/{} {what}, {} failed, {rate:.2}/s",
                        *d, *total, *f
                    );
                }
            }
            Progress::Quiet => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Progress::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}
