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
    /// Ethereum's root of its transactions (the trie of their EIP-2718 encodings by index).
    #[serde(default)]
    pub transactions_root: B256,
    /// Ethereum's root of its receipts (status, cumulative gas, bloom and logs, by index): with
    /// the next, what the block's hash commits to of its transactions' outcomes (see
    /// [`receipts_roots`]).
    #[serde(default)]
    pub receipts_root: B256,
    /// The hash of its Move transactions' outcomes (index, status and events), which Ethereum's
    /// receipts have no place for.
    #[serde(default)]
    pub move_outcomes_hash: B256,
    /// Its length as Ethereum encodes a block: the RLP list of its header, its transactions (as
    /// they travel), and no uncles or withdrawals (see [`Block::seal`]).
    #[serde(default)]
    pub size: u64,
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
            transactions_root: alloy_consensus::EMPTY_ROOT_HASH,
            receipts_root: alloy_consensus::EMPTY_ROOT_HASH,
            move_outcomes_hash: alloy_primitives::keccak256([]),
            size: 0,
        }
    }

    /// Sets the state root, then what depends on it, from one encoding of the header: the
    /// hash, the output root, and the size, with its `transactions` (their EIP-2718 encodings,
    /// in block order).
    pub fn seal<'a>(
        &mut self,
        state_root: B256,
        transactions: impl IntoIterator<Item = &'a Bytes>,
    ) {
        self.state_root = state_root;
        let mut header = Vec::new();
        alloy_rlp::Encodable::encode(&self.header(), &mut header);
        self.hash = alloy_primitives::keccak256(&header);
        self.output_root = self.compute_output_root();
        // A typed transaction travels as an RLP string of its type and payload; a legacy one
        // is an RLP list already.
        let body: usize = transactions
            .into_iter()
            .map(|raw| {
                if raw.first().is_some_and(|first| *first >= 0xc0) {
                    raw.len()
                } else {
                    rlp_length(raw.len())
                }
            })
            .sum();
        // The header, the transactions' list, and the empty lists of uncles and withdrawals.
        self.size = rlp_length(header.len() + rlp_length(body) + 2) as u64;
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

    /// The block's hash as Ethereum computes it: keccak256 of its RLP header ([`Self::header`]).
    #[must_use]
    pub fn compute_hash(&self) -> B256 {
        self.header().hash_slow()
    }

    /// Its Ethereum header, of the fork the EVM runs (Osaka): its own fields, the hash of its
    /// Move transactions' outcomes as `extraData` (32 bytes: Ethereum's receipts have no place
    /// for them, and the header commits to them there), and the fixed values of what Duet has
    /// none of: no uncles, difficulty, mix hash (`PREVRANDAO`) or nonce, no withdrawals, blobs,
    /// beacon root or EIP-7685 requests.
    #[must_use]
    pub fn header(&self) -> alloy_consensus::Header {
        alloy_consensus::Header {
            parent_hash: self.parent_hash,
            ommers_hash: alloy_consensus::EMPTY_OMMER_ROOT_HASH,
            beneficiary: self.beneficiary,
            state_root: self.state_root,
            transactions_root: self.transactions_root,
            receipts_root: self.receipts_root,
            logs_bloom: self.logs_bloom,
            difficulty: alloy_primitives::U256::ZERO,
            number: self.number,
            gas_limit: self.gas_limit,
            gas_used: self.gas_used,
            timestamp: self.timestamp,
            extra_data: Bytes::copy_from_slice(self.move_outcomes_hash.as_slice()),
            mix_hash: B256::ZERO,
            nonce: alloy_primitives::B64::ZERO,
            base_fee_per_gas: Some(self.base_fee),
            withdrawals_root: Some(alloy_consensus::EMPTY_ROOT_HASH),
            blob_gas_used: Some(0),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(B256::ZERO),
            requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
            // Later forks' (EIP-7928, …): not in an Osaka header.
            block_access_list_hash: None,
            slot_number: None,
        }
    }

    /// Sets its transactions' and receipts' roots, and the bloom filter of its logs, from its
    /// `records` (in block order).
    pub fn set_roots(&mut self, records: &[TransactionRecord]) {
        let (transactions, receipts, moves, bloom) = receipts_roots(records);
        self.transactions_root = transactions;
        self.receipts_root = receipts;
        self.move_outcomes_hash = moves;
        self.logs_bloom = bloom;
    }
}

/// The length of an RLP string or list of `payload` bytes (a payload of one byte under 0x80 is
/// its own encoding, which no length here is).
fn rlp_length(payload: usize) -> usize {
    alloy_rlp::length_of_length(payload) + payload
}

/// The roots of `records` (a block's, in order): Ethereum's transactions root and receipts root
/// (each receipt as Ethereum encodes it: its transaction's type, status, cumulative gas, the
/// bloom of its logs, its logs), and the keccak256 of the Move transactions' outcomes, each its
/// index, its number of events, its status and its events (type and data), each part with its
/// length, which Ethereum's receipt has no place for; and the bloom filter of all their logs
/// (of the receipts' blooms, each computed once).
#[must_use]
pub fn receipts_roots(records: &[TransactionRecord]) -> (B256, B256, B256, Bloom) {
    use alloy_consensus::RlpEncodableReceipt;
    let transactions =
        alloy_consensus::proofs::ordered_trie_root_with_encoder(records, |record, out| {
            out.extend_from_slice(&record.raw);
        });
    let mut block_bloom = Bloom::ZERO;
    let receipts =
        alloy_consensus::proofs::ordered_trie_root_with_encoder(records, |record, out| {
            // EIP-2718: the transaction's type byte (none for a legacy one), then the
            // receipt's RLP; its logs borrowed, not copied.
            let receipt = alloy_consensus::Receipt {
                status: alloy_consensus::Eip658Value::Eip658(record.success),
                cumulative_gas_used: record.cumulative_gas_used,
                logs: record.logs.iter().collect::<Vec<&Log>>(),
            };
            let bloom: Bloom = record.logs.iter().collect();
            // Idempotent, however many times the trie encodes a receipt.
            block_bloom |= bloom;
            if let Some(&kind) = record.raw.first().filter(|byte| **byte < 0x7f) {
                out.push(kind);
            }
            receipt.rlp_encode_with_bloom(&bloom, out);
        });
    let mut moves = Vec::new();
    for record in records {
        let Some(status) = &record.move_status else { continue };
        moves.extend_from_slice(&record.index.to_be_bytes());
        moves.extend_from_slice(&(record.move_events.len() as u64).to_be_bytes());
        for part in std::iter::once(status.as_bytes())
            .chain(record.move_events.iter().flat_map(|(tag, data)| [tag.as_bytes(), &data[..]]))
        {
            moves.extend_from_slice(&(part.len() as u64).to_be_bytes());
            moves.extend_from_slice(part);
        }
    }
    (transactions, receipts, alloy_primitives::keccak256(moves), block_bloom)
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

#[cfg(test)]
mod tests {
    use super::{receipts_roots, Address, Bytes, Kind, TransactionRecord, B256};

    #[test]
    fn the_move_outcomes_hash_commits_to_each_move_transactions_status_and_events() {
        let record =
            |kind: Kind, status: Option<&str>, events: Vec<(&str, Vec<u8>)>| TransactionRecord {
                hash: B256::repeat_byte(4),
                block_number: 7,
                block_hash: B256::ZERO,
                index: 0,
                from: Address::repeat_byte(6),
                kind,
                raw: Bytes::from(vec![2, 0xc0]),
                success: true,
                gas_used: 51_000,
                cumulative_gas_used: 51_000,
                effective_gas_price: 1,
                contract_address: None,
                logs: Vec::new(),
                first_log_index: 0,
                move_status: status.map(str::to_owned),
                move_events: events
                    .into_iter()
                    .map(|(tag, data)| (tag.into(), Bytes::from(data)))
                    .collect(),
            };
        let evm_only = receipts_roots(&[record(Kind::Evm, None, vec![])]).2;
        assert_eq!(evm_only, alloy_primitives::keccak256([]), "no Move transaction: empty");
        let moved =
            |status: &str, events| receipts_roots(&[record(Kind::Move, Some(status), events)]).2;
        let transfer = vec![("0x1::eth::Transfer", vec![9; 16])];
        let base = moved("success", transfer.clone());
        assert_ne!(base, evm_only);
        assert_ne!(base, moved("aborted in 0x1::eth with code 1", transfer));
        assert_ne!(base, moved("success", vec![("0x1::eth::Transfer", vec![9; 15])]));
        // A part's bytes cannot pass for the next part's: each is counted with its length.
        assert_ne!(
            moved("success", vec![("ab", vec![]), ("c", vec![])]),
            moved("success", vec![("a", vec![]), ("bc", vec![])])
        );
        // Nor a record's for more events of the one before: each counts its events.
        let mut second = record(Kind::Move, Some("success"), vec![("t", vec![])]);
        second.index = 1;
        let two = receipts_roots(&[record(Kind::Move, Some("success"), vec![]), second]).2;
        let one = receipts_roots(&[record(Kind::Move, Some("success"), vec![])]).2;
        assert_ne!(two, one);
    }
}
