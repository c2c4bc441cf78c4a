//! Progress of long commands: an indicatif bar (rows, rows/s, ETA) when stderr is a
//! terminal, otherwise one plain line per batch (what logs and the tests read).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    already: u64,
    batches: u64,
    started: Instant,
}

impl Progress {
    /// `total` is the expected number of rows when known; `already` the rows done before
    /// this run (a resumed backfill).
    pub fn new(label: &'static str, total: Option<u64>, already: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => {
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                }
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{msg} [{bar:30}] {human_pos}/{human_len} rows, {rate}, ETA {eta}"
            } else {
                "{msg} {human_pos} rows, {rate}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(
                    style
                        .with_key(
                            "rate",
                            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = write!(w, "{:.0} rows/s", state.per_sec());
                            },
                        )
                        .progress_chars("=> "),
                );
            }
            bar.set_message(label);
            bar.set_position(already);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            label,
            bar,
            total,
            done: already,
            already,
            batches: 0,
            started: Instant::now(),
        }
    }

    /// Records one finished batch of `rows`; `detail` is appended to the plain line.
    pub fn batch(&mut self, rows: u64, detail: &str) {
        self.done += rows;
        self.batches += 1;
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None => {
                let rate = (self.done - self.already) as f64
                    / self.started.elapsed().as_secs_f64().max(1e-3);
                let total = self.total.map_or(String::new(), |t| format!("/{t}"));
                eprintln!(
                    "{}: batch {}: {}{} rows, {:.0} rows/s{}",
                    self.label,
                    self.batches,
                    self.done,
                    total,
                    rate,
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(", {detail}")
                    }
                );
            }
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Human-readable rate for summaries.
pub fn rate(rows: u64, elapsed: Duration) -> String {
    format!(
        "{:.0} rows/s",
        rows as f64 / elapsed.as_secs_f64().max(1e-3)
    )
}
