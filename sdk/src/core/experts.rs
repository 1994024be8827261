//! The parameter chain: every version of every expert of the genesis model.
//!
//! - **Version 0** of each expert is the genesis's ([`ModelSpec::expert_hashes`]), and
//!   so are the router's weights ([`ModelSpec::shared_hash`]), which rounds never
//!   change.
//! - **A merge is owed** by every finalized round that accepted a delta. While it is
//!   owed, no round of that expert opens, so every round trains from its expert's
//!   newest version, and the version a round pinned is the one its merge extends.
//! - **The merge** is the server's, in blyan-ml: the version the round trained from,
//!   plus the accepted deltas that decode and fit the expert, each weighted by its
//!   score over their total. It stores the weights as a blob, measures the held-out
//!   loss of the model before and after, and submits a [`ServerInput::UpdateExpert`].
//!   The core checks what it can without the weights: the round owes a merge, the
//!   expert is the round's, the version is the next one, the parent is the newest
//!   version, and the merged deltas are accepted ones, in delta order. An auditor
//!   recomputes the weights from the blobs (`blyan replay --recompute-merges`).
//!
//! [`ServerInput::UpdateExpert`]: crate::model::ServerInput::UpdateExpert

use std::collections::BTreeMap;

use super::hashed::{HashedMap, RootHash};
use super::pools::Pools;
use super::rounds::Rounds;
use super::{RejectionClass, RootHasher};
use crate::model::{Event, ExpertUpdate, Hash, ModelSpec, Phase};

/// Why the core refused an expert update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpertRejection {
    #[error("this ledger's genesis names no model")]
    NoModel,
    #[error("round {0} owes no merge")]
    NotOwed(u64),
    #[error("{field}: {reason}")]
    Mismatch { field: &'static str, reason: String },
}

impl ExpertRejection {
    pub fn code(&self) -> &'static str {
        match self {
            ExpertRejection::NoModel => "no_model",
            ExpertRejection::NotOwed(_) => "merge_not_owed",
            ExpertRejection::Mismatch { .. } => "expert_update_mismatch",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            ExpertRejection::NoModel | ExpertRejection::NotOwed(_) => RejectionClass::Conflict,
            ExpertRejection::Mismatch { .. } => RejectionClass::Invalid,
        }
    }
}

/// One version of an expert past version 0, as its update recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpertVersion {
    pub round: u64,
    #[serde(with = "crate::model::hex_array")]
    pub parent_hash: Hash,
    #[serde(with = "crate::model::hex_array")]
    pub weights_hash: Hash,
    pub weights_bytes: u64,
    pub merged: u32,
    pub parent_held_out_loss: u64,
    pub held_out_loss: u64,
    pub seq: u64,
}

/// The parameter chain part of the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Experts {
    /// Every version past 0, by `(expert, version)`.
    pub(super) versions: HashedMap<(u64, u64), ExpertVersion>,
    /// Each expert's newest version, when past 0.
    pub(super) heads: HashedMap<u64, u64>,
    /// The finalized rounds that owe a merge, and their expert.
    pub(super) owed: BTreeMap<u64, u32>,
}

impl Experts {
    /// The newest version of `expert`, 0 when it has none past the genesis's.
    pub fn head(&self, expert: u32) -> u32 {
        self.heads
            .get(&u64::from(expert))
            .map_or(0, |version| *version as u32)
    }

    /// The weights' hash of `expert` at `version`, if the chain has it.
    pub fn hash(&self, model: &ModelSpec, expert: u32, version: u32) -> Option<Hash> {
        match version {
            0 => model.expert_hashes.get(expert as usize).copied(),
            _ => self
                .versions
                .get(&(u64::from(expert), u64::from(version)))
                .map(|entry| entry.weights_hash),
        }
    }

    pub fn version(&self, expert: u32, version: u32) -> Option<&ExpertVersion> {
        self.versions.get(&(u64::from(expert), u64::from(version)))
    }

    /// Whether a finalized round of `expert` still owes its merge.
    pub fn owes(&self, expert: u32) -> bool {
        self.owed.values().any(|owing| *owing == expert)
    }

    /// The rounds that owe a merge, oldest first.
    pub fn owed(&self) -> impl Iterator<Item = u64> + '_ {
        self.owed.keys().copied()
    }

    /// The newest version of every expert of `model`: what a round opening now pins.
    pub fn heads_of(&self, model: &ModelSpec) -> Vec<u32> {
        (0..model.experts).map(|expert| self.head(expert)).collect()
    }

    pub(super) fn apply_finalized(&mut self, round: u64, expert: u32, accepted: usize) {
        if accepted > 0 {
            self.owed.insert(round, expert);
        }
    }

    pub(super) fn apply_updated(&mut self, update: &ExpertUpdate, seq: u64) {
        self.owed.remove(&update.round);
        self.heads
            .insert(u64::from(update.expert), u64::from(update.version));
        self.versions.insert(
            (u64::from(update.expert), u64::from(update.version)),
            ExpertVersion {
                round: update.round,
                parent_hash: update.parent_hash,
                weights_hash: update.weights_hash,
                weights_bytes: update.weights_bytes,
                merged: update.merged.len() as u32,
                parent_held_out_loss: update.parent_held_out_loss,
                held_out_loss: update.held_out_loss,
                seq,
            },
        );
    }

    /// Writes the parameter chain's part of the state root: nothing until a round
    /// owes a merge, so a ledger that never merged keeps the root it had before the
    /// chain existed.
    pub(super) fn hash_into(&self, hasher: &mut RootHasher) {
        if self.versions.is_empty() && self.owed.is_empty() {
            return;
        }
        hasher.bytes(&self.versions.checksum());
        hasher.bytes(&self.heads.checksum());
        hasher.u64(self.owed.len() as u64);
        for (round, expert) in &self.owed {
            hasher.u64(*round);
            hasher.u64(u64::from(*expert));
        }
    }
}

/// What the merge round `round` owes reads, every blob named by its hash, and where
/// its update goes on the chain. The server merges from it, and an auditor recomputes
/// the merge from the same plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    pub expert: u32,
    /// The version the update makes, and its parent's weights.
    pub version: u32,
    pub parent_hash: Hash,
    /// The router's weights.
    pub shared: Hash,
    /// Every expert's weights at the version the round pinned, in expert order.
    pub base: Vec<Hash>,
    /// The round's accepted deltas and their scores, in delta order.
    pub deltas: Vec<(Hash, u64)>,
    /// The pool's held-out items, by id and checksum.
    pub held_out: Vec<(u32, Hash)>,
}

/// The plan of the merge round `round` owes; `None` when it owes none.
pub(super) fn merge_plan(
    experts: &Experts,
    rounds: &Rounds,
    pools: &Pools,
    model: &ModelSpec,
    round_id: u64,
) -> Option<MergePlan> {
    let expert = *experts.owed.get(&round_id)?;
    let round = rounds.get(round_id)?;
    let head = experts.head(expert);
    if round.plan.model_versions.len() != model.experts as usize {
        return None;
    }
    let base = (0..model.experts)
        .zip(&round.plan.model_versions)
        .map(|(expert, version)| experts.hash(model, expert, *version))
        .collect::<Option<Vec<_>>>()?;
    let scored: Vec<(Hash, u64)> = round
        .deltas
        .iter()
        .zip(round.scores.iter())
        .filter_map(|(node, score)| Some((rounds.reveal(round_id, node)?.delta_hash, *score)))
        .collect();
    let accepted = &round.outcome.as_ref()?.accepted;
    let deltas = scored
        .into_iter()
        .filter(|(hash, _)| accepted.contains(hash))
        .collect();
    let pool = pools.get(round.plan.pool_id)?;
    let held_out = pool
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.held_out)
        .map(|(id, item)| (id as u32, item.checksum))
        .collect();
    Some(MergePlan {
        expert,
        version: head + 1,
        parent_hash: experts.hash(model, expert, head)?,
        shared: model.shared_hash,
        base,
        deltas,
        held_out,
    })
}

/// The event of an update the server computed for a round that owes its merge.
pub(super) fn decide_update(
    experts: &Experts,
    rounds: &Rounds,
    model: Option<&ModelSpec>,
    update: &ExpertUpdate,
) -> Result<Vec<Event>, ExpertRejection> {
    let model = model.ok_or(ExpertRejection::NoModel)?;
    let mismatch = |field, reason: String| Err(ExpertRejection::Mismatch { field, reason });
    let Some(expert) = experts.owed.get(&update.round).copied() else {
        return Err(ExpertRejection::NotOwed(update.round));
    };
    if update.expert != expert {
        return mismatch(
            "expert",
            format!("round {} trained expert {expert}", update.round),
        );
    }
    let head = experts.head(expert);
    if update.version != head + 1 {
        return mismatch("version", format!("the next version is {}", head + 1));
    }
    let parent = experts
        .hash(model, expert, head)
        .expect("the chain has every version up to its head");
    if update.parent_hash != parent {
        return mismatch("parent_hash", "is not the expert's newest version".into());
    }
    let round = rounds
        .get(update.round)
        .expect("a round that owes a merge exists");
    debug_assert_eq!(round.phase, Phase::Finalized);
    let accepted = &round
        .outcome
        .as_ref()
        .expect("a finalized round has its outcome")
        .accepted;
    // `merged` must be a subsequence of `accepted`.
    let mut remaining = accepted.iter();
    if !update
        .merged
        .iter()
        .all(|hash| remaining.any(|candidate| candidate == hash))
    {
        return mismatch(
            "merged",
            "must be accepted deltas of the round, in delta order".into(),
        );
    }
    if update.weights_bytes == 0 {
        return mismatch("weights_bytes", "must be non-zero".into());
    }
    Ok(vec![Event::ExpertUpdated(update.clone())])
}

impl RootHash for (u64, u64) {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.0);
        hasher.u64(self.1);
    }
}

impl RootHash for ExpertVersion {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.round);
        hasher.bytes(&self.parent_hash);
        hasher.bytes(&self.weights_hash);
        hasher.u64(self.weights_bytes);
        hasher.u64(u64::from(self.merged));
        hasher.u64(self.parent_held_out_loss);
        hasher.u64(self.held_out_loss);
        hasher.u64(self.seq);
    }
}
