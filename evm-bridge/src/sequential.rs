//! The EVM's own sequential run: one revm for a whole run of transactions, as plain revm runs a
//! block, over a cache of the accounts it touched.
//!
//! Block-STM's sequential executor runs [`EvmVm::execute`] once per transaction, each through a
//! view of the writes before it: an EVM built for every transaction, every read answered in
//! Duet's key space, every write set converted and merged one by one. Run in order, none of that
//! is needed, so an EVM without the Move call precompile runs its sequential runs here
//! ([`Vm::execute_sequentially`]): one EVM, whose database is a [`RunCache`] of accounts (header,
//! exact balance, code, slots) loaded from the storage once and updated as each transaction
//! commits, with a mark on every value a transaction wrote. At the end the marked values are the
//! run's state updates. The results and the updates are exactly those of the sequential executor
//! (every key some transaction wrote, with its final value), which the tests check against
//! Block-STM's parallel runs and plain revm.
//!
//! With the Move call precompile, a transaction's Move code reads the state through the
//! Block-STM view, which this cache is not, so such an EVM runs through the generic executor.

use std::panic::{catch_unwind, AssertUnwindSafe};

use duet_block_stm::{
    panic_message, BlockError, BlockOutput, ReadError, Storage, StorageError, TransactionResult,
    VmBlockOutput,
};
use duet_types::{StateKey, StateValue, B256, MOVE_OVERLAY_ADDRESS, U256};
use revm::context::TxEnv;
use revm::database_interface::Database;
use revm::primitives::{Address, StorageKey, StorageValue};
use revm::state::{AccountId, AccountInfo, Bytecode, EvmState};
use revm::ExecuteEvm;

use crate::database::{decode_header, decode_slot, load_code};
use crate::{EvmVm, ViewDatabaseError, EVM_EMPTY_CODE_HASH};

use revm::primitives::map::{AddressMap, B256Map, Entry, FbBuildHasher, U256Map};

/// Reads `key` from `storage`, keeping the first failure in `failure` (it fails the run).
fn read<S: Storage<Key = StateKey, Value = StateValue>>(
    storage: &S,
    failure: &mut Option<StorageError>,
    key: &StateKey,
) -> Result<Option<StateValue>, ViewDatabaseError> {
    storage.get(key).map_err(|error| {
        failure.get_or_insert_with(|| error.clone());
        ViewDatabaseError::Read(ReadError::Storage(error))
    })
}

/// One account as the run has it: its values now, and which of them a transaction wrote.
#[derive(Debug)]
struct CachedAccount {
    address: Address,
    /// The account header (nonce, code hash), `None` if the state has none.
    header: Option<(u64, B256)>,
    balance: U256,
    /// The state holds a value of the wrong kind as the balance: read as zero, as the view's
    /// database reads a lazy account's, unless the account's balance must be exact.
    corrupt_balance: bool,
    header_written: bool,
    balance_written: bool,
    /// Slots loaded or written: the value now, and whether a transaction wrote it.
    slots: U256Map<(StorageValue, bool)>,
}

impl CachedAccount {
    /// The account as revm loads it, with `code` if the run has it (else revm asks for it by
    /// hash: the code is not read before revm needs it).
    fn info(&self, id: usize, code: Option<Bytecode>) -> Option<AccountInfo> {
        if self.header.is_none() && self.balance.is_zero() {
            return None;
        }
        let (nonce, code_hash) = self.header.unwrap_or((0, EVM_EMPTY_CODE_HASH));
        Some(AccountInfo {
            balance: self.balance,
            nonce,
            code_hash,
            account_id: AccountId::new(id),
            code,
        })
    }

    fn code_hash(&self) -> B256 {
        self.header.map_or(EVM_EMPTY_CODE_HASH, |(_, code_hash)| code_hash)
    }
}

/// revm's database for a sequential run: the accounts the run touched, over the storage.
#[derive(Debug)]
pub(crate) struct RunCache<'s, S> {
    storage: &'s S,
    accounts: Vec<CachedAccount>,
    index: AddressMap<usize>,
    /// Code the run has read or created, by hash, and whether it created it.
    codes: B256Map<(Bytecode, bool)>,
    /// The sender of the transaction running.
    sender: Address,
    /// The first storage failure: it fails the run.
    failure: Option<StorageError>,
    /// What `BLOCKHASH` answers.
    block_hashes: &'s crate::BlockHashes,
}

impl<'s, S: Storage<Key = StateKey, Value = StateValue>> RunCache<'s, S> {
    fn new(storage: &'s S, transactions: usize, block_hashes: &'s crate::BlockHashes) -> Self {
        // A transaction touches a few accounts: a sender, a recipient or contract, the vault.
        let accounts = transactions.saturating_mul(2).min(1 << 16);
        Self {
            storage,
            accounts: Vec::with_capacity(accounts),
            index: AddressMap::with_capacity_and_hasher(accounts, FbBuildHasher::default()),
            codes: B256Map::default(),
            sender: Address::ZERO,
            failure: None,
            block_hashes,
        }
    }

    /// The position of `address`'s account, loaded from the storage if the run has not yet.
    fn load(&mut self, address: Address) -> Result<usize, ViewDatabaseError> {
        let vacant = match self.index.entry(address) {
            Entry::Occupied(entry) => return Ok(*entry.get()),
            Entry::Vacant(vacant) => vacant,
        };
        let (storage, failure) = (self.storage, &mut self.failure);
        let header =
            decode_header(address, read(storage, failure, &StateKey::Account(address))?.as_ref())?;
        let (balance, corrupt_balance) = match read(storage, failure, &StateKey::Balance(address))?
        {
            None => (U256::ZERO, false),
            Some(StateValue::Balance(balance)) => (U256::from(balance), false),
            Some(_) => (U256::ZERO, true),
        };
        let id = self.accounts.len();
        vacant.insert(id);
        self.accounts.push(CachedAccount {
            address,
            header,
            balance,
            corrupt_balance,
            header_written: false,
            balance_written: false,
            slots: U256Map::default(),
        });
        Ok(id)
    }

    /// The position of a loaded account: by the id revm carried, checked, or by its address.
    fn position(
        &mut self,
        address: Address,
        id: Option<AccountId>,
    ) -> Result<usize, ViewDatabaseError> {
        match id.map(AccountId::get) {
            Some(id) if self.accounts.get(id).is_some_and(|account| account.address == address) => {
                Ok(id)
            }
            _ => self.load(address),
        }
    }

    fn slot(&mut self, id: usize, slot: StorageKey) -> Result<StorageValue, ViewDatabaseError> {
        let account = &mut self.accounts[id];
        let address = account.address;
        let vacant = match account.slots.entry(slot) {
            Entry::Occupied(entry) => return Ok(entry.get().0),
            Entry::Vacant(vacant) => vacant,
        };
        let value = if address == MOVE_OVERLAY_ADDRESS {
            // As in the view's database: its storage never reaches the state.
            U256::ZERO
        } else {
            let key = StateKey::Storage { address, slot: B256::from(slot) };
            let value = read(self.storage, &mut self.failure, &key)?;
            decode_slot(key, value.as_ref())?
        };
        vacant.insert((value, false));
        Ok(value)
    }

    /// Applies one transaction's `state`, marking what it wrote exactly as the sequential
    /// executor's write sets would ([`crate::state_writes`] with exact balances).
    fn commit(&mut self, state: EvmState) -> Result<(), ViewDatabaseError> {
        for (address, account) in state {
            if !account.is_touched() {
                continue;
            }
            let id = self.position(address, account.info.account_id)?;
            let cached = &mut self.accounts[id];
            if account.is_selfdestructed() {
                cached.header = None;
                cached.header_written = true;
                cached.balance = U256::ZERO;
                cached.balance_written = true;
                cached.corrupt_balance = false;
                for slot in account.storage.keys() {
                    cached.slots.insert(*slot, (U256::ZERO, true));
                }
                continue;
            }
            // The cache holds what the transaction started from: revm loaded it from here.
            let info = &account.info;
            let (nonce, code_hash) = cached.header.unwrap_or((0, EVM_EMPTY_CODE_HASH));
            if (info.nonce, info.code_hash) != (nonce, code_hash) {
                cached.header = (info.nonce != 0 || info.code_hash != EVM_EMPTY_CODE_HASH)
                    .then_some((info.nonce, info.code_hash));
                cached.header_written = true;
            }
            if info.balance != cached.balance {
                // INVARIANT: balances stay below 2^128 wei, as the state stores them.
                cached.balance = U256::from(u128::try_from(info.balance).unwrap_or(u128::MAX));
                cached.balance_written = true;
                cached.corrupt_balance = false;
            }
            // New code: a contract created, or an account delegated (EIP-7702).
            if info.code_hash != code_hash && info.code_hash != EVM_EMPTY_CODE_HASH {
                if let Some(code) = &info.code {
                    self.codes.insert(info.code_hash, (code.clone(), true));
                }
            }
            if address != MOVE_OVERLAY_ADDRESS {
                for (slot, value) in account.changed_storage_slots() {
                    cached.slots.insert(*slot, (value.present_value(), true));
                }
            }
        }
        Ok(())
    }

    /// Every value the run wrote, sorted by key: the run's state updates. Built in
    /// [`StateKey`]'s order (headers, balances, slots, code; each by address, then slot) from the
    /// accounts sorted by address, rather than sorted whole.
    fn into_updates(self) -> Vec<(StateKey, Option<StateValue>)> {
        let Self { accounts, codes, .. } = self;
        let mut order: Vec<&CachedAccount> = accounts
            .iter()
            .filter(|account| {
                account.header_written
                    || account.balance_written
                    || account.slots.values().any(|(_, written)| *written)
            })
            .collect();
        order.sort_unstable_by_key(|account| account.address);
        let mut updates = Vec::with_capacity(order.len() * 2 + codes.len());
        for account in &order {
            if account.header_written {
                let header = account
                    .header
                    .map(|(nonce, code_hash)| StateValue::Account { nonce, code_hash });
                updates.push((StateKey::Account(account.address), header));
            }
        }
        for account in &order {
            if account.balance_written {
                let balance = (!account.balance.is_zero()).then(|| {
                    StateValue::Balance(u128::try_from(account.balance).unwrap_or(u128::MAX))
                });
                updates.push((StateKey::Balance(account.address), balance));
            }
        }
        let mut slots = Vec::new();
        for account in &order {
            slots.clear();
            slots.extend(
                account
                    .slots
                    .iter()
                    .filter(|(_, (_, written))| *written)
                    .map(|(slot, (value, _))| (*slot, *value)),
            );
            slots.sort_unstable_by_key(|(slot, _)| *slot);
            let address = account.address;
            updates.extend(slots.iter().map(|(slot, value)| {
                let key = StateKey::Storage { address, slot: B256::from(*slot) };
                (key, (!value.is_zero()).then_some(StateValue::Slot(*value)))
            }));
        }
        let mut codes: Vec<(B256, Bytecode)> = codes
            .into_iter()
            .filter_map(|(code_hash, (code, created))| created.then_some((code_hash, code)))
            .collect();
        codes.sort_unstable_by_key(|(code_hash, _)| *code_hash);
        updates.extend(codes.into_iter().map(|(code_hash, code)| {
            (StateKey::Code(code_hash), Some(StateValue::Bytes(code.original_bytes())))
        }));
        debug_assert!(updates.is_sorted_by(|left, right| left.0 < right.0), "updates in key order");
        updates
    }
}

impl<S: Storage<Key = StateKey, Value = StateValue>> Database for RunCache<'_, S> {
    type Error = ViewDatabaseError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let id = self.load(address)?;
        let account = &self.accounts[id];
        let code_hash = account.code_hash();
        // As the view's database: only a lazy account's balance may be read as zero.
        if account.corrupt_balance && (address == self.sender || code_hash != EVM_EMPTY_CODE_HASH) {
            return Err(ViewDatabaseError::WrongKind(StateKey::Balance(address)));
        }
        // With its code if the run has read (or created) it, which revm would otherwise ask
        // for by hash in every transaction.
        let code = (code_hash != EVM_EMPTY_CODE_HASH)
            .then(|| self.codes.get(&code_hash).map(|(code, _)| code.clone()))
            .flatten();
        Ok(account.info(id, code))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        if let Some((code, _)) = self.codes.get(&code_hash) {
            return Ok(code.clone());
        }
        let (storage, failure) = (self.storage, &mut self.failure);
        let code = load_code(code_hash, |key| read(storage, failure, key))?;
        if !code.is_empty() {
            // Absent code is not kept: the view's database reads it again each time too.
            self.codes.insert(code_hash, (code.clone(), false));
        }
        Ok(code)
    }

    fn storage(&mut self, address: Address, slot: StorageKey) -> Result<StorageValue, Self::Error> {
        let id = self.load(address)?;
        self.slot(id, slot)
    }

    fn storage_by_account_id(
        &mut self,
        address: Address,
        id: AccountId,
        slot: StorageKey,
    ) -> Result<StorageValue, Self::Error> {
        let id = self.position(address, Some(id))?;
        self.slot(id, slot)
    }

    /// As in the view's database.
    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.block_hashes.get(number))
    }
}

type RunEvm<'s, S> = revm::handler::MainnetEvm<revm::handler::MainnetContext<RunCache<'s, S>>>;

impl EvmVm {
    /// revm for the run, over `cache`, from the parts the thread's last EVM left (as `evm`
    /// builds one per transaction).
    fn run_evm<'s, S>(&self, cache: RunCache<'s, S>) -> RunEvm<'s, S>
    where
        S: Storage<Key = StateKey, Value = StateValue>,
    {
        let spec = self.cfg.spec;
        revm::context::Evm {
            // Ethereum's precompiles, no Move call.
            ctx: self.context(cache, false),
            inspector: (),
            instruction: revm::handler::instructions::EthInstructions::new_mainnet_with_spec(spec),
            precompiles: revm::handler::EthPrecompiles::new(spec),
            frame_stack: revm::context_interface::local::FrameStack::new(),
        }
    }

    /// Runs `transactions` in order over `storage` with one EVM: see the [module](self).
    pub(crate) fn run_sequentially<S>(
        &self,
        transactions: &[TxEnv],
        storage: &S,
    ) -> Result<VmBlockOutput<Self>, BlockError<StateKey>>
    where
        S: Storage<Key = StateKey, Value = StateValue>,
    {
        let cache = RunCache::new(storage, transactions.len(), &self.block_hashes);
        let mut evm = self.run_evm(cache);
        let mut results = Vec::with_capacity(transactions.len());
        for transaction in transactions {
            evm.ctx.journaled_state.database.sender = transaction.caller;
            let outcome = catch_unwind(AssertUnwindSafe(|| evm.transact(transaction.clone())));
            let cache = &mut evm.ctx.journaled_state.database;
            if let Some(error) = cache.failure.take() {
                return Err(BlockError::Storage(error));
            }
            let result = match outcome {
                Ok(Ok(outcome)) => {
                    cache.commit(outcome.state).map_err(|error| match error {
                        ViewDatabaseError::Read(ReadError::Storage(error)) => {
                            BlockError::Storage(error)
                        }
                        // Every touched account was loaded by the transaction.
                        other => BlockError::Invariant(other.to_string()),
                    })?;
                    TransactionResult::Executed(outcome.result)
                }
                Ok(Err(error)) => TransactionResult::Rejected(error.into()),
                Err(payload) => {
                    // The journal is in no known state: a new EVM goes on over the same cache
                    // (with new parts: the thread keeps none of this one's).
                    let message = panic_message(payload.as_ref());
                    let cache = std::mem::replace(
                        &mut evm.ctx.journaled_state.database,
                        RunCache::new(storage, 0, &self.block_hashes),
                    );
                    evm = self.run_evm(cache);
                    TransactionResult::Panicked(message)
                }
            };
            results.push(result);
        }
        let cache = crate::keep_context(evm.ctx, false);
        Ok(BlockOutput { results, state_updates: cache.into_updates() })
    }
}
