//! A small JSON-RPC client over plain HTTP/1.1 on loopback, and transaction signing: what
//! `duet move` needs to talk to a node.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde_json::{json, Value};

/// A node's JSON-RPC endpoint.
#[derive(Clone, Debug)]
pub struct RpcClient {
    host: String,
    port: u16,
}

impl RpcClient {
    /// The endpoint at `url` (`http://host:port`).
    ///
    /// # Errors
    /// The URL is not `http://host:port`.
    pub fn new(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?
            .trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "80"));
        let port = port.parse().map_err(|_| format!("{url}: bad port"))?;
        Ok(Self { host: host.to_owned(), port })
    }

    /// Calls `method` with `params` on a connection of its own; returns the result.
    ///
    /// # Errors
    /// The node is unreachable, or answered with an error (its message).
    pub fn request(&self, method: &str, params: &Value) -> Result<Value, String> {
        self.connect()?.request(method, params)
    }

    /// A persistent (keep-alive) connection to the node, for many requests in a row.
    ///
    /// # Errors
    /// The node is unreachable.
    pub fn connect(&self) -> Result<Connection, String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .map_err(|error| format!("cannot reach {}:{}: {error}", self.host, self.port))?;
        stream.set_nodelay(true).map_err(|error| error.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|error| error.to_string())?;
        Ok(Connection { reader: std::io::BufReader::new(stream), host: self.host.clone() })
    }

    /// The number (`0x…`) that `method` answers.
    ///
    /// # Errors
    /// The node failed, or the answer is not a number.
    pub fn quantity(&self, method: &str, params: &Value) -> Result<u128, String> {
        number(method, &self.request(method, params)?)
    }

    /// The numbers `method` answers for each of `params`, asked on one connection, in batches.
    ///
    /// # Errors
    /// As [`quantity`](Self::quantity), for any of them.
    pub fn quantities(&self, method: &str, params: &[Value]) -> Result<Vec<u128>, String> {
        let mut connection = self.connect()?;
        let mut numbers = Vec::with_capacity(params.len());
        for batch in params.chunks(500) {
            for answer in connection.batch(method, batch)? {
                numbers.push(number(method, &answer?)?);
            }
        }
        Ok(numbers)
    }

    /// Sends a signed transaction; returns its hash.
    ///
    /// # Errors
    /// The node refused it (its message).
    pub fn send_raw(&self, raw: &Bytes) -> Result<B256, String> {
        let hash = self.request("eth_sendRawTransaction", &json!([raw]))?;
        serde_json::from_value(hash).map_err(|error| error.to_string())
    }

    /// Signs a transaction from `key` to `to` with `data` (the node's suggested fees, the
    /// sender's next nonce) and sends it; returns its hash.
    ///
    /// # Errors
    /// The key is invalid, or the node refused the transaction (its message).
    pub fn send(
        &self,
        key: &str,
        to: Address,
        data: Vec<u8>,
        gas_limit: u64,
    ) -> Result<B256, String> {
        self.send_raw(&self.sign(key, to, data, gas_limit)?)
    }

    /// The transaction [`send`](Self::send) would send, signed (EIP-2718 bytes), not sent.
    ///
    /// # Errors
    /// The key is invalid, or the node did not answer.
    pub fn sign(
        &self,
        key: &str,
        to: Address,
        data: Vec<u8>,
        gas_limit: u64,
    ) -> Result<Bytes, String> {
        let key: B256 =
            key.parse().map_err(|_| "the private key is not 32 bytes of hex".to_owned())?;
        let signer = PrivateKeySigner::from_bytes(&key).map_err(|error| error.to_string())?;
        let unsigned = TxEip1559 {
            chain_id: self.quantity("eth_chainId", &json!([]))? as u64,
            nonce: self
                .quantity("eth_getTransactionCount", &json!([signer.address(), "pending"]))?
                as u64,
            gas_limit,
            max_fee_per_gas: self.quantity("eth_gasPrice", &json!([]))?,
            max_priority_fee_per_gas: self.quantity("eth_maxPriorityFeePerGas", &json!([]))?,
            to: TxKind::Call(to),
            value: U256::ZERO,
            input: Bytes::from(data),
            ..TxEip1559::default()
        };
        sign(&signer, unsigned)
    }

    /// Waits up to `timeout` for the receipt of `hash`; stops early if a Duet node says the
    /// transaction was dropped (each second it asks `duet_transactionStatus`, which other
    /// nodes do not serve).
    ///
    /// # Errors
    /// The node failed, dropped the transaction (the error says why), or no receipt came in
    /// time.
    pub fn wait_for_receipt(&self, hash: B256, timeout: Duration) -> Result<Value, String> {
        let deadline = std::time::Instant::now() + timeout;
        for attempt in 1_u64.. {
            let receipt = self.request("eth_getTransactionReceipt", &json!([hash]))?;
            if !receipt.is_null() {
                return Ok(receipt);
            }
            if attempt % 10 == 0 {
                if let Ok(status) = self.request("duet_transactionStatus", &json!([hash])) {
                    if status["status"] == "dropped" {
                        let reason = status["reason"].as_str().unwrap_or("no reason given");
                        return Err(format!("{hash} was dropped: {reason}"));
                    }
                }
            }
            if std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no receipt for {hash} within {timeout:?}"))
    }
}

/// `transaction` signed by `signer`, in its EIP-2718 encoding.
///
/// # Errors
/// The signer failed.
pub fn sign<T>(signer: &PrivateKeySigner, transaction: T) -> Result<Bytes, String>
where
    T: SignableTransaction<alloy_primitives::Signature>,
    TxEnvelope: From<alloy_consensus::Signed<T>>,
{
    let signature =
        signer.sign_hash_sync(&transaction.signature_hash()).map_err(|error| error.to_string())?;
    Ok(Bytes::from(TxEnvelope::from(transaction.into_signed(signature)).encoded_2718()))
}

/// A keep-alive HTTP/1.1 connection to a node.
#[derive(Debug)]
pub struct Connection {
    reader: std::io::BufReader<TcpStream>,
    host: String,
}

impl Connection {
    /// Calls `method` with `params` on this connection; returns the result.
    ///
    /// # Errors
    /// The connection failed, or the node answered with an error (its message).
    pub fn request(&mut self, method: &str, params: &Value) -> Result<Value, String> {
        self.call(method, params)?
    }

    /// One request: the node's answer, or the connection's failure.
    fn call(&mut self, method: &str, params: &Value) -> Result<Result<Value, String>, String> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        Ok(outcome(&self.post(&body)?))
    }

    /// Calls `method` once per entry of `params`, in one JSON-RPC batch (or, for one entry, one
    /// plain request, as a client that sends one transaction at a time does); returns each
    /// result.
    ///
    /// # Errors
    /// The connection failed, or the answer to a batch is not a batch answering each request.
    pub fn batch(
        &mut self,
        method: &str,
        params: &[Value],
    ) -> Result<Vec<Result<Value, String>>, String> {
        if let [only] = params {
            return Ok(vec![self.call(method, only)?]);
        }
        let requests: Vec<Value> = params
            .iter()
            .enumerate()
            .map(|(id, params)| {
                json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
            })
            .collect();
        let Value::Array(answers) = self.post(&Value::Array(requests))? else {
            return Err("the answer to a batch is not a batch".to_owned());
        };
        let mut results = vec![Err("no answer".to_owned()); params.len()];
        for answer in answers {
            let slot = answer
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| results.get_mut(usize::try_from(id).ok()?));
            if let Some(slot) = slot {
                *slot = outcome(&answer);
            }
        }
        Ok(results)
    }

    fn post(&mut self, body: &Value) -> Result<Value, String> {
        use std::io::BufRead;
        let body = body.to_string();
        let request = format!(
            "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.reader.get_mut().write_all(request.as_bytes()).map_err(|error| error.to_string())?;
        let mut length = None;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).map_err(|error| error.to_string())? == 0 {
                return Err("the node closed the connection".to_owned());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let mut body = vec![0; length.ok_or("a response without content-length")?];
        self.reader.read_exact(&mut body).map_err(|error| error.to_string())?;
        serde_json::from_slice(&body).map_err(|error| error.to_string())
    }
}

/// A JSON-RPC answer's result, or its error's message (with its data, if any).
fn outcome(answer: &Value) -> Result<Value, String> {
    if let Some(error) = answer.get("error") {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error");
        // A Move failure behind the Move call precompile is said in words.
        let move_reason = error
            .get("data")
            .and_then(Value::as_str)
            .and_then(|data| data.parse::<Bytes>().ok())
            .and_then(|data| duet_evm::move_revert_reason(&data));
        return Err(match (move_reason, error.get("data")) {
            (Some(reason), _) => format!("{message}: {reason}"),
            (None, Some(data)) => format!("{message} ({data})"),
            (None, None) => message.to_owned(),
        });
    }
    Ok(answer.get("result").cloned().unwrap_or(Value::Null))
}

/// The number (`0x` hex) that `method` answered.
fn number(method: &str, answer: &Value) -> Result<u128, String> {
    let text = answer.as_str().ok_or_else(|| format!("{method}: not a number"))?;
    u128::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|error| error.to_string())
}
