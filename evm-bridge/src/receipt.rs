//! Block receipts: what Ethereum clients report per transaction, from the block's results.

use alloy_primitives::{Bloom, Log};
use duet_block_stm::TransactionResult;

use crate::{EvmError, Receipt};

/// A transaction's receipt in its block, as Ethereum clients report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockReceipt {
    /// Whether the transaction succeeded (status 1) or reverted or halted (status 0).
    pub success: bool,
    /// The gas this transaction used.
    pub gas_used: u64,
    /// The gas used by this and every earlier executed transaction of the block.
    pub cumulative_gas_used: u64,
    /// The logs it emitted (none if it failed).
    pub logs: Vec<Log>,
    /// The 2048-bit bloom filter of its logs' addresses and topics.
    pub logs_bloom: Bloom,
}

/// The receipts of a block's executed transactions, in order; rejected transactions (which are
/// not included in the block) get none.
#[must_use]
pub fn block_receipts(
    results: &[TransactionResult<Receipt, EvmError>],
) -> Vec<Option<BlockReceipt>> {
    let mut cumulative_gas_used = 0;
    results
        .iter()
        .map(|result| {
            let TransactionResult::Executed(receipt) = result else { return None };
            let gas_used = receipt.tx_gas_used();
            cumulative_gas_used += gas_used;
            let logs = receipt.logs().to_vec();
            let mut logs_bloom = Bloom::ZERO;
            logs_bloom.accrue_logs(&logs);
            Some(BlockReceipt {
                success: receipt.is_success(),
                gas_used,
                cumulative_gas_used,
                logs,
                logs_bloom,
            })
        })
        .collect()
}
