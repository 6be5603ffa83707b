//! EIP-2930 access lists from what a transaction read and wrote (`eth_createAccessList`).
//!
//! Every account and storage slot revm loads is read through the state, so the keys a
//! transaction read are the accounts and slots it accessed. The list holds those that warming
//! in advance makes cheaper, as geth's access-list tracer chooses them: every slot accessed
//! (with its contract), and every other account accessed but for those a transaction has warm
//! anyway (the sender, the recipient or created contract, the precompiles, the block's
//! beneficiary, the authorities of a set-code transaction: see [`EvmVm::is_warm`]) and for
//! contracts the transaction itself created. Unlike geth's, the beneficiary is left out even when
//! the code reads it (EIP-3651 warms it: an entry would cost 2 400 gas for nothing).
//!
//! Slots of a contract created in the same transaction are not read from the state; those it
//! wrote are listed as geth lists them (it lists those it only read too).

use std::collections::{BTreeMap, BTreeSet};

use duet_types::{Address, StateKey, StateValue, B256, MOVE_OVERLAY_ADDRESS};
use revm::context::transaction::{AccessList, AccessListItem};
use revm::context::TxEnv;

use crate::EvmVm;

impl EvmVm {
    /// Whether `transaction` has `address` warm from its start (EIP-2929, EIP-3651, EIP-7702),
    /// so that an access-list entry for it alone would cost 2 400 gas for nothing: its sender,
    /// its recipient (or the contract it creates), a precompile (the Move call precompile
    /// included), the block's beneficiary, or an authority of its authorizations (`authorities`,
    /// sorted).
    #[must_use]
    pub fn is_warm(&self, transaction: &TxEnv, authorities: &[Address], address: &Address) -> bool {
        let recipient = match transaction.kind {
            revm::primitives::TxKind::Call(to) => to,
            revm::primitives::TxKind::Create => transaction.caller.create(transaction.nonce),
        };
        *address == transaction.caller
            || *address == recipient
            || *address == self.block.beneficiary
            || authorities.binary_search(address).is_ok()
            || match &self.move_call {
                Some((_, addresses)) => addresses.contains(address),
                None => revm::handler::EthPrecompiles::new(self.cfg.spec).contains(address),
            }
    }
}

/// The access list of a transaction that started with the list `given` and read `reads` (each
/// key with the value it read) and wrote `writes` (its state updates): `given`, with every slot
/// it accessed and every account it accessed for which `warm` is false and that it did not
/// create. Sorted by address, each entry's slots sorted.
#[must_use]
pub fn access_list(
    given: &AccessList,
    reads: &[(StateKey, Option<StateValue>)],
    writes: &[(StateKey, Option<StateValue>)],
    warm: impl Fn(&Address) -> bool,
) -> AccessList {
    let mut list: BTreeMap<Address, BTreeSet<B256>> = BTreeMap::new();
    for item in &given.0 {
        list.entry(item.address).or_default().extend(item.storage_keys.iter().copied());
    }
    // Accounts read without a nonce that the transaction leaves with one: contracts it created
    // (only the sender's and authorities' nonces change otherwise, and they are warm).
    let written_nonce: BTreeMap<&Address, u64> = writes
        .iter()
        .filter_map(|(key, value)| match (key, value) {
            (StateKey::Account(address), Some(StateValue::Account { nonce, .. })) => {
                Some((address, *nonce))
            }
            _ => None,
        })
        .collect();
    let created = |address: &Address, read: Option<&StateValue>| {
        let nonce_before = match read {
            Some(StateValue::Account { nonce, .. }) => *nonce,
            _ => 0,
        };
        nonce_before == 0 && written_nonce.get(address).is_some_and(|nonce| *nonce > 0)
    };
    for (key, value) in reads {
        match key {
            StateKey::Account(address)
                if *address != MOVE_OVERLAY_ADDRESS
                    && !warm(address)
                    && !created(address, value.as_ref()) =>
            {
                list.entry(*address).or_default();
            }
            StateKey::Storage { address, slot } if *address != MOVE_OVERLAY_ADDRESS => {
                list.entry(*address).or_default().insert(*slot);
            }
            _ => {}
        }
    }
    for (key, _) in writes {
        if let StateKey::Storage { address, slot } = key {
            if *address != MOVE_OVERLAY_ADDRESS {
                list.entry(*address).or_default().insert(*slot);
            }
        }
    }
    AccessList(
        list.into_iter()
            .map(|(address, slots)| AccessListItem {
                address,
                storage_keys: slots.into_iter().collect(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(nonce: u64) -> StateValue {
        StateValue::Account { nonce, code_hash: crate::EVM_EMPTY_CODE_HASH }
    }

    #[test]
    fn lists_slots_and_cold_accounts_but_not_warm_or_created_ones() {
        let [warm_one, cold, contract, created, given] = [1, 2, 3, 4, 5].map(Address::repeat_byte);
        let slot = |byte| B256::repeat_byte(byte);
        let reads = vec![
            (StateKey::Account(warm_one), Some(account(3))),
            (StateKey::Account(cold), None),
            (StateKey::Balance(Address::repeat_byte(9)), None),
            (StateKey::Account(created), None),
            (StateKey::Storage { address: contract, slot: slot(2) }, None),
            (StateKey::Storage { address: contract, slot: slot(1) }, None),
            (StateKey::Storage { address: MOVE_OVERLAY_ADDRESS, slot: slot(1) }, None),
            (StateKey::Account(MOVE_OVERLAY_ADDRESS), None),
        ];
        let writes = vec![
            (StateKey::Account(created), Some(account(1))),
            (StateKey::Account(cold), Some(account(0))),
            (StateKey::Storage { address: created, slot: slot(7) }, None),
        ];
        let given_list =
            AccessList(vec![AccessListItem { address: given, storage_keys: vec![slot(5)] }]);
        let list = access_list(&given_list, &reads, &writes, |address| *address == warm_one);
        let expected = AccessList(vec![
            AccessListItem { address: cold, storage_keys: vec![] },
            AccessListItem { address: contract, storage_keys: vec![slot(1), slot(2)] },
            AccessListItem { address: created, storage_keys: vec![slot(7)] },
            AccessListItem { address: given, storage_keys: vec![slot(5)] },
        ]);
        assert_eq!(list, expected);
        // What it gives is what it was given: a second run that reads the same settles.
        assert_eq!(access_list(&list, &reads, &writes, |address| *address == warm_one), list);
    }
}
