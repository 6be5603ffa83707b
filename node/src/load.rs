//! `duet bench rpc`: sustained load over JSON-RPC, against a Duet dev node or anvil.
//!
//! The load: signed ERC-20 `transfer`s from many senders to random recipients, sent by several
//! client threads as fast as the node acknowledges them. Set-up (not timed): deploy the token
//! from the first dev account, give every sender tokens, and ETH where it holds less than its
//! transfers could cost (up to twice that, 1 ETH at least), wait for it. Measured: from the
//! first send to the block that includes the last transaction, committed transactions per
//! second; and per transaction, the time from its send to the block that included it being
//! seen (blocks are watched every 20 ms), as p50 and p99.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{sol, SolCall, SolConstructor};
use serde_json::{json, Value};

use crate::client::RpcClient;

sol! {
    contract Token {
        constructor(string name_, string symbol_, uint256 supply);
        function transfer(address to, uint256 value) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
    }
}

/// The token's creation code, from the committed artifact.
const TOKEN_ARTIFACT: &str = include_str!("../../evm-bridge/contracts/artifacts/Token.json");

/// What to send.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// How many senders.
    pub senders: usize,
    /// How many transfers in all.
    pub transactions: usize,
    /// Client threads sending, at most one per sender.
    pub clients: usize,
    /// Transactions per JSON-RPC request (a batch when above 1).
    pub batch: usize,
}

/// What a run measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Committed transactions per second, first send to last inclusion.
    pub tps: f64,
    /// Median send-to-inclusion latency.
    pub p50: Duration,
    /// 99th-percentile send-to-inclusion latency.
    pub p99: Duration,
    /// Transactions committed.
    pub committed: usize,
}

/// A signing account.
struct Account {
    signer: PrivateKeySigner,
    nonce: u64,
}

impl Account {
    fn new(key: B256, nonce: u64) -> Result<Self, String> {
        Ok(Self {
            signer: PrivateKeySigner::from_bytes(&key).map_err(|error| error.to_string())?,
            nonce,
        })
    }

    /// A signed EIP-1559 transaction, taking the next nonce.
    fn sign(
        &mut self,
        chain_id: u64,
        to: TxKind,
        value: U256,
        input: Vec<u8>,
        gas_limit: u64,
    ) -> Result<Bytes, String> {
        let unsigned = TxEip1559 {
            chain_id,
            nonce: self.nonce,
            gas_limit,
            max_fee_per_gas: MAX_FEE_PER_GAS,
            max_priority_fee_per_gas: 1_000_000_000,
            to,
            value,
            input: Bytes::from(input),
            ..TxEip1559::default()
        };
        self.nonce += 1;
        crate::client::sign(&self.signer, unsigned)
    }
}

/// The load, signed beforehand on every core: `transactions` transfers of one token unit to
/// addresses of their index's hash, round robin over the senders (the one at index `i` is from
/// `senders[i % senders.len()]`, each sender's in nonce order).
fn sign_load(
    senders: &mut [Account],
    transactions: usize,
    chain_id: u64,
    token: Address,
) -> Result<Vec<Bytes>, String> {
    let count = senders.len();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let group_size = count.div_ceil(threads).max(1);
    let mut raws = vec![Bytes::new(); transactions];
    std::thread::scope(|scope| {
        let signers: Vec<_> = senders
            .chunks_mut(group_size)
            .enumerate()
            .map(|(group, accounts)| {
                scope.spawn(move || {
                    let mut signed = Vec::new();
                    for (offset, sender) in accounts.iter_mut().enumerate() {
                        let first = group * group_size + offset;
                        for index in (first..transactions).step_by(count) {
                            let to = Address::from_word(keccak256((index as u64).to_be_bytes()));
                            let call =
                                Token::transferCall { to, value: U256::from(1) }.abi_encode();
                            let kind = TxKind::Call(token);
                            let raw =
                                sender.sign(chain_id, kind, U256::ZERO, call, TRANSFER_GAS)?;
                            signed.push((index, raw));
                        }
                    }
                    Ok::<_, String>(signed)
                })
            })
            .collect();
        for signer in signers {
            let signed = signer.join().map_err(|_| "a signing thread panicked".to_owned())??;
            for (index, raw) in signed {
                raws[index] = raw;
            }
        }
        Ok::<_, String>(())
    })?;
    Ok(raws)
}

/// The number `method` answers, as a `u64`.
fn quantity(client: &RpcClient, method: &str, params: &Value) -> Result<u64, String> {
    client.quantity(method, params).map(|number| number as u64)
}

/// The ETH a sender is given at least, in wei.
const SENDER_ETH: u128 = 10u128.pow(18);
/// The fee cap of every transaction of the load, in wei per gas.
const MAX_FEE_PER_GAS: u128 = 100_000_000_000;
/// The gas limit of each transfer of the load.
const TRANSFER_GAS: u64 = 60_000;

/// How long a client waits before sending again what a full transaction pool refused.
const FULL_POOL_BACKOFF: Duration = Duration::from_millis(20);
/// How long a client keeps sending again what a full pool refuses before it gives up.
const FULL_POOL_PATIENCE: Duration = Duration::from_secs(30);

/// A lane's transaction: its sender (an index) and its encoding.
type Lane<'a> = Vec<(usize, &'a Bytes)>;

/// Sends each lane of transactions from a thread of its own, in order, `batch` per request;
/// returns each one's hash and first send time. What a full transaction pool refuses is sent
/// again after [`FULL_POOL_BACKOFF`], as a client that wants its transactions in would, for up to
/// [`FULL_POOL_PATIENCE`], before the lane goes on, with the same sender's later transactions
/// that it then found too far ahead of the sender's nonce; any other refusal ends the run.
fn send_all(
    client: &RpcClient,
    lanes: &[Lane<'_>],
    batch: usize,
) -> Result<Vec<(B256, Instant)>, String> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = lanes
            .iter()
            .map(|part| {
                let client = client.clone();
                scope.spawn(move || {
                    let mut connection = client.connect()?;
                    let mut sent = Vec::with_capacity(part.len());
                    for group in part.chunks(batch.max(1)) {
                        let at = Instant::now();
                        let mut waiting: Lane<'_> = group.to_vec();
                        while !waiting.is_empty() {
                            let params: Vec<Value> =
                                waiting.iter().map(|(_, raw)| json!([raw])).collect();
                            let results = connection.batch("eth_sendRawTransaction", &params)?;
                            let mut refused: Lane<'_> = Vec::new();
                            for ((sender, raw), result) in waiting.into_iter().zip(results) {
                                match result {
                                    Ok(hash) => sent.push((
                                        serde_json::from_value(hash)
                                            .map_err(|error| error.to_string())?,
                                        at,
                                    )),
                                    // A full pool refused it, or refused an earlier transaction
                                    // of its sender in the request, which may leave it too far
                                    // ahead.
                                    Err(error)
                                        if error.contains("txpool is full")
                                            || (error.contains("nonce too high")
                                                && refused
                                                    .iter()
                                                    .any(|(earlier, _)| *earlier == sender)) =>
                                    {
                                        refused.push((sender, raw));
                                    }
                                    Err(error) => return Err(error),
                                }
                            }
                            // The first refusal is always a full pool's: a later one of its
                            // sender follows from it.
                            if !refused.is_empty() {
                                if at.elapsed() > FULL_POOL_PATIENCE {
                                    return Err(format!(
                                        "txpool is full: {} transactions refused for {} s",
                                        refused.len(),
                                        FULL_POOL_PATIENCE.as_secs()
                                    ));
                                }
                                std::thread::sleep(FULL_POOL_BACKOFF);
                            }
                            waiting = refused;
                        }
                    }
                    Ok::<_, String>(sent)
                })
            })
            .collect();
        let mut sent = Vec::with_capacity(lanes.iter().map(Vec::len).sum());
        for worker in workers {
            sent.extend(worker.join().map_err(|_| "a client thread panicked".to_owned())??);
        }
        Ok(sent)
    })
}

/// Watches new blocks until every hash of `wanted` is in one, `timeout` passes or the senders
/// failed (`done` and `failed`); returns when each was first seen included.
fn watch_blocks(
    client: &RpcClient,
    wanted: usize,
    start_block: u64,
    (done, failed): (&AtomicBool, &AtomicBool),
    timeout: Duration,
) -> Result<HashMap<B256, Instant>, String> {
    let deadline = Instant::now() + timeout;
    let mut seen = HashMap::with_capacity(wanted);
    let mut next = start_block + 1;
    loop {
        let head = quantity(client, "eth_blockNumber", &json!([]))?;
        while next <= head {
            let block =
                client.request("eth_getBlockByNumber", &json!([format!("{next:#x}"), false]))?;
            let now = Instant::now();
            if let Some(hashes) = block.get("transactions").and_then(Value::as_array) {
                for hash in hashes {
                    if let Ok(hash) = serde_json::from_value::<B256>(hash.clone()) {
                        seen.entry(hash).or_insert(now);
                    }
                }
            }
            next += 1;
        }
        let finished = done.load(Ordering::Acquire)
            && (seen.len() >= wanted || failed.load(Ordering::Acquire));
        if finished || Instant::now() > deadline {
            return Ok(seen);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many of `senders` hold other than `funded` less their transfers of `load` (round robin
/// over them) of `token`: a transfer that reverted moved nothing. (Their receipts would say it
/// too, but anvil takes minutes to answer for a block of ten thousand.)
fn unpaid_senders(
    client: &RpcClient,
    token: Address,
    senders: &[Account],
    (load, funded): (&Load, u128),
) -> Result<usize, String> {
    let calls: Vec<Value> = senders
        .iter()
        .map(|sender| {
            let data = Token::balanceOfCall { owner: sender.signer.address() }.abi_encode();
            json!([{ "to": token, "data": Bytes::from(data) }, "latest"])
        })
        .collect();
    let balances = client.quantities("eth_call", &calls)?;
    Ok(balances
        .into_iter()
        .enumerate()
        .filter(|(sender, balance)| {
            let sent = load.transactions / load.senders
                + usize::from(*sender < load.transactions % load.senders);
            *balance != funded - sent as u128
        })
        .count())
}

/// Sends `raws` in order (again, what a full pool refuses) and waits for all of them to be
/// included.
fn settle(client: &RpcClient, raws: &[Bytes]) -> Result<(), String> {
    // One client, one transaction per request: in order.
    let sent = send_all(client, &[raws.iter().map(|raw| (0, raw)).collect()], 1)?;
    let Some(&(last, _)) = sent.last() else { return Ok(()) };
    client.wait_for_receipt(last, Duration::from_secs(120)).map(|_| ())
}

/// The tokens each sender is given before the load (of a token deployed for the run).
const FUNDED_TOKENS: u128 = 10u128.pow(24);

/// Runs the load against the node at `url`, whose first dev account signs the set-up.
///
/// # Errors
/// The node refused a transaction or did not include them in time.
///
/// # Panics
/// If `load` asks for no transactions or no senders.
pub fn run(url: &str, load: Load) -> Result<Measured, String> {
    let client = RpcClient::new(url)?;
    let chain_id = quantity(&client, "eth_chainId", &json!([]))?;
    let owner_key: B256 = crate::genesis::DEV_KEYS[0].parse().map_err(|_| "dev key")?;
    let owner_address =
        PrivateKeySigner::from_bytes(&owner_key).map_err(|error| error.to_string())?.address();
    let nonce = quantity(&client, "eth_getTransactionCount", &json!([owner_address, "pending"]))?;
    let mut owner = Account::new(owner_key, nonce)?;

    // Set-up: the token, then ETH and tokens for every sender.
    let artifact: Value =
        serde_json::from_str(TOKEN_ARTIFACT).map_err(|error| error.to_string())?;
    let mut creation: Vec<u8> = artifact["bytecode"]
        .as_str()
        .and_then(|hex| hex.parse::<Bytes>().ok())
        .ok_or("the token artifact has no bytecode")?
        .to_vec();
    creation.extend(
        Token::constructorCall {
            name_: "Load".into(),
            symbol_: "LD".into(),
            supply: U256::from(10u128.pow(30)),
        }
        .abi_encode(),
    );
    let token = owner_address.create(owner.nonce);
    settle(&client, &[owner.sign(chain_id, TxKind::Create, U256::ZERO, creation, 3_000_000)?])?;
    let mut senders: Vec<Account> = (0..load.senders)
        .map(|index| Account::new(keccak256(format!("duet load sender {index}")), 0))
        .collect::<Result<_, _>>()?;
    // What one sender's transfers of this load may cost at most: a node refuses transactions
    // that the sender's balance could not pay for, its waiting ones included.
    let per_sender = load.transactions.div_ceil(load.senders) as u128;
    let needed = per_sender * u128::from(TRANSFER_GAS) * MAX_FEE_PER_GAS;
    let mut funding = Vec::with_capacity(2 * senders.len());
    let asked: Vec<Value> =
        senders.iter().map(|sender| json!([sender.signer.address(), "latest"])).collect();
    for (sender, balance) in senders.iter().zip(client.quantities("eth_getBalance", &asked)?) {
        let address = sender.signer.address();
        // ETH only where an earlier run against the same node did not leave enough (the senders
        // are the same every run, and the first dev account would soon run dry): below what the
        // load needs, topped up to twice that, and to 1 ETH at least.
        if balance < needed {
            funding.push(owner.sign(
                chain_id,
                TxKind::Call(address),
                U256::from(SENDER_ETH.max(2 * needed) - balance),
                Vec::new(),
                21_000,
            )?);
        }
        let give =
            Token::transferCall { to: address, value: U256::from(FUNDED_TOKENS) }.abi_encode();
        funding.push(owner.sign(chain_id, TxKind::Call(token), U256::ZERO, give, 100_000)?);
    }
    // In batches: anvil silently drops part of a much deeper queue from one sender.
    for batch in funding.chunks(200) {
        settle(&client, batch)?;
    }
    let asked: Vec<Value> =
        senders.iter().map(|sender| json!([sender.signer.address(), "pending"])).collect();
    let nonces = client.quantities("eth_getTransactionCount", &asked)?;
    senders.iter_mut().zip(nonces).for_each(|(sender, nonce)| sender.nonce = nonce as u64);

    let raws = sign_load(&mut senders, load.transactions, chain_id, token)?;
    // Each client thread sends for its own senders, each sender's transactions in nonce order,
    // as the users behind one client would: a sender's later transaction never overtakes an
    // earlier one refused by a full pool.
    let clients = load.clients.min(load.senders).max(1);
    let mut lanes: Vec<Lane<'_>> = vec![Vec::new(); clients];
    for (index, raw) in raws.iter().enumerate() {
        let sender = index % load.senders;
        lanes[sender % clients].push((sender, raw));
    }
    let start_block = quantity(&client, "eth_blockNumber", &json!([]))?;
    let (done, failed) = (AtomicBool::new(false), AtomicBool::new(false));
    let (seen, first_send, sent) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let flags = (&done, &failed);
            watch_blocks(&client, raws.len(), start_block, flags, Duration::from_secs(300))
        });
        let first_send = Instant::now();
        let sent = send_all(&client, &lanes, load.batch);
        failed.store(sent.is_err(), Ordering::Release);
        done.store(true, Ordering::Release);
        (watcher.join().map_err(|_| "the block watcher panicked".to_owned()), first_send, sent)
    });
    let seen = seen??;
    let sent = sent?;
    // Counted only if they did what they were sent for: a reverted transfer is no throughput.
    let unpaid = unpaid_senders(&client, token, &senders, (&load, FUNDED_TOKENS))?;
    if unpaid > 0 {
        return Err(format!("{unpaid} senders' transfers did not all go through (reverted)"));
    }
    measured(&seen, &sent, first_send)
}

/// The figures of a run whose transactions, `sent` at their instants from `first_send` on, were
/// `seen` in blocks at theirs.
fn measured(
    seen: &HashMap<B256, Instant>,
    sent: &[(B256, Instant)],
    first_send: Instant,
) -> Result<Measured, String> {
    let mut latencies: Vec<Duration> = Vec::with_capacity(sent.len());
    let mut last = first_send;
    for (hash, at) in sent {
        let included =
            seen.get(hash).ok_or_else(|| format!("{hash} was not included within 300 s"))?;
        latencies.push(included.saturating_duration_since(*at));
        last = last.max(*included);
    }
    latencies.sort_unstable();
    let percentile = |percent: usize| latencies[(latencies.len() - 1) * percent / 100];
    Ok(Measured {
        tps: sent.len() as f64 / last.duration_since(first_send).as_secs_f64(),
        p50: percentile(50),
        p99: percentile(99),
        committed: sent.len(),
    })
}
