//! revm's database, read through a Block-STM transaction view, with lazy recipient balances.
//!
//! Every transaction pays the fee vault, and plain transfers credit their recipients. Were those
//! balances read and written exactly, every transaction of a block would conflict on the vault.
//! So an account that cannot observe its own balance during the transaction (it has no code and
//! is not the sender) is loaded with a stand-in balance, [`LAZY_BALANCE`], instead of its real
//! one, and whatever the transaction adds to it becomes a commutative delta. Whether the account
//! is empty (which changes gas costs and EIP-161 clean-up) is still answered exactly, through a
//! "balance is at least 1" question that other transactions' credits do not invalidate. The
//! opcodes that could reveal or spend the stand-in are watched (`BALANCE` on any account; and
//! `SELFBALANCE`, `CALL`, `CALLCODE`, `CREATE`, `CREATE2`, `SELFDESTRUCT` run by code at a lazy
//! account, which happens when a contract is created where ETH was already waiting); a
//! transaction that uses one that way is executed again with exact balances.

use std::cell::{Cell, RefCell};

use duet_block_stm::{Delta, ReadError, TransactionView};
use duet_types::{StateKey, StateValue, B256, MOVE_OVERLAY_ADDRESS, U256};
use revm::database_interface::{DBErrorMarker, DatabaseRef, WrapDatabaseRef};
use revm::primitives::{Address, StorageKey, StorageValue};
use revm::state::{AccountInfo, Bytecode};

use crate::EVM_EMPTY_CODE_HASH;

/// The stand-in balance of a lazily loaded account: far above any real balance (at most 2^128
/// wei), and far below where anything added to it could overflow.
pub const LAZY_BALANCE: U256 = U256::from_limbs([0, 0, 0, 1 << 40]);

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

impl From<ViewDatabaseError> for ReadError {
    /// The view's own failure as it was, anything else as a storage failure (the block fails).
    fn from(error: ViewDatabaseError) -> Self {
        match error {
            ViewDatabaseError::Read(error) => error,
            other @ ViewDatabaseError::WrongKind(_) => {
                ReadError::Storage(duet_block_stm::StorageError(std::sync::Arc::new(other)))
            }
        }
    }
}

/// The nonce and code hash of `address`'s header as the state holds it (`None`: it has none).
pub(crate) fn decode_header(
    address: Address,
    value: Option<&StateValue>,
) -> Result<Option<(u64, B256)>, ViewDatabaseError> {
    match value {
        None => Ok(None),
        Some(StateValue::Account { nonce, code_hash }) => Ok(Some((*nonce, *code_hash))),
        Some(_) => Err(ViewDatabaseError::WrongKind(StateKey::Account(address))),
    }
}

/// The value of the storage slot `key` as the state holds it (an absent slot is zero).
pub(crate) fn decode_slot(
    key: StateKey,
    value: Option<&StateValue>,
) -> Result<U256, ViewDatabaseError> {
    match value {
        None => Ok(U256::ZERO),
        Some(StateValue::Slot(value)) => Ok(*value),
        Some(_) => Err(ViewDatabaseError::WrongKind(key)),
    }
}

/// The code with `code_hash`: the copy this thread analyzed, or the bytes `read` finds (none: no
/// code), analyzed and kept. The hash came from an account header a transaction read, so the
/// kept copy needs no read of its own.
pub(crate) fn load_code(
    code_hash: B256,
    read: impl FnOnce(&StateKey) -> Result<Option<StateValue>, ViewDatabaseError>,
) -> Result<Bytecode, ViewDatabaseError> {
    if let Some(code) = crate::scratch::kept_code(code_hash) {
        return Ok(code);
    }
    let key = StateKey::Code(code_hash);
    match read(&key)? {
        None => Ok(Bytecode::default()),
        Some(StateValue::Bytes(bytes)) => {
            let code = Bytecode::new_raw(bytes);
            crate::scratch::keep_code(code_hash, &code);
            Ok(code)
        }
        Some(_) => Err(ViewDatabaseError::WrongKind(key)),
    }
}

/// A revm [`DatabaseRef`] over a Block-STM [`TransactionView`].
#[derive(Debug)]
pub struct ViewDatabase<'view, View> {
    view: &'view View,
    /// The transaction's sender: its balance is always exact.
    sender: Address,
    /// Whether balances are lazy at all (`false` after `BALANCE` revealed a stand-in).
    lazy: bool,
    /// Accounts loaded with the stand-in balance.
    lazy_accounts: RefCell<Vec<Address>>,
    /// Whether `BALANCE` was used on a lazy account.
    lazy_balance_observed: Cell<bool>,
    /// What `BLOCKHASH` answers.
    block_hashes: &'view crate::BlockHashes,
}

impl<'view, View> ViewDatabase<'view, View> {
    /// A database reading through `view` for a transaction from `sender`; with `lazy`, balances
    /// of code-less accounts other than the sender are stand-ins; `BLOCKHASH` answers from
    /// `block_hashes`.
    pub fn new(
        view: &'view View,
        sender: Address,
        lazy: bool,
        block_hashes: &'view crate::BlockHashes,
    ) -> Self {
        Self {
            view,
            sender,
            lazy,
            lazy_accounts: RefCell::new(Vec::new()),
            lazy_balance_observed: Cell::new(false),
            block_hashes,
        }
    }

    /// The accounts loaded with the stand-in balance.
    pub fn lazy_accounts(&self) -> std::cell::Ref<'_, [Address]> {
        std::cell::Ref::map(self.lazy_accounts.borrow(), Vec::as_slice)
    }

    /// The Block-STM view the database reads through.
    pub(crate) fn view(&self) -> &'view View {
        self.view
    }

    /// Whether the transaction used `BALANCE` on a lazily loaded account.
    pub fn lazy_balance_observed(&self) -> bool {
        self.lazy_balance_observed.get()
    }
}

/// What the `BALANCE` watch needs from the database.
pub trait BalanceWatch {
    /// Notes that `BALANCE` read `address`.
    fn note_balance_read(&self, address: Address);
}

impl<View: TransactionView<Key = StateKey, Value = StateValue>> BalanceWatch
    for WrapDatabaseRef<ViewDatabase<'_, View>>
{
    fn note_balance_read(&self, address: Address) {
        if self.0.lazy_accounts.borrow().contains(&address) {
            self.0.lazy_balance_observed.set(true);
        }
    }
}

impl<View: TransactionView<Key = StateKey, Value = StateValue>> ViewDatabase<'_, View> {
    fn read(&self, key: &StateKey) -> Result<Option<StateValue>, ViewDatabaseError> {
        Ok(self.view.read(key)?)
    }

    fn exact_balance(&self, address: Address) -> Result<u128, ViewDatabaseError> {
        match self.read(&StateKey::Balance(address))? {
            None => Ok(0),
            Some(StateValue::Balance(balance)) => Ok(balance),
            Some(_) => Err(ViewDatabaseError::WrongKind(StateKey::Balance(address))),
        }
    }
}

impl<View: TransactionView<Key = StateKey, Value = StateValue>> DatabaseRef
    for ViewDatabase<'_, View>
{
    type Error = ViewDatabaseError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let header = decode_header(address, self.read(&StateKey::Account(address))?.as_ref())?;
        let (nonce, code_hash) = header.unwrap_or((0, EVM_EMPTY_CODE_HASH));
        let lazy = self.lazy && address != self.sender && code_hash == EVM_EMPTY_CODE_HASH;
        let balance = if lazy {
            // "At least 1 wei?" says whether the account is empty without depending on the
            // amount, which other transactions' credits change.
            let funded = self.view.delta_fits(&StateKey::Balance(address), Delta::sub(1))?;
            if funded {
                self.lazy_accounts.borrow_mut().push(address);
                LAZY_BALANCE
            } else {
                U256::ZERO
            }
        } else {
            U256::from(self.exact_balance(address)?)
        };
        if header.is_none() && balance.is_zero() {
            return Ok(None);
        }
        Ok(Some(AccountInfo {
            balance,
            nonce,
            code_hash,
            // Loaded by hash when the EVM needs it (`AccountInfo::default()` would say "no code").
            code: None,
            ..AccountInfo::default()
        }))
    }

    /// The code for `code_hash`, from the state (or the thread's kept code), as `load_code` reads it.
    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        load_code(code_hash, |key| self.read(key))
    }

    fn storage_ref(
        &self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, Self::Error> {
        if address == MOVE_OVERLAY_ADDRESS {
            // Its storage only numbers one transaction's Move writes; it never reaches the state.
            return Ok(U256::ZERO);
        }
        let key = StateKey::Storage { address, slot: B256::from(index) };
        let value = self.read(&key)?;
        decode_slot(key, value.as_ref())
    }

    /// From the block's environment ([`crate::BlockHashes`]): revm asks only for the 256 blocks
    /// before this one.
    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.block_hashes.get(number))
    }
}
