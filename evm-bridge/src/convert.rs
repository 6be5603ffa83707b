//! revm's state changes, as writes in Duet's key space.

use duet_block_stm::{Delta, WriteOp};
use duet_types::{StateKey, StateValue, B256, U256};
use revm::primitives::Address;
use revm::state::{Account, EvmState};

use crate::LAZY_BALANCE;

/// The hash of empty EVM code: an account without code has it.
pub const EVM_EMPTY_CODE_HASH: B256 = revm::primitives::KECCAK_EMPTY;

/// The writes that apply revm's `state` (one transaction's changes) to Duet's state, one per
/// key, in no particular order (the executors need none). Only what changed is written; an
/// absent key means zero, so zero balances, zero slots and default account headers are
/// deletions. The balances of `lazy_accounts` (loaded with the
/// stand-in [`LAZY_BALANCE`]) become commutative additions.
///
/// Returns `None` if a lazy account ended below its stand-in (it spent, which only code or the
/// sender can do): the transaction must run again with exact balances.
#[must_use]
pub fn state_writes(
    state: EvmState,
    lazy_accounts: &[Address],
) -> Option<Vec<(StateKey, WriteOp<StateValue>)>> {
    // A sender, a recipient or contract, and the fee vault, each with a few writes.
    let mut writes = Vec::with_capacity(8);
    for (address, mut account) in state {
        if !account.is_touched() {
            continue;
        }
        if lazy_accounts.contains(&address) && !account.is_selfdestructed() {
            let credit = account.info.balance.checked_sub(LAZY_BALANCE)?;
            // The balance is written as the credit alone.
            account.info.balance = account.original_info().balance;
            account_writes(address, &account, &mut writes);
            if !credit.is_zero() {
                // INVARIANT: credits stay below 2^128 wei, like every balance.
                let amount = u128::try_from(credit).unwrap_or(u128::MAX);
                writes.push((StateKey::Balance(address), WriteOp::Delta(Delta::add(amount))));
            }
        } else {
            account_writes(address, &account, &mut writes);
        }
    }
    Some(writes)
}

fn account_writes(
    address: Address,
    account: &Account,
    writes: &mut Vec<(StateKey, WriteOp<StateValue>)>,
) {
    if account.is_selfdestructed() {
        // EIP-6780: only a contract created in this same transaction is destroyed, so its whole
        // storage is what this transaction wrote.
        writes.push((StateKey::Account(address), WriteOp::Delete));
        writes.push((StateKey::Balance(address), WriteOp::Delete));
        for slot in account.storage.keys() {
            writes.push((StateKey::Storage { address, slot: B256::from(*slot) }, WriteOp::Delete));
        }
        return;
    }
    let original = account.original_info();
    let info = &account.info;
    if (info.nonce, info.code_hash) != (original.nonce, original.code_hash) {
        let write = if info.nonce == 0 && info.code_hash == EVM_EMPTY_CODE_HASH {
            WriteOp::Delete
        } else {
            WriteOp::Put(StateValue::Account { nonce: info.nonce, code_hash: info.code_hash })
        };
        writes.push((StateKey::Account(address), write));
    }
    if info.balance != original.balance {
        let write = if info.balance.is_zero() {
            WriteOp::Delete
        } else {
            // INVARIANT: balances stay below 2^128 wei (far above the supply of ETH).
            WriteOp::Put(StateValue::Balance(u128::try_from(info.balance).unwrap_or(u128::MAX)))
        };
        writes.push((StateKey::Balance(address), write));
    }
    // New code: a contract created, or an account delegated (EIP-7702).
    if info.code_hash != original.code_hash && info.code_hash != EVM_EMPTY_CODE_HASH {
        if let Some(code) = &info.code {
            writes.push((
                StateKey::Code(info.code_hash),
                WriteOp::Put(StateValue::Bytes(code.original_bytes())),
            ));
        }
    }
    for (slot, value) in account.changed_storage_slots() {
        let key = StateKey::Storage { address, slot: B256::from(*slot) };
        let present = value.present_value();
        let write = if present == U256::ZERO {
            WriteOp::Delete
        } else {
            WriteOp::Put(StateValue::Slot(present))
        };
        writes.push((key, write));
    }
}
