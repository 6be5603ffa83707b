//! Duet's state in memory, as the tests and benchmarks of both executors keep it (this file is
//! part of duet-move's testkit and is included by duet-evm's).

use duet_block_stm::{Storage, StorageError};
use duet_types::{Address, StateKey, StateValue};

/// State by key, hashed (as a node's caches are).
pub type StateMap = std::collections::HashMap<StateKey, StateValue, foldhash::fast::FixedState>;

/// State by key, in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryState(pub StateMap);

impl Storage for MemoryState {
    type Key = StateKey;
    type Value = StateValue;
    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, StorageError> {
        Ok(self.0.get(key).cloned())
    }
}

impl MemoryState {
    /// Applies a block's state updates.
    pub fn apply(&mut self, updates: &[(StateKey, Option<StateValue>)]) {
        for (key, value) in updates {
            match value {
                Some(value) => self.0.insert(key.clone(), value.clone()),
                None => self.0.remove(key),
            };
        }
    }

    /// The balance of `address`, in wei.
    pub fn balance(&self, address: Address) -> u128 {
        self.0.get(&StateKey::Balance(address)).and_then(StateValue::as_balance).unwrap_or(0)
    }

    /// The nonce of `address`.
    pub fn nonce(&self, address: Address) -> u64 {
        match self.0.get(&StateKey::Account(address)) {
            Some(StateValue::Account { nonce, .. }) => *nonce,
            _ => 0,
        }
    }

    /// The BCS bytes of the resource `tag` (`0x…::module::Struct`) held by `address`.
    pub fn resource(&self, address: Address, tag: &str) -> Option<Vec<u8>> {
        let tag = match move_core_types::parser::parse_type_tag(tag).expect("a valid tag") {
            move_core_types::language_storage::TypeTag::Struct(tag) => tag,
            other => panic!("{other} is not a struct"),
        };
        match self.0.get(&duet_move::resolver::resource_key(address, &tag).expect("a shallow tag"))
        {
            Some(StateValue::Bytes(bytes)) => Some(bytes.to_vec()),
            _ => None,
        }
    }
}
