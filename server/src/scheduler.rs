//! The round scheduler: after every commit, and when the next deadline comes, it asks
//! the core what the log is owed ([`State::due`](blyan_sdk::core::State::due)) and
//! submits it through the writer's queue: a round that can open, a tick for the
//! earliest deadline that passed, the policy calls that rounds await (each on a
//! blocking worker), the merges that finalized rounds owe ([`learning::merge`]), and
//! the close of the open liveness window once it is due and holds heartbeats (its
//! blob stored first, then the event). Deadlines that passed while the server was
//! down are due at once, earliest first. The core decides every one of them, so a late or repeated
//! submission is refused, never applied twice.

use std::sync::Arc;
use std::time::Duration;

use blyan_plugin_host::Host;
use blyan_sdk::core::rounds::{self, Due};
use blyan_sdk::liveness;
use blyan_sdk::model::ServerInput;

use crate::blobs::BlobStore;
use crate::engine::{Engine, SubmitError};
use crate::learning::{self, MergeError};
use crate::policy::{self, CallError};

/// Closes the open liveness window if it is due and holds heartbeats: stores their
/// blob, then logs the window. A blob that can't be stored leaves the window open for
/// the next pass.
async fn close_window(engine: &Engine, blobs: &BlobStore, now: u64) -> Result<bool, SubmitError> {
    let Some((window, heartbeats)) = engine.take_heartbeats(now) else {
        return Ok(false);
    };
    // The writer stamps the close with its log time.
    let (sealed, blob) = liveness::seal(window, 0, &heartbeats);
    if let Err(error) = blobs.put_bytes(blob).await {
        tracing::error!(window, %error, "a liveness window's blob could not be stored");
        return Ok(false);
    }
    engine
        .submit_input(ServerInput::CloseLivenessWindow(sealed))
        .await
        .map(|receipt| receipt.is_some())
}

/// Runs until the writer stops.
pub async fn run(engine: Engine, host: Arc<Host>, blobs: Arc<BlobStore>, clock_ms: fn() -> u64) {
    let mut commits = engine.subscribe();
    loop {
        let now = clock_ms();
        let (due, next_deadline) = {
            let published = engine.published();
            (
                published.state.due(now, &published.head_hash),
                rounds::next_deadline(published.state.rounds()),
            )
        };
        let mut progressed = match close_window(&engine, &blobs, now).await {
            Ok(closed) => closed,
            Err(SubmitError::WriterStopped) => return,
            Err(error) => {
                tracing::debug!(%error, "a liveness window's close was refused");
                false
            }
        };
        for due in due {
            let submitted = match due {
                Due::Open(round) => engine
                    .submit_input(ServerInput::OpenRound { round })
                    .await
                    .map(|receipt| receipt.is_some()),
                Due::Tick(time_ms) => engine
                    .submit_input(ServerInput::Tick { time_ms })
                    .await
                    .map(|receipt| receipt.is_some()),
                Due::Policy { round, .. } => {
                    match policy::call(&engine, host.clone(), round).await {
                        Ok(called) => Ok(called.is_some()),
                        Err(CallError::Submit(error)) => Err(error),
                        Err(CallError::AllFailed(error)) => {
                            tracing::error!(round, %error, "a round's policy call failed");
                            Ok(false)
                        }
                        // The next pass tries again.
                        Err(CallError::Store(error)) => {
                            tracing::error!(round, %error, "a round's plugin could not be read");
                            Ok(false)
                        }
                    }
                }
                Due::Merge(round) => match learning::merge(&engine, &blobs, round).await {
                    Ok(merged) => Ok(merged.flatten().is_some()),
                    Err(MergeError::Submit(error)) => Err(error),
                    // A blob that can't be read, or weights that can't be made: the
                    // expert's chain waits, and the next pass tries again.
                    Err(error) => {
                        tracing::error!(round, %error, "a round's merge failed");
                        Ok(false)
                    }
                },
            };
            match submitted {
                Ok(done) => progressed |= done,
                Err(SubmitError::WriterStopped) => return,
                // Refused: the state moved on since it was read. The next pass reads
                // it again.
                Err(error) => tracing::debug!(%error, "a scheduled input was refused"),
            }
        }
        if progressed {
            continue;
        }
        let wait = next_deadline.map_or(Duration::from_secs(1), |deadline| {
            Duration::from_millis(deadline.saturating_sub(now).clamp(1, 1_000))
        });
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
        }
        if engine.writer_stopped() {
            return;
        }
    }
}
