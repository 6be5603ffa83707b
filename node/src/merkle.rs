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
//!
//! The tree lives in the node's database as its nodes, by [`Position`] (depth and path): an inner
//! node stores its hash, a leaf its key and value hash, and nothing is stored for an empty
//! subtree or below a leaf. [`update`] turns a block's state changes into the new root and the
//! node writes that go into the block's write batch, reading only the changed paths; [`prove`]
//! walks one path. Nothing is rebuilt when the node restarts. Nodes are read through a bounded
//! [`NodeCache`].

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{keccak256, B256};
use duet_types::{StateKey, StateValue};
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

/// The root of `leaves` (sorted by key hash, distinct), whose keys share their first `depth` bits:
/// the definition the stored tree is tested against.
#[cfg(test)]
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

/// A node of the compacted tree, as the database stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// The one leaf of its subtree.
    Leaf {
        /// The leaf's key hash.
        key_hash: B256,
        /// The leaf's value hash.
        value_hash: B256,
    },
    /// A subtree of at least two leaves, by its hash.
    Inner(B256),
}

impl Node {
    /// The node's hash.
    #[must_use]
    pub fn hash(&self) -> B256 {
        match self {
            Self::Leaf { key_hash, value_hash } => leaf_hash(*key_hash, *value_hash),
            Self::Inner(hash) => *hash,
        }
    }

    /// The stored bytes: `0x00 ‖ key hash ‖ value hash`, or `0x01 ‖ hash`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Leaf { key_hash, value_hash } => {
                [&[0u8][..], key_hash.as_slice(), value_hash.as_slice()].concat()
            }
            Self::Inner(hash) => [&[1u8][..], hash.as_slice()].concat(),
        }
    }

    /// The node [`encode`](Self::encode) wrote, or `None`.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0, rest @ ..] if rest.len() == 64 => Some(Self::Leaf {
                key_hash: B256::from_slice(&rest[..32]),
                value_hash: B256::from_slice(&rest[32..]),
            }),
            [1, rest @ ..] if rest.len() == 32 => Some(Self::Inner(B256::from_slice(rest))),
            _ => None,
        }
    }
}

/// The hash of the subtree at a position: its node's, or zero if it is empty.
fn hash_of(node: Option<Node>) -> B256 {
    node.map_or(B256::ZERO, |node| node.hash())
}

/// Where a node sits: its depth, and the first `depth` bits that every key below it shares
/// (the remaining bits zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    depth: u16,
    path: B256,
}

impl Position {
    /// The root's position.
    pub const ROOT: Self = Self { depth: 0, path: B256::ZERO };

    /// The depth.
    #[must_use]
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }

    /// The position at `depth` on `key`'s path (its first `depth` bits).
    #[cfg(test)]
    pub(crate) fn on_path(key: B256, depth: usize) -> Self {
        (0..depth).fold(Self::ROOT, |position, at| position.child(bit(&key, at)))
    }

    /// The left (`false`) or right (`true`) child's position.
    fn child(self, right: bool) -> Self {
        let mut path = self.path;
        if right {
            path[self.depth() / 8] |= 0x80 >> (self.depth() % 8);
        }
        Self { depth: self.depth + 1, path }
    }

    /// The database key: the depth (two bytes, big-endian), then the bytes holding the path.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        [&self.depth.to_be_bytes()[..], &self.path[..self.depth().div_ceil(8)]].concat()
    }
}

/// Where a tree's nodes are read from: the node database, or a map.
pub trait Nodes {
    /// Why a read failed.
    type Error;
    /// The node at `position`, `None` if that subtree is empty (or the position is below a
    /// leaf).
    ///
    /// # Errors
    /// The read failed.
    fn node(&self, position: &Position) -> Result<Option<Node>, Self::Error>;
}

impl<S: std::hash::BuildHasher> Nodes for HashMap<Position, Node, S> {
    type Error = std::convert::Infallible;
    fn node(&self, position: &Position) -> Result<Option<Node>, Self::Error> {
        Ok(self.get(position).copied())
    }
}

/// The root of the tree in `nodes`.
///
/// # Errors
/// A read failed.
pub fn root<N: Nodes>(nodes: &N) -> Result<B256, N::Error> {
    Ok(hash_of(nodes.node(&Position::ROOT)?))
}

/// What applying leaf changes does to a tree: the new root, and the node writes (`None`:
/// delete) that take the stored tree there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The root after the changes.
    pub root: B256,
    /// The node writes, by position.
    pub writes: BTreeMap<Position, Option<Node>>,
}

/// The leaves of state changes: each key's commitment key and its value's hash (`None`: the
/// key is removed), for [`update`].
pub fn leaves(
    state: &[(StateKey, Option<StateValue>)],
) -> impl Iterator<Item = (B256, Option<B256>)> + '_ {
    state.iter().map(|(key, value)| {
        (key.commitment_key(), value.as_ref().map(|value| keccak256(value.encode())))
    })
}

/// The update that sets each key hash of `changes` to its value hash (`None`: removes it).
/// Reads only the nodes on the changed keys' paths and their siblings. Where a key appears more
/// than once, the last change counts.
///
/// # Errors
/// A read failed.
pub fn update<N: Nodes>(
    nodes: &N,
    changes: impl IntoIterator<Item = (B256, Option<B256>)>,
) -> Result<Update, N::Error> {
    let mut changes: Vec<(B256, Option<B256>)> = changes.into_iter().collect();
    // A stable sort keeps repeated keys in order: the last of each run wins.
    changes.sort_by_key(|(key, _)| *key);
    let mut distinct: Vec<(B256, Option<B256>)> = Vec::with_capacity(changes.len());
    for change in changes {
        match distinct.last_mut() {
            Some(last) if last.0 == change.0 => *last = change,
            _ => distinct.push(change),
        }
    }
    let mut writes = BTreeMap::new();
    let existing = nodes.node(&Position::ROOT)?;
    let root = apply(nodes, Position::ROOT, existing, &distinct, &mut writes)?;
    Ok(Update { root: hash_of(root), writes })
}

/// The node at `position` after `changes` (sorted, distinct keys below `position`) apply to
/// the subtree whose node is `existing`; records the writes of this subtree.
fn apply<N: Nodes>(
    nodes: &N,
    position: Position,
    existing: Option<Node>,
    changes: &[(B256, Option<B256>)],
    writes: &mut BTreeMap<Position, Option<Node>>,
) -> Result<Option<Node>, N::Error> {
    if changes.is_empty() {
        return Ok(existing);
    }
    let result = match existing {
        Some(Node::Inner(_)) => {
            let split = changes.partition_point(|(key, _)| !bit(key, position.depth()));
            let (left_at, right_at) = (position.child(false), position.child(true));
            let left = apply(nodes, left_at, nodes.node(&left_at)?, &changes[..split], writes)?;
            let right = apply(nodes, right_at, nodes.node(&right_at)?, &changes[split..], writes)?;
            match (left, right) {
                (None, None) => None,
                // One leaf left in this subtree: it moves up here.
                (Some(leaf @ Node::Leaf { .. }), None) => {
                    writes.insert(left_at, None);
                    Some(leaf)
                }
                (None, Some(leaf @ Node::Leaf { .. })) => {
                    writes.insert(right_at, None);
                    Some(leaf)
                }
                (left, right) => Some(Node::Inner(inner_hash(hash_of(left), hash_of(right)))),
            }
        }
        // Nothing is stored below an empty subtree or a leaf: build the subtree from its
        // leaves.
        None | Some(Node::Leaf { .. }) => {
            let mut leaves: Vec<(B256, B256)> = changes
                .iter()
                .filter_map(|(key, value)| value.map(|value| (*key, value)))
                .collect();
            if let Some(Node::Leaf { key_hash, value_hash }) = existing {
                if changes.binary_search_by(|(key, _)| key.cmp(&key_hash)).is_err() {
                    let at = leaves.partition_point(|(key, _)| *key < key_hash);
                    leaves.insert(at, (key_hash, value_hash));
                }
            }
            build(position, &leaves, writes)
        }
    };
    if result != existing {
        writes.insert(position, result);
    }
    Ok(result)
}

/// The node at `position` of a subtree holding `leaves` (sorted, distinct), recording the writes
/// of the nodes below it.
fn build(
    position: Position,
    leaves: &[(B256, B256)],
    writes: &mut BTreeMap<Position, Option<Node>>,
) -> Option<Node> {
    match leaves {
        [] => None,
        [(key_hash, value_hash)] => {
            Some(Node::Leaf { key_hash: *key_hash, value_hash: *value_hash })
        }
        _ => {
            let split = leaves.partition_point(|(key, _)| !bit(key, position.depth()));
            let mut child = |right: bool, leaves: &[(B256, B256)]| {
                let at = position.child(right);
                let node = build(at, leaves, writes);
                if node.is_some() {
                    writes.insert(at, node);
                }
                hash_of(node)
            };
            let left = child(false, &leaves[..split]);
            let right = child(true, &leaves[split..]);
            Some(Node::Inner(inner_hash(left, right)))
        }
    }
}

/// A proof for `key_hash`, present or absent, in the tree in `nodes`.
///
/// # Errors
/// A read failed.
pub fn prove<N: Nodes>(nodes: &N, key_hash: B256) -> Result<Proof, N::Error> {
    let mut position = Position::ROOT;
    let mut siblings = Vec::new();
    loop {
        match nodes.node(&position)? {
            None => return Ok(Proof { siblings, terminal: Terminal::Empty }),
            Some(Node::Leaf { key_hash, value_hash }) => {
                return Ok(Proof { siblings, terminal: Terminal::Leaf { key_hash, value_hash } })
            }
            Some(Node::Inner(_)) => {
                let right = bit(&key_hash, position.depth());
                siblings.push(hash_of(nodes.node(&position.child(!right))?));
                position = position.child(right);
            }
        }
    }
}

/// Nodes read through a [`NodeCache`], which every update and proof passes through.
pub struct CachedNodes<'a, N> {
    nodes: &'a N,
    cache: std::cell::RefCell<&'a mut NodeCache>,
}

/// The most nodes (or known empty positions) the cache holds: as many as a table of 2^20 slots
/// takes (seven eighths of them), about 100 MB at 100 bytes a slot; the whole tree of a state of
/// about 300 000 keys (a tree of random keys reads about 2.9 positions a key).
const CACHED_NODES: usize = (1 << 20) / 8 * 7;

/// The stored tree's nodes as last read or committed, so that an update reads the database only
/// for paths it has not seen. Bounded: when full, it keeps the upper levels, as many whole levels
/// as fill half of it (every update passes through them; the deeper a level, the larger and the
/// less of it a block touches), and drops the rest. (Reading only the upper 16 levels through
/// it, blocks took longer the more the chain had written: 200 transfers from 6 ms on a new chain
/// to 19 ms after 200 000, as the reads below went from the memtable to table files.)
#[derive(Debug)]
pub struct NodeCache {
    nodes: HashMap<Position, Option<Node>>,
    /// The most positions held.
    limit: usize,
}

impl Default for NodeCache {
    fn default() -> Self {
        Self::with_limit(CACHED_NODES)
    }
}

impl NodeCache {
    fn with_limit(limit: usize) -> Self {
        Self { nodes: HashMap::new(), limit }
    }

    /// `nodes` read through this cache.
    pub fn over<'a, N>(&'a mut self, nodes: &'a N) -> CachedNodes<'a, N> {
        CachedNodes { nodes, cache: std::cell::RefCell::new(self) }
    }

    /// Takes in the writes of an update once they are committed.
    pub fn committed(&mut self, writes: &BTreeMap<Position, Option<Node>>) {
        for (position, node) in writes {
            self.keep(*position, *node);
        }
    }

    fn keep(&mut self, position: Position, node: Option<Node>) {
        if self.nodes.len() >= self.limit && !self.nodes.contains_key(&position) {
            self.drop_lower_levels();
        }
        self.nodes.insert(position, node);
    }

    /// Keeps the upper levels, as many whole ones as fill half the cache.
    fn drop_lower_levels(&mut self) {
        let mut per_level = [0usize; 257];
        for position in self.nodes.keys() {
            per_level[position.depth()] += 1;
        }
        let (mut kept, mut levels) = (0, 0);
        while levels < per_level.len() && kept + per_level[levels] <= self.limit / 2 {
            kept += per_level[levels];
            levels += 1;
        }
        self.nodes.retain(|position, _| position.depth() < levels);
    }
}

impl<N: Nodes> Nodes for CachedNodes<'_, N> {
    type Error = N::Error;
    fn node(&self, position: &Position) -> Result<Option<Node>, Self::Error> {
        if let Some(node) = self.cache.borrow().nodes.get(position) {
            return Ok(*node);
        }
        let node = self.nodes.node(position)?;
        self.cache.borrow_mut().keep(*position, node);
        Ok(node)
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

    /// Numbers below a bound, from a linear congruential generator seeded with `seed`.
    fn random_numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |below| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % below
        }
    }

    /// One to `most` changes of the first `keys` keys in `round`: new keys, changed values,
    /// removals (some of absent keys) and repeats.
    fn random_changes(
        random: &mut impl FnMut(u64) -> u64,
        round: u64,
        most: u64,
        keys: u64,
    ) -> Vec<(B256, Option<B256>)> {
        (0..=random(most))
            .map(|_| {
                let index = random(keys);
                (key(index), (random(3) != 0).then(|| key(round * 1_000 + index)))
            })
            .collect()
    }

    /// A tree in memory: its stored nodes and its leaves.
    #[derive(Default)]
    struct Tree {
        nodes: HashMap<Position, Node>,
        leaves: BTreeMap<B256, B256>,
    }

    impl Tree {
        fn set(&mut self, changes: &[(B256, Option<B256>)]) -> B256 {
            let update = update(&self.nodes, changes.iter().copied()).unwrap();
            for (position, node) in update.writes {
                match node {
                    Some(node) => self.nodes.insert(position, node),
                    None => self.nodes.remove(&position),
                };
            }
            for (key, value) in changes {
                match value {
                    Some(value) => self.leaves.insert(*key, *value),
                    None => self.leaves.remove(key),
                };
            }
            update.root
        }

        fn prove(&self, key: B256) -> Proof {
            prove(&self.nodes, key).unwrap()
        }

        /// The root computed from the leaves alone.
        fn root_from_scratch(&self) -> B256 {
            let leaves: Vec<_> = self.leaves.iter().map(|(key, value)| (*key, *value)).collect();
            node(&leaves, 0)
        }
    }

    #[test]
    fn proofs_verify_for_present_and_absent_keys_and_tampering_fails() {
        let mut tree = Tree::default();
        assert_eq!(root(&tree.nodes).unwrap(), B256::ZERO);
        let changes: Vec<_> =
            (0..300).map(|index| (key(index), Some(key(index + 1_000)))).collect();
        let root_hash = tree.set(&changes);
        assert_eq!(root_hash, tree.root_from_scratch());
        assert_eq!(root(&tree.nodes).unwrap(), root_hash);
        for index in [0, 7, 150, 299] {
            let proof = tree.prove(key(index));
            assert!(verify(root_hash, key(index), Some(key(index + 1_000)), &proof));
            assert!(
                !verify(root_hash, key(index), Some(key(index + 2_000)), &proof),
                "wrong value"
            );
            assert!(!verify(root_hash, key(index), None, &proof), "present, not absent");
            let mut tampered = proof.clone();
            tampered.siblings[0] = B256::repeat_byte(9);
            assert!(!verify(root_hash, key(index), Some(key(index + 1_000)), &tampered));
        }
        for index in [300, 301, 5_000] {
            let proof = tree.prove(key(index));
            assert!(verify(root_hash, key(index), None, &proof), "absent {index}");
            assert!(!verify(root_hash, key(index), Some(key(1)), &proof));
        }
    }

    #[test]
    fn updates_store_exactly_the_nodes_of_the_tree_built_from_scratch() {
        let mut tree = Tree::default();
        let mut random = random_numbers(1);
        for round in 0..60 {
            let changes = random_changes(&mut random, round, 40, 200);
            let root_hash = tree.set(&changes);
            assert_eq!(root_hash, tree.root_from_scratch(), "round {round}");
            let mut rebuilt = Tree::default();
            let all: Vec<_> = tree.leaves.iter().map(|(key, value)| (*key, Some(*value))).collect();
            rebuilt.set(&all);
            assert!(rebuilt.nodes == tree.nodes, "round {round}: stale or missing nodes");
            for index in [random(200), random(200)] {
                let value = tree.leaves.get(&key(index)).copied();
                assert!(verify(root_hash, key(index), value, &tree.prove(key(index))));
            }
        }
        // Removing every leaf leaves nothing stored.
        let all: Vec<_> = tree.leaves.keys().map(|key| (*key, None)).collect();
        assert_eq!(tree.set(&all), B256::ZERO);
        assert!(tree.nodes.is_empty());
    }

    #[test]
    fn a_full_node_cache_keeps_whole_upper_levels_and_updates_and_proofs_through_it_stay_exact() {
        let mut tree = Tree::default();
        let mut cache = NodeCache::with_limit(64);
        let mut random = random_numbers(7);
        let mut resets = 0;
        for round in 0..40 {
            let changes = random_changes(&mut random, round, 30, 120);
            let upper_before: Vec<Position> =
                cache.nodes.keys().filter(|position| position.depth() <= 1).copied().collect();
            let before = cache.nodes.len();
            let cached = update(&cache.over(&tree.nodes), changes.iter().copied()).unwrap();
            let expected = update(&tree.nodes, changes.iter().copied()).unwrap();
            assert_eq!(cached, expected, "round {round}");
            cache.committed(&cached.writes);
            assert_eq!(tree.set(&changes), expected.root);
            assert!(cache.nodes.len() <= 64, "round {round}: {} held", cache.nodes.len());
            resets += usize::from(cache.nodes.len() < before);
            // The root and its children (three positions) always fit in half: never dropped.
            for position in upper_before {
                assert!(cache.nodes.contains_key(&position), "round {round}: {position:?} dropped");
            }
            for (position, node) in &cache.nodes {
                assert_eq!(*node, tree.nodes.get(position).copied(), "round {round}: stale");
            }
            for index in [random(120), random(120)] {
                let proof = prove(&cache.over(&tree.nodes), key(index)).unwrap();
                assert_eq!(proof, tree.prove(key(index)), "round {round}: proof of {index}");
            }
        }
        assert!(resets > 0, "the cache never filled up");
    }

    #[test]
    fn a_single_leaf_is_the_root_and_the_last_change_of_a_key_counts() {
        let mut tree = Tree::default();
        let root_hash = tree.set(&[(key(1), Some(key(9))), (key(1), Some(key(2)))]);
        assert_eq!(root_hash, leaf_hash(key(1), key(2)));
        let proof = tree.prove(key(1));
        assert!(proof.siblings.is_empty());
        assert!(verify(root_hash, key(1), Some(key(2)), &proof));
        assert!(verify(root_hash, key(3), None, &tree.prove(key(3))));
    }

    #[test]
    fn a_full_node_cache_takes_about_100_megabytes() {
        let slot = std::mem::size_of::<(Position, Option<Node>)>() + 1;
        assert!(slot <= 104, "{slot} bytes a slot");
        let mut table: HashMap<Position, Option<Node>> = HashMap::new();
        table.reserve(CACHED_NODES);
        assert_eq!(table.capacity(), CACHED_NODES, "one table of 2^20 slots");
    }

    #[test]
    fn nodes_and_positions_encode_and_decode() {
        let leaf = Node::Leaf { key_hash: key(1), value_hash: key(2) };
        for node in [leaf, Node::Inner(key(3))] {
            assert_eq!(Node::decode(&node.encode()), Some(node));
        }
        assert_eq!(Node::decode(&[2; 33]), None);
        assert_eq!(Node::decode(&[1; 5]), None);
        let position = Position::ROOT.child(true).child(false).child(true);
        assert_eq!(position.encode(), vec![0, 3, 0b1010_0000]);
        assert_eq!(Position::ROOT.encode(), vec![0, 0]);
    }
}
