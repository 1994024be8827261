//! The state written out whole, so that a server can start from it and replay only
//! the log after it.
//!
//! A snapshot is derived: the log alone still makes the state, and a snapshot lost or
//! refused costs only a longer start. It holds every field of the state but what the
//! log keeps whole and a reader takes back from it: the genesis (the record at seq 0,
//! with its plugin modules) and the modules that plugin fallbacks stored (each in its
//! own event). It is JSON; a map is its entries in key order, and its lattice hash is
//! rebuilt from them on reading. Nothing read is trusted: the caller compares the
//! restored state's root, which covers every field but a round's derived tasks, with
//! the root of the state that was written (and the server a hash of the whole body).

use std::sync::Arc;

use super::State;
use crate::model::Event;

/// Why a snapshot could not be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error("the snapshot does not decode: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the snapshot needs the event at seq {seq}: {reason}")]
    Event { seq: u64, reason: String },
}

impl State {
    /// Appends the state as a snapshot's bytes to `out`, to read back with
    /// [`State::restore`].
    pub fn snapshot_to(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("the state always serializes");
    }

    /// Reads back a snapshot written by [`State::snapshot`]; `event_at(seq)` is the
    /// logged event at `seq`, for what the snapshot leaves to the log.
    pub fn restore(
        bytes: &[u8],
        event_at: &mut dyn FnMut(u64) -> Result<Event, String>,
    ) -> Result<State, RestoreError> {
        let mut state: State = serde_json::from_slice(bytes)?;
        let mut event =
            |seq: u64| event_at(seq).map_err(|reason| RestoreError::Event { seq, reason });
        if state.events_applied > 0 {
            let Event::GenesisCreated(genesis) = event(0)? else {
                return Err(RestoreError::Event {
                    seq: 0,
                    reason: "it is not the genesis".into(),
                });
            };
            state.genesis = Some(Arc::new(*genesis));
        }
        let stored: Vec<u64> = state
            .governance
            .fallbacks
            .iter()
            .filter(|(_, fallback)| fallback.used_module.is_some())
            .map(|(seq, _)| *seq)
            .collect();
        for seq in stored {
            let Event::PluginFallback(logged) = event(seq)? else {
                return Err(RestoreError::Event {
                    seq,
                    reason: "it is not a plugin fallback".into(),
                });
            };
            let mut refused = None;
            state.governance.fallbacks.update(&seq, |fallback| {
                match (&fallback.used_module, logged.used_module) {
                    (Some(written), Some(module)) if written.hash == module.hash => {
                        fallback.used_module = Some(module);
                    }
                    _ => refused = Some("its module is not the one the snapshot names"),
                }
            });
            if let Some(reason) = refused {
                return Err(RestoreError::Event {
                    seq,
                    reason: reason.into(),
                });
            }
        }
        Ok(state)
    }
}

/// Serde for an `Arc<T>` field, written as the `T` it shares.
pub(crate) mod arc {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Arc<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        T::serialize(value, serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(deserializer).map(Arc::new)
    }
}

/// Serde for an `Option<Arc<T>>` field.
pub(crate) mod arc_option {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Arc<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_deref().serialize(serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Arc<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(|value| value.map(Arc::new))
    }
}

/// Serde for an `Arc<[T]>` field, written as a sequence.
pub(crate) mod arc_slice {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Arc<[T]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        <[T]>::serialize(value, serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<[T]>, D::Error> {
        Vec::<T>::deserialize(deserializer).map(Arc::from)
    }
}
