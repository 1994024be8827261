//! Validators: keys that governance admits (M-of-N, a proposal of its own subject)
//! and that carry a reputation.
//!
//! **Reputation.** A key starts at [`REPUTATION_INITIAL`]. At each finalized round it
//! sat on the committee of, it gains 1 for every measurement of a delta that reached
//! its quorum and whose sign agreed with the delta's final score (a positive
//! measurement for a delta that scored above zero, a zero or negative one for a delta
//! that scored zero), and loses [`DISAGREEMENT_COST`] for every one that did not,
//! a measurement it never submitted included. It stays within
//! `1..=`[`REPUTATION_MAX`]. A round draws its committee weighted by reputation.

use super::RootHasher;
use super::hashed::{HashedMap, RootHash};
use crate::crypto::PublicKey;
use crate::model::Hash;

pub const REPUTATION_INITIAL: u64 = 1_000;
pub const REPUTATION_MAX: u64 = 1_000_000;
pub const DISAGREEMENT_COST: u64 = 4;

/// blake3 key-derivation context of the committee draw.
pub const DRAW_CONTEXT: &str = "blyan-ledger 2026-12 committee-draw v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validator {
    pub reputation: u64,
    /// Seq of the event that admitted it.
    pub admitted_seq: u64,
}

/// Every admitted validator, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    pub(super) admitted: HashedMap<PublicKey, Validator>,
}

/// The reputation after a round in which a validator agreed `agreed` times and
/// disagreed `disagreed` times.
pub fn next_reputation(reputation: u64, agreed: u32, disagreed: u32) -> u64 {
    reputation
        .saturating_add(u64::from(agreed))
        .saturating_sub(DISAGREEMENT_COST * u64::from(disagreed))
        .clamp(1, REPUTATION_MAX)
}

impl Validators {
    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.admitted.get(key)
    }

    pub fn len(&self) -> usize {
        self.admitted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.admitted.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &Validator)> {
        self.admitted.iter()
    }

    /// Draws `count` distinct validators (all of them when fewer are admitted), each
    /// draw weighted by reputation among those not drawn yet: draw `j` takes the
    /// validator whose cumulative weight, in key order, first exceeds
    /// `u128(blake3::derive_key(DRAW_CONTEXT, seed ‖ u32_be(j))[..16]) % total`.
    pub fn draw(&self, seed: &Hash, count: usize) -> Vec<PublicKey> {
        let mut candidates: Vec<(PublicKey, u64)> = self
            .admitted
            .iter()
            .map(|(key, validator)| (*key, validator.reputation))
            .collect();
        let mut drawn = Vec::with_capacity(count.min(candidates.len()));
        for j in 0..count.min(candidates.len()) as u32 {
            let total: u128 = candidates
                .iter()
                .map(|(_, weight)| u128::from(*weight))
                .sum();
            let mut material = Vec::with_capacity(36);
            material.extend_from_slice(seed);
            material.extend_from_slice(&j.to_be_bytes());
            let bytes = blake3::derive_key(DRAW_CONTEXT, &material);
            let mut target = u128::from_be_bytes(bytes[..16].try_into().expect("16 bytes")) % total;
            let index = candidates
                .iter()
                .position(|(_, weight)| {
                    if target < u128::from(*weight) {
                        true
                    } else {
                        target -= u128::from(*weight);
                        false
                    }
                })
                .expect("the target lies below the total weight");
            drawn.push(candidates.remove(index).0);
        }
        drawn
    }

    pub(super) fn apply_changed(&mut self, validator: PublicKey, admit: bool, seq: u64) {
        if admit {
            if !self.admitted.contains_key(&validator) {
                self.admitted.insert(
                    validator,
                    Validator {
                        reputation: REPUTATION_INITIAL,
                        admitted_seq: seq,
                    },
                );
            }
        } else {
            self.admitted.remove(&validator);
        }
    }

    pub(super) fn apply_reputation(&mut self, validator: &PublicKey, reputation: u64) {
        // A validator removed during the round keeps no reputation.
        self.admitted
            .update(validator, |entry| entry.reputation = reputation);
    }
}

impl RootHash for Validator {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.reputation);
        hasher.u64(self.admitted_seq);
    }
}
