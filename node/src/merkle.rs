//! The state commitment: a keccak256 sparse Merkle tree over every state key, and its proofs.
//!
//! A leaf sits at the position `keccak256(StateKey::encode())` (the key hash,
//! [`duet_types::StateKey::commitment_key`]) and holds `keccak256(StateValue::encode())` (the
//! value hash). Paths read the key hash's bits from the most significant. The tree is
//! compacted: a subtree that holds one leaf is that leaf, and an empty subtree is zero.
//!
//! - leaf: `keccak256(0x00 ‖ key hash ‖ value hash)`
//! - inner node: `keccak256(0x01 ‖ left ‖ right)` (a subtree holding at least two leaves)
//! - empty: 32 zero bytes
//!
//! A proof for a key lists the siblings from the root down to where the key's path ends, and
//! what it ends at: nothing, or a leaf (the key's own, or another key's sharing the path, which
//! proves the key absent). [`verify`] checks it; `StateProof.sol` does the same on Ethereum.

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{keccak256, B256};
use serde::{Deserialize, Serialize};

/// Where a key's path ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "kind")]
pub enum Terminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// A leaf: the key's own if `key_hash` is the key's, else another key's (the key is absent).
    Leaf {
        /// The leaf's key hash.
        key_hash: B256,
        /// The leaf's value hash.
        value_hash: B256,
    },
}

/// A proof of a key's value, or of its absence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proof {
    /// The siblings from the root down.
    pub siblings: Vec<B256>,
    /// Where the path ends.
    pub terminal: Terminal,
}

/// The hash of a leaf.
#[must_use]
pub fn leaf_hash(key_hash: B256, value_hash: B256) -> B256 {
    let mut bytes = [0u8; 65];
    bytes[1..33].copy_from_slice(key_hash.as_slice());
    bytes[33..].copy_from_slice(value_hash.as_slice());
    keccak256(bytes)
}

/// The hash of an inner node.
#[must_use]
pub fn inner_hash(left: B256, right: B256) -> B256 {
    let mut bytes = [0u8; 65];
    bytes[0] = 1;
    bytes[1..33].copy_from_slice(left.as_slice());
    bytes[33..].copy_from_slice(right.as_slice());
    keccak256(bytes)
}

/// Bit `depth` of `key`, from the most significant.
fn bit(key: &B256, depth: usize) -> bool {
    key[depth / 8] >> (7 - depth % 8) & 1 == 1
}

/// The root of `leaves` (sorted by key hash, distinct), whose keys share their first `depth` bits.
fn node(leaves: &[(B256, B256)], depth: usize) -> B256 {
    match leaves {
        [] => B256::ZERO,
        [(key, value)] => leaf_hash(*key, *value),
        _ => {
            let split = leaves.partition_point(|(key, _)| !bit(key, depth));
            inner_hash(node(&leaves[..split], depth + 1), node(&leaves[split..], depth + 1))
        }
    }
}

/// Subtrees down to this depth keep their hash between roots (2^17 entries at most), so a
/// root after a block costs hashes for the changed paths, not for the whole state.
const CACHED_DEPTH: usize = 16;

/// The first `depth` bits of `key` (`depth` ≤ [`CACHED_DEPTH`]).
fn prefix(key: &B256, depth: usize) -> u32 {
    if depth == 0 {
        return 0;
    }
    u32::from_be_bytes([key[0], key[1], key[2], key[3]]) >> (32 - depth)
}

/// The leaves of a state (key hash → value hash), with the hashes of its upper subtrees.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    leaves: BTreeMap<B256, B256>,
    /// Subtree hashes by (depth, prefix), for depths up to [`CACHED_DEPTH`].
    cache: HashMap<(usize, u32), B256>,
}

impl Tree {
    /// Sets the value hash of `key_hash` (`None`: removes it).
    pub fn set(&mut self, key_hash: B256, value_hash: Option<B256>) {
        match value_hash {
            Some(value_hash) => self.leaves.insert(key_hash, value_hash),
            None => self.leaves.remove(&key_hash),
        };
        for depth in 0..=CACHED_DEPTH {
            self.cache.remove(&(depth, prefix(&key_hash, depth)));
        }
    }

    /// The value hash of `key_hash`, if present.
    #[must_use]
    pub fn get(&self, key_hash: &B256) -> Option<B256> {
        self.leaves.get(key_hash).copied()
    }

    /// How many leaves.
    #[must_use]
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether it is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    fn sorted(&self) -> Vec<(B256, B256)> {
        self.leaves.iter().map(|(key, value)| (*key, *value)).collect()
    }

    /// The root: computed again only for the subtrees whose leaves changed since the last one.
    pub fn root(&mut self) -> B256 {
        if let Some(root) = self.cache.get(&(0, 0)) {
            return *root;
        }
        let sorted = self.sorted();
        self.cached_node(&sorted, 0, 0)
    }

    fn cached_node(&mut self, leaves: &[(B256, B256)], depth: usize, at: u32) -> B256 {
        if depth > CACHED_DEPTH || leaves.len() < 2 {
            return node(leaves, depth);
        }
        if let Some(hash) = self.cache.get(&(depth, at)) {
            return *hash;
        }
        let split = leaves.partition_point(|(key, _)| !bit(key, depth));
        let left = self.cached_node(&leaves[..split], depth + 1, at << 1);
        let right = self.cached_node(&leaves[split..], depth + 1, at << 1 | 1);
        let hash = inner_hash(left, right);
        self.cache.insert((depth, at), hash);
        hash
    }

    /// A proof for `key_hash`, present or absent.
    pub fn prove(&mut self, key_hash: B256) -> Proof {
        let sorted = self.sorted();
        let mut leaves = sorted.as_slice();
        let mut siblings = Vec::new();
        let mut depth = 0;
        let mut at = 0u32;
        loop {
            match leaves {
                [] => return Proof { siblings, terminal: Terminal::Empty },
                [(key, value)] => {
                    return Proof {
                        siblings,
                        terminal: Terminal::Leaf { key_hash: *key, value_hash: *value },
                    }
                }
                _ => {
                    let split = leaves.partition_point(|(key, _)| !bit(key, depth));
                    let (left, right) = leaves.split_at(split);
                    // Siblings near the root come from the cache; further down, subtrees are small.
                    let child = if depth < CACHED_DEPTH { at << 1 } else { 0 };
                    if bit(&key_hash, depth) {
                        siblings.push(self.cached_node(left, depth + 1, child));
                        leaves = right;
                        at = child | 1;
                    } else {
                        siblings.push(self.cached_node(right, depth + 1, child | 1));
                        leaves = left;
                        at = child;
                    }
                    depth += 1;
                }
            }
        }
    }
}

/// Whether `proof` shows that under `root`, `key_hash` holds `value_hash` (`None`: is absent).
#[must_use]
pub fn verify(root: B256, key_hash: B256, value_hash: Option<B256>, proof: &Proof) -> bool {
    let depth = proof.siblings.len();
    if depth > 256 {
        return false;
    }
    let mut hash = match (proof.terminal, value_hash) {
        (Terminal::Empty, None) => B256::ZERO,
        (Terminal::Leaf { key_hash: leaf_key, value_hash: leaf_value }, Some(value)) => {
            if leaf_key != key_hash || leaf_value != value {
                return false;
            }
            leaf_hash(leaf_key, leaf_value)
        }
        (Terminal::Leaf { key_hash: leaf_key, value_hash: leaf_value }, None) => {
            // Another key's leaf where this key's path ends: it must share the path.
            if leaf_key == key_hash || (0..depth).any(|at| bit(&leaf_key, at) != bit(&key_hash, at))
            {
                return false;
            }
            leaf_hash(leaf_key, leaf_value)
        }
        (Terminal::Empty, Some(_)) => return false,
    };
    for (at, sibling) in proof.siblings.iter().enumerate().rev() {
        hash = if bit(&key_hash, at) {
            inner_hash(*sibling, hash)
        } else {
            inner_hash(hash, *sibling)
        };
    }
    hash == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u64) -> B256 {
        keccak256(index.to_be_bytes())
    }

    #[test]
    fn proofs_verify_for_present_and_absent_keys_and_tampering_fails() {
        let mut tree = Tree::default();
        assert_eq!(tree.root(), B256::ZERO);
        for index in 0..300 {
            tree.set(key(index), Some(key(index + 1_000)));
        }
        let root = tree.root();
        for index in [0, 7, 150, 299] {
            let proof = tree.prove(key(index));
            assert!(verify(root, key(index), Some(key(index + 1_000)), &proof));
            assert!(!verify(root, key(index), Some(key(index + 2_000)), &proof), "wrong value");
            assert!(!verify(root, key(index), None, &proof), "present, not absent");
            let mut tampered = proof.clone();
            tampered.siblings[0] = B256::repeat_byte(9);
            assert!(!verify(root, key(index), Some(key(index + 1_000)), &tampered));
        }
        for index in [300, 301, 5_000] {
            let proof = tree.prove(key(index));
            assert!(verify(root, key(index), None, &proof), "absent {index}");
            assert!(!verify(root, key(index), Some(key(1)), &proof));
        }
        // The cached root is the root computed from scratch, after any change.
        for index in 0..50 {
            tree.set(key(index * 7), if index % 3 == 0 { None } else { Some(key(index)) });
            assert_eq!(tree.root(), node(&tree.sorted(), 0), "after change {index}");
        }
        for index in 0..50 {
            let restored = (index * 7 < 300).then(|| key(index * 7 + 1_000));
            tree.set(key(index * 7), restored);
        }
        assert_eq!(tree.root(), root);
        // One leaf's change changes the root; putting it back restores it.
        tree.set(key(5), Some(B256::ZERO));
        assert_ne!(tree.root(), root);
        tree.set(key(5), Some(key(1_005)));
        assert_eq!(tree.root(), root);
        tree.set(key(5), None);
        assert!(verify(tree.root(), key(5), None, &tree.prove(key(5))));
        assert_eq!(tree.len(), 299);
    }

    #[test]
    fn a_single_leaf_is_the_root() {
        let mut tree = Tree::default();
        tree.set(key(1), Some(key(2)));
        assert_eq!(tree.root(), leaf_hash(key(1), key(2)));
        let proof = tree.prove(key(1));
        assert!(proof.siblings.is_empty());
        assert!(verify(tree.root(), key(1), Some(key(2)), &proof));
        assert!(verify(tree.root(), key(3), None, &tree.prove(key(3))));
    }
}
