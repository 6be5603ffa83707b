//! Blocks and included transactions as the node stores and serves them.

use std::sync::Arc;

use alloy_primitives::{Address, Bloom, Bytes, Log, B256};
use serde::{Deserialize, Serialize};

/// A committed block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Its height; the genesis block is 0.
    pub number: u64,
    /// keccak256 of its header fields (see [`Block::compute_hash`]).
    pub hash: B256,
    /// The hash of the block before it (zero for the genesis block).
    pub parent_hash: B256,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    /// The gas its transactions used.
    pub gas_used: u64,
    /// The most gas its transactions may use.
    pub gas_limit: u64,
    /// The base fee per gas, in wei.
    pub base_fee: u64,
    /// Who receives the fees: the fee vault.
    pub beneficiary: Address,
    /// The bloom filter of its logs.
    pub logs_bloom: Bloom,
    /// The root of the state's sparse Merkle tree after the block ([`crate::merkle`]).
    #[serde(default)]
    pub state_root: B256,
    /// What the L1 contracts will hold for this block: see [`Block::compute_output_root`].
    #[serde(default)]
    pub output_root: B256,
    /// Its transactions' hashes, in order.
    pub transactions: Vec<B256>,
}

impl Block {
    /// An empty block of `config`'s chain, its roots and hash not computed yet (see
    /// [`Block::seal`]).
    #[must_use]
    pub fn empty(
        number: u64,
        parent_hash: B256,
        timestamp: u64,
        config: &crate::chain::ChainConfig,
    ) -> Self {
        Self {
            number,
            hash: B256::ZERO,
            parent_hash,
            timestamp,
            gas_used: 0,
            gas_limit: config.block_gas_limit,
            base_fee: config.base_fee,
            beneficiary: config.fee_vault,
            logs_bloom: Bloom::ZERO,
            state_root: B256::ZERO,
            output_root: B256::ZERO,
            transactions: Vec::new(),
        }
    }

    /// Sets the state root, then the hash and the output root that depend on it.
    pub fn seal(&mut self, state_root: B256) {
        self.state_root = state_root;
        self.hash = self.compute_hash();
        self.output_root = self.compute_output_root();
    }

    /// The output root: `keccak256(version ‖ state root ‖ withdrawal root ‖ block hash)`, each 32
    /// bytes, version 0. There are no withdrawals yet, so their root is zero.
    #[must_use]
    pub fn compute_output_root(&self) -> B256 {
        let mut bytes = [0u8; 128];
        bytes[32..64].copy_from_slice(self.state_root.as_slice());
        bytes[96..].copy_from_slice(self.hash.as_slice());
        alloy_primitives::keccak256(bytes)
    }

    /// The hash of the block's header fields and transaction list.
    #[must_use]
    pub fn compute_hash(&self) -> B256 {
        let mut bytes = Vec::with_capacity(128 + 32 * self.transactions.len());
        bytes.extend_from_slice(&self.number.to_be_bytes());
        bytes.extend_from_slice(self.parent_hash.as_slice());
        bytes.extend_from_slice(&self.timestamp.to_be_bytes());
        bytes.extend_from_slice(&self.gas_used.to_be_bytes());
        bytes.extend_from_slice(&self.gas_limit.to_be_bytes());
        bytes.extend_from_slice(&self.base_fee.to_be_bytes());
        bytes.extend_from_slice(self.beneficiary.as_slice());
        bytes.extend_from_slice(self.logs_bloom.as_slice());
        bytes.extend_from_slice(self.state_root.as_slice());
        for hash in &self.transactions {
            bytes.extend_from_slice(hash.as_slice());
        }
        alloy_primitives::keccak256(bytes)
    }
}

/// Which VM ran a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An EVM transaction.
    Evm,
    /// A Move transaction (an Ethereum transaction to the Move entry address).
    Move,
}

/// An included transaction, with its receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRecord {
    /// Its hash (keccak256 of its EIP-2718 encoding).
    pub hash: B256,
    /// The block it is in, and its position there.
    pub block_number: u64,
    /// The hash of that block.
    pub block_hash: B256,
    /// Its position in the block.
    pub index: u64,
    /// The recovered sender.
    pub from: Address,
    /// Which VM ran it.
    pub kind: Kind,
    /// Its EIP-2718 encoding, as the sender signed it.
    pub raw: Bytes,
    /// Whether it succeeded.
    pub success: bool,
    /// The gas it used.
    pub gas_used: u64,
    /// The gas used by it and every transaction before it in the block.
    pub cumulative_gas_used: u64,
    /// The price per gas it paid.
    pub effective_gas_price: u128,
    /// The contract it created, if any.
    pub contract_address: Option<Address>,
    /// Its logs (Move events are not logs).
    pub logs: Vec<Log>,
    /// The block-wide index of its first log (the logs of the transactions before it).
    #[serde(default)]
    pub first_log_index: u64,
    /// For a Move transaction: how it ended (`success`, `aborted in … with code …`, …).
    pub move_status: Option<String>,
    /// For a Move transaction: its events, each as its type (the text the executor shares
    /// between the events of one type) and BCS data.
    pub move_events: Vec<(Arc<str>, Bytes)>,
}
