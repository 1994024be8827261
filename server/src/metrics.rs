//! Counters, histograms and gauges exported at `GET /metrics` in the Prometheus text
//! format. The writer counts what it committed; the gauges are read from the
//! published state at each scrape. deploy/prometheus/ holds the alert rules on them,
//! deploy/grafana/ a dashboard.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blyan_sdk::model::{Phase, PluginKind};

use crate::engine::SubmitError;

/// Upper bounds of the synced-write latency buckets, in seconds.
const WRITE_SECONDS_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the records-per-write buckets.
const BATCH_RECORDS_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A Prometheus histogram with fixed buckets.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last counts what is past every bound.
    counts: Vec<AtomicU64>,
    /// The sum, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {cumulative}"
        );
    }
}

/// What the writer committed that operators watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    RoundFinalized,
    RoundAborted,
    /// A deadline passed and closed a phase (a `Tick` that decided events).
    DeadlinePassed,
    PluginFallback(PluginKind),
}

/// Read from the published state and the API at each scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub events: u64,
    pub writer_stopped: bool,
    /// The rounds not yet ended, by phase.
    pub rounds_running: BTreeMap<Phase, u64>,
    /// How far the running round most behind is past its phase's deadline; 0 when
    /// none is.
    pub round_overdue_seconds: f64,
    pub subscribers: usize,
    /// Each expert's newest version and the held-out loss (mean squared error) its
    /// merge measured, with the other experts at the versions its round pinned.
    pub experts: Vec<(u32, Option<f64>)>,
    /// Blobs stored, and their bytes.
    pub blobs: (u64, u64),
}

#[derive(Debug)]
pub struct Metrics {
    commands_accepted: AtomicU64,
    /// By error code.
    commands_rejected: Mutex<BTreeMap<Cow<'static, str>, u64>>,
    write_batches: AtomicU64,
    write_records: AtomicU64,
    write_micros: AtomicU64,
    write_seconds: Histogram,
    batch_records: Histogram,
    rounds_finalized: AtomicU64,
    rounds_aborted: AtomicU64,
    deadlines_passed: AtomicU64,
    fallbacks: [AtomicU64; PluginKind::ALL.len()],
    /// The events of the state snapshot the start began from (0 without one), and
    /// the events it replayed from the log.
    start_snapshot_events: AtomicU64,
    start_replayed_events: AtomicU64,
    /// State snapshots written and failed, and the events of the newest written.
    snapshots_written: AtomicU64,
    snapshot_failures: AtomicU64,
    snapshot_events: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            commands_accepted: AtomicU64::new(0),
            commands_rejected: Mutex::new(BTreeMap::new()),
            write_batches: AtomicU64::new(0),
            write_records: AtomicU64::new(0),
            write_micros: AtomicU64::new(0),
            write_seconds: Histogram::new(&WRITE_SECONDS_BUCKETS),
            batch_records: Histogram::new(&BATCH_RECORDS_BUCKETS),
            rounds_finalized: AtomicU64::new(0),
            rounds_aborted: AtomicU64::new(0),
            deadlines_passed: AtomicU64::new(0),
            fallbacks: std::array::from_fn(|_| AtomicU64::new(0)),
            start_snapshot_events: AtomicU64::new(0),
            start_replayed_events: AtomicU64::new(0),
            snapshots_written: AtomicU64::new(0),
            snapshot_failures: AtomicU64::new(0),
            snapshot_events: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// What the start replayed: from a snapshot of `snapshot_events` events (0 for
    /// none), `replayed` events of the log.
    pub fn record_start(&self, snapshot_events: u64, replayed: u64) {
        self.start_snapshot_events
            .store(snapshot_events, Ordering::Relaxed);
        self.start_replayed_events
            .store(replayed, Ordering::Relaxed);
    }

    /// A state snapshot of `events` events was written, or failed to be.
    pub fn record_snapshot(&self, events: u64, stored: bool) {
        if stored {
            self.snapshot_events.fetch_max(events, Ordering::Relaxed);
            self.snapshots_written.fetch_add(1, Ordering::Relaxed);
        } else {
            self.snapshot_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The state snapshots written since the start, and the events of the newest.
    pub fn snapshot_written(&self) -> (u64, u64) {
        (
            self.snapshots_written.load(Ordering::Relaxed),
            self.snapshot_events.load(Ordering::Relaxed),
        )
    }

    /// What the start replayed: the events of the snapshot it began from (0 for none),
    /// and the events of the log it folded after it.
    pub fn start_replay(&self) -> (u64, u64) {
        (
            self.start_snapshot_events.load(Ordering::Relaxed),
            self.start_replayed_events.load(Ordering::Relaxed),
        )
    }

    pub fn record_write(&self, records: usize, elapsed: Duration) {
        self.write_batches.fetch_add(1, Ordering::Relaxed);
        self.write_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.write_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.write_seconds.observe(elapsed.as_secs_f64());
        self.batch_records.observe(records as f64);
    }

    /// Counts what a synced write committed.
    pub fn record_committed(&self, observed: impl IntoIterator<Item = Observed>) {
        for observed in observed {
            let counter = match observed {
                Observed::RoundFinalized => &self.rounds_finalized,
                Observed::RoundAborted => &self.rounds_aborted,
                Observed::DeadlinePassed => &self.deadlines_passed,
                Observed::PluginFallback(kind) => &self.fallbacks[kind as usize],
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
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

    /// Renders every counter and histogram, plus the given gauges.
    pub fn render(&self, gauges: &Gauges) -> String {
        let Gauges {
            events,
            writer_stopped,
            rounds_running,
            round_overdue_seconds,
            subscribers,
            experts,
            blobs: (blobs, blob_bytes),
        } = gauges;
        let (snapshot_events, replayed_events) = self.start_replay();
        let (snapshots_written, snapshot_newest) = self.snapshot_written();
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
        counter(
            "blyan_snapshots_written_total",
            "State snapshots written.",
            snapshots_written,
        );
        counter(
            "blyan_snapshot_failures_total",
            "State snapshots that could not be written (logged with the reason).",
            self.snapshot_failures.load(Ordering::Relaxed),
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
        self.write_seconds.render(
            &mut out,
            "blyan_write_seconds",
            "Latency of synced group-commit writes.",
        );
        self.batch_records.render(
            &mut out,
            "blyan_write_batch_records",
            "Records per synced group-commit write.",
        );
        let _ = writeln!(
            out,
            "# HELP blyan_rounds_ended_total Rounds ended since start, by how.\n# TYPE blyan_rounds_ended_total counter\nblyan_rounds_ended_total{{ending=\"finalized\"}} {}\nblyan_rounds_ended_total{{ending=\"aborted\"}} {}",
            self.rounds_finalized.load(Ordering::Relaxed),
            self.rounds_aborted.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP blyan_deadlines_passed_total Phases closed by their deadline since start.\n# TYPE blyan_deadlines_passed_total counter\nblyan_deadlines_passed_total {}",
            self.deadlines_passed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP blyan_plugin_fallbacks_total Policy calls since start in which a plugin failed and the next of its chain ran, by kind.\n# TYPE blyan_plugin_fallbacks_total counter"
        );
        for kind in PluginKind::ALL {
            let _ = writeln!(
                out,
                "blyan_plugin_fallbacks_total{{kind=\"{kind}\"}} {}",
                self.fallbacks[kind as usize].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP blyan_rounds_running Rounds not yet ended, by phase.\n# TYPE blyan_rounds_running gauge"
        );
        for phase in Phase::ALL {
            if !matches!(phase, Phase::Finalized | Phase::Aborted) {
                let count = rounds_running.get(&phase).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "blyan_rounds_running{{phase=\"{}\"}} {count}",
                    phase.name()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP blyan_round_overdue_seconds How far the running round most behind is past its phase's deadline.\n# TYPE blyan_round_overdue_seconds gauge\nblyan_round_overdue_seconds {round_overdue_seconds}"
        );
        let _ = writeln!(
            out,
            "# HELP blyan_websocket_subscribers WebSocket subscribers connected.\n# TYPE blyan_websocket_subscribers gauge\nblyan_websocket_subscribers {subscribers}"
        );
        let _ = writeln!(
            out,
            "# HELP blyan_expert_version Each expert's newest version on the parameter chain.\n# TYPE blyan_expert_version gauge"
        );
        for (expert, (version, _)) in experts.iter().enumerate() {
            let _ = writeln!(out, "blyan_expert_version{{expert=\"{expert}\"}} {version}");
        }
        let _ = writeln!(
            out,
            "# HELP blyan_expert_held_out_loss The held-out mean squared error its merge measured for each expert's newest version, with the other experts at the versions its round pinned.\n# TYPE blyan_expert_held_out_loss gauge"
        );
        for (expert, (_, loss)) in experts.iter().enumerate() {
            if let Some(loss) = loss {
                let _ = writeln!(
                    out,
                    "blyan_expert_held_out_loss{{expert=\"{expert}\"}} {loss}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP blyan_blobs Blobs stored (datasets, deltas, expert weights).\n# TYPE blyan_blobs gauge\nblyan_blobs {blobs}\n# HELP blyan_blob_bytes Bytes of the blobs stored.\n# TYPE blyan_blob_bytes gauge\nblyan_blob_bytes {blob_bytes}"
        );
        let _ = writeln!(
            out,
            "# HELP blyan_log_events Events in the log.\n# TYPE blyan_log_events gauge\nblyan_log_events {events}"
        );
        let _ = writeln!(
            out,
            "# HELP blyan_start_snapshot_events Events of the state snapshot the server's start began from; 0 when it replayed the whole log.\n# TYPE blyan_start_snapshot_events gauge\nblyan_start_snapshot_events {snapshot_events}\n# HELP blyan_start_replayed_events Events the server's start replayed from the log.\n# TYPE blyan_start_replayed_events gauge\nblyan_start_replayed_events {replayed_events}\n# HELP blyan_snapshot_events Events of the newest state snapshot written since the start; 0 for none.\n# TYPE blyan_snapshot_events gauge\nblyan_snapshot_events {snapshot_newest}",
        );
        let _ = writeln!(
            out,
            "# HELP blyan_writer_stopped 1 after a storage failure stopped the writer.\n# TYPE blyan_writer_stopped gauge\nblyan_writer_stopped {}",
            u8::from(*writer_stopped)
        );
        out
    }
}
