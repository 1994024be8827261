//! Maps that are cheap to snapshot and whose digest costs what changed.
//!
//! A [`HashedMap`] keeps its entries in a persistent B-tree ([`imbl::OrdMap`]) of
//! `Arc`-shared values, so a clone shares every tree node and every value with the
//! original and costs O(1); a later write copies only the path it touches. Readers
//! get their snapshot of the state that way, while the writer goes on.
//!
//! Next to the entries the map keeps a [`LatticeHash`] of them: a homomorphic
//! multiset hash (LtHash, after Bellare and Micciancio; the lane layout is the one of
//! Solana's accounts lattice hash). Each entry expands, through blake3's extendable
//! output, into 1,024 lanes of 16 bits. The map's hash is the lane-wise sum of its
//! entries' lanes, with wrap-around: an insert adds the entry's lanes and a removal
//! subtracts them. A write costs the entry it touched, whatever the size of the map,
//! and two maps with the same entries have the same hash however they were built.

use std::borrow::Borrow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use super::RootHasher;
use crate::crypto::PublicKey;
use crate::model::Hash;

/// Lanes of a [`LatticeHash`].
pub const LATTICE_LANES: usize = 1_024;

/// Key-derivation context of the key that hashes map entries (blake3 keyed mode, with
/// the key `blake3::derive_key(ENTRY_CONTEXT, b"")`).
pub const ENTRY_CONTEXT: &str = "blyan-ledger 2026-12 state-entry v1";

static ENTRY_KEY: LazyLock<[u8; 32]> = LazyLock::new(|| blake3::derive_key(ENTRY_CONTEXT, b""));

/// How a key or a value of the state is written into a hash: every field, with
/// lengths, in a fixed order.
pub trait RootHash {
    fn hash_into(&self, hasher: &mut RootHasher);
}

impl RootHash for u64 {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(*self);
    }
}

impl RootHash for String {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.text(self);
    }
}

impl RootHash for Hash {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.bytes(self);
    }
}

impl RootHash for PublicKey {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.bytes(&self.0);
    }
}

/// A multiset hash: the wrapping lane-wise sum of its members' lanes.
#[derive(Clone, PartialEq, Eq)]
pub struct LatticeHash(Box<[u16; LATTICE_LANES]>);

impl Default for LatticeHash {
    fn default() -> Self {
        LatticeHash(Box::new([0; LATTICE_LANES]))
    }
}

impl fmt::Debug for LatticeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatticeHash({})", hex::encode(self.checksum()))
    }
}

impl LatticeHash {
    /// The lanes of one entry: blake3's extendable output of the keyed hash of the key
    /// then the value, read as little-endian `u16`s.
    fn entry<K: RootHash, V: RootHash>(key: &K, value: &V) -> [u16; LATTICE_LANES] {
        let mut hasher = RootHasher(blake3::Hasher::new_keyed(&ENTRY_KEY));
        key.hash_into(&mut hasher);
        value.hash_into(&mut hasher);
        let mut bytes = [0u8; LATTICE_LANES * 2];
        hasher.0.finalize_xof().fill(&mut bytes);
        let mut lanes = [0u16; LATTICE_LANES];
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        lanes
    }

    fn add(&mut self, lanes: &[u16; LATTICE_LANES]) {
        for (sum, lane) in self.0.iter_mut().zip(lanes) {
            *sum = sum.wrapping_add(*lane);
        }
    }

    fn subtract(&mut self, lanes: &[u16; LATTICE_LANES]) {
        for (sum, lane) in self.0.iter_mut().zip(lanes) {
            *sum = sum.wrapping_sub(*lane);
        }
    }

    /// The 32 bytes that stand for the multiset: blake3 of the lanes, little-endian.
    pub fn checksum(&self) -> Hash {
        let mut hasher = blake3::Hasher::new();
        for lane in self.0.iter() {
            hasher.update(&lane.to_le_bytes());
        }
        *hasher.finalize().as_bytes()
    }
}

/// An ordered map of state entries with a [`LatticeHash`] of them, kept up to date by
/// every write. Cloning it is a cheap snapshot.
pub struct HashedMap<K, V> {
    entries: imbl::OrdMap<K, Arc<V>>,
    hash: LatticeHash,
}

impl<K: Clone, V> Clone for HashedMap<K, V> {
    fn clone(&self) -> Self {
        HashedMap {
            entries: self.entries.clone(),
            hash: self.hash.clone(),
        }
    }
}

impl<K, V> Default for HashedMap<K, V> {
    fn default() -> Self {
        HashedMap {
            entries: imbl::OrdMap::new(),
            hash: LatticeHash::default(),
        }
    }
}

impl<K: Ord + PartialEq, V: PartialEq> PartialEq for HashedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<K: Ord + Eq, V: Eq> Eq for HashedMap<K, V> {}

impl<K: Ord + fmt::Debug, V: fmt::Debug> fmt::Debug for HashedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(key, value)| (key, &**value)))
            .finish()
    }
}

impl<K, V> HashedMap<K, V>
where
    K: Ord + Clone + RootHash,
    V: Clone + RootHash,
{
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key).map(|value| &**value)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.entries.contains_key(key)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(key, value)| (key, &**value))
    }

    /// Entries from `from` on, in key order.
    pub fn range_from(&self, from: K) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .range(from..)
            .map(|(key, value)| (key, &**value))
    }

    pub fn first(&self) -> Option<(&K, &V)> {
        self.entries.get_min().map(|(key, value)| (key, &**value))
    }

    pub fn last(&self) -> Option<(&K, &V)> {
        self.entries.get_max().map(|(key, value)| (key, &**value))
    }

    /// The 32 bytes the state root writes for this map.
    pub fn checksum(&self) -> Hash {
        self.hash.checksum()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.hash.add(&LatticeHash::entry(&key, &value));
        let previous = self.entries.insert(key.clone(), Arc::new(value));
        previous.map(|previous| {
            self.hash.subtract(&LatticeHash::entry(&key, &*previous));
            Arc::unwrap_or_clone(previous)
        })
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let previous = self.entries.remove(key)?;
        self.hash.subtract(&LatticeHash::entry(key, &*previous));
        Some(Arc::unwrap_or_clone(previous))
    }

    /// Changes the value under `key` in place, if there is one, and returns what
    /// `change` returned.
    pub fn update<R>(&mut self, key: &K, change: impl FnOnce(&mut V) -> R) -> Option<R> {
        let value = self.entries.get_mut(key)?;
        self.hash.subtract(&LatticeHash::entry(key, &**value));
        let value = Arc::make_mut(value);
        let answer = change(value);
        self.hash.add(&LatticeHash::entry(key, &*value));
        Some(answer)
    }
}

/// A map is written as its entries in key order; its hash is not written but rebuilt
/// from them on reading, so a stored map can't carry a hash its entries don't have.
impl<K: Ord + serde::Serialize, V: serde::Serialize> serde::Serialize for HashedMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.entries.iter().map(|(key, value)| (key, &**value)))
    }
}

impl<'de, K, V> serde::Deserialize<'de> for HashedMap<K, V>
where
    K: Ord + Clone + RootHash + serde::Deserialize<'de>,
    V: Clone + RootHash + serde::Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<(K, V)>::deserialize(deserializer)?;
        if !entries.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err(serde::de::Error::custom(
                "map entries must be in strictly increasing key order",
            ));
        }
        Ok(entries.into_iter().collect())
    }
}

impl<K, V> FromIterator<(K, V)> for HashedMap<K, V>
where
    K: Ord + Clone + RootHash,
    V: Clone + RootHash,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = HashedMap::default();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Write {
        Insert(u64, u64),
        Remove(u64),
        Update(u64, u64),
    }

    fn write() -> impl Strategy<Value = Write> {
        prop_oneof![
            (0u64..16, any::<u64>()).prop_map(|(key, value)| Write::Insert(key, value)),
            (0u64..16).prop_map(Write::Remove),
            (0u64..16, any::<u64>()).prop_map(|(key, value)| Write::Update(key, value)),
        ]
    }

    proptest! {
        /// The hash kept up to date write by write is the hash of the entries left,
        /// built from nothing; and a snapshot taken midway keeps its own entries and
        /// hash while the original goes on.
        #[test]
        fn the_kept_hash_is_the_hash_of_the_entries(writes in proptest::collection::vec(write(), 0..64)) {
            let mut map: HashedMap<u64, u64> = HashedMap::default();
            let mut snapshot = None;
            for (index, write) in writes.iter().enumerate() {
                if index == writes.len() / 2 {
                    snapshot = Some((map.clone(), map.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()));
                }
                match *write {
                    Write::Insert(key, value) => { map.insert(key, value); }
                    Write::Remove(key) => { map.remove(&key); }
                    Write::Update(key, value) => { map.update(&key, |old| *old = value); }
                }
            }
            let rebuilt: HashedMap<u64, u64> = map.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(map.checksum(), rebuilt.checksum());
            if let Some((snapshot, entries)) = snapshot {
                let now: Vec<_> = snapshot.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(&now, &entries);
                let rebuilt: HashedMap<u64, u64> = entries.into_iter().collect();
                prop_assert_eq!(snapshot.checksum(), rebuilt.checksum());
            }
        }
    }

    #[test]
    fn a_map_read_back_has_its_entries_and_their_hash_and_refuses_disorder() {
        let map: HashedMap<u64, u64> = [(1, 10), (2, 20), (7, 70)].into_iter().collect();
        let written = serde_json::to_string(&map).unwrap();
        let read: HashedMap<u64, u64> = serde_json::from_str(&written).unwrap();
        assert_eq!(read, map);
        assert_eq!(read.checksum(), map.checksum());
        for disorder in ["[[2,20],[1,10]]", "[[1,10],[1,11]]"] {
            let error = serde_json::from_str::<HashedMap<u64, u64>>(disorder).unwrap_err();
            assert!(
                error.to_string().contains("increasing key order"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_hash_depends_on_each_key_and_value() {
        let base: HashedMap<u64, u64> = [(1, 10), (2, 20)].into_iter().collect();
        let other_value: HashedMap<u64, u64> = [(1, 10), (2, 21)].into_iter().collect();
        let other_key: HashedMap<u64, u64> = [(1, 10), (3, 20)].into_iter().collect();
        let swapped: HashedMap<u64, u64> = [(1, 20), (2, 10)].into_iter().collect();
        let fewer: HashedMap<u64, u64> = [(1, 10)].into_iter().collect();
        let empty: HashedMap<u64, u64> = HashedMap::default();
        let checksums =
            [&base, &other_value, &other_key, &swapped, &fewer, &empty].map(HashedMap::checksum);
        for (i, a) in checksums.iter().enumerate() {
            for b in &checksums[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let mut emptied = fewer.clone();
        emptied.remove(&1);
        assert_eq!(emptied.checksum(), empty.checksum());
    }
}
