//! Synthetic VMs and state for the Block-STM tests and benchmark. Test and benchmark code only,
//! not a product feature; included by `tests/` and `benches/` with `#[path]`.
//!
//! - [`TransferVm`]: peer-to-peer ETH-style transfers over N accounts, each with a fixed amount of
//!   real work (a chain of keccak256 hashes) standing in for signature checks and interpretation.
//! - [`ScriptVm`]: each transaction is a random little program of reads, writes, deletes, deltas,
//!   conditional deltas, aborts and panics, for property tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::hash::Hash;

use duet_block_stm::{
    Delta, ReadError, Storage, StorageError, TransactionView, TxnIndex, Vm, VmOutput, WriteOp,
};
use duet_types::{keccak256, Address, StateKey, B256};
/// A hash map with a fixed (deterministic) hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// State in memory: the storage a block executes on top of.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage<K, V>(pub FastMap<K, V>);

impl<K: Eq + Hash + Sync, V: Clone + Sync> Storage for MemoryStorage<K, V> {
    type Key = K;
    type Value = V;
    fn get(&self, key: &K) -> Result<Option<V>, StorageError> {
        Ok(self.0.get(key).cloned())
    }
}

/// A transfer of `amount` wei from `sender` to `receiver`, paying `fee` to the fee vault.
#[derive(Clone, Debug)]
pub struct Transfer {
    pub sender: Address,
    pub receiver: Address,
    pub amount: u128,
    pub fee: u128,
    pub nonce: u128,
}

/// Why the transfer VM rejected a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    NonceMismatch { expected: u128, got: u128 },
    InsufficientFunds { balance: u128, cost: u128 },
    Read(ReadError),
}

impl From<ReadError> for TransferError {
    fn from(error: ReadError) -> Self {
        Self::Read(error)
    }
}

/// The transfer VM: checks the sender's nonce and balance, does `work_rounds` keccak256 hashes
/// (about 0.25 µs each on this machine) over what it read, then bumps the nonce, debits the
/// sender exactly, and credits the receiver and the fee vault with commutative deltas.
pub struct TransferVm {
    pub work_rounds: u32,
    pub fee_vault: Address,
}

/// The fee vault of the synthetic chain.
pub const FEE_VAULT: Address = Address::repeat_byte(0xfe);

/// Hashes per transfer in the benchmark by default: 32 keccak256 rounds, about 8 µs on this
/// machine (about 10 µs per transfer in all), the order of a token transfer's execution in a real
/// VM. `--work-rounds` measures lighter or heavier transactions.
pub const BENCH_WORK_ROUNDS: u32 = 32;

impl Vm for TransferVm {
    type Transaction = Transfer;
    type Key = StateKey;
    type Value = u128;
    type Output = B256;
    type Error = TransferError;

    fn execute<View>(
        &self,
        _txn_index: TxnIndex,
        transfer: &Transfer,
        view: &View,
    ) -> Result<VmOutput<StateKey, u128, B256>, TransferError>
    where
        View: TransactionView<Key = StateKey, Value = u128>,
    {
        // Reads first, then the work, then the writes, as a real VM interleaves them: a
        // transaction that read stale state wastes its whole execution.
        let nonce = view.read(&StateKey::Account(transfer.sender))?.unwrap_or(0);
        if nonce != transfer.nonce {
            return Err(TransferError::NonceMismatch { expected: nonce, got: transfer.nonce });
        }
        let balance = view.read(&StateKey::Balance(transfer.sender))?.unwrap_or(0);
        let cost = transfer.amount + transfer.fee;
        if balance < cost {
            return Err(TransferError::InsufficientFunds { balance, cost });
        }
        let mut digest = keccak256(
            [transfer.sender.as_slice(), transfer.receiver.as_slice(), &balance.to_be_bytes()]
                .concat(),
        );
        for _ in 0..self.work_rounds {
            digest = keccak256(digest);
        }
        Ok(VmOutput {
            writes: vec![
                (StateKey::Account(transfer.sender), WriteOp::Put(nonce + 1)),
                (StateKey::Balance(transfer.sender), WriteOp::Put(balance - cost)),
                (StateKey::Balance(transfer.receiver), WriteOp::Delta(Delta::add(transfer.amount))),
                (StateKey::Balance(self.fee_vault), WriteOp::Delta(Delta::add(transfer.fee))),
            ],
            output: digest,
        })
    }

    fn hot_credit_key(&self) -> Option<StateKey> {
        Some(StateKey::Balance(self.fee_vault))
    }
}

/// The address of synthetic account `index`.
pub fn account(index: u64) -> Address {
    let mut bytes = [0u8; 20];
    bytes[12..].copy_from_slice(&(index + 1).to_be_bytes());
    Address::from(bytes)
}

/// `accounts` funded accounts with nonce 0.
pub fn transfer_genesis(accounts: u64) -> MemoryStorage<StateKey, u128> {
    let mut state = FastMap::default();
    for index in 0..accounts {
        state.insert(StateKey::Balance(account(index)), 1_000_000_000_000_000_000);
        state.insert(StateKey::Account(account(index)), 0);
    }
    MemoryStorage(state)
}

/// `size` transfers between random distinct accounts among `accounts`, with correct nonces.
pub fn transfer_block(accounts: u64, size: usize, seed: u64) -> Vec<Transfer> {
    let mut random = duet_bench_kit::SplitMix(seed);
    let mut nonces: BTreeMap<u64, u128> = BTreeMap::new();
    (0..size)
        .map(|_| {
            let sender = random.below(accounts);
            let mut receiver = random.below(accounts);
            if accounts > 1 && receiver == sender {
                receiver = (receiver + 1) % accounts;
            }
            let nonce = nonces.entry(sender).or_default();
            *nonce += 1;
            Transfer {
                sender: account(sender),
                receiver: account(receiver),
                amount: u128::from(random.below(1000)) + 1,
                fee: 21,
                nonce: *nonce - 1,
            }
        })
        .collect()
}

/// One instruction of a [`ScriptVm`] transaction. Keys are small integers so transactions of a
/// random block conflict often; values are integers.
#[derive(Clone, Debug)]
pub enum Op {
    /// Read a key and mix its value into the accumulator.
    Read(u16),
    /// Write a value derived from the accumulator (so it depends on every earlier read).
    Write(u16),
    /// Delete a key.
    Delete(u16),
    /// Add to a key with a commutative delta (bounded only by `u128::MAX`).
    Add(u16, u128),
    /// Subtract from a key if `delta_fits` says the result stays non-negative.
    TrySub(u16, u128),
    /// Add with a tight bound, unconditionally: the block fails if the bound is crossed.
    AddBounded(u16, u128, u128),
    /// Reject the transaction if the accumulator is divisible by this.
    AbortIf(u8),
    /// Panic if the accumulator is divisible by this.
    PanicIf(u8),
}

/// A script transaction: a list of instructions.
#[derive(Clone, Debug)]
pub struct Script(pub Vec<Op>);

/// Why a script was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptError {
    Aborted(u128),
    Read(ReadError),
}

impl From<ReadError> for ScriptError {
    fn from(error: ReadError) -> Self {
        Self::Read(error)
    }
}

/// The message every deliberate script panic starts with.
pub const SCRIPT_PANIC: &str = "script panic";

/// Runs [`Script`]s; with a hot credit key, the executor keeps that key's credits apart (see
/// `Vm::hot_credit_key`), and the results must not change.
pub struct ScriptVm {
    /// The key the executor treats as the hot credit key, if any.
    pub hot_credit_key: Option<u16>,
}

/// [`ScriptVm`] with no hot credit key.
pub const SCRIPTS: ScriptVm = ScriptVm { hot_credit_key: None };

/// [`ScriptVm`] with key 0 as its hot credit key.
pub const HOT_SCRIPTS: ScriptVm = ScriptVm { hot_credit_key: Some(0) };

#[derive(Clone, Copy)]
enum Pending {
    Exact(Option<u128>),
    /// Net change: added, subtracted.
    Net(u128, u128),
    /// An unconditional bounded delta; later instructions leave the key alone.
    Sealed(Delta),
}

fn mix(accumulator: u128, value: u128) -> u128 {
    (accumulator ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835).rotate_left(17)
}

impl Vm for ScriptVm {
    type Transaction = Script;
    type Key = u16;
    type Value = u128;
    type Output = u128;
    type Error = ScriptError;

    fn execute<View>(
        &self,
        txn_index: TxnIndex,
        script: &Script,
        view: &View,
    ) -> Result<VmOutput<u16, u128, u128>, ScriptError>
    where
        View: TransactionView<Key = u16, Value = u128>,
    {
        let mut accumulator = txn_index as u128 + 1;
        let mut pending: BTreeMap<u16, Pending> = BTreeMap::new();
        let current =
            |pending: &BTreeMap<u16, Pending>, key: u16| -> Result<Option<u128>, ReadError> {
                Ok(match pending.get(&key) {
                    Some(Pending::Exact(value)) => *value,
                    Some(Pending::Net(added, subtracted)) => Some(
                        view.read(&key)?
                            .unwrap_or(0)
                            .saturating_add(*added)
                            .saturating_sub(*subtracted),
                    ),
                    Some(Pending::Sealed(_)) => None,
                    None => view.read(&key)?,
                })
            };
        for op in &script.0 {
            if matches!(pending.get(&op_key(op)), Some(Pending::Sealed(_))) {
                continue;
            }
            match *op {
                Op::Read(key) => {
                    let value = current(&pending, key)?;
                    accumulator = mix(accumulator, value.map_or(u128::MAX, |value| value));
                }
                Op::Write(key) => {
                    pending.insert(key, Pending::Exact(Some(accumulator % 1_000_000)));
                }
                Op::Delete(key) => {
                    pending.insert(key, Pending::Exact(None));
                }
                Op::Add(key, amount) => {
                    let next = match pending.get(&key) {
                        Some(Pending::Exact(value)) => {
                            Pending::Exact(Some(value.unwrap_or(0).saturating_add(amount)))
                        }
                        Some(Pending::Net(added, subtracted)) => {
                            Pending::Net(added + amount, *subtracted)
                        }
                        _ => Pending::Net(amount, 0),
                    };
                    pending.insert(key, next);
                }
                Op::TrySub(key, amount) => {
                    if pending.contains_key(&key) {
                        let value = current(&pending, key)?.unwrap_or(0);
                        if value >= amount {
                            pending.insert(key, Pending::Exact(Some(value - amount)));
                        } else {
                            accumulator = mix(accumulator, 0xdead);
                        }
                    } else if view.delta_fits(&key, Delta::sub(amount))? {
                        pending.insert(key, Pending::Net(0, amount));
                    } else {
                        accumulator = mix(accumulator, 0xdead);
                    }
                }
                Op::AddBounded(key, amount, max) => {
                    pending.entry(key).or_insert(Pending::Sealed(Delta::Add { amount, max }));
                }
                Op::AbortIf(divisor) => {
                    if accumulator % u128::from(divisor.max(1)) == 0 {
                        return Err(ScriptError::Aborted(accumulator));
                    }
                }
                Op::PanicIf(divisor) => {
                    assert!(
                        accumulator % u128::from(divisor.max(1)) != 0,
                        "{SCRIPT_PANIC} at {accumulator}"
                    );
                }
            }
        }
        let writes = pending
            .into_iter()
            .map(|(key, pending)| {
                let write = match pending {
                    Pending::Exact(Some(value)) => WriteOp::Put(value),
                    Pending::Exact(None) => WriteOp::Delete,
                    Pending::Net(added, subtracted) if added >= subtracted => {
                        WriteOp::Delta(Delta::add(added - subtracted))
                    }
                    Pending::Net(added, subtracted) => {
                        WriteOp::Delta(Delta::sub(subtracted - added))
                    }
                    Pending::Sealed(delta) => WriteOp::Delta(delta),
                };
                (key, write)
            })
            .collect();
        Ok(VmOutput { writes, output: accumulator })
    }

    fn hot_credit_key(&self) -> Option<u16> {
        self.hot_credit_key
    }
}

fn op_key(op: &Op) -> u16 {
    match *op {
        Op::Read(key)
        | Op::Write(key)
        | Op::Delete(key)
        | Op::Add(key, _)
        | Op::TrySub(key, _)
        | Op::AddBounded(key, _, _) => key,
        Op::AbortIf(_) | Op::PanicIf(_) => u16::MAX,
    }
}

/// Keeps deliberate script panics out of the test output; other panics print as usual.
pub fn quiet_script_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with(SCRIPT_PANIC) {
                default(info);
            }
        }));
    });
}
