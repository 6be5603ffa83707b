//! revm's database, read through a Block-STM transaction view.

use duet_block_stm::{ReadError, TransactionView};
use duet_types::{StateKey, StateValue, B256, U256};
use revm::database_interface::{DBErrorMarker, DatabaseRef};
use revm::primitives::{Address, StorageKey, StorageValue};
use revm::state::{AccountInfo, Bytecode};

use crate::EVM_EMPTY_CODE_HASH;

/// Why a read through the view failed. revm carries it out of the transaction; the executor
/// then handles the underlying [`ReadError`] (re-running the transaction or failing the block).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewDatabaseError {
    /// The view refused the read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The state holds a value of the wrong kind under a key: a bug, or corrupt state.
    #[error("state key {0:?} holds a value of the wrong kind")]
    WrongKind(StateKey),
}

impl DBErrorMarker for ViewDatabaseError {}

/// A revm [`DatabaseRef`] over a Block-STM [`TransactionView`].
#[derive(Debug)]
pub struct ViewDatabase<'view, View> {
    view: &'view View,
}

impl<'view, View> ViewDatabase<'view, View> {
    /// A database reading through `view`.
    pub fn new(view: &'view View) -> Self {
        Self { view }
    }
}

impl<View: TransactionView<Key = StateKey, Value = StateValue>> ViewDatabase<'_, View> {
    fn read(&self, key: &StateKey) -> Result<Option<StateValue>, ViewDatabaseError> {
        Ok(self.view.read(key)?)
    }
}

impl<View: TransactionView<Key = StateKey, Value = StateValue>> DatabaseRef
    for ViewDatabase<'_, View>
{
    type Error = ViewDatabaseError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let header = self.read(&StateKey::Account(address))?;
        let balance = self.read(&StateKey::Balance(address))?;
        let (nonce, code_hash) = match header {
            None => (0, EVM_EMPTY_CODE_HASH),
            Some(StateValue::Account { nonce, code_hash }) => (nonce, code_hash),
            Some(_) => return Err(ViewDatabaseError::WrongKind(StateKey::Account(address))),
        };
        let balance = match balance {
            None => 0,
            Some(StateValue::Balance(balance)) => balance,
            Some(_) => return Err(ViewDatabaseError::WrongKind(StateKey::Balance(address))),
        };
        if header.is_none() && balance == 0 {
            return Ok(None);
        }
        Ok(Some(AccountInfo {
            balance: U256::from(balance),
            nonce,
            code_hash,
            // Loaded by hash when the EVM needs it (`AccountInfo::default()` would say "no code").
            code: None,
            ..AccountInfo::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        match self.read(&StateKey::Code(code_hash))? {
            None => Ok(Bytecode::default()),
            Some(StateValue::Bytes(code)) => Ok(Bytecode::new_raw(code)),
            Some(_) => Err(ViewDatabaseError::WrongKind(StateKey::Code(code_hash))),
        }
    }

    fn storage_ref(
        &self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, Self::Error> {
        let key = StateKey::Storage { address, slot: B256::from(index) };
        match self.read(&key)? {
            None => Ok(U256::ZERO),
            Some(StateValue::Slot(value)) => Ok(value),
            Some(_) => Err(ViewDatabaseError::WrongKind(key)),
        }
    }

    /// Block hashes come from the node's chain; until it provides them, `BLOCKHASH` answers
    /// zero, as Ethereum does for blocks out of range.
    fn block_hash_ref(&self, _number: u64) -> Result<B256, Self::Error> {
        Ok(B256::ZERO)
    }
}
