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

/// Why bytes are not the encoding of a [`StateValue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a state value encoding: {0}")]
pub struct ValueDecodeError(&'static str);

impl StateValue {
    /// The storage encoding: a one-byte tag, then the fields (integers big-endian, fixed size;
    /// bytes to the end).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Account { nonce, code_hash } => {
                let mut out = Vec::with_capacity(41);
                out.push(0);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(code_hash.as_slice());
                out
            }
            Self::Balance(balance) => {
                let mut out = Vec::with_capacity(17);
                out.push(1);
                out.extend_from_slice(&balance.to_be_bytes());
                out
            }
            Self::Slot(value) => {
                let mut out = Vec::with_capacity(33);
                out.push(2);
                out.extend_from_slice(&value.to_be_bytes::<32>());
                out
            }
            Self::Bytes(bytes) => {
                let mut out = Vec::with_capacity(1 + bytes.len());
                out.push(3);
                out.extend_from_slice(bytes);
                out
            }
        }
    }

    /// The value [`encode`](Self::encode) wrote.
    ///
    /// # Errors
    /// An unknown tag or a wrong length.
    ///
    /// # Panics
    /// Never: the lengths are checked first.
    pub fn decode(bytes: &[u8]) -> Result<Self, ValueDecodeError> {
        let (&tag, rest) = bytes.split_first().ok_or(ValueDecodeError("empty"))?;
        match (tag, rest.len()) {
            (0, 40) => Ok(Self::Account {
                nonce: u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
                code_hash: B256::from_slice(&rest[8..]),
            }),
            (1, 16) => Ok(Self::Balance(u128::from_be_bytes(rest.try_into().expect("16 bytes")))),
            (2, 32) => Ok(Self::Slot(U256::from_be_slice(rest))),
            (3, _) => Ok(Self::Bytes(Bytes::copy_from_slice(rest))),
            (0..=2, _) => Err(ValueDecodeError("wrong length")),
            _ => Err(ValueDecodeError("unknown tag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_bytes_are_refused() {
        let values = [
            StateValue::Account { nonce: 7, code_hash: B256::repeat_byte(3) },
            StateValue::Balance(u128::MAX),
            StateValue::Slot(U256::from(42)),
            StateValue::Bytes(Bytes::from_static(b"code")),
            StateValue::Bytes(Bytes::new()),
        ];
        for value in values {
            assert_eq!(StateValue::decode(&value.encode()), Ok(value));
        }
        assert!(StateValue::decode(&[]).is_err());
        assert!(StateValue::decode(&[1, 2, 3]).is_err());
        assert!(StateValue::decode(&[9]).is_err());
    }
}
