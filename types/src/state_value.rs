//! What the state holds under each [`StateKey`](crate::StateKey).

use alloy_primitives::{Bytes, B256, U256};

/// A value of Duet's state. Which variant a key holds follows from the key's kind: an
/// [`Account`](crate::StateKey::Account) key holds [`StateValue::Account`], a
/// [`Balance`](crate::StateKey::Balance) key a [`StateValue::Balance`], and so on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateValue {
    /// An account's nonce and the keccak256 hash of its code (the empty code's hash for accounts
    /// without code).
    Account {
        /// The number of transactions sent (and, for contracts, contracts created).
        nonce: u64,
        /// The hash of the account's code.
        code_hash: B256,
    },
    /// A balance in wei. Balances are at most `2^128 - 1` wei, far above the supply of ETH.
    Balance(u128),
    /// An EVM storage slot's value.
    Slot(U256),
    /// Bytes: EVM bytecode, a Move module or a Move resource.
    Bytes(Bytes),
}

impl StateValue {
    /// The balance, if this is one.
    #[must_use]
    pub const fn as_balance(&self) -> Option<u128> {
        match self {
            Self::Balance(balance) => Some(*balance),
            _ => None,
        }
    }
}
