//! A liveness window's blob: the signed heartbeats a [`LivenessWindow`] event stands
//! for, how the server seals them, and how an auditor checks them.
//!
//! The blob is a `HeartbeatWindowV1` (event.proto): the window's number and one
//! signed heartbeat per node, in registry order. The event names the blob by its
//! blake3 hash and carries two digests of its content: the bitmap of the nodes in it
//! and the RFC 6962 Merkle root over blake3 of each signed heartbeat's bytes. The core
//! checks the event's shape; [`verify`] checks the blob against it: every signature,
//! every heartbeat naming this window, one per node, exactly the bitmap's nodes, and
//! the root.

use prost::Message;

use blyan_schemas::v1 as pb;

use crate::codec;
use crate::core::State;
use crate::core::registry::is_live;
use crate::crypto::{self, COMMAND_DOMAIN};
use crate::merkle;
use crate::model::{Action, Hash, LivenessWindow, SignedCommand};

/// Why a window's blob does not match its event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LivenessError {
    #[error("the blob hashes to {found}, not to the event's")]
    BlobHash { found: String },
    #[error("the blob does not decode: {0}")]
    Decode(String),
    #[error("the blob is of window {found}, the event of window {expected}")]
    Window { found: u64, expected: u64 },
    #[error("heartbeat {position}: {reason}")]
    Heartbeat { position: usize, reason: String },
    #[error("the blob holds {blob} heartbeats; the bitmap names {bitmap} nodes")]
    Count { blob: usize, bitmap: usize },
    #[error("the heartbeats' Merkle root is not the event's")]
    Root,
}

/// Seals a window: `heartbeats` are each node's registry index and signed heartbeat,
/// in index order with no index twice. Returns the event's content and the blob.
pub fn seal(
    window: u64,
    closed_ms: u64,
    heartbeats: &[(u64, SignedCommand)],
) -> (LivenessWindow, Vec<u8>) {
    debug_assert!(
        heartbeats.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "heartbeats in registry order, one per node"
    );
    let mut live = Vec::new();
    for (index, _) in heartbeats {
        let byte = (index / 8) as usize;
        if live.len() <= byte {
            live.resize(byte + 1, 0);
        }
        live[byte] |= 1 << (index % 8);
    }
    let blob = pb::HeartbeatWindowV1 {
        window,
        heartbeats: heartbeats
            .iter()
            .map(|(_, command)| codec::signed_command_to_pb(command))
            .collect(),
    }
    .encode_to_vec();
    let leaves: Vec<Hash> = heartbeats
        .iter()
        .map(|(_, command)| leaf(command))
        .collect();
    let sealed = LivenessWindow {
        window,
        closed_ms,
        live,
        heartbeats_root: merkle::Tree::new(&leaves).root(),
        blob: *blake3::hash(&blob).as_bytes(),
    };
    (sealed, blob)
}

/// A heartbeat's Merkle content: blake3 of its `SignedCommand` bytes.
fn leaf(command: &SignedCommand) -> Hash {
    *blake3::hash(&codec::encode_signed_command(command)).as_bytes()
}

/// Checks `blob` against `event`, with the registry of `state` (any state at or after
/// the window's close: registry indexes never change). Returns the heartbeats' count.
pub fn verify(
    state: &State,
    network_id: &str,
    event: &LivenessWindow,
    blob: &[u8],
) -> Result<usize, LivenessError> {
    let found = *blake3::hash(blob).as_bytes();
    if found != event.blob {
        return Err(LivenessError::BlobHash {
            found: hex::encode(found),
        });
    }
    let decoded = pb::HeartbeatWindowV1::decode(blob)
        .map_err(|error| LivenessError::Decode(error.to_string()))?;
    if decoded.window != event.window {
        return Err(LivenessError::Window {
            found: decoded.window,
            expected: event.window,
        });
    }
    let mut leaves = Vec::with_capacity(decoded.heartbeats.len());
    let mut index_last = None;
    for (position, message) in decoded.heartbeats.into_iter().enumerate() {
        let refuse = |reason: String| LivenessError::Heartbeat { position, reason };
        let signed = codec::signed_command_from_pb(message).map_err(|error| refuse(error.0))?;
        crypto::verify(
            COMMAND_DOMAIN,
            network_id,
            &signed.body,
            &signed.signer,
            &signed.signature,
        )
        .map_err(|error| refuse(error.to_string()))?;
        let command = codec::decode_command(&signed.body).map_err(|error| refuse(error.0))?;
        match command.action {
            Action::Heartbeat { window } if window == event.window => {}
            Action::Heartbeat { window } => {
                return Err(refuse(format!("signed for window {window}")));
            }
            _ => return Err(refuse("not a heartbeat".into())),
        }
        let node = state
            .node(&signed.signer)
            .ok_or_else(|| refuse(format!("{} is not registered", signed.signer)))?;
        if index_last.is_some_and(|last| node.index <= last) {
            return Err(refuse("out of registry order, or a node twice".into()));
        }
        if !is_live(&event.live, node.index) {
            return Err(refuse(format!(
                "{} (node {}) is not in the bitmap",
                signed.signer, node.index
            )));
        }
        index_last = Some(node.index);
        leaves.push(leaf(&signed));
    }
    let bitmap: usize = event
        .live
        .iter()
        .map(|byte| byte.count_ones() as usize)
        .sum();
    if leaves.len() != bitmap {
        return Err(LivenessError::Count {
            blob: leaves.len(),
            bitmap,
        });
    }
    if merkle::Tree::new(&leaves).root() != event.heartbeats_root {
        return Err(LivenessError::Root);
    }
    Ok(leaves.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::genesis::DevKeys;
    use crate::model::{Capabilities, Command, Event};

    /// The dev genesis with three nodes registered, their keys, and the network.
    fn registered() -> (State, Vec<Keypair>, String) {
        let genesis = DevKeys::derive().genesis();
        let network = genesis.network_id.clone();
        let mut state = State::default();
        state.apply(&Event::GenesisCreated(Box::new(genesis)));
        let nodes: Vec<Keypair> = (0..3u8)
            .map(|i| Keypair::from_secret([40 + i; 32]))
            .collect();
        for node in &nodes {
            state.apply(&Event::NodeRegistered {
                node: node.public(),
                capabilities: Capabilities {
                    gpu_model: "H100".into(),
                    vram_mib: 80,
                    experts: vec![0],
                    endpoint: "https://n".into(),
                },
                time_ms: 1,
            });
        }
        (state, nodes, network)
    }

    fn beat(node: &Keypair, network: &str, window: u64) -> SignedCommand {
        let command = Command {
            idempotency_key: vec![1],
            action: Action::Heartbeat { window },
        };
        codec::sign_command(node, network, &command)
    }

    #[test]
    fn a_sealed_window_verifies_and_any_change_to_it_fails() {
        let (state, nodes, network) = registered();
        let held = vec![
            (0, beat(&nodes[0], &network, 4)),
            (2, beat(&nodes[2], &network, 4)),
        ];
        let (window, blob) = seal(4, 9, &held);
        assert_eq!(window.live, vec![0b101]);
        assert_eq!(verify(&state, &network, &window, &blob), Ok(2));

        let mut altered = blob.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            verify(&state, &network, &window, &altered),
            Err(LivenessError::BlobHash { .. })
        ));
        let fewer = LivenessWindow {
            live: vec![0b001],
            ..window.clone()
        };
        assert!(matches!(
            verify(&state, &network, &fewer, &blob),
            Err(LivenessError::Heartbeat { position: 1, .. })
        ));
        let more = LivenessWindow {
            live: vec![0b111],
            ..window.clone()
        };
        assert_eq!(
            verify(&state, &network, &more, &blob),
            Err(LivenessError::Count { blob: 2, bitmap: 3 })
        );
        let rooted = LivenessWindow {
            heartbeats_root: [0; 32],
            ..window.clone()
        };
        assert_eq!(
            verify(&state, &network, &rooted, &blob),
            Err(LivenessError::Root)
        );
        assert!(matches!(
            verify(&state, "another-network", &window, &blob),
            Err(LivenessError::Heartbeat { position: 0, .. })
        ));
    }

    #[test]
    fn a_blob_of_heartbeats_signed_for_another_window_or_out_of_order_fails() {
        let (state, nodes, network) = registered();
        // A heartbeat of window 3 replayed into window 4.
        let stale = vec![(0, beat(&nodes[0], &network, 3))];
        let (window, blob) = seal(4, 9, &stale);
        assert!(matches!(
            verify(&state, &network, &window, &blob),
            Err(LivenessError::Heartbeat { position: 0, .. })
        ));
        // The blob of window 4 under the event of window 5.
        let (window, blob) = seal(4, 9, &[(1, beat(&nodes[1], &network, 4))]);
        let renumbered = LivenessWindow {
            window: 5,
            ..window
        };
        assert_eq!(
            verify(&state, &network, &renumbered, &blob),
            Err(LivenessError::Window {
                found: 4,
                expected: 5
            })
        );
        // A blob naming a node under another's index: out of registry order.
        let swapped = pb::HeartbeatWindowV1 {
            window: 4,
            heartbeats: [&nodes[2], &nodes[0]]
                .iter()
                .map(|node| codec::signed_command_to_pb(&beat(node, &network, 4)))
                .collect(),
        }
        .encode_to_vec();
        let (window, _) = seal(
            4,
            9,
            &[
                (0, beat(&nodes[0], &network, 4)),
                (2, beat(&nodes[2], &network, 4)),
            ],
        );
        let event = LivenessWindow {
            blob: *blake3::hash(&swapped).as_bytes(),
            ..window
        };
        assert!(matches!(
            verify(&state, &network, &event, &swapped),
            Err(LivenessError::Heartbeat { position: 1, .. })
        ));
    }
}
