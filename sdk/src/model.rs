//! Domain types of the core: commands, events, genesis and parameters.
//!
//! These are the types the state machine works on. The protobuf messages of
//! `blyan-schemas` are converted to and from them by hand in [`crate::codec`].

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;

/// A 32-byte blake3 hash.
pub type Hash = [u8; 32];

/// Bounds on command fields. Each is checked in `decide`; a command past one is
/// rejected and changes nothing.
pub mod limits {
    pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 64;
    pub const GPU_MODEL_CHARS_MAX: usize = 128;
    pub const ENDPOINT_CHARS_MAX: usize = 256;
    pub const EXPERTS_PER_NODE_MAX: usize = 4096;
    pub const CHAIN_TX_ID_CHARS_MAX: usize = 128;
    pub const BURNER_CHARS_MAX: usize = 128;
    pub const NETWORK_ID_CHARS_MAX: usize = 64;
    pub const GOVERNANCE_KEYS_MAX: usize = 64;
}

/// A command as the signer sent it, after its signature was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCommand {
    /// The encoded `Command`, exactly as signed.
    pub body: Vec<u8>,
    pub signer: PublicKey,
    pub signature: [u8; 64],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub idempotency_key: Vec<u8>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    RegisterNode(Capabilities),
    Heartbeat,
    RecordBurn(Burn),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub gpu_model: String,
    pub vram_mib: u32,
    pub experts: Vec<u32>,
    pub endpoint: String,
}

/// A burn as the oracle saw it on the token chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Burn {
    pub chain_tx_id: String,
    pub burner: String,
    /// Base units.
    #[serde(with = "u128_string")]
    pub amount: u128,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    pub heartbeat_timeout_ms: u64,
    #[serde(with = "u128_string")]
    pub round_burn_threshold: u128,
    pub checkpoint_interval_events: u64,
}

impl Default for Parameters {
    fn default() -> Parameters {
        Parameters {
            heartbeat_timeout_ms: 60_000,
            round_burn_threshold: 1_000_000_000_000_000_000_000,
            checkpoint_interval_events: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub network_id: String,
    pub operator_key: PublicKey,
    pub burn_oracle_key: PublicKey,
    pub governance_keys: Vec<PublicKey>,
    pub governance_threshold: u32,
    pub parameters: Parameters,
}

/// Everything that can happen. Named in the past tense; each variant is one versioned
/// protobuf message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    GenesisCreated(Genesis),
    NodeRegistered {
        node: PublicKey,
        capabilities: Capabilities,
        time_ms: u64,
    },
    HeartbeatRecorded {
        node: PublicKey,
        time_ms: u64,
    },
    BurnRecorded {
        burn: Burn,
        time_ms: u64,
    },
    CheckpointCreated(Checkpoint),
}

/// A signed commitment to the first `tree_size` event hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub tree_size: u64,
    #[serde(with = "hex_array")]
    pub merkle_root: Hash,
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

/// An event together with the signed command that caused it, as stored in a record's
/// body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    pub cause: Option<SignedCommand>,
    pub event: Event,
}

/// u128 amounts travel as decimal strings in JSON: many JSON readers lose precision
/// past 2^53.
pub mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Fixed-size byte arrays travel as hex in JSON.
pub mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        value: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes")))
    }
}
