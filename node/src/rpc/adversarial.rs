//! Every JSON-RPC method under random and hostile parameters: each request gets an answer
//! (a result or an error that is not the node failing: no panic, no "internal error"), and
//! none changes the head, its state root, the pool or the first dev account (but a send from
//! the unlocked account, or mining, that succeeds).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::tests::signing_rpc;
use crate::chain::tests::{dev_signer, transfer};

/// Every method the node serves (and a few it does not), mining left out of the random
/// requests (`evm_mine` and `anvil_mine` make blocks by design; their bad parameters have a test
/// of their own, and mutated `anvil_mine` requests run among the examples).
const METHODS: &[&str] = &[
    "web3_clientVersion",
    "web3_sha3",
    "net_version",
    "net_listening",
    "eth_chainId",
    "eth_coinbase",
    "eth_accounts",
    "eth_sendTransaction",
    "eth_signTransaction",
    "personal_sign",
    "eth_sign",
    "eth_signTypedData_v4",
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_feeHistory",
    "txpool_status",
    "txpool_content",
    "txpool_inspect",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_sendRawTransaction",
    "eth_call",
    "eth_estimateGas",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getBlockReceipts",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getLogs",
    "duet_transactionStatus",
    "eth_getProof",
    "duet_getProof",
    "no_such_method",
];

/// The field names the methods read, so that random objects reach past the first check.
const FIELDS: &[&str] = &[
    "from",
    "to",
    "gas",
    "gasPrice",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "value",
    "data",
    "input",
    "nonce",
    "type",
    "chainId",
    "accessList",
    "authorizationList",
    "blockHash",
    "blockNumber",
    "fromBlock",
    "toBlock",
    "address",
    "topics",
    "kind",
    "slot",
    "balance",
    "code",
    "state",
    "stateDiff",
    "number",
    "time",
    "gasLimit",
    "baseFeePerGas",
    "types",
    "primaryType",
    "domain",
    "message",
    "requireCanonical",
];

/// Strings that mean something to some parser: tags, quantities at and past their bounds,
/// addresses and hashes of the chain's own accounts and block, bad hex.
fn strings(known: Vec<String>) -> BoxedStrategy<String> {
    let fixed = [
        "",
        "0x",
        "0x0",
        "0x00",
        "0x1",
        "0xzz",
        "1",
        "-0x1",
        "latest",
        "pending",
        "earliest",
        "safe",
        "finalized",
        "balance",
        "storage",
        "code",
        "nonce",
        "0xffffffffffffffff",
        "0x10000000000000000",
        "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "0x1ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "0xef01000000000000000000000000000000000000000000",
        "0x02f8",
    ]
    .map(String::from);
    prop_oneof![
        4 => proptest::sample::select(fixed.to_vec()),
        3 => proptest::sample::select(known),
        1 => proptest::collection::vec(any::<u8>(), 0..80)
            .prop_map(|bytes| format!("0x{}", alloy_primitives::hex::encode(bytes))),
        1 => "[0-9a-fx]{0,70}",
    ]
    .boxed()
}

/// Any JSON value, up to three levels deep, built from the strings above and the fields the
/// methods read.
fn values(known: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(0_i64), Just(-1), Just(1), Just(i64::MAX), any::<i64>()]
            .prop_map(|number| json!(number)),
        Just(json!(u64::MAX)),
        Just(json!(1.5e300)),
        strings(known).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS.to_vec()), inner), 0..5)
                .prop_map(|fields| {
                    Value::Object(
                        fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
                    )
                }),
        ]
    })
}

/// A valid request of each method, to mutate: parameters the node reads deep into.
fn examples(known: &Known) -> Vec<(&'static str, Value)> {
    let Known { sender, unlocked, hash, block, filter, .. } = known;
    let call = json!({"from": unlocked, "to": sender, "value": "0x1", "data": "0x12345678",
        "gas": "0x6000", "maxFeePerGas": "0x3b9aca00", "accessList": []});
    let overrides = json!({ (sender.to_string()): {"balance": "0x1", "nonce": "0x2",
        "code": "0x6000", "stateDiff": { (alloy_primitives::B256::ZERO.to_string()): hash }} });
    let mail = json!([{"name": "to", "type": "address"}, {"name": "amounts", "type": "uint8[2]"}]);
    let typed = json!({
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}], "Mail": mail},
        "primaryType": "Mail",
        "domain": {"name": "Duet"},
        "message": {"to": sender, "amounts": [1, 2]}
    });
    vec![
        ("web3_sha3", json!(["0x1234"])),
        ("eth_sendTransaction", json!([call])),
        ("eth_signTransaction", json!([call])),
        ("personal_sign", json!(["0x68656c6c6f", unlocked])),
        ("eth_sign", json!([unlocked, "0x68656c6c6f"])),
        ("eth_signTypedData_v4", json!([unlocked, typed])),
        ("eth_feeHistory", json!(["0x4", "latest", [25, 75]])),
        (
            "eth_newFilter",
            json!([{"fromBlock": "0x0", "toBlock": "latest", "address": [sender],
            "topics": [null, [hash]]}]),
        ),
        ("eth_getFilterChanges", json!([filter])),
        ("eth_getFilterLogs", json!([filter])),
        ("eth_getBalance", json!([sender, "latest"])),
        ("eth_getTransactionCount", json!([sender, "pending"])),
        ("eth_getCode", json!([sender, {"blockHash": block, "requireCanonical": true}])),
        ("eth_getStorageAt", json!([sender, "0x0", "0x1"])),
        ("eth_sendRawTransaction", json!([known.raw])),
        ("eth_call", json!([call, "latest", overrides, {"number": "0x9", "baseFeePerGas": "0x1"}])),
        ("eth_estimateGas", json!([call, "pending", overrides])),
        ("eth_getBlockByNumber", json!(["0x1", true])),
        ("eth_getBlockByHash", json!([block, true])),
        ("eth_getTransactionByBlockNumberAndIndex", json!(["0x1", "0x0"])),
        ("eth_getTransactionByBlockHashAndIndex", json!([block, "0x0"])),
        ("eth_getBlockReceipts", json!([{"blockHash": block}])),
        ("eth_getTransactionByHash", json!([hash])),
        ("eth_getTransactionReceipt", json!([hash])),
        ("duet_transactionStatus", json!([hash])),
        ("eth_getLogs", json!([{"fromBlock": "earliest", "toBlock": "pending", "topics": []}])),
        ("eth_getLogs", json!([{"blockHash": block, "address": sender}])),
        ("duet_getProof", json!([{"kind": "storage", "address": sender, "slot": hash}, "latest"])),
        (
            "duet_getProof",
            json!([{"kind": "raw", "key": alloy_primitives::Bytes::from(
            duet_types::StateKey::Balance(*sender).encode())}]),
        ),
        ("anvil_mine", json!(["0x1", "0x0"])),
    ]
}

/// The chain's own values the requests name.
struct Known {
    sender: alloy_primitives::Address,
    unlocked: alloy_primitives::Address,
    hash: alloy_primitives::B256,
    block: alloy_primitives::B256,
    filter: Value,
    raw: alloy_primitives::Bytes,
}

/// Every node of `value`, by its path from the root (object keys and array indexes).
fn paths(value: &Value, path: &mut Vec<Value>, all: &mut Vec<Vec<Value>>) {
    all.push(path.clone());
    match value {
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(json!(index));
                paths(item, path, all);
                path.pop();
            }
        }
        Value::Object(fields) => {
            for (name, item) in fields {
                path.push(json!(name));
                paths(item, path, all);
                path.pop();
            }
        }
        _ => {}
    }
}

fn node_at<'a>(value: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(value, |node, step| match step {
        Value::String(name) => &mut node[name.as_str()],
        step => &mut node[step.as_u64().unwrap() as usize],
    })
}

/// `value` with one change, chosen by `choice`: a node replaced by `replacement`, removed, a
/// hex string cut or one of its digits changed, or a field or item added.
fn mutate(value: &mut Value, choice: u32, replacement: Value) {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    let path = &all[choice as usize % all.len()];
    let how = choice / 64 % 4;
    if how == 1 && !path.is_empty() {
        let (last, parent) = path.split_last().unwrap();
        match node_at(value, parent) {
            Value::Object(fields) => drop(fields.remove(last.as_str().unwrap())),
            Value::Array(items) => drop(items.remove(last.as_u64().unwrap() as usize)),
            _ => {}
        }
        return;
    }
    let node = node_at(value, path);
    match (how, node) {
        (2, Value::String(text)) if text.len() > 2 => {
            let at = 2 + (choice as usize / 256) % (text.len() - 2);
            if choice % 2 == 0 {
                text.truncate(at);
            } else {
                let digit = b"0f9a"[(choice as usize / 2) % 4] as char;
                text.replace_range(at..=at, &digit.to_string());
            }
        }
        (3, Value::Object(fields)) => {
            fields.insert(FIELDS[choice as usize / 256 % FIELDS.len()].to_owned(), replacement);
        }
        (3, Value::Array(items)) => items.push(replacement),
        (_, node) => *node = replacement,
    }
}

/// What a request must not change: the head, its state root, the first dev account's balance
/// and nonce, and the pool.
fn snapshot(rpc: &super::Rpc) -> (u64, alloy_primitives::B256, usize, Value, Value) {
    let head = rpc.chain.head();
    let account = dev_signer(0).address();
    let read = |method: &str| {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method,
            "params": [account, "latest"]});
        super::answer(rpc, &request, None)["result"].clone()
    };
    (
        head.number,
        head.state_root,
        rpc.chain.pending_count(),
        read("eth_getBalance"),
        read("eth_getTransactionCount"),
    )
}

/// Checks one answer to `request` (method `method`): it names the request, holds a result or
/// an error, and the error is not the node failing.
fn check_answer(request: &Value, answer: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(&answer["id"], &json!(7), "{} -> {}", request, answer);
    let code = answer["error"]["code"].as_i64();
    prop_assert!(answer.get("result").is_some() != code.is_some(), "{} -> {}", request, answer);
    prop_assert!(code != Some(-32603), "the node failed: {} -> {}", request, answer);
    let message = answer["error"]["message"].as_str().unwrap_or("a result");
    prop_assert!(!message.is_empty() && !message.contains("internal"), "{} -> {}", request, answer);
    Ok(())
}

#[test]
fn every_method_answers_hostile_parameters_with_an_error_and_changes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    // The second dev account is unlocked, so that signing and sending reach their checks.
    let rpc = signing_rpc(directory.path(), 1 << 20, vec![dev_signer(1)]);
    // One block with a transfer, so that hashes, numbers and indexes find something.
    let signer = dev_signer(0);
    let raw = transfer(&signer, 0, 10_000_000_000);
    let hash = rpc.chain.submit(&raw).unwrap();
    let block = rpc.chain.produce_block().unwrap();
    let install = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_newFilter", "params": [{}]});
    let filter = super::answer(&rpc, &install, None)["result"].clone();
    let known = Known {
        sender: signer.address(),
        unlocked: dev_signer(1).address(),
        hash,
        block: block.hash,
        filter: filter.clone(),
        raw,
    };
    let strings: Vec<String> = [
        known.sender.to_string(),
        known.unlocked.to_string(),
        hash.to_string(),
        block.hash.to_string(),
        format!("{:#x}", block.number),
        filter.as_str().unwrap().to_owned(),
    ]
    .into();
    let examples = examples(&known);
    let turn = rpc.chain.call_turn_blocking();
    // Unchanged, each example is answered with a result: the mutations start from requests
    // the node takes. (Sending and mining are left for the random cases; the raw transaction
    // is the one already in the block.)
    for (method, params) in &examples {
        if matches!(*method, "eth_sendTransaction" | "eth_sendRawTransaction" | "anvil_mine") {
            continue;
        }
        let request = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let answer = super::answer(&rpc, &request, Some(&turn));
        assert!(answer.get("result").is_some(), "{request} -> {answer}");
    }
    let random = (
        proptest::sample::select(METHODS.to_vec()),
        proptest::collection::vec(values(strings.clone()), 0..4),
    )
        .prop_map(|(method, params)| (method, Value::Array(params)));
    let mutated = (
        proptest::sample::select(examples),
        proptest::collection::vec((any::<u32>(), values(strings)), 1..4),
    )
        .prop_map(|((method, mut params), changes)| {
            for (choice, replacement) in changes {
                mutate(&mut params, choice, replacement);
            }
            (method, params)
        });
    let requests = (prop_oneof![1 => random, 3 => mutated], any::<bool>());
    // A fixed seed: the same 1024 requests each run, so that a failure reproduces.
    let config = ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x00d0_e7f0_22ed),
        ..ProptestConfig::default()
    };
    proptest!(config, |(((method, params), batched) in requests)| {
        let request = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let before = snapshot(&rpc);
        let answer = if batched {
            super::respond(&rpc, Value::Array(vec![request.clone()]), Some(&turn))[0].clone()
        } else {
            super::answer(&rpc, &request, Some(&turn))
        };
        check_answer(&request, &answer)?;
        // Sending from the unlocked account and mining change the pool and the chain, when
        // they succeed.
        let changes = matches!(method, "eth_sendTransaction" | "anvil_mine");
        if !(changes && answer.get("result").is_some()) {
            prop_assert_eq!(snapshot(&rpc), before, "{} -> {} changed the chain", request, answer);
        }
    });
}
