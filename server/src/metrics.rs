//! Counters exported at `GET /metrics` in the Prometheus text format.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::SubmitError;

#[derive(Debug, Default)]
pub struct Metrics {
    commands_accepted: AtomicU64,
    /// By error code.
    commands_rejected: Mutex<BTreeMap<Cow<'static, str>, u64>>,
    write_batches: AtomicU64,
    write_records: AtomicU64,
    write_micros: AtomicU64,
}

impl Metrics {
    pub fn record_write(&self, records: usize, elapsed: Duration) {
        self.write_batches.fetch_add(1, Ordering::Relaxed);
        self.write_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.write_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn record_answer<T>(&self, answer: &Result<T, SubmitError>) {
        match answer {
            Ok(_) => {
                self.commands_accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self.record_rejection(error.code()),
        }
    }

    pub fn record_rejection(&self, code: impl Into<Cow<'static, str>>) {
        *self
            .commands_rejected
            .lock()
            .expect("metrics lock")
            .entry(code.into())
            .or_default() += 1;
    }

    /// Renders every counter, plus the given gauges.
    pub fn render(&self, events: u64, writer_stopped: bool) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "blyan_commands_accepted_total",
            "Commands answered with a receipt.",
            self.commands_accepted.load(Ordering::Relaxed),
        );
        counter(
            "blyan_write_batches_total",
            "Synced group-commit writes.",
            self.write_batches.load(Ordering::Relaxed),
        );
        counter(
            "blyan_write_records_total",
            "Records written by group commits.",
            self.write_records.load(Ordering::Relaxed),
        );
        let seconds = self.write_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP blyan_write_seconds_total Time spent in synced writes.\n# TYPE blyan_write_seconds_total counter\nblyan_write_seconds_total {seconds}"
        );
        let _ = writeln!(
            out,
            "# HELP blyan_commands_rejected_total Commands refused, by error code.\n# TYPE blyan_commands_rejected_total counter"
        );
        for (code, count) in self.commands_rejected.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "blyan_commands_rejected_total{{code=\"{code}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP blyan_log_events Events in the log.\n# TYPE blyan_log_events gauge\nblyan_log_events {events}"
        );
        let _ = writeln!(
            out,
            "# HELP blyan_writer_stopped 1 after a storage failure stopped the writer.\n# TYPE blyan_writer_stopped gauge\nblyan_writer_stopped {}",
            u8::from(writer_stopped)
        );
        out
    }
}
