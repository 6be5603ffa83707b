//! The one key space of Duet's state and its canonical encoding.

use std::hash::{Hash, Hasher};

use alloy_primitives::{keccak256, Address, B256};

/// A key of Duet's state.
///
/// Every piece of state either VM can touch has exactly one key here, so a write by the Move VM and
/// a read by the EVM of the same thing meet on the same key.
///
/// The derived order ([`Ord`]) is the canonical order of keys wherever keys are listed (block
/// outputs, state diffs); the [`encode`](Self::encode)d bytes are the canonical byte form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StateKey {
    /// An account's header: its nonce (the Move sequence number is the same number) and code hash.
    Account(Address),
    /// An account's ETH balance in wei: the balance `BALANCE` sees and the Move `eth` module moves.
    Balance(Address),
    /// One 32-byte EVM storage slot of a contract.
    Storage {
        /// The contract.
        address: Address,
        /// The slot index.
        slot: B256,
    },
    /// EVM bytecode, by its keccak256 hash.
    Code(B256),
    /// A published Move module.
    MoveModule {
        /// The account the module is published under.
        address: Address,
        /// The module's name.
        name: Box<str>,
    },
    /// A Move resource stored under an account.
    MoveResource {
        /// The account that holds the resource.
        address: Address,
        /// The resource's struct tag in its canonical BCS encoding.
        struct_tag: Box<[u8]>,
    },
    /// A key owned by the system rather than by an account.
    System(SystemKey),
}

/// Keys owned by the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemKey {
    /// The number of the last block, with its hash and timestamp.
    BlockInfo,
    /// The root of the L2 → L1 withdrawal messages.
    WithdrawalRoot,
}

/// Hashed as a few machine words (the variant, then addresses and hashes eight bytes at a time)
/// instead of byte slices with length prefixes, as derived: keys are hashed several times for
/// every read and write of a transaction. Equal keys write equal words.
impl Hash for StateKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.variant());
        match self {
            Self::Account(address) | Self::Balance(address) => {
                hash_words(&address.0 .0, state);
            }
            Self::Storage { address, slot } => {
                hash_words(&address.0 .0, state);
                hash_words(&slot.0, state);
            }
            Self::Code(hash) => hash_words(&hash.0, state),
            Self::MoveModule { address, name } => {
                hash_words(&address.0 .0, state);
                name.hash(state);
            }
            Self::MoveResource { address, struct_tag } => {
                hash_words(&address.0 .0, state);
                struct_tag.hash(state);
            }
            Self::System(key) => key.hash(state),
        }
    }
}

/// Hashes fixed-length `bytes` (an address or a hash) eight bytes at a time, the last few
/// zero-padded: a few machine words, where hashing them as bytes takes the hasher's slow path.
///
/// # Panics
/// Never: `chunks_exact(8)` yields eight bytes.
fn hash_words<const N: usize, H: Hasher>(bytes: &[u8; N], state: &mut H) {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        state.write_u64(u64::from_le_bytes(word.try_into().expect("eight bytes")));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut word = [0; 8];
        word[..tail.len()].copy_from_slice(tail);
        state.write_u64(u64::from_le_bytes(word));
    }
}

impl StateKey {
    /// The variant's place in the declaration: the first byte of the key's encoding and of its
    /// hash.
    const fn variant(&self) -> u8 {
        match self {
            Self::Account(_) => 0,
            Self::Balance(_) => 1,
            Self::Storage { .. } => 2,
            Self::Code(_) => 3,
            Self::MoveModule { .. } => 4,
            Self::MoveResource { .. } => 5,
            Self::System(_) => 6,
        }
    }

    /// The canonical byte encoding: a one-byte tag (the variant's place), then the fields in
    /// order; variable-length fields carry a 4-byte big-endian length prefix, so the encoding is
    /// injective.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(self.variant());
        match self {
            Self::Account(address) | Self::Balance(address) => {
                out.extend_from_slice(address.as_slice());
            }
            Self::Storage { address, slot } => {
                out.extend_from_slice(address.as_slice());
                out.extend_from_slice(slot.as_slice());
            }
            Self::Code(hash) => {
                out.extend_from_slice(hash.as_slice());
            }
            Self::MoveModule { address, name } => {
                out.extend_from_slice(address.as_slice());
                push_with_length(&mut out, name.as_bytes());
            }
            Self::MoveResource { address, struct_tag } => {
                out.extend_from_slice(address.as_slice());
                push_with_length(&mut out, struct_tag);
            }
            Self::System(key) => {
                out.push(match key {
                    SystemKey::BlockInfo => 0,
                    SystemKey::WithdrawalRoot => 1,
                });
            }
        }
        out
    }

    /// The key's position in the state's sparse Merkle tree: `keccak256(encode(key))`.
    #[must_use]
    pub fn commitment_key(&self) -> B256 {
        keccak256(self.encode())
    }
}

/// Why bytes are not the encoding of a [`StateKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a state key encoding: {0}")]
pub struct KeyDecodeError(&'static str);

impl StateKey {
    /// The key [`encode`](Self::encode) wrote.
    ///
    /// # Errors
    /// An unknown tag, a wrong length, or a module name that is not UTF-8.
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        let (&tag, rest) = bytes.split_first().ok_or(KeyDecodeError("empty"))?;
        let address = |rest: &[u8]| -> Result<Address, KeyDecodeError> {
            rest.get(..20).map(Address::from_slice).ok_or(KeyDecodeError("too short"))
        };
        let with_length = |rest: &[u8]| -> Result<Vec<u8>, KeyDecodeError> {
            let length = rest.get(20..24).ok_or(KeyDecodeError("too short"))?;
            let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
            match rest.get(24..) {
                Some(field) if field.len() == length => Ok(field.to_vec()),
                _ => Err(KeyDecodeError("wrong length")),
            }
        };
        let exactly = |length: usize| {
            if rest.len() == length {
                Ok(())
            } else {
                Err(KeyDecodeError("wrong length"))
            }
        };
        Ok(match tag {
            0 => {
                exactly(20)?;
                Self::Account(address(rest)?)
            }
            1 => {
                exactly(20)?;
                Self::Balance(address(rest)?)
            }
            2 => {
                exactly(52)?;
                Self::Storage { address: address(rest)?, slot: B256::from_slice(&rest[20..]) }
            }
            3 => {
                exactly(32)?;
                Self::Code(B256::from_slice(rest))
            }
            4 => Self::MoveModule {
                address: address(rest)?,
                name: String::from_utf8(with_length(rest)?)
                    .map_err(|_| KeyDecodeError("a module name is UTF-8"))?
                    .into(),
            },
            5 => Self::MoveResource {
                address: address(rest)?,
                struct_tag: with_length(rest)?.into(),
            },
            6 => match rest {
                [0] => Self::System(SystemKey::BlockInfo),
                [1] => Self::System(SystemKey::WithdrawalRoot),
                _ => return Err(KeyDecodeError("unknown system key")),
            },
            _ => return Err(KeyDecodeError("unknown tag")),
        })
    }
}

fn push_with_length(out: &mut Vec<u8>, bytes: &[u8]) {
    // INVARIANT: keys are bounded far below 4 GiB by the transaction size limits.
    let length = u32::try_from(bytes.len()).expect("a state key field is shorter than 4 GiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    const ALICE: Address = address!("00000000000000000000000000000000000a11ce");

    #[test]
    fn keys_that_differ_in_any_byte_hash_differently() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = |key: &StateKey| {
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key)
        };
        let mut keys = vec![StateKey::Account(ALICE), StateKey::Balance(ALICE)];
        for at in 0..32 {
            let mut hash = B256::ZERO;
            hash[at] = 1;
            keys.push(StateKey::Code(hash));
            keys.push(StateKey::Storage { address: ALICE, slot: hash });
            if at < 20 {
                let mut address = Address::ZERO;
                address[at] = 1;
                keys.push(StateKey::Account(address));
                keys.push(StateKey::Balance(address));
                keys.push(StateKey::Storage { address, slot: B256::ZERO });
                keys.push(StateKey::MoveModule { address, name: "coin".into() });
                keys.push(StateKey::MoveResource { address, struct_tag: vec![1].into() });
            }
        }
        keys.push(StateKey::MoveModule { address: ALICE, name: "coin2".into() });
        keys.push(StateKey::MoveResource { address: ALICE, struct_tag: vec![1, 2].into() });
        keys.push(StateKey::System(SystemKey::BlockInfo));
        keys.push(StateKey::System(SystemKey::WithdrawalRoot));
        let hashes: std::collections::HashSet<u64> = keys.iter().map(hash).collect();
        assert_eq!(hashes.len(), keys.len(), "two different keys hashed alike");
        // Equal keys hash alike, however they were built.
        let copy = StateKey::decode(&keys[5].encode()).unwrap();
        assert_eq!(hash(&copy), hash(&keys[5]));
    }

    #[test]
    fn encodings_of_different_keys_differ() {
        let keys = [
            StateKey::Account(ALICE),
            StateKey::Balance(ALICE),
            StateKey::Storage { address: ALICE, slot: B256::ZERO },
            StateKey::Code(B256::ZERO),
            StateKey::MoveModule { address: ALICE, name: "coin".into() },
            StateKey::MoveModule { address: ALICE, name: "coin2".into() },
            StateKey::MoveResource { address: ALICE, struct_tag: vec![1, 2].into() },
            StateKey::MoveResource { address: ALICE, struct_tag: vec![1].into() },
            StateKey::System(SystemKey::BlockInfo),
            StateKey::System(SystemKey::WithdrawalRoot),
        ];
        let encodings: std::collections::BTreeSet<_> = keys.iter().map(StateKey::encode).collect();
        assert_eq!(encodings.len(), keys.len());
        for key in &keys {
            assert_eq!(StateKey::decode(&key.encode()).as_ref(), Ok(key));
        }
        assert!(StateKey::decode(&[]).is_err());
        assert!(StateKey::decode(&[1, 2]).is_err());
        assert!(StateKey::decode(&[9]).is_err());
        let mut truncated = keys[4].encode();
        truncated.pop();
        assert!(StateKey::decode(&truncated).is_err());
        let commitments: std::collections::BTreeSet<_> =
            keys.iter().map(StateKey::commitment_key).collect();
        assert_eq!(commitments.len(), keys.len());
    }

    #[test]
    fn length_prefix_keeps_module_names_apart() {
        // Without the length prefix "ab" + tag and "a" + "b"-prefixed tags could collide.
        let one = StateKey::MoveModule { address: ALICE, name: "ab".into() }.encode();
        assert_eq!(&one[21..25], &2u32.to_be_bytes());
        assert_eq!(&one[25..], b"ab");
    }

    #[test]
    fn commitment_key_is_keccak_of_the_encoding() {
        let key = StateKey::Balance(ALICE);
        let mut expected = vec![1u8];
        expected.extend_from_slice(ALICE.as_slice());
        assert_eq!(key.commitment_key(), keccak256(&expected));
        assert_eq!(key.encode(), expected);
    }
}
