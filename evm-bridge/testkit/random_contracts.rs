//! Random contracts for differential tests: code built from pieces that touch balances and
//! accounts (`BALANCE`, `SELFBALANCE`, calls with value, `CREATE`, `CREATE2`, `SELFDESTRUCT`,
//! storage, transient storage, logs, reverts, and, where asked, Move's `eth::transfer` through
//! the Move call precompile).

use duet_bench_kit::SplitMix;
use duet_types::{Address, EntryFunction, MOVE_CALL_ADDRESS};

use crate::testkit::{user, FEE_VAULT, ONE_ETH};

/// The users (`user(0)`…) of the random-contract tests.
pub const USERS: u64 = 4;

/// Blocks run on each chain of a random-contract test.
pub const BLOCKS_PER_CHAIN: u64 = 4;

/// The seeds of a random-contract test's chains: 24 blocks' worth, or as many blocks as
/// `DUET_RANDOM_CONTRACT_BLOCKS` says.
#[must_use]
pub fn seeds() -> std::ops::Range<u64> {
    let blocks: u64 = std::env::var("DUET_RANDOM_CONTRACT_BLOCKS")
        .ok()
        .and_then(|blocks| blocks.parse().ok())
        .unwrap_or(24);
    0..blocks.div_ceil(BLOCKS_PER_CHAIN)
}

/// A random-contract test's blocks: for each of [`seeds`], a chain from `new_chain` and
/// [`BLOCKS_PER_CHAIN`] blocks of 1 to 41 transactions, each made by `transaction` (given the
/// chain, the random source, a random user as sender, a [`random_value`] and the contracts
/// deployed so far), each block handed to `run` (what it returns is not used).
pub fn random_blocks<C, T, R>(
    new_chain: impl Fn() -> C,
    mut transaction: impl FnMut(&mut C, &mut SplitMix, Address, u128, &mut Vec<Address>) -> T,
    mut run: impl FnMut(&mut C, &[T]) -> R,
) {
    for seed in seeds() {
        let mut random = SplitMix(seed);
        let mut chain = new_chain();
        let mut contracts = Vec::new();
        for _ in 0..BLOCKS_PER_CHAIN {
            let mut block = Vec::new();
            for _ in 0..=random.below(40) {
                let from = user(random.below(USERS));
                let value = random_value(&mut random);
                block.push(transaction(&mut chain, &mut random, from, value, &mut contracts));
            }
            let _ = run(&mut chain, &block);
        }
    }
}

/// One of `items`, at random.
pub fn pick<T: Copy>(random: &mut SplitMix, items: &[T]) -> T {
    items[random.below(items.len() as u64) as usize]
}

/// A value to send: nothing, a little, or an ETH.
pub fn random_value(random: &mut SplitMix) -> u128 {
    pick(random, &[0, 1, 1000, ONE_ETH])
}

/// A transaction deploying a random contract, made by `deploy` from the creation code (it gives
/// the transaction and the contract's address). The contract, and the first contract it may
/// create, join `contracts`.
pub fn random_deployment<T>(
    random: &mut SplitMix,
    contracts: &mut Vec<Address>,
    move_calls: bool,
    deploy: impl FnOnce(Vec<u8>) -> (T, Address),
) -> T {
    let pieces = 1 + random.below(6);
    let runtime = random_code(random, &Targets { contracts, move_calls }, pieces, 1);
    let (transaction, address) = deploy(deployer(&runtime));
    contracts.extend([address, address.create(1)]);
    transaction
}

/// What a random contract's pieces may touch.
pub struct Targets<'a> {
    /// The contracts deployed so far.
    pub contracts: &'a [Address],
    /// Whether pieces may call Move through the precompile.
    pub move_calls: bool,
}

fn push20(code: &mut Vec<u8>, address: Address) {
    code.push(0x73);
    code.extend_from_slice(address.as_slice());
}

fn push1(code: &mut Vec<u8>, value: u8) {
    code.extend_from_slice(&[0x60, value]);
}

fn push2(code: &mut Vec<u8>, value: usize) {
    // INVARIANT: pieces stay far below 64 KiB.
    code.extend_from_slice(&[0x61, (value >> 8) as u8, value as u8]);
}

/// Writes `bytes` into memory from offset 0, a word at a time.
fn store_in_memory(code: &mut Vec<u8>, bytes: &[u8]) {
    for (index, chunk) in bytes.chunks(32).enumerate() {
        let mut word = [0u8; 32];
        word[..chunk.len()].copy_from_slice(chunk);
        code.push(0x7f);
        code.extend_from_slice(&word);
        push2(code, index * 32);
        code.push(0x52);
    }
}

/// An address to touch: a user, a contract, the fee vault, a precompile, an empty account.
fn address(random: &mut SplitMix, targets: &Targets<'_>) -> Address {
    match random.below(5) {
        0 => user(random.below(USERS)),
        1 if !targets.contracts.is_empty() => pick(random, targets.contracts),
        2 => FEE_VAULT,
        3 => Address::with_last_byte(1 + random.below(9) as u8),
        _ => Address::repeat_byte(0x77),
    }
}

/// Pushes an address to touch, or the running contract's own (`ADDRESS`).
fn target(random: &mut SplitMix, targets: &Targets<'_>, code: &mut Vec<u8>) {
    if random.below(6) == 0 {
        code.push(0x30);
    } else {
        push20(code, address(random, targets));
    }
}

/// `CALL(50000, <pushed target>, value, 0, size, 0, 0)` of `size` bytes of memory, its success
/// into `slot`.
fn call(
    code: &mut Vec<u8>,
    push_target: impl FnOnce(&mut Vec<u8>),
    value: u8,
    size: usize,
    slot: u8,
) {
    code.extend_from_slice(&[0x60, 0, 0x60, 0]);
    push2(code, size);
    push1(code, 0);
    push1(code, value);
    push_target(code);
    push2(code, 50_000);
    code.push(0xf1);
    push1(code, slot);
    code.push(0x55);
}

/// Code that runs `pieces` random pieces, then stops; `depth` limits nested creation code.
pub fn random_code(
    random: &mut SplitMix,
    targets: &Targets<'_>,
    pieces: u64,
    depth: u8,
) -> Vec<u8> {
    let mut code = Vec::new();
    for _ in 0..pieces {
        let slot = random.below(4) as u8;
        match random.below(14) {
            // BALANCE(target) into a slot.
            0 => {
                target(random, targets, &mut code);
                code.push(0x31);
                push1(&mut code, slot);
                code.push(0x55);
            }
            // SELFBALANCE into a slot.
            1 => {
                code.push(0x47);
                push1(&mut code, slot);
                code.push(0x55);
            }
            // A call with value.
            2 | 3 => {
                let value = pick(random, &[0u8, 1, 100, 255]);
                call(&mut code, |code| target(random, targets, code), value, 0, slot);
            }
            // STATICCALL or DELEGATECALL to a target, its success into a slot.
            4 => {
                code.extend_from_slice(&[0x60, 0, 0x60, 0, 0x60, 0, 0x60, 0]);
                target(random, targets, &mut code);
                push2(&mut code, 50_000);
                code.push(if random.below(2) == 0 { 0xfa } else { 0xf4 });
                push1(&mut code, slot + 28);
                code.push(0x55);
            }
            // CREATE or CREATE2 of random creation code, with value; the address into a slot.
            5 | 6 if depth > 0 => {
                let pieces = 1 + random.below(3);
                let code_of_its_own = random.below(2) == 0;
                let pieces = random_code(random, targets, pieces, depth - 1);
                // Random pieces run by the constructor, or deployed as the child's code.
                let init = if code_of_its_own { deployer(&pieces) } else { pieces };
                store_in_memory(&mut code, &init);
                let create2 = random.below(2) == 0;
                if create2 {
                    push1(&mut code, random.below(3) as u8); // salt
                }
                push2(&mut code, init.len());
                push1(&mut code, 0);
                push1(&mut code, pick(random, &[0u8, 1, 50]));
                code.push(if create2 { 0xf5 } else { 0xf0 });
                push1(&mut code, slot);
                code.push(0x55);
            }
            // SELFDESTRUCT to a target (the rest of the code does not run).
            7 => {
                target(random, targets, &mut code);
                code.push(0xff);
            }
            // A counter in storage, and one in transient storage read back.
            8 => {
                push1(&mut code, slot);
                code.extend_from_slice(&[0x54, 0x60, 1, 0x01]);
                push1(&mut code, slot);
                code.push(0x55);
                push1(&mut code, 7);
                push1(&mut code, slot);
                code.push(0x5d);
                push1(&mut code, slot);
                code.push(0x5c);
                push1(&mut code, slot + 8);
                code.push(0x55);
            }
            // A log with CALLVALUE as its topic.
            9 => code.extend_from_slice(&[0x34, 0x60, 0, 0x60, 0, 0xa1]),
            // EXTCODEHASH and EXTCODESIZE of a target into slots.
            10 => {
                target(random, targets, &mut code);
                code.push(0x3f);
                push1(&mut code, slot + 16);
                code.push(0x55);
                target(random, targets, &mut code);
                code.push(0x3b);
                push1(&mut code, slot + 20);
                code.push(0x55);
            }
            // Revert everything so far.
            11 if random.below(4) == 0 => code.extend_from_slice(&[0x60, 0, 0x60, 0, 0xfd]),
            // Move's eth::transfer of the contract's own ETH, through the precompile.
            12 if targets.move_calls => {
                let to = address(random, targets);
                let amount = pick(random, &[0u128, 1, 1_000]);
                let data = duet_evm::call_data(&EntryFunction {
                    module_address: Address::with_last_byte(1),
                    module_name: "eth".to_owned(),
                    function: "transfer".to_owned(),
                    type_arguments: vec![],
                    arguments: vec![to.to_vec(), amount.to_le_bytes().to_vec()],
                });
                store_in_memory(&mut code, &data);
                call(&mut code, |code| push20(code, MOVE_CALL_ADDRESS), 0, data.len(), slot);
            }
            // COINBASE's balance (the fee vault, credited by every transaction).
            _ => {
                code.extend_from_slice(&[0x41, 0x31]);
                push1(&mut code, slot + 24);
                code.push(0x55);
            }
        }
    }
    code.push(0x00);
    code
}

/// Creation code that deploys `runtime`.
pub fn deployer(runtime: &[u8]) -> Vec<u8> {
    // PUSH2 length, DUP1, PUSH1 14, PUSH1 0, CODECOPY, PUSH1 0, RETURN, then two JUMPDESTs so
    // that the runtime starts at offset 14.
    let mut code = Vec::new();
    push2(&mut code, runtime.len());
    code.extend_from_slice(&[0x80, 0x60, 0x0e, 0x60, 0, 0x39, 0x60, 0, 0xf3, 0x5b, 0x5b]);
    code.extend_from_slice(runtime);
    code
}
