//! Round receipts: what one key got from one round, with the proofs that link every
//! claim to a checkpoint the operator signed, so that anyone can check it offline.
//!
//! A receipt holds the round's records that concern the key, whole (so their hashes
//! are recomputed, never trusted), each with its inclusion proof in the log's Merkle
//! tree under the checkpoint, and the leaf proofs that place the key's shard in the
//! assignments root, its score in the scores root and its payouts in the rewards
//! root. [`verify`] checks every byte of it and says what it proves.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::core::rounds::{self, Payee};
use crate::crypto::PublicKey;
use crate::merkle;
use crate::model::{Checkpoint, Event, Hash, Payout, Shard, hex_array, hex_bytes, hex_vec};
use crate::record;

/// `GET /v1/rounds/{id}/receipts/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoundReceipt {
    pub network_id: String,
    pub round: u64,
    pub key: PublicKey,
    pub checkpoint: Checkpoint,
    /// The round's `AssignmentsMade`, the key's `DeltaRevealed`, the round's
    /// `ScoresRecorded`, and its `RoundFinalized` or `RoundAborted`, as far as they
    /// concern the key.
    pub records: Vec<ProvenRecord>,
    /// The key's shard in the assignments tree.
    pub assignment: Option<LeafProof>,
    /// The key's delta in the scores tree.
    pub score: Option<LeafProof>,
    /// The key's payouts in the rewards tree: as a node, as a validator, or both.
    pub payouts: Vec<LeafProof>,
}

/// One record of the log, and its inclusion proof under a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvenRecord {
    pub seq: u64,
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub prev_hash: Hash,
    pub time_ms: u64,
    /// The stored body, an encoded `LoggedEvent`.
    #[serde(with = "hex_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub body: Vec<u8>,
    /// Bottom up, against the checkpoint's root over `tree_size` record hashes.
    #[serde(with = "hex_vec")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub proof: Vec<Hash>,
}

impl ProvenRecord {
    /// The record's hash, recomputed from its contents.
    pub fn hash(&self) -> Hash {
        record::record_hash(&self.prev_hash, self.seq, self.time_ms, &self.body)
    }

    /// Checks the proof against `checkpoint` and decodes the event.
    pub fn verify(&self, checkpoint: &Checkpoint) -> Result<Event, ReceiptError> {
        let in_tree = self.seq < checkpoint.tree_size
            && merkle::verify(
                &checkpoint.merkle_root,
                self.seq as usize,
                checkpoint.tree_size as usize,
                &self.hash(),
                &self.proof,
            );
        if !in_tree {
            return Err(ReceiptError::NotInCheckpoint { seq: self.seq });
        }
        codec::decode_logged_event(&self.body)
            .map(|logged| logged.event)
            .map_err(|error| ReceiptError::Undecodable {
                seq: self.seq,
                reason: error.to_string(),
            })
    }
}

/// A leaf's place in one of a round's trees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeafProof {
    pub index: u64,
    pub count: u64,
    #[serde(with = "hex_vec")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub hashes: Vec<Hash>,
}

impl LeafProof {
    fn verify(&self, root: &Hash, content: &Hash) -> bool {
        merkle::verify(
            root,
            self.index as usize,
            self.count as usize,
            content,
            &self.hashes,
        )
    }
}

/// `GET /v1/proofs/events/{seq}`: any event's inclusion proof against the latest
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventProof {
    pub network_id: String,
    pub checkpoint: Checkpoint,
    pub record: ProvenRecord,
}

/// How the round ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Finalized,
    Aborted { reason: String },
}

/// What a receipt proves, once [`verify`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proven {
    pub round: u64,
    pub key: PublicKey,
    pub tree_size: u64,
    pub ending: Ending,
    pub shard: Option<Shard>,
    #[serde(with = "crate::model::hex_option")]
    pub delta_hash: Option<Hash>,
    pub score: Option<u64>,
    /// Whether the delta is among those accepted for the expert's next version.
    pub accepted: bool,
    #[serde(with = "crate::model::u128_option")]
    pub node_reward: Option<u128>,
    #[serde(with = "crate::model::u128_option")]
    pub validator_reward: Option<u128>,
}

/// Why a receipt does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("the checkpoint's signature does not verify under the given key")]
    BadCheckpointSignature,
    #[error("record {seq} is not in the checkpoint's tree")]
    NotInCheckpoint { seq: u64 },
    #[error("record {seq} cannot be decoded: {reason}")]
    Undecodable { seq: u64, reason: String },
    #[error("record {seq} is not one of the round's events for this key")]
    Unexpected { seq: u64 },
    #[error("the receipt holds the round's {0} twice")]
    Duplicate(&'static str),
    #[error("the receipt lacks the round's end")]
    NoEnding,
    #[error("the {0} proof is missing")]
    MissingProof(&'static str),
    #[error("the {0} proof does not verify")]
    BadProof(&'static str),
    #[error("the receipt carries a {0} proof that nothing needs")]
    UnneededProof(&'static str),
}

fn set<T>(slot: &mut Option<T>, value: T, what: &'static str) -> Result<(), ReceiptError> {
    if slot.replace(value).is_some() {
        return Err(ReceiptError::Duplicate(what));
    }
    Ok(())
}

/// Checks a receipt offline against the operator's checkpoint key: the signature, every
/// record's hash and inclusion, that each record is one of the round's events for the
/// key, and every leaf proof. Fails on any altered byte.
pub fn verify(receipt: &RoundReceipt, checkpoint_key: &PublicKey) -> Result<Proven, ReceiptError> {
    let checkpoint = &receipt.checkpoint;
    merkle::verify_checkpoint(
        checkpoint_key,
        &receipt.network_id,
        checkpoint.tree_size,
        &checkpoint.merkle_root,
        &checkpoint.signature,
    )
    .map_err(|_| ReceiptError::BadCheckpointSignature)?;
    let (round, key) = (receipt.round, receipt.key);
    let mut assignments = None;
    let mut reveal = None;
    let mut scores = None;
    let mut ending = None;
    for proven in &receipt.records {
        match proven.verify(checkpoint)? {
            Event::AssignmentsMade {
                round: of,
                shards,
                merkle_root,
                ..
            } if of == round => set(&mut assignments, (shards, merkle_root), "assignments")?,
            Event::DeltaRevealed { node, reveal: of } if node == key && of.round == round => {
                set(&mut reveal, of.delta_hash, "reveal")?
            }
            Event::ScoresRecorded {
                round: of,
                scores: values,
                merkle_root,
            } if of == round => set(&mut scores, (values, merkle_root), "scores")?,
            Event::RoundFinalized(outcome) if outcome.round == round => {
                set(&mut ending, Ok(outcome), "end")?
            }
            Event::RoundAborted {
                round: of, reason, ..
            } if of == round => set(&mut ending, Err(reason), "end")?,
            _ => return Err(ReceiptError::Unexpected { seq: proven.seq }),
        }
    }
    let ending = ending.ok_or(ReceiptError::NoEnding)?;

    let shard = match (&assignments, &receipt.assignment) {
        (None, None) => None,
        (None, Some(_)) => return Err(ReceiptError::UnneededProof("assignment")),
        (Some(_), None) => return Err(ReceiptError::MissingProof("assignment")),
        (Some((shards, root)), Some(proof)) => {
            let shard = shards
                .get(proof.index as usize)
                .filter(|shard| shard.node == key && proof.count == shards.len() as u64)
                .ok_or(ReceiptError::BadProof("assignment"))?;
            if !proof.verify(root, &rounds::shard_leaf(round, shard)) {
                return Err(ReceiptError::BadProof("assignment"));
            }
            Some(*shard)
        }
    };

    let score = match (&reveal, &scores, &receipt.score) {
        (Some(delta_hash), Some((values, root)), Some(proof)) => {
            let score = *values
                .get(proof.index as usize)
                .filter(|_| proof.count == values.len() as u64)
                .ok_or(ReceiptError::BadProof("score"))?;
            if !proof.verify(root, &rounds::score_leaf(round, &key, delta_hash, score)) {
                return Err(ReceiptError::BadProof("score"));
            }
            Some(score)
        }
        (Some(_), Some(_), None) => return Err(ReceiptError::MissingProof("score")),
        (_, _, Some(_)) => return Err(ReceiptError::UnneededProof("score")),
        (_, _, None) => None,
    };

    let (mut node_reward, mut validator_reward, mut accepted) = (None, None, false);
    let ending = match ending {
        Err(reason) => {
            if !receipt.payouts.is_empty() {
                return Err(ReceiptError::UnneededProof("payout"));
            }
            Ending::Aborted { reason }
        }
        Ok(outcome) => {
            let count = (outcome.nodes.len() + outcome.validators.len()) as u64;
            // The payouts the outcome holds for the key, as (index, leaf, amount).
            let mut owed = Vec::new();
            if let Some(position) = outcome.nodes.iter().position(|payout| payout.key == key) {
                let payout = &outcome.nodes[position];
                owed.push((position, rounds::payout_leaf(round, Payee::Node, payout)));
                node_reward = Some(payout.amount);
            }
            if let Some(position) = outcome
                .validators
                .iter()
                .position(|validator| validator.validator == key)
            {
                let payout = Payout {
                    key,
                    amount: outcome.validators[position].reward,
                };
                owed.push((
                    outcome.nodes.len() + position,
                    rounds::payout_leaf(round, Payee::Validator, &payout),
                ));
                validator_reward = Some(payout.amount);
            }
            if receipt.payouts.len() > owed.len() {
                return Err(ReceiptError::UnneededProof("payout"));
            }
            if receipt.payouts.len() < owed.len() {
                return Err(ReceiptError::MissingProof("payout"));
            }
            for ((index, leaf), proof) in owed.iter().zip(&receipt.payouts) {
                if proof.index != *index as u64
                    || proof.count != count
                    || !proof.verify(&outcome.rewards_root, leaf)
                {
                    return Err(ReceiptError::BadProof("payout"));
                }
            }
            accepted = reveal.is_some_and(|hash| outcome.accepted.contains(&hash));
            Ending::Finalized
        }
    };
    Ok(Proven {
        round,
        key,
        tree_size: checkpoint.tree_size,
        ending,
        shard,
        delta_hash: reveal,
        score,
        accepted,
        node_reward,
        validator_reward,
    })
}

/// Checks an event proof offline against the operator's checkpoint key, and returns
/// the event it proves.
pub fn verify_event(proof: &EventProof, checkpoint_key: &PublicKey) -> Result<Event, ReceiptError> {
    let checkpoint = &proof.checkpoint;
    merkle::verify_checkpoint(
        checkpoint_key,
        &proof.network_id,
        checkpoint.tree_size,
        &checkpoint.merkle_root,
        &checkpoint.signature,
    )
    .map_err(|_| ReceiptError::BadCheckpointSignature)?;
    proof.record.verify(checkpoint)
}
