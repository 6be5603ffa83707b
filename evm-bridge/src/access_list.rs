//! EIP-2930 access lists (`eth_createAccessList`), found as geth's access-list tracer finds
//! them: by watching the opcodes a transaction's code runs.
//!
//! An EVM made [`with_access_tracer`](EvmVm::with_access_tracer) notes, for each transaction it
//! runs (with exact balances, so once), the slot of every `SLOAD` and `SSTORE` with the contract
//! running it, and the account every `BALANCE`, `EXTCODESIZE`, `EXTCODEHASH`, `EXTCODECOPY`,
//! `SELFDESTRUCT`, `CALL`, `CALLCODE`, `DELEGATECALL` and `STATICCALL` names ([`Accessed`]).
//! [`access_list`] turns that into the list: every slot with its contract, and every account but
//! those the transaction has warm anyway ([`EvmVm::warm_addresses`]). What revm loads for reasons of its
//! own (the sender, the recipient's delegate, a created contract's address) and what the Move
//! call precompile reads are not opcodes of the transaction's code, and are not listed. Unlike
//! geth's, the block's beneficiary and a set-code transaction's authorities are left out when
//! the code names them: they are warm (EIP-3651, EIP-7702), and an entry would cost 2 400 gas for
//! nothing. EVM code that Move code calls into (the `evm` module) is not watched.

use std::collections::{BTreeMap, BTreeSet};

use duet_types::{Address, B256};
use revm::bytecode::opcode::{
    BALANCE, CALL, CALLCODE, DELEGATECALL, EXTCODECOPY, EXTCODEHASH, EXTCODESIZE, SELFDESTRUCT,
    SLOAD, SSTORE, STATICCALL,
};
use revm::context::transaction::{AccessList, AccessListItem};
use revm::context::TxEnv;
use revm::context_interface::either::Either;
use revm::interpreter::interpreter_types::{InputsTr, Jumps};
use revm::interpreter::{interpreter::EthInterpreter, Interpreter};
use revm::Inspector;

use crate::EvmVm;

/// What a transaction's code accessed, as geth's access-list tracer notes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accessed {
    /// Accounts named by `BALANCE`, `EXTCODE*`, `SELFDESTRUCT` and the `CALL`s.
    pub accounts: BTreeSet<Address>,
    /// Slots read or written by `SLOAD` and `SSTORE`, by the contract whose code ran them.
    pub slots: BTreeMap<Address, BTreeSet<B256>>,
}

/// The inspector that fills an [`Accessed`].
#[derive(Debug, Default)]
pub(crate) struct AccessTracer(pub(crate) Accessed);

impl<CTX> Inspector<CTX, EthInterpreter> for AccessTracer {
    fn step(&mut self, interpreter: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        let word = |depth| interpreter.stack.peek(depth).ok();
        let account = |word: revm::primitives::U256| Address::from_word(B256::from(word));
        match interpreter.bytecode.opcode() {
            SLOAD | SSTORE => {
                if let Some(slot) = word(0) {
                    let contract = interpreter.input.target_address();
                    self.0.slots.entry(contract).or_default().insert(B256::from(slot));
                }
            }
            BALANCE | EXTCODESIZE | EXTCODEHASH | EXTCODECOPY | SELFDESTRUCT => {
                if let Some(word) = word(0) {
                    self.0.accounts.insert(account(word));
                }
            }
            CALL | CALLCODE | DELEGATECALL | STATICCALL => {
                if let Some(word) = word(1) {
                    self.0.accounts.insert(account(word));
                }
            }
            _ => {}
        }
    }
}

impl EvmVm {
    /// The same EVM noting what the code of each transaction it runs accesses (see the module
    /// documentation), for [`take_accessed`](Self::take_accessed). Its transactions run with
    /// exact balances.
    #[must_use]
    pub fn with_access_tracer(mut self) -> Self {
        let tracer = Either::Left(AccessTracer::default());
        self.tracer = Some(std::sync::Mutex::new(tracer));
        self
    }

    /// What the transactions run since the last call accessed (nothing without an access
    /// tracer).
    #[must_use]
    pub fn take_accessed(&self) -> Accessed {
        match self.tracer.as_ref().map(crate::lock_tracer).as_deref_mut() {
            Some(Either::Left(tracer)) => std::mem::take(&mut tracer.0),
            _ => Accessed::default(),
        }
    }

    /// The addresses `transaction` has warm from its start (EIP-2929, EIP-3651, EIP-7702), so
    /// that an access-list entry for one alone would cost 2 400 gas for nothing: its sender,
    /// its recipient (or the contract it creates, from its nonce), the precompiles (the Move call
    /// precompile included), the block's beneficiary, and the authorities of its authorizations.
    #[must_use]
    pub fn warm_addresses(
        &self,
        transaction: &TxEnv,
        authorities: &[Address],
    ) -> revm::primitives::AddressSet {
        let recipient = match transaction.kind {
            revm::primitives::TxKind::Call(to) => to,
            revm::primitives::TxKind::Create => transaction.caller.create(transaction.nonce),
        };
        let mut warm = match &self.move_call {
            Some((_, addresses)) => addresses.clone(),
            None => revm::handler::EthPrecompiles::new(self.cfg.spec).warm_addresses().clone(),
        };
        warm.extend([transaction.caller, recipient, self.block.beneficiary]);
        warm.extend(authorities.iter().copied());
        warm
    }
}

/// The access list of a transaction that started with the list `given` and whose code accessed
/// `accessed`: every slot with its contract, and every account of `given` and `accessed` for
/// which `warm` is false. Sorted by address, each entry's slots sorted.
#[must_use]
pub fn access_list(
    given: &AccessList,
    accessed: &Accessed,
    warm: impl Fn(&Address) -> bool,
) -> AccessList {
    let mut list: BTreeMap<Address, BTreeSet<B256>> = BTreeMap::new();
    let given_accounts = given.0.iter().map(|item| &item.address);
    for account in given_accounts.chain(&accessed.accounts) {
        if !warm(account) {
            list.entry(*account).or_default();
        }
    }
    for item in given.0.iter().filter(|item| !item.storage_keys.is_empty()) {
        list.entry(item.address).or_default().extend(item.storage_keys.iter().copied());
    }
    for (contract, slots) in &accessed.slots {
        list.entry(*contract).or_default().extend(slots.iter().copied());
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

    #[test]
    fn lists_every_slot_and_the_accounts_that_are_not_warm_anyway() {
        let [warm_one, cold, contract, given] = [1, 2, 3, 5].map(Address::repeat_byte);
        let slot = B256::repeat_byte;
        let accessed = Accessed {
            accounts: [warm_one, cold].into(),
            slots: [(contract, [slot(2), slot(1)].into()), (warm_one, [slot(3)].into())].into(),
        };
        let given_list = AccessList(vec![
            AccessListItem { address: given, storage_keys: vec![slot(5)] },
            AccessListItem { address: warm_one, storage_keys: vec![] },
        ]);
        let list = access_list(&given_list, &accessed, |address| *address == warm_one);
        let expected = AccessList(vec![
            AccessListItem { address: warm_one, storage_keys: vec![slot(3)] },
            AccessListItem { address: cold, storage_keys: vec![] },
            AccessListItem { address: contract, storage_keys: vec![slot(1), slot(2)] },
            AccessListItem { address: given, storage_keys: vec![slot(5)] },
        ]);
        assert_eq!(list, expected);
        // Given what it gives, with the same accesses, it gives the same: the search settles.
        assert_eq!(access_list(&list, &accessed, |address| *address == warm_one), list);
        // A warm account alone is left out, given or accessed.
        let alone = Accessed { accounts: [warm_one].into(), slots: BTreeMap::new() };
        assert_eq!(access_list(&AccessList::default(), &alone, |_| true), AccessList::default());
        let given_alone =
            AccessList(vec![AccessListItem { address: warm_one, storage_keys: vec![] }]);
        assert_eq!(
            access_list(&given_alone, &Accessed::default(), |_| true),
            AccessList::default()
        );
    }
}
