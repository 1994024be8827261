//! Merkle trees over event hashes, for checkpoints and inclusion proofs.
//!
//! Leaves are `blake3(0x00 || event_hash)` and nodes `blake3(0x01 || left || right)`
//! (RFC 6962 domain separation). An odd node is promoted to the next level, never
//! duplicated, which gives the RFC 6962 tree shape. [`Rfc6962Blake3`] plugs this into
//! rs_merkle; [`Frontier`] keeps only the O(log n) peaks needed to append and to compute
//! the root of a growing log.

use crate::crypto::{self, CHECKPOINT_DOMAIN, Keypair, PublicKey, SignatureError};
use crate::model::Hash;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// rs_merkle hasher with RFC 6962 prefixes over blake3. `hash` is the leaf hash; rs_merkle
/// only calls it on leaves we hash ourselves, and combines nodes with `concat_and_hash`.
#[derive(Clone, Copy, Debug)]
pub struct Rfc6962Blake3;

impl rs_merkle::Hasher for Rfc6962Blake3 {
    type Hash = Hash;

    fn hash(data: &[u8]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[LEAF_PREFIX]);
        hasher.update(data);
        *hasher.finalize().as_bytes()
    }

    fn concat_and_hash(left: &Hash, right: Option<&Hash>) -> Hash {
        match right {
            Some(right) => node_hash(left, right),
            None => *left,
        }
    }
}

pub fn leaf_hash(event_hash: &Hash) -> Hash {
    <Rfc6962Blake3 as rs_merkle::Hasher>::hash(event_hash)
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// The root of the empty tree.
pub const EMPTY_ROOT: Hash = [0; 32];

/// The peaks of perfect subtrees over an append-only list of leaves.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    /// (height, root) from the tallest, leftmost peak to the shortest.
    peaks: Vec<(u32, Hash)>,
    len: u64,
}

impl Frontier {
    /// Appends the leaf for one event hash.
    pub fn push_event(&mut self, event_hash: &Hash) {
        self.push_event_with(event_hash, |_| {});
    }

    /// Appends the leaf for one event hash, and calls `completed` with every perfect
    /// subtree the leaf completes, from the leaf itself up: what a store keeps to
    /// answer inclusion proofs ([`inclusion_path`]).
    pub fn push_event_with(&mut self, event_hash: &Hash, mut completed: impl FnMut(Subtree)) {
        let index = self.len;
        let mut node = (0u32, leaf_hash(event_hash));
        completed(Subtree {
            level: 0,
            index,
            hash: node.1,
        });
        while let Some(&(height, left)) = self.peaks.last() {
            if height != node.0 {
                break;
            }
            self.peaks.pop();
            node = (height + 1, node_hash(&left, &node.1));
            completed(Subtree {
                level: node.0,
                index: index >> node.0,
                hash: node.1,
            });
        }
        self.peaks.push(node);
        self.len += 1;
    }

    /// The frontier of the first `len` leaves, from the roots of the perfect subtrees
    /// that `subtree(level, index)` looks up: one per set bit of `len`, tallest first.
    pub fn from_subtrees<E>(
        len: u64,
        subtree: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
    ) -> Result<Frontier, E> {
        let mut peaks = Vec::with_capacity(len.count_ones() as usize);
        let mut start = 0u64;
        for height in (0..u64::BITS).rev() {
            if len & (1 << height) != 0 {
                peaks.push((height, subtree(height, start >> height)?));
                start += 1 << height;
            }
        }
        Ok(Frontier { peaks, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Root over every leaf so far: the peaks folded from the right.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut root)) = peaks.next() else {
            return EMPTY_ROOT;
        };
        for (_, left) in peaks {
            root = node_hash(left, &root);
        }
        root
    }
}

/// The root of a perfect subtree: leaves `index * 2^level .. (index + 1) * 2^level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subtree {
    pub level: u32,
    pub index: u64,
    pub hash: Hash,
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves, bottom
/// up (RFC 6962's PATH, in rs_merkle's order), from the roots of perfect subtrees that
/// `subtree(level, index)` looks up. It needs O(log² size) lookups, so a log of any
/// length answers a proof without reading its leaves.
pub fn inclusion_path<E>(
    index: u64,
    size: u64,
    subtree: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    assert!(index < size, "leaf {index} is not in a tree of {size}");
    let mut path = Vec::new();
    // Walk down from the whole range, collecting each level's sibling, then reverse.
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let split = (end - start - 1).ilog2();
        let middle = start + (1u64 << split);
        if index < middle {
            path.push(range_root(middle, end, subtree)?);
            end = middle;
        } else {
            path.push(range_root(start, middle, subtree)?);
            start = middle;
        }
    }
    path.reverse();
    Ok(path)
}

/// The root over leaves `start..end`, where `start` is aligned to the largest power
/// of two below `end - start` (as every range RFC 6962 splits off is).
fn range_root<E>(
    start: u64,
    end: u64,
    subtree: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let width = end - start;
    if width.is_power_of_two() {
        let level = width.ilog2();
        return subtree(level, start >> level);
    }
    let middle = start + (1u64 << (width - 1).ilog2());
    let left = range_root(start, middle, subtree)?;
    let right = range_root(middle, end, subtree)?;
    Ok(node_hash(&left, &right))
}

/// The inclusion proof of leaf `index` in the tree over `contents` (each leaf is
/// [`leaf_hash`] of its content), as rs_merkle's proof hashes.
pub fn proof(contents: &[Hash], index: usize) -> Vec<Hash> {
    Tree::new(contents).proof(index)
}

/// A whole tree over leaf contents, kept to answer many proofs under one root at
/// O(log n) each.
#[derive(Clone)]
pub struct Tree {
    tree: rs_merkle::MerkleTree<Rfc6962Blake3>,
    len: usize,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("len", &self.len)
            .field("root", &hex::encode(self.root()))
            .finish()
    }
}

impl Tree {
    pub fn new(contents: &[Hash]) -> Tree {
        let leaves: Vec<Hash> = contents.iter().map(leaf_hash).collect();
        Tree {
            tree: rs_merkle::MerkleTree::from_leaves(&leaves),
            len: contents.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn root(&self) -> Hash {
        self.tree.root().unwrap_or(EMPTY_ROOT)
    }

    /// Leaf `index`'s inclusion proof, bottom up.
    pub fn proof(&self, index: usize) -> Vec<Hash> {
        self.tree.proof(&[index]).proof_hashes().to_vec()
    }
}

/// The length of leaf `index`'s inclusion proof in a tree of `count` leaves.
pub fn path_len(index: usize, count: usize) -> usize {
    let (mut index, mut count, mut len) = (index, count, 0);
    while count > 1 {
        let split = 1usize << (count - 1).ilog2();
        if index < split {
            count = split;
        } else {
            index -= split;
            count -= split;
        }
        len += 1;
    }
    len
}

/// Whether `proof` shows `content` is leaf `index` of `count` under `root`. The proof
/// must be exactly the leaf's path: a hash more or less is a different proof.
pub fn verify(root: &Hash, index: usize, count: usize, content: &Hash, proof: &[Hash]) -> bool {
    index < count
        && proof.len() == path_len(index, count)
        && rs_merkle::MerkleProof::<Rfc6962Blake3>::new(proof.to_vec()).verify(
            *root,
            &[index],
            &[leaf_hash(content)],
            count,
        )
}

/// The bytes the operator signs for a checkpoint.
pub fn checkpoint_payload(tree_size: u64, merkle_root: &Hash) -> Vec<u8> {
    let mut payload = Vec::with_capacity(40);
    payload.extend_from_slice(&tree_size.to_be_bytes());
    payload.extend_from_slice(merkle_root);
    payload
}

pub fn sign_checkpoint(
    operator: &Keypair,
    network_id: &str,
    tree_size: u64,
    merkle_root: &Hash,
) -> [u8; 64] {
    operator.sign(&crypto::signing_message(
        CHECKPOINT_DOMAIN,
        network_id,
        &checkpoint_payload(tree_size, merkle_root),
    ))
}

pub fn verify_checkpoint(
    operator: &PublicKey,
    network_id: &str,
    tree_size: u64,
    merkle_root: &Hash,
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    crypto::verify(
        CHECKPOINT_DOMAIN,
        network_id,
        &checkpoint_payload(tree_size, merkle_root),
        operator,
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rs_merkle::{MerkleProof, MerkleTree};

    fn event_hash(index: u64) -> Hash {
        *blake3::hash(&index.to_be_bytes()).as_bytes()
    }

    #[test]
    fn a_frontier_from_the_stored_subtrees_is_the_one_the_pushes_made() {
        let mut frontier = Frontier::default();
        let mut stored = std::collections::HashMap::new();
        for len in 0..70u64 {
            let rebuilt = Frontier::from_subtrees(len, &mut |level, index| {
                stored.get(&(level, index)).copied().ok_or(())
            })
            .unwrap();
            assert_eq!(rebuilt.peaks, frontier.peaks, "{len} leaves");
            assert_eq!((rebuilt.len(), rebuilt.root()), (len, frontier.root()));
            frontier.push_event_with(&event_hash(len), |subtree| {
                stored.insert((subtree.level, subtree.index), subtree.hash);
            });
        }
        // A subtree it needs and can't find is the lookup's error.
        stored.remove(&(6, 0));
        assert!(
            Frontier::from_subtrees(64, &mut |level, index| {
                stored.get(&(level, index)).copied().ok_or(())
            })
            .is_err()
        );
    }

    #[test]
    fn frontier_root_equals_rs_merkle_root_for_every_size() {
        let mut frontier = Frontier::default();
        let mut leaves = Vec::new();
        assert_eq!(frontier.root(), EMPTY_ROOT);
        for index in 0..70 {
            frontier.push_event(&event_hash(index));
            leaves.push(leaf_hash(&event_hash(index)));
            let tree = MerkleTree::<Rfc6962Blake3>::from_leaves(&leaves);
            assert_eq!(Some(frontier.root()), tree.root(), "size {}", index + 1);
        }
    }

    #[test]
    fn odd_node_is_promoted_not_duplicated() {
        let mut frontier = Frontier::default();
        for index in 0..3 {
            frontier.push_event(&event_hash(index));
        }
        let [a, b, c] = [0, 1, 2].map(|index| leaf_hash(&event_hash(index)));
        assert_eq!(frontier.root(), node_hash(&node_hash(&a, &b), &c));
    }

    #[test]
    fn leaf_and_node_hashes_are_separated() {
        // A node's preimage must never be taken for a leaf's.
        let a = leaf_hash(&event_hash(0));
        let b = leaf_hash(&event_hash(1));
        let mut joined = [0u8; 64];
        joined[..32].copy_from_slice(&a);
        joined[32..].copy_from_slice(&b);
        assert_ne!(
            <Rfc6962Blake3 as rs_merkle::Hasher>::hash(&joined),
            node_hash(&a, &b)
        );
    }

    #[test]
    fn inclusion_proof_verifies_against_frontier_root() {
        let leaves: Vec<Hash> = (0..11).map(|index| leaf_hash(&event_hash(index))).collect();
        let mut frontier = Frontier::default();
        (0..11).for_each(|index| frontier.push_event(&event_hash(index)));
        let tree = MerkleTree::<Rfc6962Blake3>::from_leaves(&leaves);
        let proof: MerkleProof<Rfc6962Blake3> = tree.proof(&[6]);
        assert!(proof.verify(frontier.root(), &[6], &[leaves[6]], leaves.len()));
        assert!(!proof.verify(frontier.root(), &[6], &[leaves[5]], leaves.len()));
    }

    #[test]
    fn inclusion_path_from_subtrees_equals_rs_merkle_proof() {
        let mut frontier = Frontier::default();
        let mut stored = std::collections::HashMap::new();
        let mut contents = Vec::new();
        for size in 1..=70u64 {
            contents.push(event_hash(size - 1));
            frontier.push_event_with(&event_hash(size - 1), |subtree| {
                stored.insert((subtree.level, subtree.index), subtree.hash);
            });
            for index in 0..size {
                let path = inclusion_path(index, size, &mut |level, at| {
                    stored.get(&(level, at)).copied().ok_or((level, at))
                })
                .expect("every perfect subtree was reported");
                assert_eq!(path, proof(&contents, index as usize), "{index} of {size}");
                assert_eq!(path.len(), path_len(index as usize, size as usize));
                let mut longer = path.clone();
                longer.push([0; 32]);
                assert!(!verify(
                    &frontier.root(),
                    index as usize,
                    size as usize,
                    &contents[index as usize],
                    &longer
                ));
                assert!(verify(
                    &frontier.root(),
                    index as usize,
                    size as usize,
                    &contents[index as usize],
                    &path
                ));
            }
        }
    }

    #[test]
    fn checkpoint_signature_binds_size_and_root() {
        let operator = Keypair::from_secret([5; 32]);
        let root = [3; 32];
        let signature = sign_checkpoint(&operator, "net", 10, &root);
        assert!(verify_checkpoint(&operator.public(), "net", 10, &root, &signature).is_ok());
        assert!(verify_checkpoint(&operator.public(), "net", 11, &root, &signature).is_err());
    }
}
