//! Dataset pools: a curator key of the genesis registers checksummed items, each a
//! blob, and marks some of them held out. Rounds assign only training items; the
//! held-out ones are what validators measure on.

use std::sync::Arc;

use super::hashed::{HashedMap, RootHash};
use super::{RejectionClass, RootHasher, check_text};
use crate::crypto::PublicKey;
use crate::merkle::Frontier;
use crate::model::{Event, Genesis, Hash, PoolItem, PoolSpec, limits};

/// blake3 key-derivation context of a pool item's Merkle leaf content.
pub const ITEM_LEAF_CONTEXT: &str = "blyan-ledger 2026-12 pool-item v1";

/// Why a pool registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolRejection {
    #[error("only a curator key of the genesis registers pools")]
    NotCurator,
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("a pool of {items} items; the most is {max}")]
    TooManyItems { items: usize, max: usize },
}

impl PoolRejection {
    pub fn code(&self) -> &'static str {
        match self {
            PoolRejection::NotCurator => "not_curator",
            PoolRejection::InvalidField { .. } => "invalid_field",
            PoolRejection::TooManyItems { .. } => "pool_too_large",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            PoolRejection::NotCurator => RejectionClass::Forbidden,
            PoolRejection::InvalidField { .. } => RejectionClass::Invalid,
            PoolRejection::TooManyItems { .. } => RejectionClass::TooLarge,
        }
    }
}

/// A registered pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pool {
    pub curator: PublicKey,
    pub name: String,
    #[serde(with = "super::snapshot::arc_slice")]
    pub items: Arc<[PoolItem]>,
    /// The ids of the training items, ascending: the sharding plugin's item `i` is
    /// item `training[i]` of the pool.
    #[serde(with = "super::snapshot::arc_slice")]
    pub training: Arc<[u32]>,
    pub merkle_root: Hash,
    pub registered_seq: u64,
}

impl Pool {
    /// The ids of the held-out items, ascending.
    pub fn held_out(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.items.len() as u32).filter(|id| self.items[*id as usize].held_out)
    }
}

/// Every pool, by id (dense from 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pools {
    pub(super) pools: HashedMap<u64, Pool>,
}

/// The content hash of item `id`'s Merkle leaf.
pub fn item_leaf(id: u32, item: &PoolItem) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(ITEM_LEAF_CONTEXT);
    hasher.update(&id.to_be_bytes());
    hasher.update(&item.bytes.to_be_bytes());
    hasher.update(&item.checksum);
    hasher.update(&[u8::from(item.held_out)]);
    *hasher.finalize().as_bytes()
}

/// The Merkle root of a pool's items, leaf `i` being [`item_leaf`] of item `i`.
pub fn items_root(items: &[PoolItem]) -> Hash {
    let mut frontier = Frontier::default();
    for (id, item) in items.iter().enumerate() {
        frontier.push_event(&item_leaf(id as u32, item));
    }
    frontier.root()
}

fn invalid((field, reason): (&'static str, String)) -> PoolRejection {
    PoolRejection::InvalidField { field, reason }
}

impl Pools {
    pub fn get(&self, pool_id: u64) -> Option<&Pool> {
        self.pools.get(&pool_id)
    }

    /// The newest pool: the one a round opening now trains on.
    pub fn newest(&self) -> Option<(u64, &Pool)> {
        self.pools.last().map(|(id, pool)| (*id, pool))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Pool)> {
        self.pools.iter()
    }

    pub(super) fn decide_register(
        &self,
        genesis: &Genesis,
        signer: PublicKey,
        spec: &PoolSpec,
    ) -> Result<Vec<Event>, PoolRejection> {
        if !genesis.curator_keys.contains(&signer) {
            return Err(PoolRejection::NotCurator);
        }
        check_text("name", &spec.name, 1, limits::POOL_NAME_CHARS_MAX).map_err(invalid)?;
        let items = spec.items.len();
        if items > limits::POOL_ITEMS_MAX {
            return Err(PoolRejection::TooManyItems {
                items,
                max: limits::POOL_ITEMS_MAX,
            });
        }
        let held_out = spec.items.iter().filter(|item| item.held_out).count();
        if held_out == 0 || held_out == items {
            return Err(invalid((
                "items",
                "must hold at least one training item and one held-out item".into(),
            )));
        }
        if let Some(id) = spec.items.iter().position(|item| item.bytes == 0) {
            return Err(invalid(("items", format!("item {id} is empty"))));
        }
        let pool_id = self.pools.last().map_or(1, |(id, _)| id + 1);
        Ok(vec![Event::PoolRegistered {
            pool_id,
            curator: signer,
            pool: spec.clone(),
            merkle_root: items_root(&spec.items),
        }])
    }

    pub(super) fn apply_registered(
        &mut self,
        pool_id: u64,
        curator: PublicKey,
        spec: &PoolSpec,
        merkle_root: Hash,
        seq: u64,
    ) {
        let training = (0..spec.items.len() as u32)
            .filter(|id| !spec.items[*id as usize].held_out)
            .collect();
        let previous = self.pools.insert(
            pool_id,
            Pool {
                curator,
                name: spec.name.clone(),
                items: spec.items.clone().into(),
                training,
                merkle_root,
                registered_seq: seq,
            },
        );
        assert!(previous.is_none(), "pool {pool_id} registered twice");
    }
}

impl RootHash for Pool {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.bytes(&self.curator.0);
        hasher.text(&self.name);
        hasher.u64(self.items.len() as u64);
        for item in self.items.iter() {
            hasher.u64(item.bytes);
            hasher.bytes(&item.checksum);
            hasher.u64(u64::from(item.held_out));
        }
        hasher.u64(self.training.len() as u64);
        for id in self.training.iter() {
            hasher.u64(u64::from(*id));
        }
        hasher.bytes(&self.merkle_root);
        hasher.u64(self.registered_seq);
    }
}
