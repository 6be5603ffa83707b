//! The dev node as users run it: the `duet` binary in its own process, driven over loopback by
//! the real cast and forge (from the project's npm set-up).

use std::io::{Read, Write};

use alloy_primitives::B256;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIRST_KEY: &str = duet_node::genesis::DEV_KEYS[0];
const SECOND_KEY: &str = duet_node::genesis::DEV_KEYS[1];
const FIRST: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const SECOND: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(name: &str) -> PathBuf {
    root().join(format!("node_modules/@foundry-rs/{name}-linux-amd64/bin/{name}"))
}

/// A transfer for [`Node::mktx`]: key, recipient, value, nonce, chain id, (max fee, tip).
#[derive(Clone, Copy)]
struct Transfer<'a> {
    key: &'a str,
    to: &'a str,
    value: &'a str,
    nonce: &'a str,
    chain: &'a str,
    fees: (&'a str, &'a str),
}

/// A running dev node; killed when dropped.
struct Node {
    child: Child,
    port: u16,
    datadir: PathBuf,
}

impl Node {
    fn start(datadir: &Path) -> Self {
        Self::start_with(datadir, &[])
    }

    fn start_with(datadir: &Path, extra: &[&str]) -> Self {
        Self::start_with_output(datadir, extra, (Stdio::null(), Stdio::null()))
    }

    /// A node whose standard output and error go to `output`.
    fn start_with_output(datadir: &Path, extra: &[&str], output: (Stdio, Stdio)) -> Self {
        Self::start_logging(datadir, extra, output, "info")
    }

    /// [`start_with`](Self::start_with) on `directory/data`, its stdout and stderr written to
    /// `directory/stdout` and `directory/stderr`: the node and those two paths.
    fn start_recorded(directory: &Path, extra: &[&str]) -> (Self, PathBuf, PathBuf) {
        let (stdout, stderr) = (directory.join("stdout"), directory.join("stderr"));
        let file = |path: &Path| Stdio::from(std::fs::File::create(path).unwrap());
        let output = (file(&stdout), file(&stderr));
        (Self::start_with_output(&directory.join("data"), extra, output), stdout, stderr)
    }

    /// [`start_with_output`](Self::start_with_output), logging what `filter` (`RUST_LOG`) lets
    /// through.
    fn start_logging(datadir: &Path, extra: &[&str], output: (Stdio, Stdio), filter: &str) -> Self {
        Self::start_in(datadir, extra, output, &[("RUST_LOG", filter)])
    }

    /// The node with `environment` as its only `DUET_*` variables, whatever the test's own
    /// environment holds (a developer's exported `DUET_CHAIN_ID` must not change a test).
    fn start_in(
        datadir: &Path,
        extra: &[&str],
        output: (Stdio, Stdio),
        environment: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let mut command = dev_node_command(port, &[]);
        // Whatever the test's own environment says: tests read the node's info logs.
        command.env("RUST_LOG", "info").envs(environment.iter().copied());
        let child = command
            .arg("--datadir")
            .arg(datadir)
            .args(extra)
            .stdout(output.0)
            .stderr(output.1)
            .spawn()
            .expect("the duet binary starts");
        let node = Self { child, port, datadir: datadir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.rpc_raw(r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).is_none() {
            assert!(Instant::now() < deadline, "the node did not answer within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs cast with `args` and the node's URL; returns stdout, or stderr as the error.
    fn cast(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(tool("cast"))
            .args(args)
            .args(["--rpc-url", &self.url()])
            .output()
            .expect("cast runs");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    /// POSTs `body` to the JSON-RPC endpoint and returns the response body, if the node answered.
    fn rpc_raw(&self, body: &str) -> Option<String> {
        self.try_http("POST", "/", Some(body)).map(|(_, body)| body)
    }

    /// A transfer signed with cast (`cast mktx`), not sent.
    fn mktx(&self, transfer: &Transfer<'_>) -> String {
        let (gas_price, tip) = transfer.fees;
        self.cast(&[
            "mktx",
            "--private-key",
            transfer.key,
            transfer.to,
            "--value",
            transfer.value,
            "--chain",
            transfer.chain,
            "--nonce",
            transfer.nonce,
            "--gas-limit",
            "21000",
            "--gas-price",
            gas_price,
            "--priority-gas-price",
            tip,
        ])
        .unwrap()
    }

    /// `duet_getProof` of `address`'s balance: the answer's `result`, and its proof.
    fn prove_balance(&self, address: &str) -> (serde_json::Value, duet_node::merkle::Proof) {
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"duet_getProof","params":[{{"kind":"balance","address":"{address}"}}]}}"#
        );
        let answer: serde_json::Value =
            serde_json::from_str(&self.rpc_raw(&request).unwrap()).unwrap();
        let result = answer["result"].clone();
        let proof = serde_json::from_value(result["proof"].clone()).unwrap();
        // The answer proves the key asked for, and the value it shows: its hashes are checked
        // here, not taken from it.
        let bytes = |name: &str| -> alloy_primitives::Bytes {
            serde_json::from_value(result[name].clone()).unwrap()
        };
        let hash = |name: &str| -> B256 { serde_json::from_value(result[name].clone()).unwrap() };
        let key = duet_types::StateKey::Balance(address.parse().unwrap()).encode();
        assert_eq!(bytes("key"), key, "the key asked for");
        assert_eq!(hash("keyHash"), alloy_primitives::keccak256(&key));
        if !result["value"].is_null() {
            assert_eq!(hash("valueHash"), alloy_primitives::keccak256(bytes("value")));
        }
        (result, proof)
    }

    /// Deploys `contract` (`src/File.sol:Name` of `evm-bridge/contracts`) with `forge create`
    /// from `key`; returns its address.
    fn forge_create(&self, contract: &str, key: &str) -> String {
        self.forge_create_with(contract, key, &[])
    }

    /// [`forge_create`](Self::forge_create) with constructor arguments.
    fn forge_create_with(&self, contract: &str, key: &str, arguments: &[&str]) -> String {
        let mut command = Command::new(tool("forge"));
        command
            .current_dir(root().join("evm-bridge/contracts"))
            .args(["create", contract, "--broadcast", "--private-key", key])
            .args(["--rpc-url", &self.url()]);
        if !arguments.is_empty() {
            command.arg("--constructor-args").args(arguments);
        }
        let created = command.output().expect("forge runs");
        let created = String::from_utf8_lossy(&created.stdout).into_owned();
        created
            .lines()
            .find_map(|line| line.strip_prefix("Deployed to: "))
            .unwrap_or_else(|| panic!("forge create deployed nothing: {created}"))
            .trim()
            .to_owned()
    }

    /// `GET path`: the response body.
    fn get(&self, path: &str) -> String {
        self.http("GET", path, None).1
    }

    /// An HTTP request: the status and the body.
    fn http(&self, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
        self.try_http(method, path, json).expect("the node answers")
    }

    /// An HTTP request: the status and the body, if the node answered.
    fn try_http(&self, method: &str, path: &str, json: Option<&str>) -> Option<(u16, String)> {
        self.try_http_with_head(method, path, json).map(|(status, _, body)| (status, body))
    }

    /// An HTTP request: the status, the response's head (status line and headers, lower-cased)
    /// and the body, if the node answered.
    fn try_http_with_head(
        &self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> Option<(u16, String, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let body = json.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1).and_then(|code| code.parse().ok())?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        Some((status, head.to_ascii_lowercase(), body.to_owned()))
    }

    fn balance(&self, address: &str) -> String {
        self.cast(&["balance", address]).expect("balance")
    }

    fn nonce(&self, address: &str) -> String {
        self.cast(&["nonce", address]).expect("nonce")
    }

    /// Stops the node with SIGTERM; returns whether it exited cleanly within 10 s.
    fn terminate(mut self) -> (bool, PathBuf) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.success(), self.datadir.clone());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (false, self.datadir.clone())
    }

    fn stop(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.datadir.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `duet node --dev` on `port` with 0.2 s blocks, its environment without the test's `DUET_*`
/// variables (a developer's exported `DUET_CHAIN_ID` must not change a test) nor the variables
/// `also_removed` names.
fn dev_node_command(port: u16, also_removed: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_duet"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("DUET_") || also_removed.contains(&name.as_str()) {
            command.env_remove(name);
        }
    }
    command.args(["node", "--dev", "--block-time", "0.2", "--http-port", &port.to_string()]);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A data directory of the test's own, removed when dropped: hold it for longer than the node.
fn temp_datadir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("duet-devnet-{name}-"))
        .tempdir()
        .expect("temp is writable")
}

#[test]
fn the_start_up_message_goes_to_stdout_and_the_logs_to_stderr() {
    let directory = temp_datadir("output");
    let (mut node, stdout, stderr) = Node::start_recorded(directory.path(), &[]);
    // A clean stop logs "stopping" and "stopped".
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(node.child.wait().unwrap().success());
    let (stdout, stderr) =
        (std::fs::read_to_string(stdout).unwrap(), std::fs::read_to_string(stderr).unwrap());
    assert!(stdout.contains("Available accounts"), "stdout: {stdout}");
    assert!(stderr.contains("stopped"), "stderr: {stderr}");
    assert!(!stdout.contains("stopped"), "logs on stdout: {stdout}");
}

/// `cast access-list` asks `eth_createAccessList`: `Probe.record` reads the recipient's balance (a
/// cold account) and writes the probe's slot 0; `cast send --access-list` sends with that list,
/// and uses the gas it was said to.
fn sends_with_an_access_list(node: &Node, probe: &str, recipient: &str) {
    let listed = node
        .cast(&["access-list", probe, "record(address)", recipient, "--from", SECOND, "--json"])
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let entries: Vec<(String, serde_json::Value)> = listed["accessList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (entry["address"].as_str().unwrap().to_lowercase(), entry["storageKeys"].clone())
        })
        .collect();
    let mut expected = vec![
        (recipient.to_lowercase(), serde_json::json!([])),
        (probe.to_lowercase(), serde_json::json!([format!("0x{}", "0".repeat(64))])),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(entries, expected, "{listed}");
    let sent_with = node
        .cast(&[
            "send",
            probe,
            "record(address)",
            recipient,
            "--access-list",
            "--private-key",
            SECOND_KEY,
            "--json",
        ])
        .unwrap();
    let sent_with: serde_json::Value = serde_json::from_str(&sent_with).unwrap();
    assert_eq!(sent_with["status"], "0x1", "{sent_with}");
    assert_eq!(sent_with["gasUsed"], listed["gasUsed"], "{sent_with}");
}

#[test]
fn cast_and_forge_work_against_the_dev_node_and_a_restart_keeps_the_chain() {
    let directory = temp_datadir("tools");
    let node = Node::start(directory.path());
    assert_eq!(node.cast(&["chain-id"]).unwrap(), "31337");
    assert_eq!(node.balance(FIRST), "10000000000000000000000");

    // cast send of ETH: the receipt says success and the recipient holds it.
    let recipient = "0x000000000000000000000000000000000000bEEF";
    let unpaid = node.cast(&["block-number"]).unwrap();
    let receipt =
        node.cast(&["send", "--private-key", FIRST_KEY, recipient, "--value", "1ether"]).unwrap();
    assert!(receipt.contains("1 (success)"), "{receipt}");
    assert_eq!(node.balance(recipient), "1000000000000000000");
    assert_eq!(node.nonce(FIRST), "1");

    // forge create of a contract, cast send to it and cast call of it.
    let probe = node.forge_create("src/Probe.sol:Probe", SECOND_KEY);
    assert!(node.cast(&["code", &probe]).unwrap().len() > 100);
    let sent = node
        .cast(&["send", &probe, "record(address)", recipient, "--private-key", SECOND_KEY])
        .unwrap();
    assert!(sent.contains("1 (success)"), "{sent}");
    assert_eq!(
        node.cast(&["call", &probe, "seen()(uint256)"]).unwrap(),
        "1000000000000000000 [1e18]"
    );
    sends_with_an_access_list(&node, &probe, recipient);
    // cast run replays the transaction on the state of the block before it, with its trace.
    let hash = sent
        .lines()
        .find_map(|line| line.strip_prefix("transactionHash"))
        .map(str::trim)
        .expect("the receipt names its transaction");
    let replayed = node.cast(&["run", hash]).unwrap();
    assert!(
        replayed.contains("::record(0x000000000000000000000000000000000000bEEF)"),
        "{replayed}"
    );
    assert!(replayed.contains("Transaction successfully executed"), "{replayed}");
    // What became of it, as the README's walkthrough asks, and its call trace.
    let status = node.cast(&["rpc", "duet_transactionStatus", hash]).unwrap();
    assert!(status.contains(r#""status":"included""#), "{status}");
    let call_tracer = r#"{"tracer":"callTracer"}"#;
    let traced = node.cast(&["rpc", "debug_traceTransaction", hash, call_tracer]).unwrap();
    let traced: serde_json::Value = serde_json::from_str(&traced).unwrap();
    assert_eq!((&traced["type"], &traced["to"]), (&"CALL".into(), &probe.to_lowercase().into()));
    let head = rpc(&node, "eth_getBlockByNumber", r#"["latest",false]"#)["result"].clone();

    // A restart with the same data directory continues the chain with the same state: the
    // last block before it is there as it was (not rebuilt from the transactions).
    let (clean, datadir) = node.terminate();
    assert!(clean, "SIGTERM stops the node cleanly");
    let node = Node::start(&datadir);
    assert_block_kept(&node, &head);
    assert_eq!(node.balance(recipient), "1000000000000000000");
    assert_eq!(node.nonce(FIRST), "1");
    assert_eq!(node.nonce(SECOND), "3");
    // The state of a recent block, from before the payment (kept across the restart too).
    assert_eq!(node.cast(&["balance", recipient, "--block", &unpaid]).unwrap(), "0");
    assert_eq!(node.cast(&["nonce", FIRST, "--block", &unpaid]).unwrap(), "0");
    assert_eq!(
        node.cast(&["call", &probe, "seen()(uint256)"]).unwrap(),
        "1000000000000000000 [1e18]"
    );
    // The state tree's nodes came back from disk: a proof verifies against the head's root.
    let (result, proof) = node.prove_balance(recipient);
    let field = |name: &str| -> B256 { serde_json::from_value(result[name].clone()).unwrap() };
    let head = node.cast(&["block", "latest", "--field", "stateRoot"]).unwrap();
    assert_eq!(field("stateRoot").to_string(), head);
    assert!(duet_node::merkle::verify(
        field("stateRoot"),
        field("keyHash"),
        Some(field("valueHash")),
        &proof
    ));

    // Logs: `cast logs` (eth_getLogs) finds an event by address and by topic, and nothing for
    // another address or topic (blocks whose bloom filter rules them out are skipped).
    let deployer = node.forge_create("src/Deployer.sol:Deployer", SECOND_KEY);
    let created = node
        .cast(&["send", &deployer, "create(uint256)", "7", "--private-key", SECOND_KEY])
        .unwrap();
    assert!(created.contains("1 (success)"), "{created}");
    let logs = |filter: &[&str]| -> usize {
        let mut args = vec!["logs", "--from-block", "0", "--json"];
        args.extend(filter);
        let found: serde_json::Value = serde_json::from_str(&node.cast(&args).unwrap()).unwrap();
        found.as_array().unwrap().len()
    };
    assert_eq!(logs(&["--address", &deployer]), 1);
    assert_eq!(logs(&["Created(address,bool)"]), 1);
    assert_eq!(logs(&["--address", &deployer, "Created(address,bool)"]), 1);
    assert_eq!(logs(&["--address", &probe]), 0);
    assert_eq!(logs(&["Transfer(address,address,uint256)"]), 0);

    // forge script: the walkthrough as a deployment script, simulated on a fork of the node and
    // broadcast, each of its two transactions included.
    let third_key = duet_node::genesis::DEV_KEYS[2];
    let script = Command::new(tool("forge"))
        .current_dir(root().join("evm-bridge/contracts"))
        .args(["script", "script/Deploy.s.sol:Deploy", "--broadcast", "--private-key", third_key])
        .args(["--rpc-url", &node.url()])
        .output()
        .expect("forge runs");
    let printed = String::from_utf8_lossy(&script.stdout);
    assert!(printed.contains("ONCHAIN EXECUTION COMPLETE & SUCCESSFUL"), "{printed}");
    let scripted = printed
        .lines()
        .find_map(|line| line.trim().strip_prefix("probe: contract Probe "))
        .unwrap_or_else(|| panic!("the script returned no probe: {printed}"));
    assert_eq!(
        node.cast(&["call", scripted, "seen()(uint256)"]).unwrap(),
        "1000000000000000000 [1e18]"
    );
    assert_eq!(node.nonce("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"), "2");
}

#[test]
fn the_state_history_setting_bounds_the_blocks_queries_may_name() {
    let recipient = "0x000000000000000000000000000000000000bEEF";
    // Pays the recipient 1 wei in a block of its own, then mines three empty blocks: the block
    // before the payment is then four blocks back.
    let pay_then_mine = |node: &Node| -> String {
        let before = node.cast(&["block-number"]).unwrap();
        let paid = node.cast(&["send", "--private-key", FIRST_KEY, recipient, "--value", "1"]);
        assert!(paid.unwrap().contains("1 (success)"));
        for _ in 0..3 {
            node.cast(&["rpc", "evm_mine"]).unwrap();
        }
        before
    };
    // Two blocks kept: the state four blocks back is gone, in words that say what is kept.
    let directory = temp_datadir("history");
    let node = Node::start_with(directory.path(), &["--state-history", "2"]);
    let before = pay_then_mine(&node);
    let refused = node.cast(&["balance", recipient, "--block", &before]).unwrap_err();
    assert!(refused.contains("keeps the state of the last 2 blocks before the head"), "{refused}");
    // 0: every block's, as an archive node keeps them (the start-up message says so).
    let directory = temp_datadir("archive");
    let (node, stdout, _) = Node::start_recorded(directory.path(), &["--state-history", "0"]);
    let before = pay_then_mine(&node);
    assert_eq!(node.cast(&["balance", recipient, "--block", &before]).unwrap(), "0");
    assert_eq!(node.cast(&["balance", recipient, "--block", "0"]).unwrap(), "0");
    assert_eq!(node.balance(recipient), "1");
    let printed = std::fs::read_to_string(stdout).unwrap();
    assert!(printed.contains("State kept:     every block's (archive)"), "{printed}");
}

#[test]
fn cast_sends_eip_7702_delegations_and_a_delegated_account_runs_the_code_and_still_sends() {
    let directory = temp_datadir("7702");
    let node = Node::start(directory.path());
    let burner = node.forge_create("src/Burner.sol:Burner", FIRST_KEY);
    let (third, third_key) = duet_node::genesis::dev_accounts()[2];
    let third = &third.to_string();
    let succeeded = |receipt: &str| assert!(receipt.contains("1 (success)"), "{receipt}");
    // Sponsored: the third dev account signs an authorization, the first sends it in a call to
    // the third, which runs the Burner's code on the third's storage.
    let nonce = node.nonce(third);
    let signed = node
        .cast(&["wallet", "sign-auth", &burner, "--private-key", third_key, "--nonce", &nonce])
        .unwrap();
    let sent = node
        .cast(&["send", third, "increment()", "--auth", &signed, "--private-key", FIRST_KEY])
        .unwrap();
    succeeded(&sent);
    let delegation = format!("0xef0100{}", burner.trim_start_matches("0x").to_lowercase());
    assert_eq!(node.cast(&["code", third]).unwrap(), delegation);
    assert_eq!(node.cast(&["call", third, "counter()(uint256)"]).unwrap(), "1");
    assert_eq!(node.nonce(third), "1", "the authorization used the third's nonce");
    // The node reports the transaction as a set-code one, with its authorization.
    let hash = sent.lines().find_map(|line| line.strip_prefix("transactionHash")).unwrap().trim();
    let tx: serde_json::Value =
        serde_json::from_str(&node.cast(&["tx", hash, "--json"]).unwrap()).unwrap();
    assert_eq!(tx["type"], "0x4", "{tx}");
    assert_eq!(
        tx["authorizationList"][0]["address"].as_str().map(str::to_lowercase),
        Some(burner.to_lowercase()),
        "{tx}"
    );
    // The delegated account still sends, and ends its own delegation (cast signs the
    // authorization for the nonce after the transaction's).
    let zero = "0x0000000000000000000000000000000000000000";
    let ended = node
        .cast(&["send", FIRST, "--value", "1", "--auth", zero, "--private-key", third_key])
        .unwrap();
    succeeded(&ended);
    assert_eq!(node.cast(&["code", third]).unwrap(), "0x");
    assert_eq!(node.nonce(third), "3");
}

#[test]
fn bad_transactions_are_refused_with_ethereum_errors_and_change_nothing() {
    let directory = temp_datadir("refused");
    let node = Node::start(directory.path());
    let before = (node.balance(FIRST), node.nonce(FIRST));
    let recipient = "0x000000000000000000000000000000000000bEEF";

    let garbage = node.cast(&["publish", "0xdeadbeef"]).unwrap_err();
    assert!(garbage.contains("invalid transaction"), "{garbage}");

    // A valid transfer of 1 wei at nonce 0, and variations on it.
    let transfer = Transfer {
        key: FIRST_KEY,
        to: recipient,
        value: "1",
        nonce: "0",
        chain: "31337",
        fees: ("2gwei", "1gwei"),
    };
    // Signed for another chain.
    let other_chain = node.mktx(&Transfer { chain: "1", ..transfer });
    let refused = node.cast(&["publish", &other_chain]).unwrap_err();
    assert!(refused.contains("invalid chain id"), "{refused}");

    // More than the sender holds.
    let too_much = node.mktx(&Transfer { value: "1000000ether", ..transfer });
    let refused = node.cast(&["publish", &too_much]).unwrap_err();
    assert!(refused.contains("insufficient funds for gas * price + value"), "{refused}");

    // Below the base fee.
    let cheap = node.mktx(&Transfer { fees: ("1", "1"), ..transfer });
    let refused = node.cast(&["publish", &cheap]).unwrap_err();
    assert!(refused.contains("max fee per gas less than block base fee"), "{refused}");

    // A used nonce.
    node.cast(&["send", "--private-key", FIRST_KEY, recipient, "--value", "1"]).unwrap();
    let replay = node.mktx(&transfer);
    let refused = node.cast(&["publish", &replay]).unwrap_err();
    assert!(refused.contains("nonce too low"), "{refused}");

    // Only the one good transfer changed anything, and the metrics count what happened.
    let metrics = node.get("/metrics");
    assert!(metrics.contains("duet_transactions_accepted_total 1\n"), "{metrics}");
    assert!(metrics.contains("duet_transactions_refused_total 5\n"), "{metrics}");
    assert!(metrics.contains("# TYPE duet_head_block gauge"), "{metrics}");
    // What RocksDB holds in memory: the memtables hold the block and the transaction.
    let memtables = metrics
        .lines()
        .find_map(|line| line.strip_prefix("duet_rocksdb_memtable_bytes "))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no memtable gauge: {metrics}"));
    assert!(memtables > 0, "{metrics}");
    assert!(metrics.contains("# TYPE duet_rocksdb_table_readers_bytes gauge"), "{metrics}");
    assert_eq!(node.nonce(FIRST), "1");
    assert_eq!(node.balance(recipient), "1");
    assert_ne!(node.balance(FIRST), before.0);
}

#[test]
fn the_load_benchmark_waits_out_a_full_mempool_and_sees_every_transaction_committed() {
    // A mempool of 100 and 600 transfers sent in batches of 50: the pool fills, refuses with
    // "txpool is full", and the benchmark sends those again once blocks have made room.
    let directory = temp_datadir("load");
    // The node's log, with the transactions blocks reject, is shown if the load fails.
    let log_path = directory.path().join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let output = (Stdio::null(), Stdio::from(log));
    let filter = "info,duet_node::chain=debug";
    let node = Node::start_logging(directory.path(), &["--mempool-limit", "100"], output, filter);
    let url = node.url();
    let args = ["bench", "rpc", "--url", &url, "--target", "duet", "--json"];
    let duet = |args: &[&str]| {
        duet(args).map_err(|error| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let rejected: Vec<&str> =
                lines.iter().copied().filter(|line| line.contains("rejected")).collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            format!("{error}\nrejected:\n{}\nthe node's log ends:\n{tail}", rejected.join("\n"))
        })
    };
    // 150 transfers from each of 4 senders: each client must send its senders' transactions in
    // nonce order, or the second one's first would be 75 ahead of its sender's nonce.
    let load = ["--txs", "600", "--senders", "4", "--batch", "50", "--clients", "2"];
    let printed = duet(&[&args[..], &load[..]].concat()).unwrap();
    let measured: serde_json::Value = serde_json::from_str(&printed).expect("one JSON object");
    assert_eq!(measured["committed"], 600, "{measured}");
    assert!(measured["tps"].as_f64().unwrap() > 0.0, "{measured}");
    let metrics = node.get("/metrics");
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|line| line.starts_with(&format!("{name} "))).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(counter("duet_transactions_refused_total") > 0, "the pool never filled: {metrics}");
    // Set-up (the token, ETH and tokens for 4 senders) and the 600 transfers, each once.
    assert_eq!(counter("duet_transactions_committed_total"), 1 + 8 + 600, "{metrics}");
    // Each executed at least once by the block executor.
    assert!(counter("duet_block_stm_executions_total") >= 1 + 8 + 600, "{metrics}");

    // One sender per client, 100 of its transfers per request: the node takes a run of one
    // sender's nonces longer than the gap it allows ahead of the pool (the benchmark sends again
    // only what follows a transaction refused by a full pool).
    let deep = ["--txs", "400", "--senders", "2", "--batch", "100", "--clients", "2"];
    let printed = duet(&[&args[..], &deep[..]].concat()).unwrap();
    let measured: serde_json::Value = serde_json::from_str(&printed).expect("one JSON object");
    assert_eq!(measured["committed"], 400, "{measured}");

    // A mempool of nothing is refused at start.
    let refused = duet(&["node", "--dev", "--mempool-limit", "0"]).unwrap_err();
    assert!(refused.contains("the mempool limit must be at least 1"), "{refused}");
}

#[test]
fn a_transaction_stranded_above_a_nonce_gap_expires_after_the_mempool_lifetime() {
    let directory = temp_datadir("lifetime");
    let node = Node::start_with(directory.path(), &["--mempool-lifetime", "1"]);
    // Nonce 1, and the sender never sends its nonce 0: it cannot run.
    let stranded = node.mktx(&Transfer {
        key: FIRST_KEY,
        to: SECOND,
        value: "1",
        nonce: "1",
        chain: "31337",
        fees: ("2gwei", "1gwei"),
    });
    let hash = node.cast(&["publish", "--async", &stranded]).unwrap();
    let lookup = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionByHash","params":["{hash}"]}}"#
    );
    let started = Instant::now();
    assert!(node.rpc_raw(&lookup).unwrap().contains(r#""nonce":"0x1""#), "it waits at first");
    while !node.rpc_raw(&lookup).unwrap().contains(r#""result":null"#) {
        assert!(started.elapsed() < Duration::from_secs(10), "still waiting after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "dropped before its lifetime");
    let metrics = node.get("/metrics");
    assert!(
        metrics.contains("duet_transactions_dropped_total{reason=\"expired\"} 1\n"),
        "{metrics}"
    );
    // Its record went with it: a restart does not bring it back.
    drop(node);
    let node = Node::start(directory.path());
    assert!(node.rpc_raw(&lookup).unwrap().contains(r#""result":null"#));

    let refused = duet(&["node", "--dev", "--mempool-lifetime", "0"]).unwrap_err();
    assert!(refused.contains("the mempool lifetime must be"), "{refused}");
}

#[test]
fn floods_of_bad_and_good_json_rpc_requests_do_not_crash_the_node() {
    let directory = temp_datadir("flood");
    let node = Node::start(directory.path());
    let bodies = [
        "garbage",
        "{}",
        "[]",
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["not an address"]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x02ffff"]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0xffffffffffffffffff", false]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x00000000000000000000000000000000000000ff","data":"0x00"}]}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"},{"jsonrpc":"2.0","id":2,"method":"no_such_method"}]"#,
    ];
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let node = &node;
            scope.spawn(move || {
                for round in 0..100 {
                    let body = bodies[(worker + round) % bodies.len()];
                    let answer = node.rpc_raw(body).expect("the node answers every request");
                    assert!(answer.contains("jsonrpc"), "{body} -> {answer}");
                }
            });
        }
    });
    let answer = node.rpc_raw(r#"{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber"}"#).unwrap();
    assert!(answer.contains(r#""id":7"#) && answer.contains("result"), "{answer}");
    let malformed = node.rpc_raw("garbage").unwrap();
    assert!(malformed.contains("-32700"), "{malformed}");
    let unknown = node.rpc_raw(r#"{"jsonrpc":"2.0","id":1,"method":"no_such_method"}"#).unwrap();
    assert!(unknown.contains("-32601"), "{unknown}");
}

/// Reads from `stream` until the node closes it; returns what it sent and how long it took.
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    // A reset counts as closed too.
    let _ = stream.read_to_end(&mut received);
    assert!(started.elapsed() < Duration::from_secs(10), "the node kept the connection open");
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

#[test]
fn silent_slow_and_surplus_connections_cannot_hold_the_node() {
    let directory = temp_datadir("connections");
    let limits = ["--http-max-connections", "4", "--http-idle-timeout", "2"];
    let node = Node::start_with(directory.path(), &limits);
    let connect = || TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    let block_number = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{block_number}",
        block_number.len()
    );

    // A request's head sent a byte every 200 ms, never finished: the bytes do not restart the
    // timeout, and the node closes the connection after it.
    let mut slow_head = connect();
    let started = Instant::now();
    for byte in request.as_bytes().iter().take(20) {
        if slow_head.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    read_until_closed(&mut slow_head);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "closed too early: {waited:?}");
    assert!(waited < Duration::from_secs(5), "closed late: {waited:?}");

    // A body that stops half-way: 408, and the connection closes.
    let mut slow_body = connect();
    let partial = &request[..request.len() - block_number.len() / 2];
    slow_body.write_all(partial.as_bytes()).unwrap();
    let (answer, _) = read_until_closed(&mut slow_body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Four silent connections take every place: a fifth client waits (in the kernel's queue)
    // until the node closes them, then is answered.
    let silent: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
    let started = Instant::now();
    let answer = node.rpc_raw(block_number).expect("answered once a place is free");
    assert!(answer.contains("result"), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(1), "not held: {:?}", started.elapsed());
    for mut stream in silent {
        assert_eq!(read_until_closed(&mut stream).0, "", "closed without an answer");
    }

    // A keep-alive connection serves request after request within the timeout, and is closed
    // once idle for it.
    let mut kept = connect();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        kept.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\"result\"") {
            let read = kept.read(&mut buffer).unwrap();
            assert!(read > 0, "closed while in use");
            answer.extend_from_slice(&buffer[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, idle) = read_until_closed(&mut kept);
    assert!(idle >= Duration::from_secs(1), "closed early: {idle:?}");
    let answer = node.rpc_raw(block_number).expect("still serving");
    assert!(answer.contains("result"), "{answer}");

    for (flags, error) in [
        (["--http-max-connections", "0"], "the HTTP connection limit must be from 1 to 1000000"),
        (["--http-idle-timeout", "0"], "the HTTP idle timeout must be a number of seconds above"),
        (["--http-idle-timeout", "1e19"], "the HTTP idle timeout must be at most 86400 seconds"),
    ] {
        let port = free_port().to_string();
        let datadir = directory.path().join("refused");
        let mut args = vec!["node", "--dev", "--http-port", &port, "--datadir"];
        args.push(datadir.to_str().unwrap());
        args.extend(flags);
        let refused = duet(&args).unwrap_err();
        assert!(refused.contains(error), "{refused}");
    }
}

/// A WebSocket connection opened by hand (the handshake read byte by byte, so that no frame
/// after it is consumed).
fn websocket(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// The next frame the server sends: its opcode and payload (server frames are not masked).
fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let length = match head[1] & 0x7f {
        126 => {
            let mut length = [0u8; 2];
            stream.read_exact(&mut length)?;
            usize::from(u16::from_be_bytes(length))
        }
        127 => {
            let mut length = [0u8; 8];
            stream.read_exact(&mut length)?;
            usize::try_from(u64::from_be_bytes(length)).unwrap()
        }
        length => usize::from(length),
    };
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload)?;
    Ok((head[0] & 0x0f, payload))
}

/// The WebSocket opcodes the tests send and read.
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// A JSON-RPC quantity (`"0x…"`) as a number.
fn quantity(value: &serde_json::Value) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a quantity: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("a hex quantity")
}

/// Sends a frame from the client.
fn write_frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) {
    stream.write_all(&client_frame(opcode, payload)).unwrap();
}

/// A frame from the client (masked, as clients must; with a zero key).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        length @ 0..126 => frame.push(0x80 | length as u8),
        length @ 126..65_536 => {
            frame.push(0x80 | 0x7e);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            frame.push(0x80 | 0x7f);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn more_subscribers_than_notification_turns_are_each_told_of_every_new_block() {
    let directory = temp_datadir("ws-turns");
    let node = Node::start(directory.path());
    // Three times as many connections as the node's four turns, each subscribed to new heads.
    let mut subscribers: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut stream = websocket(node.port);
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let subscribe =
                br#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#;
            write_frame(&mut stream, TEXT, subscribe);
            let (opcode, answer) = read_frame(&mut stream).unwrap();
            assert_eq!(opcode, TEXT);
            assert!(String::from_utf8_lossy(&answer).contains(r#""result":"0x"#));
            stream
        })
        .collect();
    // Every subscription was made at this block or before: each is told of the next one on.
    let subscribed = quantity(&rpc(&node, "eth_blockNumber", "[]")["result"]);
    for _ in 0..3 {
        let mined = node.rpc_raw(r#"{"jsonrpc":"2.0","id":1,"method":"evm_mine"}"#).unwrap();
        assert!(mined.contains("result"), "{mined}");
    }
    let head = quantity(&rpc(&node, "eth_blockNumber", "[]")["result"]);
    for stream in &mut subscribers {
        // Each header in order, from at most the one after `subscribed`, up to the head (the
        // node may have made blocks of its own too).
        let mut last = None;
        while last < Some(head) {
            let (opcode, payload) = read_frame(stream).expect("a header");
            assert_eq!(opcode, TEXT);
            let notification: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let number = quantity(&notification["params"]["result"]["number"]);
            match last {
                None => assert!(number <= subscribed + 1, "first told of {number}"),
                Some(last) => assert_eq!(number, last + 1, "{last} then {number}"),
            }
            last = Some(number);
        }
    }
}

#[test]
fn a_websocket_message_above_one_mebibyte_ends_its_connection_and_one_below_is_answered() {
    let directory = temp_datadir("ws-message");
    let node = Node::start(directory.path());
    let request = |size: usize| {
        let padding = "x".repeat(size);
        format!(r#"{{"jsonrpc":"2.0","id":7,"method":"eth_chainId","pad":"{padding}"}}"#)
    };
    let mut stream = websocket(node.port);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write_frame(&mut stream, TEXT, request(900 << 10).as_bytes());
    let (opcode, answer) = read_frame(&mut stream).unwrap();
    assert_eq!(opcode, TEXT);
    assert!(String::from_utf8_lossy(&answer).contains(r#""result":"0x7a69""#));
    // The node drops the connection once it has read the frame's head, maybe while the rest
    // is on its way (a close frame first, or not).
    let _ = stream.write_all(&client_frame(TEXT, request(1 << 20).as_bytes()));
    if let Ok((opcode, payload)) = read_frame(&mut stream) {
        assert_eq!(opcode, CLOSE, "not closed: {}", String::from_utf8_lossy(&payload));
    }
    assert_eq!(node.cast(&["chain-id"]).unwrap(), "31337");
}

#[test]
fn websocket_clients_are_pinged_and_silent_ones_closed() {
    let directory = temp_datadir("pings");
    let node = Node::start_with(directory.path(), &["--http-idle-timeout", "1"]);

    // A client that answers nothing: pinged, then closed with 1001 after two seconds of silence.
    let mut silent = websocket(node.port);
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut opcodes = Vec::new();
    let closed = loop {
        let (opcode, payload) = read_frame(&mut silent).expect("a close frame before the end");
        opcodes.push(opcode);
        if opcode == CLOSE {
            break payload;
        }
    };
    assert!(opcodes.starts_with(&[PING]), "{opcodes:?}");
    assert_eq!(closed[..2], 1001u16.to_be_bytes(), "{}", String::from_utf8_lossy(&closed));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6), "{waited:?}");

    // A client that answers the pings (and sends nothing else) stays connected past that, and
    // is answered.
    let mut answering = websocket(node.port);
    answering.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        match read_frame(&mut answering) {
            Ok((PING, payload)) => {
                pings += 1;
                write_frame(&mut answering, PONG, &payload);
            }
            Ok((opcode, _)) => panic!("unexpected frame {opcode:#x}"),
            Err(error) => assert!(
                matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{error}"
            ),
        }
    }
    assert!(pings >= 2, "pinged {pings} times");
    answering.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write_frame(&mut answering, TEXT, br#"{"jsonrpc":"2.0","id":5,"method":"eth_chainId"}"#);
    let answer = loop {
        match read_frame(&mut answering).unwrap() {
            (TEXT, payload) => break String::from_utf8(payload).unwrap(),
            (PING, payload) => write_frame(&mut answering, PONG, &payload),
            (opcode, _) => panic!("unexpected frame {opcode:#x}"),
        }
    };
    assert!(answer.contains(r#""id":5"#) && answer.contains("0x7a69"), "{answer}");
}

/// Runs `duet` with `args`; returns stdout, or stderr as the error.
fn duet(args: &[&str]) -> Result<String, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_duet")).args(args).output().expect("duet runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Publishes `move-executor/testkit/example.move`, its module at the first account's address,
/// with `duet move publish` signed by `key`; returns what the command printed.
fn publish_example(node: &Node, key: &str) -> Result<String, String> {
    let example = root().join("move-executor/testkit/example.move");
    duet(&[
        "move",
        "publish",
        "--named-address",
        &format!("example={FIRST}"),
        "--private-key",
        key,
        &format!("--rpc-url={}", node.url()),
        example.to_str().unwrap(),
    ])
}

/// The Move API and `duet move view` at a recent block: the counter after its first increment
/// (in block `first`), none at the publication (block `published`).
fn move_api_reads_recent_blocks(node: &Node, first: &str, published: &str, url: &str) {
    let block = published;
    let value = format!("{FIRST}::counter::value");
    let owner = format!("address:{FIRST}");
    // The Move API at a recent block: the counter after the first increment, and none before.
    let counter = format!("/move/v1/accounts/{FIRST}/resource/{FIRST}::counter::Counter");
    let (status, body) = node.http("GET", &format!("{counter}?block={first}"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("0x0100000000000000"), "{body}");
    let (status, body) = node.http("GET", &format!("{counter}?block={block}"), None);
    assert_eq!(status, 404, "{body}");
    // A block not there yet is 404 too, in geth's words; listings are of the latest state.
    let (status, body) = node.http("GET", &format!("{counter}?block=99999999"), None);
    assert_eq!((status, body.contains("header not found")), (404, true), "{body}");
    let (status, body) = node.http("GET", &format!("{counter}?block=latest"), None);
    assert_eq!((status, body.contains("0x0200000000000000")), (200, true), "{body}");
    let listing = format!("/move/v1/accounts/{FIRST}/resources?block={first}");
    let (status, body) = node.http("GET", &listing, None);
    assert_eq!((status, body.contains("latest state")), (400, true), "{body}");
    let view = format!(
        r#"{{"function":"{value}","arguments":["0x{}"],"block":{first}}}"#,
        FIRST.trim_start_matches("0x").to_lowercase()
    );
    let (status, body) = node.http("POST", "/move/v1/view", Some(&view));
    assert_eq!((status, body.contains("0x0100000000000000")), (200, true), "{body}");
    assert_eq!(
        duet(&["move", "view", &value, "--arg", &owner, "--block", first, url]).unwrap(),
        "0x0100000000000000"
    );
}

#[test]
fn move_developers_publish_run_and_view_and_solidity_calls_the_module_through_cast() {
    let directory = temp_datadir("move");
    let node = Node::start(directory.path());
    let url = format!("--rpc-url={}", node.url());
    let example = root().join("move-executor/testkit/example.move");
    let example = example.to_str().unwrap();
    let named = format!("example={FIRST}");

    let built = duet(&["move", "build", "--named-address", &named, example]).unwrap();
    assert!(built.starts_with("counter: "), "{built}");
    let published = publish_example(&node, FIRST_KEY).unwrap();
    assert!(published.contains("status      success"), "{published}");
    let block = published.lines().find_map(|line| line.strip_prefix("block       ")).unwrap();
    assert!(block.parse::<u64>().is_ok(), "the block in decimal: {published}");
    // Publishing again under another account's key is refused by the VM: the module's address
    // is the first account's.
    let refused = publish_example(&node, SECOND_KEY).unwrap_err();
    assert!(refused.contains("MODULE_ADDRESS_DOES_NOT_MATCH_SENDER"), "{refused}");

    let function = format!("{FIRST}::counter::increment");
    let mut ran_in = Vec::new();
    for _ in 0..2 {
        let ran = duet(&["move", "run", &function, "--private-key", FIRST_KEY, &url]).unwrap();
        assert!(ran.contains("status      success"), "{ran}");
        ran_in.push(
            ran.lines().find_map(|line| line.strip_prefix("block       ")).unwrap().to_owned(),
        );
    }
    let value = format!("{FIRST}::counter::value");
    let owner = format!("address:{FIRST}");
    assert_eq!(
        duet(&["move", "view", &value, "--arg", &owner, &url]).unwrap(),
        "0x0200000000000000"
    );
    move_api_reads_recent_blocks(&node, &ran_in[0], block, &url);
    let failed = duet(&[
        "move",
        "run",
        &format!("{FIRST}::counter::fail"),
        "--arg",
        "u64:9",
        "--private-key",
        FIRST_KEY,
        &url,
    ])
    .unwrap_err();
    assert!(failed.contains(&format!("aborted in {FIRST}::counter with code 9")), "{failed}");
    let bad_argument = duet(&["move", "view", &value, "--arg", "address:nope", &url]).unwrap_err();
    assert!(bad_argument.contains("nope: not an address"), "{bad_argument}");
    // Short addresses, as Move writes them; an abort in a view is said in words.
    let signature = "hex:0x7472616e7366657228616464726573732c75696e7432353629"; // transfer(address,uint256)
    let selector = duet(&["move", "view", "0x1::abi::selector", "--arg", signature, &url]);
    assert_eq!(selector.unwrap(), "0x04a9059cbb");
    let nobody = duet(&["move", "view", &value, "--arg", "address:0xbeef5", &url]);
    assert_eq!(nobody.unwrap(), "0x0000000000000000");
    let fail = format!("{FIRST}::counter::fail");
    let aborted = duet(&["move", "view", &fail, "--arg", "u64:9", &url]).unwrap_err();
    assert!(aborted.contains(&format!("aborted in {FIRST}::counter with code 9")), "{aborted}");

    // A Solidity contract calls the module through the Move call precompile, driven by cast.
    let caller = node.forge_create("src/MoveCaller.sol:MoveCaller", SECOND_KEY);
    let sent = node
        .cast(&[
            "send",
            &caller,
            "callMove(address,string,string,bytes[])",
            FIRST,
            "counter",
            "increment",
            "[]",
            "--private-key",
            SECOND_KEY,
        ])
        .unwrap();
    assert!(sent.contains("1 (success)"), "{sent}");
    // The contract is the signer: its own counter is 1, read from Move and from Solidity.
    let contract_owner = format!("address:{caller}");
    assert_eq!(
        duet(&["move", "view", &value, "--arg", &contract_owner, &url]).unwrap(),
        "0x0100000000000000"
    );
    let from_solidity = node
        .cast(&[
            "call",
            &caller,
            "callMove(address,string,string,bytes[])(bytes[])",
            FIRST,
            "counter",
            "value",
            &format!("[{caller}]"),
        ])
        .unwrap();
    assert_eq!(from_solidity, "[0x0100000000000000]");

    move_pays_with_an_erc20_and_its_trace_holds_the_token_calls(&node, &url);
}

/// Move calls Solidity: a module pays with an ERC-20 deployed by forge, and the payment's
/// trace, asked through cast, holds the token calls its Move code made.
fn move_pays_with_an_erc20_and_its_trace_holds_the_token_calls(node: &Node, url: &str) {
    let token = node.forge_create_with("src/Token.sol:Token", FIRST_KEY, &["Duet", "DT", "1000"]);
    let token_user = root().join("evm-bridge/contracts/move/token_user.move");
    let published = duet(&[
        "move",
        "publish",
        "--named-address",
        &format!("examples={FIRST}"),
        "--private-key",
        FIRST_KEY,
        url,
        token_user.to_str().unwrap(),
    ])
    .unwrap();
    assert!(published.contains("status      success"), "{published}");
    let pay = format!("{FIRST}::token_user::pay");
    let (to_token, to_second) = (format!("address:{token}"), format!("address:{SECOND}"));
    let args = ["--arg", &to_token, "--arg", &to_second, "--arg", "u128:300"];
    let paid =
        duet(&[&["move", "run", &pay][..], &args, &["--private-key", FIRST_KEY, url]].concat())
            .unwrap();
    assert!(paid.contains("status      success"), "{paid}");
    let hash = paid.lines().find_map(|line| line.strip_prefix("transaction ")).unwrap();
    let with_logs = r#"{"tracer":"callTracer","tracerConfig":{"withLog":true}}"#;
    let traced = node.cast(&["rpc", "debug_traceTransaction", hash, with_logs]).unwrap();
    let traced: serde_json::Value = serde_json::from_str(&traced).unwrap();
    let entry = format!("{:#x}", duet_types::MOVE_ENTRY_ADDRESS);
    assert_eq!((&traced["type"], &traced["to"]), (&"CALL".into(), &entry.into()), "{traced}");
    let calls = traced["calls"].as_array().unwrap();
    let kinds: Vec<_> = calls.iter().map(|call| call["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["STATICCALL", "CALL", "STATICCALL"], "{traced}");
    assert!(calls.iter().all(|call| call["to"] == token.to_lowercase().as_str()), "{traced}");
    assert_eq!(calls[1]["from"], FIRST.to_lowercase().as_str(), "{traced}");
    assert_eq!(calls[1]["logs"].as_array().map(Vec::len), Some(1), "{traced}");
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_transaction_and_no_committed_block() {
    use duet_node::client::RpcClient;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Four dev accounts no other part of this test uses.
    let keys = &duet_node::genesis::DEV_KEYS[2..6];
    let directory = temp_datadir("kill");
    let node = Node::start(directory.path());
    let client = RpcClient::new(&node.url()).unwrap();
    // The same transaction twice in one batch: the first is accepted, the second is already
    // known, and the first's record must survive.
    let raw = node.mktx(&Transfer {
        key: keys[3],
        to: "0x00000000000000000000000000000000000000aa",
        value: "5",
        nonce: "0",
        chain: "31337",
        fees: ("2gwei", "1gwei"),
    });
    let send = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["{raw}"]}}"#
    );
    let answer = node.rpc_raw(&format!("[{send},{send}]")).unwrap();
    assert!(answer.contains("already known") && answer.contains("result"), "{answer}");
    // Four senders, up to 100 transfers from the first and 40 from each other, as fast as the
    // node acknowledges them; the node is killed while they send, once 80 were acknowledged,
    // and a sender stops at its first failure. Only what was acknowledged must survive.
    let acked = AtomicUsize::new(0);
    let (acknowledged, committed, datadir) = std::thread::scope(|scope| {
        let workers: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(worker, key)| {
                let (client, acked) = (client.clone(), &acked);
                scope.spawn(move || {
                    // The first sender queues more than the mempool's nonce gap: a restart must
                    // put them back in nonce order.
                    let count: u8 = if worker == 0 { 100 } else { 40 };
                    let mut acknowledged = Vec::new();
                    for index in 0..count {
                        let to = Address::with_last_byte(index).create(worker as u64);
                        let Ok(hash) = client.send(key, to, Vec::new(), 21_000) else { break };
                        acknowledged.push(hash);
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    acknowledged
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::Relaxed) < 80 {
            assert!(Instant::now() < deadline, "the node stopped acknowledging transfers");
            std::thread::sleep(Duration::from_millis(2));
        }
        // A block the node reported committed, as a client saw it.
        let committed = rpc(&node, "eth_getBlockByNumber", r#"["latest",false]"#)["result"].clone();
        let datadir = node.stop(); // SIGKILL, while the senders send: no clean shutdown.
        let acknowledged: Vec<B256> =
            workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect();
        (acknowledged, committed, datadir)
    });

    let node = Node::start(&datadir);
    let client = RpcClient::new(&node.url()).unwrap();
    assert_block_kept(&node, &committed);
    // Killed while they sent: not every transfer was acknowledged.
    assert!(acknowledged.len() < 220, "the node was killed after the load, not under it");
    for hash in &acknowledged {
        let receipt = client.wait_for_receipt(*hash, Duration::from_secs(30)).expect("included");
        assert_eq!(receipt["status"], "0x1", "{hash}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.balance("0x00000000000000000000000000000000000000aa") != "5" {
        assert!(Instant::now() < deadline, "the batched transaction was lost");
        std::thread::sleep(Duration::from_millis(100));
    }
}

use alloy_primitives::Address;

#[test]
fn the_move_api_serves_resources_modules_views_and_transactions() {
    let directory = temp_datadir("move-api");
    let node = Node::start(directory.path());
    let url = format!("--rpc-url={}", node.url());
    publish_example(&node, FIRST_KEY).unwrap();
    let ran = duet(&[
        "move",
        "run",
        &format!("{FIRST}::counter::increment"),
        "--private-key",
        FIRST_KEY,
        &url,
    ])
    .unwrap();
    let hash =
        ran.lines().find_map(|line| line.strip_prefix("transaction ")).unwrap().trim().to_owned();
    let first = FIRST.to_lowercase();

    let (status, resources) =
        node.http("GET", &format!("/move/v1/accounts/{FIRST}/resources"), None);
    assert_eq!(status, 200, "{resources}");
    assert!(
        resources.to_lowercase().contains(&format!("{first}::counter::counter")),
        "{resources}"
    );
    assert!(resources.contains("0x0100000000000000"), "{resources}");
    let (status, one) = node.http(
        "GET",
        &format!("/move/v1/accounts/{FIRST}/resource/{FIRST}::counter::Counter"),
        None,
    );
    assert_eq!(status, 200, "{one}");
    assert!(one.contains("0x0100000000000000"), "{one}");
    // The same with the type's address written in 32 bytes.
    let long = format!("0x000000000000000000000000{}", &FIRST[2..]);
    let (status, same) = node.http(
        "GET",
        &format!("/move/v1/accounts/{long}/resource/{long}::counter::Counter"),
        None,
    );
    assert_eq!((status, same), (200, one.clone()));
    let (status, module) =
        node.http("GET", &format!("/move/v1/accounts/{FIRST}/module/counter"), None);
    assert_eq!(status, 200);
    assert!(
        module.contains(r#""name":"increment""#) && module.contains(r#""is_entry":true"#),
        "{module}"
    );
    assert!(module.contains(r#""parameters":["&signer"]"#), "{module}");
    assert!(module.contains(r#""abilities":["key"]"#), "{module}");
    let (status, modules) = node.http("GET", &format!("/move/v1/accounts/{FIRST}/modules"), None);
    assert_eq!(status, 200);
    assert!(modules.contains(r#""name":"counter""#), "{modules}");
    // The framework at its short address.
    let (status, framework) = node.http("GET", "/move/v1/accounts/0x1/modules", None);
    assert_eq!(status, 200);
    assert!(framework.contains(r#""name":"eth""#), "{framework}");
    listings_come_in_pages(&node, &framework);

    let request = format!(r#"{{"function":"{FIRST}::counter::value","arguments":["{first}"]}}"#);
    let (status, view) = node.http("POST", "/move/v1/view", Some(&request));
    assert_eq!((status, view.as_str()), (200, r#"{"values":["0x0100000000000000"]}"#));
    // A type argument whose address has 32 bytes, leading zeros, as the resource path takes it.
    let string = format!("0x{}1::string::String", "0".repeat(63));
    let request = format!(r#"{{"function":"0x1::option::none","type_arguments":["{string}"]}}"#);
    let (status, view) = node.http("POST", "/move/v1/view", Some(&request));
    assert_eq!((status, view.as_str()), (200, r#"{"values":["0x00"]}"#));
    // A transaction signed by `duet move run --sign-only`, submitted through the API.
    let increment = format!("{FIRST}::counter::increment");
    let signed =
        duet(&["move", "run", &increment, "--sign-only", "--private-key", FIRST_KEY, &url])
            .unwrap();
    let request = format!(r#"{{"transaction":"{}"}}"#, signed.trim());
    let (status, submitted) = node.http("POST", "/move/v1/transactions", Some(&request));
    assert_eq!(status, 200, "{submitted}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.get(&format!("/move/v1/accounts/{FIRST}/resources")).contains("0x0200000000000000")
    {
        assert!(Instant::now() < deadline, "the submitted transaction did not run: {submitted}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, transaction) = node.http("GET", &format!("/move/v1/transactions/{hash}"), None);
    assert_eq!(status, 200, "{transaction}");
    assert!(transaction.contains(r#""status":"success""#), "{transaction}");

    // Bad requests are refused clearly.
    let (status, body) = node.http("GET", "/move/v1/accounts/nope/resources", None);
    assert_eq!(status, 400, "{body}");
    let (status, body) = node.http(
        "GET",
        &format!("/move/v1/accounts/{SECOND}/resource/{FIRST}::counter::Counter"),
        None,
    );
    assert_eq!(status, 404, "{body}");
    // A type nested too deeply to parse safely (this one overflowed the parser's stack).
    let deep = format!("0x1::m::S%3C{}u8%3E{}", "vector%3C".repeat(4500), "%3E".repeat(4500));
    let (status, body) =
        node.http("GET", &format!("/move/v1/accounts/{FIRST}/resource/{deep}"), None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("levels deep"), "{body}");
    let request =
        format!(r#"{{"function":"{FIRST}::counter::fail","arguments":["0x0900000000000000"]}}"#);
    let (status, body) = node.http("POST", "/move/v1/view", Some(&request));
    assert_eq!(status, 400);
    assert!(body.contains("with code 9"), "{body}");
    let (status, body) =
        node.http("POST", "/move/v1/transactions", Some(r#"{"transaction":"0xdeadbeef"}"#));
    assert_eq!(status, 400, "{body}");
    move_api_refuses_a_body_that_is_not_json_in_json(&node);
}

/// A body that is not JSON gets a JSON error, as every other refusal of the Move API does.
fn move_api_refuses_a_body_that_is_not_json_in_json(node: &Node) {
    for path in ["/move/v1/view", "/move/v1/transactions"] {
        let (status, body) = node.http("POST", path, Some("{not json"));
        assert_eq!(status, 400, "{path}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(error["error"].as_str().unwrap().starts_with("request body:"), "{body}");
    }
}

#[test]
fn settings_come_from_a_toml_file_under_flags_and_a_bad_file_is_refused() {
    let directory = temp_datadir("config");
    let config = directory.path().join("duet.toml");
    // Every key of the file is known (an unknown one is refused, below).
    std::fs::write(
        &config,
        "chain_id = 4242\nblock_gas_limit = 50000000\nmempool_limit = 900\nmempool_lifetime = 60\n\
         state_history = 1\n",
    )
    .unwrap();
    let node =
        Node::start_with(&directory.path().join("data"), &["--config", config.to_str().unwrap()]);
    assert_eq!(node.cast(&["chain-id"]).unwrap(), "4242");
    let block = node.cast(&["block", "latest", "--field", "gasLimit"]).unwrap();
    assert_eq!(block, "50000000");
    // One block of history: the state two blocks back is gone.
    for _ in 0..2 {
        node.cast(&["rpc", "evm_mine"]).unwrap();
    }
    let refused = node.cast(&["balance", FIRST, "--block", "0"]).unwrap_err();
    assert!(refused.contains("keeps the state of the last block before the head"), "{refused}");
    drop(node);

    // A setting in the file, the environment and a flag: the flag, then the environment, then
    // the file (each run on a datadir of its own: the chain id is the datadir's).
    let file = ["--config", config.to_str().unwrap()];
    let flag = ["--config", config.to_str().unwrap(), "--chain-id", "4444"];
    for (run, extra, environment, expected) in [
        (1, &file[..], &[][..], "4242"),
        (2, &file[..], &[("DUET_CHAIN_ID", "4343")][..], "4343"),
        (3, &flag[..], &[("DUET_CHAIN_ID", "4343")][..], "4444"),
        (4, &["--chain-id", "4444"][..], &[("DUET_CONFIG", config.to_str().unwrap())][..], "4444"),
    ] {
        let datadir = directory.path().join(format!("data{run}"));
        let output = (Stdio::null(), Stdio::null());
        let node = Node::start_in(&datadir, extra, output, environment);
        assert_eq!(node.cast(&["chain-id"]).unwrap(), expected, "run {run}");
        // The file still counts where nothing overrides it.
        let limit = node.cast(&["block", "latest", "--field", "gasLimit"]).unwrap();
        assert_eq!(limit, "50000000", "run {run}");
    }

    std::fs::write(&config, "chain_idd = 1\n").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(["node", "--dev", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("unknown field `chain_idd`"), "{message}");
}

/// Without `--datadir`, the database lives under `$XDG_DATA_HOME`, else under
/// `~/.local/share`; with neither, the node refuses to guess (it once used the directory it
/// was started in).
#[test]
fn the_default_datadir_follows_xdg_and_home_and_is_never_guessed() {
    let directory = temp_datadir("default");
    let (home, xdg) = (directory.path().join("home"), directory.path().join("xdg"));
    let node = |environment: &[(&str, &Path)]| {
        dev_node_command(free_port(), &["HOME", "XDG_DATA_HOME"])
            .envs(environment.iter().copied())
            .current_dir(directory.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for (environment, expected) in [
        (vec![("HOME", home.as_path())], home.join(".local/share/duet/dev")),
        (vec![("HOME", home.as_path()), ("XDG_DATA_HOME", xdg.as_path())], xdg.join("duet/dev")),
    ] {
        let mut child = node(&environment);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !expected.join("db/CURRENT").exists() {
            assert!(Instant::now() < deadline, "no database at {}", expected.display());
            assert!(child.try_wait().unwrap().is_none(), "the node stopped");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let refused = node(&[]).wait_with_output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("no --datadir given, and no HOME"), "{message}");
    assert!(!directory.path().join(".local").exists(), "nothing made where it started");
}

#[test]
fn state_proofs_verify_in_rust_and_in_solidity_against_the_block_state_root() {
    use duet_node::merkle::{verify, Proof, Terminal};
    let directory = temp_datadir("proofs");
    let node = Node::start(directory.path());
    let verifier = node.forge_create("src/StateProof.sol:StateProofVerifier", SECOND_KEY);
    let paid = "0x000000000000000000000000000000000000bEEF";
    node.cast(&["send", "--private-key", FIRST_KEY, paid, "--value", "3"]).unwrap();

    // The Solidity verifier's answer to a claim (`value`: present with that value hash, or
    // absent), checked to agree with the Rust verifier's.
    let both = |root: B256, key: B256, value: Option<B256>, proof: &Proof| -> bool {
        let siblings: Vec<String> = proof.siblings.iter().map(ToString::to_string).collect();
        let (kind, leaf_key, leaf_value) = match proof.terminal {
            Terminal::Empty => ("0", B256::ZERO, B256::ZERO),
            Terminal::Leaf { key_hash, value_hash } => ("1", key_hash, value_hash),
        };
        let solidity = node
            .cast(&[
                "call",
                &verifier,
                "verify(bytes32,bytes32,bool,bytes32,bytes32[],uint8,bytes32,bytes32)(bool)",
                &root.to_string(),
                &key.to_string(),
                if value.is_some() { "true" } else { "false" },
                &value.unwrap_or_default().to_string(),
                &format!("[{}]", siblings.join(",")),
                kind,
                &leaf_key.to_string(),
                &leaf_value.to_string(),
            ])
            .unwrap();
        let rust = verify(root, key, value, proof);
        assert_eq!(solidity, rust.to_string(), "the verifiers disagree on {value:?} {proof:?}");
        rust
    };

    // A present key: the recipient's balance of 3 wei.
    let (result, proof) = node.prove_balance(paid);
    assert_eq!(result["value"], "0x0100000000000000000000000000000003");
    let root: B256 = serde_json::from_value(result["stateRoot"].clone()).unwrap();
    // The answer names the block it proves against: its header has that root, hash and output
    // root.
    let number = result["blockNumber"].as_str().unwrap();
    let header = rpc(&node, "eth_getBlockByNumber", &format!(r#"["{number}",false]"#));
    let header = &header["result"];
    assert_eq!(header["stateRoot"], root.to_string(), "the proof is against its block's root");
    assert_eq!(header["hash"], result["blockHash"]);
    assert_eq!(header["outputRoot"], result["outputRoot"]);
    let mut preimage = [0u8; 128];
    let state_root: B256 = serde_json::from_value(header["stateRoot"].clone()).unwrap();
    let hash: B256 = serde_json::from_value(header["hash"].clone()).unwrap();
    preimage[32..64].copy_from_slice(state_root.as_slice());
    preimage[96..].copy_from_slice(hash.as_slice());
    let output_root = alloy_primitives::keccak256(preimage);
    assert_eq!(header["outputRoot"], output_root.to_string());
    assert!(!proof.siblings.is_empty());
    let key: B256 = serde_json::from_value(result["keyHash"].clone()).unwrap();
    let value: B256 = serde_json::from_value(result["valueHash"].clone()).unwrap();
    assert!(both(root, key, Some(value), &proof));
    let mut tampered = proof.clone();
    tampered.siblings[0] = B256::repeat_byte(7);
    assert!(!both(root, key, Some(value), &tampered), "a tampered sibling");
    assert!(!both(root, key, None, &proof), "present, not absent");
    let other = alloy_primitives::keccak256("another value");
    assert!(!both(root, key, Some(other), &proof), "a wrong value");
    let ended = Proof { terminal: Terminal::Empty, ..proof.clone() };
    assert!(!both(root, key, None, &ended), "its leaf claimed empty");
    let long = Proof { siblings: vec![B256::ZERO; 257], ..proof.clone() };
    assert!(!both(root, key, Some(value), &long), "more than 256 siblings");

    // EIP-1186's proof is of Ethereum's trie, which Duet's root is not: refused, pointing here.
    let refused = error(&rpc(&node, "eth_getProof", &format!(r#"["{FIRST}",[],"latest"]"#)));
    assert!(refused.contains("duet_getProof proves a state key"), "{refused}");
    // Absent keys, accounts that never held anything, until the path of one has ended at an
    // empty subtree and that of another at another key's leaf (the verifiers take different
    // steps for each).
    let mut shapes_seen = [false; 2];
    for index in 0x0fab_u64.. {
        if shapes_seen == [true; 2] {
            break;
        }
        assert!(index < 0x0fab + 64, "no absent key of each shape in 64 tries");
        let (result, proof) = node.prove_balance(&format!("{index:#042x}"));
        assert!(result["value"].is_null());
        assert_eq!(result["stateRoot"], root.to_string(), "no block came in between");
        let shape = usize::from(matches!(proof.terminal, Terminal::Leaf { .. }));
        if shapes_seen[shape] {
            continue;
        }
        shapes_seen[shape] = true;
        let absent: B256 = serde_json::from_value(result["keyHash"].clone()).unwrap();
        assert!(both(root, absent, None, &proof));
        assert!(!both(root, absent, Some(value), &proof), "absent, not present");
        // Its path ends at another key's leaf or at an empty subtree: claiming the other one
        // fails.
        let swapped = match proof.terminal {
            Terminal::Empty => Terminal::Leaf { key_hash: key, value_hash: value },
            Terminal::Leaf { .. } => Terminal::Empty,
        };
        assert!(!both(root, absent, None, &Proof { terminal: swapped, ..proof.clone() }));
        // The present key's own leaf, offered as the end of the absent key's path.
        let own =
            Proof { terminal: Terminal::Leaf { key_hash: absent, value_hash: value }, ..proof };
        assert!(!both(root, absent, None, &own), "a leaf of the key itself");
    }
}

/// Asserts that the node has the block `header` describes (as `eth_getBlockByNumber` gave it
/// before a restart) as it was: its hash, state root and transactions.
fn assert_block_kept(node: &Node, header: &serde_json::Value) {
    let number = header["number"].as_str().unwrap();
    let block = rpc(node, "eth_getBlockByNumber", &format!(r#"["{number}",false]"#));
    for field in ["hash", "stateRoot", "transactions"] {
        assert_eq!(block["result"][field], header[field], "block {number}: {field}");
    }
}

/// The error message of a JSON-RPC answer.
fn error(answer: &serde_json::Value) -> String {
    answer["error"]["message"].as_str().unwrap_or_else(|| panic!("no error: {answer}")).to_owned()
}

/// The JSON-RPC answer to `method` with `params` (a JSON array).
fn rpc(node: &Node, method: &str, params: &str) -> serde_json::Value {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    serde_json::from_str(&node.rpc_raw(&body).expect("the node answers")).unwrap()
}

#[test]
fn viem_works_against_the_dev_node_over_http_and_websocket() {
    let directory = temp_datadir("viem");
    let node = Node::start(directory.path());
    // What a Solidity developer's viem script does (node/tests/viem/flow.mjs).
    let seen = run_flow(&node, "viem/flow.mjs");
    let text = |name: &str| seen[name].as_str().unwrap_or_else(|| panic!("{name}: {seen}"));
    assert_eq!(seen["chainId"], 31337);
    assert_eq!(text("from"), FIRST);
    assert_eq!(text("balanceBefore"), "10000000000000000000000");
    assert!(text("maxFeePerGas").parse::<u128>().unwrap() >= 1_000_000_000, "{seen}");
    assert!((1..=4).contains(&seen["feeHistoryBlocks"].as_u64().unwrap()), "{seen}");
    assert_eq!(text("transferStatus"), "success");
    assert_eq!(text("recipientBalance"), "500000000000000000");
    assert_eq!(text("transferValue"), "500000000000000000");
    assert_eq!(seen["transferNonce"], 0);
    assert_eq!(seen["typedDataSameSignature"], true, "{seen}");
    assert_eq!(text("typedDataSigner"), FIRST);
    assert_eq!(text("deployStatus"), "success");
    assert!(seen["codeBytes"].as_u64().unwrap() > 1000, "{seen}");
    assert_eq!(text("name"), "Viem Token");
    assert_eq!(text("supply"), "1000000000000000000000");
    assert_eq!(text("callStatus"), "success");
    assert_eq!(seen["callLogs"], 1);
    assert_eq!(text("recipientTokens"), "25");
    assert_eq!(seen["transferEvents"], serde_json::json!(["1000000000000000000000", "25"]));
    assert_eq!(seen["logsToRecipient"], 1);
    assert_eq!(seen["blockHasCall"], true);
    assert_eq!(seen["recipientTokensBefore"], "0", "read at the block before the transfer");
    assert_eq!(seen["overriddenBalance"], "5", "the state override's balance");
    // A sponsored EIP-7702 delegation to the token's code.
    assert_eq!(text("delegationStatus"), "success");
    assert_eq!(text("delegationType"), "eip7702");
    let token = text("tokenAddress").trim_start_matches("0x").to_lowercase();
    assert_eq!(text("delegationCode"), format!("0xef0100{token}"));
    assert_eq!(text("delegatedSupply"), "0", "the token's code over the account's storage");
    assert_eq!(text("delegatedAllowance"), "9", "the approval the sponsored call stored there");
    assert_eq!(seen["delegationListed"], 1);
    assert_eq!(seen["watchedTransfers"], serde_json::json!(["7"]));
    // A log filter reports each new log once; its logs are all the matching ones.
    assert_eq!(seen["filterChanges"], serde_json::json!(["3"]));
    assert_eq!(seen["filterChangesAgain"], 0);
    assert_eq!(seen["filterLogs"], serde_json::json!(["1000000000000000000000", "25", "7", "3"]));
    assert_eq!(seen["blockFilterHasThird"], true);
    assert_eq!((&seen["uninstalled"], &seen["uninstalledAgain"]), (&true.into(), &false.into()));
    assert_eq!(seen["pendingWatched"], true, "watchPendingTransactions saw the transaction");
    // viem decoded the token's custom error from the revert data of eth_call.
    assert_eq!(text("revert"), "ERC20InsufficientBalance");
    // Over WebSocket: requests; new heads (made after subscribing, consecutive, headers without
    // transactions) and logs by subscription, viem's too; nothing after unsubscribing; errors
    // for bad messages; the subscription limit.
    assert_eq!(seen["wsChainId"], 31337);
    for flag in ["wsHead", "wsHeadsAfterSubscribing", "wsHeadsConsecutive", "wsHeaderFields"] {
        assert_eq!(seen[flag], true, "{flag}: {seen}");
    }
    assert_eq!(seen["wsLogs"], serde_json::json!([[true, "13"]]));
    let places = serde_json::json!([[true, true, true, true, true]]);
    assert_eq!(seen["wsLogPlaces"], places, "a log notification's place is its receipt's");
    assert_eq!(seen["wsLogsByTopic"], serde_json::json!([true]), "{seen}");
    assert_eq!(seen["wsLogsByOtherTopic"], 0, "{seen}");
    assert_eq!(seen["wsPending"], serde_json::json!([true]), "the one transaction accepted");
    let full = serde_json::json!([[true, true, true]]);
    assert_eq!(seen["wsFullPending"], full, "the transaction itself, with `true`");
    assert_eq!(seen["wsWatchedTransfers"], serde_json::json!(["13"]));
    assert_eq!(seen["wsUnsubscribed"], true);
    assert_eq!(text("wsUnsubscribedAgain"), "subscription not found");
    assert_eq!(seen["wsHeadsAfterUnsubscribing"], 0);
    assert_eq!(seen["wsParseError"], -32700);
    assert!(text("wsUnsupported").starts_with("unsupported subscription"), "{seen}");
    assert_eq!(text("wsBatch"), "0x7a69");
    assert_eq!(text("wsLargeMessage"), "0x7a69");
    // Requests on one connection are answered as each is ready: a quick one is not held up by
    // a slow one sent before it.
    assert_eq!(seen["wsAnswerOrder"], serde_json::json!(["quick", "slow"]));
    assert!(text("wsTooMany").starts_with("100: too many subscriptions"), "{seen}");
    assert_eq!(seen["sentBeforeClosing"], true, "a transaction sent just before closing: {seen}");
    assert_eq!(seen["nonceAfter"], 9);

    filters_refuse_bad_input_and_report_each_block_once(&node);
    state_overrides_work_and_bad_ones_are_refused(&node);
}

/// Runs `script` (a Node.js flow of `node/tests/`) against `node` from the first dev account
/// with the ERC-20 artifact; returns the JSON object it printed.
fn run_flow(node: &Node, script: &str) -> serde_json::Value {
    let output = Command::new("node")
        .arg(root().join("node/tests").join(script))
        .arg(node.url())
        .arg(FIRST_KEY)
        .arg(root().join("evm-bridge/contracts/artifacts/Token.json"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn ethers_works_against_the_dev_node() {
    let directory = temp_datadir("ethers");
    let node = Node::start(directory.path());
    // What a Solidity developer's ethers v6 script does (node/tests/ethers/flow.mjs).
    let seen = run_flow(&node, "ethers/flow.mjs");
    let expected = serde_json::json!({
        "chainId": 31337,
        "balance": "10000000000000000000000",
        "transferStatus": 1,
        "recipientBalance": "250000000000000000",
        "deployed": true,
        "name": "Ethers Token",
        "symbol": "ET",
        "blockEvent": true,
        "callStatus": 1,
        "parsedLog": "42",
        "heard": ["0x000000000000000000000000000000000000E7E5", "42"],
        "recipientTokens": "42",
        "queried": 1,
        "revert": "ERC20InsufficientBalance",
        "nonce": 3,
        "nodeSignedFrom": SECOND,
        "nodeSignedNonce": 0,
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&seen[field], value, "{field}: {seen}");
    }
    let max_fee: u128 = seen["maxFeePerGas"].as_str().unwrap().parse().unwrap();
    assert!(max_fee >= 1_000_000_000, "{seen}");
}

/// `eth_call`'s state overrides work as cast sends them, and overrides that cannot be honoured
/// are refused.
fn state_overrides_work_and_bad_ones_are_refused(node: &Node) {
    // eth_call's state overrides, as cast sends them: code put at an address that returns
    // BALANCE(0xbeef) and SLOAD(0) (PUSH20 BALANCE PUSH1 0 MSTORE PUSH1 0 SLOAD PUSH1 32 MSTORE
    // PUSH1 64 PUSH1 0 RETURN), with 0xbeef's balance and the slot overridden.
    let reader = "0x00000000000000000000000000000000000c0de5";
    let beef = "000000000000000000000000000000000000beef";
    let code = format!("0x73{beef}3160005260005460205260406000f3");
    let word = |value: u64| format!("{value:064x}");
    let called = node
        .cast(&[
            "call",
            reader,
            "--override-code",
            &format!("{reader}:{code}"),
            "--override-balance",
            &format!("0x{beef}:0x1234"),
            "--override-state-diff",
            &format!("{reader}:0x0:0x7"),
        ])
        .unwrap();
    assert_eq!(called, format!("0x{}{}", word(0x1234), word(7)));
    // Nothing of it stays, and an empty set is no override.
    assert_eq!(node.cast(&["code", reader]).unwrap(), "0x");
    let call = format!(r#"{{"to":"{FIRST}"}}"#);
    assert_eq!(rpc(node, "eth_call", &format!(r#"[{call}, "latest", {{}}]"#))["result"], "0x");
    // Block overrides: creation code returning NUMBER, TIMESTAMP, GASLIMIT, COINBASE, BASEFEE
    // and PREVRANDAO (each OPCODE PUSH1 offset MSTORE, then PUSH1 192 PUSH1 0 RETURN), in a
    // block given all six; a gas limit below the call's own, as geth, only GASLIMIT sees.
    let clock = r#"{"data":"0x436000524260205245604052416060524860805244 60a05260c06000f3"}"#
        .replace(' ', "");
    let coinbase = "0x00000000000000000000000000000000000000c0";
    let randao = format!("0x{}", "ab".repeat(32));
    let block = format!(
        r#"{{"number":"0x1234","time":"0x99","gasLimit":"0x5208","feeRecipient":"{coinbase}","baseFeePerGas":"0x7","prevRandao":"{randao}"}}"#
    );
    let blocks = format!(r#"[{clock}, "latest", null, {block}]"#);
    let expected = format!(
        "0x{}{}{}{}{}{}",
        word(0x1234),
        word(0x99),
        word(0x5208),
        word(0xc0),
        word(7),
        "ab".repeat(32)
    );
    assert_eq!(rpc(node, "eth_call", &blocks)["result"], expected);
    let blob = format!(r#"[{clock}, "latest", null, {{"blobBaseFee":"0x1"}}]"#);
    assert!(error(&rpc(node, "eth_call", &blob)).contains("blobBaseFee is not supported"));
    // So are overrides that say two things.
    let both = format!(r#"{{"{FIRST}":{{"state":{{}},"stateDiff":{{}}}}}}"#);
    let overridden = format!(r#"[{call}, "latest", {both}]"#);
    assert!(error(&rpc(node, "eth_estimateGas", &overridden)).contains("both state and stateDiff"));
    let unknown =
        format!(r#"[{call}, "latest", {{"{FIRST}":{{"movePrecompileToAddress":"0x1"}}}}]"#);
    assert!(error(&rpc(node, "eth_call", &unknown)).contains("unknown field"));
    // Code no chain could hold (EIP-3541's 0xef prefix, not a delegation), and Duet's own
    // addresses, are refused; a null field is no field.
    let eof = format!(r#"[{call}, "latest", {{"{reader}":{{"code":"0xef0100"}}}}]"#);
    assert!(error(&rpc(node, "eth_call", &eof)).contains("invalid code"));
    let precompile = "0x000000000000000000000000000000000000d0e1";
    let own = format!(r#"[{call}, "latest", {{"{precompile}":{{"balance":"0x1"}}}}]"#);
    assert!(error(&rpc(node, "eth_call", &own)).contains("Duet's own"));
    let nulls = format!(r#"[{call}, "latest", {{"{FIRST}":{{"state":null,"stateDiff":{{}}}}}}]"#);
    assert_eq!(rpc(node, "eth_call", &nulls)["result"], "0x");
}

/// Bad filter requests get clear errors; a filter not installed is not found; a block filter
/// reports each new block once, in order.
fn filters_refuse_bad_input_and_report_each_block_once(node: &Node) {
    // eth_feeHistory takes at most 100 reward percentiles, from 0 to 100, ascending.
    let percentiles =
        |list: String| rpc(node, "eth_feeHistory", &format!(r#"[4, "latest", {list}]"#));
    assert_eq!(
        percentiles("[10, 50, 90]".to_owned())["result"]["reward"][0].as_array().unwrap().len(),
        3
    );
    let many = format!("[{}]", vec!["50"; 101].join(","));
    assert!(error(&percentiles(many)).contains("at most 100 reward percentiles"));
    assert!(error(&percentiles("[50, 10]".to_owned())).contains("ascending"));
    assert!(error(&percentiles("[50, 50]".to_owned())).contains("ascending"));
    assert!(error(&percentiles("[101]".to_owned())).contains("from 0 to 100"));
    assert!(error(&percentiles(r#""50""#.to_owned())).contains("expected a list"));
    // Bad filter requests get clear errors; a filter not installed is not found.
    assert!(error(&rpc(node, "eth_newFilter", "[]")).contains("filter object"));
    assert!(error(&rpc(node, "eth_newFilter", r#"[{"fromBlock":"soon"}]"#)).contains("soon"));
    assert!(error(&rpc(node, "eth_newFilter", r#"[{"address":"0x12"}]"#)).contains("address"));
    let hash = format!("0x{}", "11".repeat(32));
    assert!(error(&rpc(node, "eth_newFilter", &format!(r#"[{{"blockHash":"{hash}"}}]"#)))
        .contains("blockHash"));
    let unknown = r#"["0x1234"]"#;
    assert_eq!(error(&rpc(node, "eth_getFilterChanges", unknown)), "filter not found");
    assert_eq!(error(&rpc(node, "eth_getFilterLogs", unknown)), "filter not found");
    assert_eq!(rpc(node, "eth_uninstallFilter", unknown)["result"], false);
    assert!(error(&rpc(node, "eth_getFilterChanges", r#"["zz"]"#)).contains("filter id"));
    let blocks = rpc(node, "eth_newBlockFilter", "[]")["result"].clone();
    assert_eq!(
        error(&rpc(node, "eth_getFilterLogs", &format!("[{blocks}]"))),
        "filter not found",
        "a block filter has no logs"
    );
    // Filters too large to keep, or naming no block, are refused.
    let many: Vec<String> = (0..1001).map(|index| format!("0x{index:040x}")).collect();
    let many = serde_json::json!([{ "address": many }]).to_string();
    assert!(error(&rpc(node, "eth_newFilter", &many)).contains("at most 1000 addresses"));
    assert!(error(&rpc(node, "eth_getLogs", &many)).contains("at most 1000 addresses"));
    let topics = r#"[{"topics":[null,null,null,null,null]}]"#;
    assert!(error(&rpc(node, "eth_newFilter", topics)).contains("at most 4 topics"));
    let backwards = r#"[{"fromBlock":"0x5","toBlock":"0x4"}]"#;
    assert_eq!(
        error(&rpc(node, "eth_newFilter", backwards)),
        "invalid from and to block combination"
    );

    // Blocks come every 0.2 s: the block filter reports each new one once, in order.
    let blocks = format!("[{blocks}]");
    let numbers_of = |hashes: &[serde_json::Value]| -> Vec<u64> {
        hashes
            .iter()
            .map(|hash| {
                let block = rpc(node, "eth_getBlockByHash", &format!("[{hash}, false]"));
                quantity(&block["result"]["number"])
            })
            .collect()
    };
    let next_blocks = || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = rpc(node, "eth_getFilterChanges", &blocks)["result"].clone();
            let found = found.as_array().unwrap().clone();
            if !found.is_empty() {
                return numbers_of(&found);
            }
            assert!(Instant::now() < deadline, "no new block within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = next_blocks();
    let second = next_blocks();
    let all: Vec<u64> = first.iter().chain(&second).copied().collect();
    assert!(all.windows(2).all(|pair| pair[1] == pair[0] + 1), "{first:?} then {second:?}");
}

#[test]
fn the_dev_accounts_are_unlocked_for_eth_send_transaction_and_blocks_show_what_they_hold() {
    let directory = temp_datadir("unlocked");
    let node = Node::start(directory.path());
    let accounts = node.cast(&["rpc", "eth_accounts"]).unwrap();
    let accounts: Vec<String> = serde_json::from_str(&accounts).unwrap();
    assert_eq!(accounts.len(), 10);
    assert!(accounts[0].eq_ignore_ascii_case(FIRST), "{accounts:?}");
    // cast fills in nothing with --unlocked: the node finds the nonce, gas and fees, and signs.
    let third = &accounts[2];
    let recipient = "0x000000000000000000000000000000000000fade";
    let receipt = node
        .cast(&["send", "--unlocked", "--from", third, recipient, "--value", "3", "--json"])
        .unwrap();
    let receipt: serde_json::Value = serde_json::from_str(&receipt).unwrap();
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    assert_eq!(node.balance(recipient), "3");
    assert_eq!(node.nonce(third), "1");

    block_methods_find(&node, &receipt);

    // Messages signed for an unlocked account (EIP-191) recover to it.
    let hello = "0x68656c6c6f";
    for (method, params) in [
        ("personal_sign", format!(r#"["{hello}", "{FIRST}"]"#)),
        ("eth_sign", format!(r#"["{FIRST}", "{hello}"]"#)),
    ] {
        let signature = rpc(&node, method, &params)["result"].as_str().unwrap().to_owned();
        let signature: alloy_primitives::Signature = signature.parse().unwrap();
        let signer = signature.recover_address_from_msg(b"hello").unwrap();
        assert_eq!(signer.to_string(), FIRST, "{method}");
    }
    let stranger_sign = r#"["0x68656c6c6f", "0x000000000000000000000000000000000000dEaD"]"#;
    let refused = error(&rpc(&node, "personal_sign", stranger_sign));
    assert!(refused.contains("no key for"), "{refused}");

    // A contract deployment and a call, from another unlocked account.
    let probe = Command::new(tool("forge"))
        .current_dir(root().join("evm-bridge/contracts"))
        .args(["create", "src/Probe.sol:Probe", "--broadcast", "--unlocked", "--from"])
        .arg(&accounts[3])
        .args(["--rpc-url", &node.url()])
        .output()
        .expect("forge runs");
    let created = String::from_utf8_lossy(&probe.stdout);
    assert!(
        created.contains("Deployed to: "),
        "{created}{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    // Any other sender is refused, and nothing changes.
    let stranger = "0x000000000000000000000000000000000000dEaD";
    let from_stranger =
        format!(r#"[{{"from":"{stranger}","to":"{recipient}","value":"0x1","gas":"0x5208"}}]"#);
    assert!(error(&rpc(&node, "eth_sendTransaction", &from_stranger)).contains("no key for"));
    let to = format!(r#"[{{"to":"{recipient}","value":"0x1"}}]"#);
    assert!(error(&rpc(&node, "eth_sendTransaction", &to)).contains("missing from"));
    assert!(error(&rpc(&node, "eth_sendTransaction", "[]")).contains("transaction object"));
    let bad = format!(r#"[{{"from":"{third}","to":"{recipient}","value":"lots"}}]"#);
    assert!(error(&rpc(&node, "eth_sendTransaction", &bad)).contains("value"));
    let tip_over_fee = format!(
        r#"[{{"from":"{third}","to":"{recipient}","maxFeePerGas":"0x1","maxPriorityFeePerGas":"0x2"}}]"#
    );
    assert!(
        error(&rpc(&node, "eth_sendTransaction", &tip_over_fee)).contains("higher than max fee")
    );
    let huge_tip = format!(
        r#"[{{"from":"{third}","to":"{recipient}","gas":"0x5208","maxPriorityFeePerGas":"0x{}"}}]"#,
        "f".repeat(40)
    );
    let answer = rpc(&node, "eth_sendTransaction", &huge_tip);
    assert!(error(&answer).contains("insufficient funds"), "{answer}");
    assert_eq!(node.balance(recipient), "3");
    assert_eq!(node.nonce(third), "1");

    // Two sends from one account at once take two nonces.
    let send = format!(r#"[{{"from":"{third}","to":"{recipient}","value":"0x1","gas":"0x5208"}}]"#);
    let hashes: Vec<serde_json::Value> = std::thread::scope(|scope| {
        let sends: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| rpc(&node, "eth_sendTransaction", &send)["result"].clone()))
            .collect();
        sends.into_iter().map(|send| send.join().unwrap()).collect()
    });
    assert!(hashes.iter().all(serde_json::Value::is_string), "{hashes:?}");
    assert_ne!(hashes[0], hashes[1]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.nonce(third) != "3" {
        assert!(Instant::now() < deadline, "the two sends were not both committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node.balance(recipient), "5");

    // A pending-transaction filter reports each transaction accepted after it, once.
    let pending = rpc(&node, "eth_newPendingTransactionFilter", "[]")["result"].clone();
    let accepted = rpc(&node, "eth_sendTransaction", &send)["result"].clone();
    let changes = |filter: &serde_json::Value| {
        rpc(&node, "eth_getFilterChanges", &format!("[{filter}]"))["result"].clone()
    };
    assert_eq!(changes(&pending), serde_json::json!([accepted]));
    assert_eq!(changes(&pending), serde_json::json!([]));
    let logs = error(&rpc(&node, "eth_getFilterLogs", &format!("[{pending}]")));
    assert_eq!(logs, "filter not found", "it has no logs");

    txpool_shows_a_transaction_above_a_gap_as_queued(&node, third, recipient);
    other_origins_may_call(&node);
    a_log_query_finding_too_many_logs_is_refused(&node);
    a_batch_answering_too_much_is_cut_short(&node);
}

/// A query that would answer more than 20 000 logs is refused; a narrower one is answered.
fn a_log_query_finding_too_many_logs_is_refused(node: &Node) {
    // Creation code of a contract that emits 20 001 empty LOG0s when called:
    // runtime `PUSH2 20001; loop: JUMPDEST DUP1 ISZERO PUSH1 end JUMPI PUSH1 0 PUSH1 0 LOG0
    // PUSH1 1 SWAP1 SUB PUSH1 loop JUMP; end: JUMPDEST STOP`, after a prefix that returns it.
    let code = "0x601780600b6000396000f3614e215b801560155760006000a0600190036003565b00";
    let created = mined(node, &format!(r#"{{"from":"{SECOND}","data":"{code}"}}"#));
    let emitter = created["contractAddress"].as_str().unwrap().to_owned();
    let call = format!(r#"{{"from":"{SECOND}","to":"{emitter}","gas":"0x989680"}}"#);
    let receipt = mined(node, &call);
    let block = receipt["blockNumber"].as_str().unwrap();
    let everything = format!(r#"[{{"fromBlock":"{block}","toBlock":"{block}"}}]"#);
    let refused = error(&rpc(node, "eth_getLogs", &everything));
    assert!(refused.contains("more than 20000 logs"), "{refused}");
    // Another address's logs in the same block: none, answered.
    let narrower =
        format!(r#"[{{"fromBlock":"{block}","toBlock":"{block}","address":"{FIRST}"}}]"#);
    assert_eq!(rpc(node, "eth_getLogs", &narrower)["result"], serde_json::json!([]));
}

/// A batch's answers hold at most 25 MB: past that, its requests are refused one by one.
fn a_batch_answering_too_much_is_cut_short(node: &Node) {
    // A contract that returns 1 MiB of zeros (`PUSH3 0x100000 PUSH1 0 RETURN`): each call's
    // answer is 2 MiB of hex.
    let code = "0x600780600b6000396000f3621000006000f3";
    let created = mined(node, &format!(r#"{{"from":"{SECOND}","data":"{code}"}}"#));
    let big = created["contractAddress"].as_str().unwrap().to_owned();
    let call = |id: usize| {
        let params = format!(r#"[{{"to":"{big}"}},"latest"]"#);
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_call","params":{params}}}"#)
    };
    // A transaction sent at the end of the batch is taken in whatever the answers' size.
    let key = duet_node::genesis::DEV_KEYS[7];
    let fees = ("2gwei", "1gwei");
    let to = FIRST;
    let raw = node.mktx(&Transfer { key, to, value: "1", nonce: "0", chain: "31337", fees });
    let send = format!(
        r#"{{"jsonrpc":"2.0","id":20,"method":"eth_sendRawTransaction","params":["{raw}"]}}"#
    );
    let requests: Vec<String> = (0..20).map(call).chain([send]).collect();
    let batch = format!("[{}]", requests.join(","));
    let answers: Vec<serde_json::Value> =
        serde_json::from_str(&node.rpc_raw(&batch).expect("the node answers")).unwrap();
    assert_eq!(answers.len(), 21);
    assert!(answers[20]["result"].is_string(), "the transaction is taken in: {}", answers[20]);
    let answered = answers.iter().take_while(|answer| answer["result"].is_string()).count();
    // 25 MB hold eleven answers of 2 MiB; the twelfth passes the limit, the rest are refused.
    assert_eq!(answered, 12, "{}", answers[answered]);
    for answer in &answers[answered..20] {
        assert_eq!(answer["error"]["code"], -32003, "{answer}");
    }
    assert_eq!(answers[19]["id"], 19);
}

/// Sends `transaction` from an unlocked account and returns its receipt, once mined.
fn mined(node: &Node, transaction: &str) -> serde_json::Value {
    let client = duet_node::client::RpcClient::new(&node.url()).unwrap();
    let transaction: serde_json::Value = serde_json::from_str(transaction).unwrap();
    let hash = client.request("eth_sendTransaction", &serde_json::json!([transaction])).unwrap();
    let hash = serde_json::from_value(hash).unwrap();
    let receipt = client.wait_for_receipt(hash, Duration::from_secs(10)).unwrap();
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    receipt
}

/// A web page of another origin may call the node (CORS), as with anvil.
fn other_origins_may_call(node: &Node) {
    let preflight = raw_http(
        node,
        "OPTIONS / HTTP/1.1\r\nhost: localhost\r\norigin: http://localhost:3000\r\n\
         access-control-request-method: POST\r\nconnection: close\r\n\r\n",
    );
    assert!(preflight.starts_with("HTTP/1.1 204"), "{preflight}");
    assert!(preflight.contains("access-control-allow-origin: *"), "{preflight}");
    assert!(preflight.contains("access-control-allow-methods: GET, POST, OPTIONS"), "{preflight}");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#;
    let call = raw_http(
        node,
        &format!(
            "POST / HTTP/1.1\r\nhost: localhost\r\norigin: http://localhost:3000\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(call.contains("access-control-allow-origin: *") && call.contains("0x7a69"), "{call}");
}

/// Sends `request` as it is and returns the whole response, headers included.
fn raw_http(node: &Node, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The block-reading methods find the transaction of `receipt` (alone in its block) by its
/// block's number and hash; unknown blocks give `null`; the small methods answer.
fn block_methods_find(node: &Node, receipt: &serde_json::Value) {
    let (number, hash) = (&receipt["blockNumber"], &receipt["blockHash"]);
    let (index, transaction) = (&receipt["transactionIndex"], &receipt["transactionHash"]);
    let result = |method: &str, params: String| rpc(node, method, &params)["result"].clone();
    assert_eq!(result("eth_getBlockTransactionCountByHash", format!("[{hash}]")), "0x1");
    assert_eq!(result("eth_getBlockTransactionCountByNumber", format!("[{number}]")), "0x1");
    for (method, block) in [
        ("eth_getTransactionByBlockNumberAndIndex", number),
        ("eth_getTransactionByBlockHashAndIndex", hash),
    ] {
        assert_eq!(&result(method, format!("[{block}, {index}]"))["hash"], transaction);
        assert_eq!(result(method, format!(r#"[{block}, "0x7"]"#)), serde_json::Value::Null);
    }
    for block in [number, hash] {
        let receipts = result("eth_getBlockReceipts", format!("[{block}]"));
        assert_eq!(receipts.as_array().unwrap().len(), 1, "{receipts}");
        assert_eq!(&receipts[0]["transactionHash"], transaction);
    }
    let by_object = result("eth_getBlockReceipts", format!(r#"[{{"blockHash":{hash}}}]"#));
    assert_eq!(&by_object[0]["transactionHash"], transaction);
    assert!(error(&rpc(node, "eth_getBlockReceipts", "[]")).contains("missing block"));
    let unknown = format!(r#"["0x{}"]"#, "ab".repeat(32));
    assert_eq!(result("eth_getBlockReceipts", unknown.clone()), serde_json::Value::Null);
    assert_eq!(result("eth_getBlockTransactionCountByHash", unknown), serde_json::Value::Null);
    assert_eq!(result("eth_getUncleCountByBlockNumber", format!("[{number}]")), "0x0");
    assert_eq!(
        result("eth_getUncleByBlockNumberAndIndex", format!(r#"[{number}, "0x0"]"#)),
        serde_json::Value::Null
    );
    assert_eq!(
        result("web3_sha3", r#"["0x68656c6c6f20776f726c64"]"#.to_owned()),
        "0x47173285a8d7341e5e972fc677286384f802f8ef42a5ec5f03bbfa254cb01fad"
    );
    assert_eq!(
        result("eth_coinbase", "[]".to_owned()),
        "0x4200000000000000000000000000000000000011"
    );
}

/// The Move API's listings page by page: `limit` entries after the one `after` names; bad
/// paging parameters are refused. `all` is the framework's modules listed at once.
fn listings_come_in_pages(node: &Node, all: &str) {
    let names = |list: &str| -> Vec<String> {
        let list: serde_json::Value = serde_json::from_str(list).unwrap();
        list.as_array().unwrap().iter().map(|module| module["name"].to_string()).collect()
    };
    // The next page's cursor, from a page's head: absent on the last page.
    let cursor = |head: &str| {
        head.lines().find_map(|line| line.strip_prefix("x-duet-cursor: ").map(str::to_owned))
    };
    let mut paged: Vec<String> = Vec::new();
    loop {
        let after = paged.last().map(|name| format!("&after={}", name.trim_matches('"')));
        let path = format!("/move/v1/accounts/0x1/modules?limit=3{}", after.unwrap_or_default());
        let (status, page) = node.http("GET", &path, None);
        assert_eq!(status, 200, "{page}");
        let page = names(&page);
        let full = page.len() == 3;
        paged.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(paged, names(all));
    // Following the cursor reads them all too, and the last page has none: also when the last
    // page is full (a limit that divides the count).
    let count = paged.len();
    for limit in [3, count / 2, count] {
        let mut followed: Vec<String> = Vec::new();
        let mut next = Some(String::new());
        while let Some(after) = next {
            let after = if after.is_empty() { after } else { format!("&after_key={after}") };
            let path = format!("/move/v1/accounts/0x1/modules?limit={limit}{after}");
            let (status, head, page) = node.try_http_with_head("GET", &path, None).unwrap();
            assert_eq!(status, 200, "{page}");
            followed.extend(names(&page));
            next = cursor(&head);
            assert_eq!(next.is_some(), followed.len() < count, "limit {limit}: {head}");
        }
        assert_eq!(followed, names(all), "limit {limit}");
    }
    // Each entry's key pages too, whatever its name or type.
    let list: serde_json::Value = serde_json::from_str(all).unwrap();
    let second_key = list[1]["key"].as_str().unwrap();
    let path = format!("/move/v1/accounts/0x1/modules?limit=1&after_key={second_key}");
    let (status, page) = node.http("GET", &path, None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), names(all)[2..3]);
    // Resource types, percent-encoded as clients send them (a space as `+`).
    for after in ["0x1%3A%3Aoption%3A%3AOption%3Cvector%3Cu8%3E%3E", "0x1::a::B%3Cu8,+u64%3E"] {
        let path = format!("/move/v1/accounts/0x1/resources?after={after}");
        let (status, body) = node.http("GET", &path, None);
        assert_eq!(status, 200, "{after}: {body}");
    }
    for (query, error) in [
        ("limit=0", "limit: a number from 1 to 10000"),
        ("limit=10001", "limit: a number from 1 to 10000"),
        ("limit=+5", "limit: a number from 1 to 10000"),
        ("block=1", "listings are of the latest state"),
        ("limit=2&limit=3", "limit: given twice"),
        ("after=eth&after_key=0x00", "after_key: given twice, or with another after"),
        ("after_key=0x0500", "after_key: not a key of this listing"),
        ("after=%FF", "after: not UTF-8"),
        ("page=2", "unknown parameter page=2"),
    ] {
        let (status, body) =
            node.http("GET", &format!("/move/v1/accounts/0x1/modules?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(error), "{query}: {body}");
    }
}

/// geth's txpool methods: a transaction of `from` (unlocked) above a nonce gap is queued.
fn txpool_shows_a_transaction_above_a_gap_as_queued(node: &Node, from: &str, recipient: &str) {
    let next = rpc(node, "eth_getTransactionCount", &format!(r#"["{from}", "pending"]"#));
    let gapped = quantity(&next["result"]) + 1;
    let above_gap = format!(
        r#"[{{"from":"{from}","to":"{recipient}","value":"0x1","gas":"0x5208","nonce":"{gapped:#x}"}}]"#
    );
    let queued = rpc(node, "eth_sendTransaction", &above_gap)["result"].clone();
    // Senders are named checksummed, as geth names them.
    let from = from.parse::<alloy_primitives::Address>().unwrap().to_string();
    let from = from.as_str();
    let status = rpc(node, "txpool_status", "[]")["result"].clone();
    assert_eq!(status["queued"], "0x1", "{status}");
    let content = rpc(node, "txpool_content", "[]")["result"].clone();
    assert_eq!(content["queued"][from][gapped.to_string()]["hash"], queued, "{content}");
    let inspect = rpc(node, "txpool_inspect", "[]")["result"].clone();
    let line = inspect["queued"][from][gapped.to_string()].as_str().unwrap_or_default().to_owned();
    assert!(line.ends_with("1 wei + 21000 gas × 3000000000 wei"), "{inspect}");
    // Each lists the whole pool: one per batch.
    let two = r#"[{"jsonrpc":"2.0","id":1,"method":"txpool_content"},
        {"jsonrpc":"2.0","id":2,"method":"txpool_inspect"}]"#;
    let answers: serde_json::Value = serde_json::from_str(&node.rpc_raw(two).unwrap()).unwrap();
    assert!(error(&answers[1]).contains("at most one"), "{answers}");
}

/// Opens a WebSocket connection by hand (the HTTP upgrade); returns the socket and the status
/// line of the answer.
fn websocket_upgrade(node: &Node) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
              sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (stream, status)
}

#[test]
fn websocket_connections_are_capped_and_a_closed_one_frees_its_place() {
    let directory = temp_datadir("websockets");
    let node = Node::start(directory.path());
    let mut open: Vec<TcpStream> = (0..256)
        .map(|index| {
            let (stream, status) = websocket_upgrade(&node);
            assert!(status.contains("101"), "connection {index}: {status}");
            stream
        })
        .collect();
    let (_, refused) = websocket_upgrade(&node);
    assert!(refused.contains("503"), "{refused}");
    // HTTP is still served.
    assert_eq!(node.cast(&["chain-id"]).unwrap(), "31337");
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (stream, status) = websocket_upgrade(&node);
        if status.contains("101") {
            open.push(stream);
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
