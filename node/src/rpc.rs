//! Ethereum JSON-RPC over HTTP and WebSocket: what cast, forge, viem and ethers call.
//!
//! One `POST /` endpoint takes a request or a batch. Numbers are `0x` hex, as in Ethereum.
//! State queries and calls name a block as Ethereum clients do (a number, a hash, "latest",
//! "pending", "safe", "finalized", "earliest"); the node keeps the state of its last blocks
//! (`--state-history`, 128 by default), and a block before them fails with a clear error.
//! Move transactions carry two more receipt fields, `moveStatus` and `moveEvents`.
//!
//! The dev accounts are unlocked, as on anvil: `eth_accounts` lists them, and
//! `eth_sendTransaction` fills in what a transaction from one of them leaves out (nonce, gas,
//! fees), signs it with its key and submits it like a raw one (`cast send --unlocked`;
//! `eth_signTransaction` returns it instead); they also sign messages (EIP-191) and typed data
//! (EIP-712, `eth_signTypedData_v4`).
//!
//! Calls (`eth_call`, `eth_estimateGas`) count a call object's EIP-2930 access list, and
//! `eth_createAccessList` finds one (`Chain::create_access_list`). `debug_traceTransaction`,
//! `debug_traceBlockByNumber`, `debug_traceBlockByHash` and `debug_traceCall` give geth's
//! `callTracer` traces (`debug`).
//!
//! The same port speaks WebSocket too (`ws`): every method, and `eth_subscribe` to new heads,
//! logs and pending transactions. Any origin may call the node from a browser (CORS).
//!
//! A block, its transactions and its receipts are shown only once the block is the head
//! (the store holds them a moment before), so no answer is ahead of `eth_blockNumber`.
//!
//! Clients that watch for events or blocks by polling (viem's `watch*`, ethers' `on`) install
//! filters ([`crate::filters`]): `eth_newFilter`, `eth_newBlockFilter` and
//! `eth_newPendingTransactionFilter`, then `eth_getFilterChanges`, `eth_getFilterLogs` and
//! `eth_uninstallFilter`.

use std::sync::Arc;

use alloy_consensus::{Transaction, TxEnvelope, Typed2718};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, B256, U256};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use revm::context::TxEnv;
use revm::primitives::TxKind;
use serde_json::{json, Value};

mod debug;
mod ws;

#[cfg(test)]
mod adversarial;

use crate::block::{Block, TransactionRecord};
use crate::chain::{
    AccountOverride, BlockOverrides, CallError, CallOverrides, Chain, StateBlock, TransactionStatus,
};
use crate::filters::{Filters, FILTER_LIFETIME};
use crate::mempool::PendingTransaction;
use crate::store::{ReadState, StoreError};
use crate::turns::Turn;
use alloy_consensus::TxEip1559;
use alloy_signer_local::PrivateKeySigner;
use duet_types::{StateKey, MOVE_CALL_ADDRESS, MOVE_ENTRY_ADDRESS, MOVE_OVERLAY_ADDRESS};

/// The client version `web3_clientVersion` reports.
pub const CLIENT_VERSION: &str = concat!("duet/v", env!("CARGO_PKG_VERSION"));

/// The most requests in one batch.
const MAX_BATCH: usize = 1_000;

/// The largest request body accepted, in bytes.
pub(crate) const MAX_BODY: usize = 5 * 1024 * 1024;

/// The tip per gas the node suggests, in wei.
const SUGGESTED_TIP: u64 = 1_000_000_000;

/// What the JSON-RPC handlers share: the chain, the filters clients installed, and the keys of
/// the unlocked accounts.
struct Rpc {
    chain: Arc<Chain>,
    filters: Filters<Filter>,
    unlocked: Vec<PrivateKeySigner>,
    /// Held by `eth_sendTransaction` from reading the pending nonce to submitting, so that two
    /// at once from one account do not take the same nonce (and by `eth_signTransaction` while
    /// it signs, which submits nothing: two signed at once may take the same nonce, as on
    /// anvil).
    sending: parking_lot::Mutex<()>,
    /// Held by the one `evm_mine` or `anvil_mine` being carried out: another is refused rather
    /// than hold a turn of answering while it waits.
    mining: parking_lot::Mutex<()>,
    /// A permit per open WebSocket connection.
    connections: Arc<tokio::sync::Semaphore>,
    /// A permit per request or batch being answered, over HTTP and WebSocket: each answer is
    /// bounded (a block's receipts, 20 000 logs or 25 MB of them, the pool, 25 MB per batch), and this bounds how
    /// many are built at once; more wait their turn.
    answering: Arc<tokio::sync::Semaphore>,
    /// A permit per WebSocket connection building and sending its subscriptions'
    /// notifications ([`ws::MAX_NOTIFYING`]).
    notifying: Arc<tokio::sync::Semaphore>,
    /// A permit per byte of the request bodies being read, parsed, waiting or answered, and of
    /// the WebSocket messages being answered.
    received: Arc<tokio::sync::Semaphore>,
    /// How often a WebSocket connection is pinged; one that sends nothing, not even a pong, for
    /// twice this long is closed.
    ping_every: std::time::Duration,
    /// A permit per address and topic option named by the log filters and subscriptions
    /// installed ([`MAX_INSTALLED_CRITERIA`]).
    criteria: Arc<tokio::sync::Semaphore>,
}

/// The most addresses and topic options the installed log filters and `logs` subscriptions name
/// in all: each is kept (with its hash, about 64 bytes) for as long as its filter is polled or
/// its connection is open, and one filter may name 5 000 of them, so that 4 096 filters and
/// 25 600 subscriptions could otherwise hold gigabytes.
const MAX_INSTALLED_CRITERIA: usize = 1 << 20;

/// The most requests or batches answered at once.
const MAX_ANSWERING: usize = 64;

/// The most bytes of request bodies taken in at once (parsed, waiting for a turn or being
/// answered): past it a request is refused at once (-32005) instead of piling up, since a
/// parsed body can take many times its size (about 16 times for `[0,0,0,…]`).
const MAX_RECEIVED_BYTES: usize = 64 << 20;

/// Bodies above this many bytes are parsed off the async threads.
const PARSED_INLINE_BYTES: usize = 64 << 10;

impl Rpc {
    /// The RPC of `chain`, signing for `unlocked`, taking in as many bytes of requests at once
    /// as `received` has permits, pinging WebSocket clients every `ping_every`.
    fn new(
        chain: Arc<Chain>,
        unlocked: Vec<PrivateKeySigner>,
        received: Arc<tokio::sync::Semaphore>,
        ping_every: std::time::Duration,
    ) -> Self {
        Self {
            chain,
            filters: Filters::new(FILTER_LIFETIME),
            unlocked,
            sending: parking_lot::Mutex::new(()),
            mining: parking_lot::Mutex::new(()),
            connections: Arc::new(tokio::sync::Semaphore::new(ws::MAX_CONNECTIONS)),
            answering: Arc::new(tokio::sync::Semaphore::new(MAX_ANSWERING)),
            notifying: Arc::new(tokio::sync::Semaphore::new(ws::MAX_NOTIFYING)),
            received,
            ping_every,
            criteria: Arc::new(tokio::sync::Semaphore::new(MAX_INSTALLED_CRITERIA)),
        }
    }

    /// `filter` with its share of [`MAX_INSTALLED_CRITERIA`], given back when it is dropped
    /// (uninstalled, expired, unsubscribed, its connection closed); "limit exceeded" when there is
    /// no room, once the filters that expired are removed.
    fn installing(&self, mut filter: LogFilter) -> Result<LogFilter, RpcError> {
        let criteria = &filter.criteria;
        let named = criteria.addresses.len()
            + criteria.topics.iter().flatten().map(Vec::len).sum::<usize>();
        // INVARIANT: a filter names at most 5 000.
        let named = u32::try_from(named).unwrap_or(u32::MAX);
        let take = || Arc::clone(&self.criteria).try_acquire_many_owned(named).ok();
        let share = take()
            .or_else(|| {
                self.filters.remove_expired(std::time::Instant::now());
                take()
            })
            .ok_or_else(|| {
                RpcError::limit_exceeded(&format!(
                    "the log filters and subscriptions installed name at most \
                     {MAX_INSTALLED_CRITERIA} addresses and topics in all"
                ))
            })?;
        filter.share = Some(share);
        Ok(filter)
    }

    /// Counts a WebSocket message of `bytes` against the bytes of requests the node holds at
    /// once, until the permit is dropped; past them, "limit exceeded". (Bodies are counted as
    /// they are read, by [`crate::server::read_body`].)
    fn take_in(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit, RpcError> {
        crate::server::take_bytes(&self.received, bytes.max(1)).ok_or_else(|| {
            let what = format!(
                "the node holds {MAX_RECEIVED_BYTES} bytes of requests and answers at most"
            );
            RpcError::limit_exceeded(&what)
        })
    }

    /// `answer`'s text, and its share of the bytes budget for `counted` of its bytes (given its
    /// length), held until it is sent. Without room for them, every answer but those to requests
    /// that sent transactions (`sends`, by request of the batch) is replaced by "limit exceeded",
    /// and the rest is held by nothing: a transaction's answer is given whatever the room (sent
    /// again, it would go twice or be refused as known), a query can be asked again.
    fn held_answer(
        &self,
        answer: Value,
        sends: &[bool],
        counted: impl FnOnce(usize) -> usize,
    ) -> (String, Option<tokio::sync::OwnedSemaphorePermit>) {
        let text = answer.to_string();
        let bytes = counted(text.len());
        if bytes == 0 {
            return (text, None);
        }
        let refusal = match self.take_in(bytes) {
            Ok(held) => return (text, Some(held)),
            Err(refusal) => refusal,
        };
        let refuse = |entry: Value, sends: bool| {
            if sends {
                return entry;
            }
            let error =
                RpcError { code: refusal.code, message: refusal.message.clone(), data: None };
            reply(&id_of(&entry), Err(error))
        };
        let answer = match answer {
            Value::Array(entries) => Value::Array(
                entries
                    .into_iter()
                    .enumerate()
                    .map(|(index, entry)| refuse(entry, sends.get(index) == Some(&true)))
                    .collect(),
            ),
            single => refuse(single, sends == [true]),
        };
        (answer.to_string(), None)
    }

    /// `request` answered off the async threads, once fewer than [`MAX_ANSWERING`] others are;
    /// transactions sent (`eth_sendRawTransaction` alone, or batches of nothing else) do not
    /// wait behind slow queries: their answers are small and their work bounded.
    ///
    /// The work holds `hold` (a request's share of the bytes budget) to its end: waiting for a
    /// turn stops with the request, the work, once started, does not.
    async fn respond_in_turn<H: Send + 'static>(
        self: &Arc<Self>,
        request: Value,
        hold: H,
    ) -> Value {
        let only_sending = {
            let mut methods = methods(&request).peekable();
            methods.peek().is_some()
                && methods.all(|method| method == Some("eth_sendRawTransaction"))
        };
        // An answer the node failed to give still names its request (answers over WebSocket
        // come in any order).
        let id = id_of(&request);
        let notification = is_notification(&request);
        let rpc = Arc::clone(self);
        // A call's turn first, waited for holding no answering turn and no thread.
        let call_turn =
            if needs_call_turn(&request) { Some(self.chain.call_turn().await) } else { None };
        let turns = (!only_sending).then_some(&self.answering);
        in_turn(turns, move || {
            let _hold = hold;
            respond(&rpc, request, call_turn.as_ref())
        })
        .await
        // A notification is not answered, even so.
        .unwrap_or_else(|| {
            if notification {
                Value::Null
            } else {
                error_response(&id, -32603, "internal error", None)
            }
        })
    }
}

/// Runs `work` off the async threads, once it has a permit of `turns` if given: the permit goes
/// with the work, so a client that hangs up does not free it while the work goes on. `None`:
/// the work panicked (or the semaphore was closed, which the node never does).
pub(crate) async fn in_turn<R: Send + 'static>(
    turns: Option<&Arc<tokio::sync::Semaphore>>,
    work: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let permit = match turns {
        Some(turns) => Some(Arc::clone(turns).acquire_owned().await.ok()?),
        None => None,
    };
    tokio::task::spawn_blocking(move || {
        let answer = work();
        drop(permit);
        answer
    })
    .await
    .ok()
}

/// What a filter (`eth_newFilter`…) or a WebSocket subscription follows.
#[derive(Clone)]
enum Filter {
    /// Logs (a filter's block range is resolved again at each poll).
    Logs(Arc<LogFilter>),
    /// New blocks: their hashes for a filter, their headers for a subscription.
    Blocks,
    /// The hashes of transactions accepted since.
    Pending,
}

impl Filter {
    /// The positions there are for it now, with the head at `head`: block numbers up to the
    /// head, or the numbers of the accepted transactions the feed holds. It follows what comes
    /// after the last.
    fn positions(&self, chain: &Chain, head: u64) -> std::ops::RangeInclusive<u64> {
        match self {
            Self::Pending => chain.accepted().held(),
            Self::Logs(_) | Self::Blocks => 0..=head,
        }
    }
}

/// The JSON-RPC router, with the Move API and the metrics; `eth_sendTransaction` signs for the
/// `unlocked` accounts (a dev node's); a request's body must arrive within `idle_timeout`
/// ([`crate::server::read_body`]), and a WebSocket connection is pinged that often.
pub fn router(
    chain: Arc<Chain>,
    unlocked: Vec<PrivateKeySigner>,
    idle_timeout: std::time::Duration,
) -> Router {
    let received = Arc::new(tokio::sync::Semaphore::new(MAX_RECEIVED_BYTES));
    router_within(chain, unlocked, idle_timeout, received)
}

/// [`router`], holding as many bytes of requests at once as `received` has permits.
fn router_within(
    chain: Arc<Chain>,
    unlocked: Vec<PrivateKeySigner>,
    idle_timeout: std::time::Duration,
    received: Arc<tokio::sync::Semaphore>,
) -> Router {
    let rpc = Rpc::new(Arc::clone(&chain), unlocked, received, idle_timeout);
    let answering = Arc::clone(&rpc.answering);
    let limits = crate::server::BodyLimits {
        timeout: idle_timeout,
        received: Arc::clone(&rpc.received),
        refusal: over_budget,
    };
    Router::new()
        .route("/", post(handle).get(ws::upgrade))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(rpc))
        .merge(crate::move_api::router(chain, answering))
        // `read_body` holds bodies to MAX_BODY, and counts them, before the extractors see them.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(limits, crate::server::read_body))
        .layer(axum::middleware::from_fn(cors))
}

/// The answer to a request refused because the node holds [`MAX_RECEIVED_BYTES`] of requests
/// (or the budget it was given) already: a JSON-RPC error (-32005) to a JSON-RPC request (a
/// `POST /`), as the node answers a WebSocket message then; `503` with a JSON error and
/// `retry-after` to others (the Move API's).
fn over_budget(parts: &axum::http::request::Parts) -> axum::response::Response {
    use axum::response::IntoResponse;
    let what = "the node holds as many bytes of requests as it takes in at once";
    if parts.method == axum::http::Method::POST && parts.uri.path() == "/" {
        Json(reply(&Value::Null, Err(RpcError::limit_exceeded(what)))).into_response()
    } else {
        let message = format!("limit exceeded: {what}; send again later");
        let body = Json(serde_json::json!({ "error": message }));
        let retry = [(axum::http::header::RETRY_AFTER, "1")];
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, retry, body).into_response()
    }
}

/// Lets web pages of any origin call the node, as anvil does, so that a dapp served from
/// another port (`http://localhost:3000`) can use it from the browser: a preflight `OPTIONS` is
/// answered at once, and every answer allows any origin.
async fn cors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue, Method, StatusCode};
    use axum::response::IntoResponse;
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    // A page's cursor, for the Move API's listings read from a browser.
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(crate::move_api::CURSOR_HEADER),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

async fn metrics(State(rpc): State<Arc<Rpc>>) -> String {
    rpc.chain.metrics()
}

/// A JSON-RPC request or batch over HTTP. Its parsing and its work hold the body's share of the
/// budget ([`crate::server::Received`], counted by `read_body`) to their end, even if the client
/// hangs up meanwhile; a request still waiting for its turn then stops waiting.
///
/// The answer's bytes past [`crate::server::UNCOUNTED_BYTES`] are counted in the same budget
/// until the last of them is sent (or the connection ends), as a WebSocket answer's are: a client
/// that reads an answer slowly, a little at a time so as never to stall, holds the budget, not
/// unbounded memory. Past the room, the requests get "limit exceeded" instead, but those that
/// sent transactions ([`Rpc::held_answer`]).
async fn handle(
    State(rpc): State<Arc<Rpc>>,
    received: Option<axum::Extension<crate::server::Received>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let received = received.map(|axum::Extension(received)| received);
    let request = match parse_request(body, received.clone()).await {
        Ok(request) => request,
        Err(answer) => return Json(answer).into_response(),
    };
    let sends = sending(&request);
    let answer = rpc.respond_in_turn(request, received).await;
    if is_silent(&answer) {
        // Notifications only: an empty answer, as geth and anvil give.
        return axum::http::StatusCode::OK.into_response();
    }
    let (text, held) = rpc.held_answer(answer, &sends, |length| {
        length.saturating_sub(crate::server::UNCOUNTED_BYTES)
    });
    let body = axum::body::Bytes::from_owner(HeldAnswer { text: text.into_bytes(), _held: held });
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An answer's bytes with their share of the bytes budget, freed together once sent.
struct HeldAnswer {
    text: Vec<u8>,
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for HeldAnswer {
    fn as_ref(&self) -> &[u8] {
        &self.text
    }
}

/// Whether `request` (or each request of a batch, in order, but the notifications, whose
/// answers the answer leaves out) sends a transaction.
pub(crate) fn sending(request: &Value) -> Vec<bool> {
    let requests = match request {
        Value::Array(requests) => requests.as_slice(),
        request => std::slice::from_ref(request),
    };
    requests
        .iter()
        .filter(|request| !is_notification(request))
        .map(|request| {
            let method = request.get("method").and_then(Value::as_str);
            matches!(method, Some("eth_sendRawTransaction" | "eth_sendTransaction"))
        })
        .collect()
}

/// A request (or batch) from its text, parsed off the async threads when above
/// [`PARSED_INLINE_BYTES`]; or the parse error's answer.
/// A parse off the async threads holds `hold` (the request's share of the bytes budget) to its
/// end.
pub(crate) async fn parse_request<T: AsRef<[u8]> + Send + 'static, H: Send + 'static>(
    text: T,
    hold: H,
) -> Result<Value, Value> {
    let parsed = if text.as_ref().len() > PARSED_INLINE_BYTES {
        tokio::task::spawn_blocking(move || {
            let _hold = hold;
            serde_json::from_slice::<Value>(text.as_ref())
        })
        .await
        .unwrap_or_else(|_| Err(serde::de::Error::custom("the parser panicked")))
    } else {
        serde_json::from_slice(text.as_ref())
    };
    parsed.map_err(|error| {
        error_response(&Value::Null, -32700, &format!("parse error: {error}"), None)
    })
}

/// The id of a request (null when it has none, or for a batch).
pub(crate) fn id_of(request: &Value) -> Value {
    request.get("id").cloned().unwrap_or(Value::Null)
}

/// The method of each request of `request` (one, or each of a batch).
pub(crate) fn methods(request: &Value) -> impl Iterator<Item = Option<&str>> {
    let requests = match request {
        Value::Array(requests) => requests.as_slice(),
        request => std::slice::from_ref(request),
    };
    requests.iter().map(|request| request.get("method").and_then(Value::as_str))
}

/// Whether `request` (or a request of a batch) runs calls: `eth_call`, `eth_estimateGas`,
/// `eth_createAccessList`, the `debug_trace` methods, and `eth_sendTransaction` or
/// `eth_signTransaction` without a gas limit (it estimates one).
fn needs_call_turn(request: &Value) -> bool {
    let requests = match request {
        Value::Array(requests) => requests.as_slice(),
        request => std::slice::from_ref(request),
    };
    requests.iter().any(|request| match request.get("method").and_then(Value::as_str) {
        Some(
            "eth_call"
            | "eth_estimateGas"
            | "eth_createAccessList"
            | "debug_traceCall"
            | "debug_traceTransaction"
            | "debug_traceBlockByNumber"
            | "debug_traceBlockByHash",
        ) => true,
        Some("eth_sendTransaction" | "eth_signTransaction") => request
            .get("params")
            .and_then(|params| params.get(0)?.get("gas"))
            .is_none_or(Value::is_null),
        _ => false,
    })
}

/// `work` in `held`, the call turn taken for the request before it was answered
/// ([`needs_call_turn`]). Without one, an internal error: taking a turn now would hold an
/// answering turn while waiting for it, which is what taking it first avoids.
fn in_call_turn<R>(
    held: Option<&Turn>,
    work: impl FnOnce(&Turn) -> Result<R, RpcError>,
) -> Result<R, RpcError> {
    let Some(turn) = held else {
        tracing::error!("a request reached a call without a call turn");
        return Err(RpcError::server("internal error: a call without a call turn"));
    };
    work(turn)
}

/// The answer to a request or a batch (blocking: run it off the async threads), running its
/// calls in `call_turn` if it holds one (see [`needs_call_turn`]).
fn respond(rpc: &Rpc, request: Value, call_turn: Option<&Turn>) -> Value {
    // Notifications (requests without an `id`) are carried out and not answered, as geth and
    // anvil treat them: a batch's answers leave theirs out, and nothing answers one alone or a
    // batch of them (`Value::Null`, or an empty list).
    let notifications: Vec<bool> = match &request {
        Value::Array(requests) => requests.iter().map(is_notification).collect(),
        request => vec![is_notification(request)],
    };
    let answer = respond_to_all(rpc, request, call_turn);
    match answer {
        Value::Array(answers) if answers.len() == notifications.len() => Value::Array(
            answers
                .into_iter()
                .zip(&notifications)
                .filter_map(|(answer, notification)| (!notification).then_some(answer))
                .collect(),
        ),
        _ if notifications == [true] => Value::Null,
        answer => answer,
    }
}

/// Whether `request` is a notification: a request object (with a method) without an `id`.
fn is_notification(request: &Value) -> bool {
    request.get("method").is_some_and(Value::is_string) && request.get("id").is_none()
}

/// Whether `answer` answers nothing (notifications only).
pub(crate) fn is_silent(answer: &Value) -> bool {
    answer.is_null() || answer.as_array().is_some_and(Vec::is_empty)
}

/// [`respond`], answering every request (notifications too).
fn respond_to_all(rpc: &Rpc, request: Value, call_turn: Option<&Turn>) -> Value {
    match request {
        Value::Array(requests) if requests.is_empty() => {
            error_response(&Value::Null, -32600, "empty batch", None)
        }
        Value::Array(requests) if requests.len() > MAX_BATCH => error_response(
            &Value::Null,
            -32600,
            &format!("a batch holds at most {MAX_BATCH} requests"),
            None,
        ),
        Value::Array(requests) => Value::Array(answer_batch(rpc, &requests, call_turn)),
        request => answer(rpc, &request, call_turn),
    }
}

/// A JSON-RPC error: code, message and optional data.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn invalid_params(message: impl Into<String>) -> Self {
        Self { code: -32602, message: message.into(), data: None }
    }

    fn server(message: impl std::fmt::Display) -> Self {
        Self { code: -32000, message: message.to_string(), data: None }
    }

    /// A failure of the node's own (JSON-RPC's internal error).
    fn internal(message: impl std::fmt::Display) -> Self {
        Self { code: -32603, message: message.to_string(), data: None }
    }

    /// A request refused for a limit of the node's (EIP-1474's code), to be sent again later.
    fn limit_exceeded(what: &str) -> Self {
        let message = format!("limit exceeded: {what}; send again later");
        Self { code: -32005, message, data: None }
    }

    /// An answer past `limit` bytes (geth's code and words).
    fn too_large(what: &str, limit: usize) -> Self {
        let message = format!("response too large: {what}: at most {limit} bytes");
        Self { code: -32003, message, data: None }
    }
}

/// The answer to the request with `id`.
fn reply(id: &Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => error_response(id, error.code, &error.message, error.data),
    }
}

fn error_response(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// A batch's answers, in order; its `eth_sendRawTransaction`s are accepted together (one
/// synced write for all of them).
fn answer_batch(rpc: &Rpc, requests: &[Value], call_turn: Option<&Turn>) -> Vec<Value> {
    answer_batch_within(rpc, requests, call_turn, MAX_BATCH_TIME)
}

/// [`answer_batch`], refusing the requests it reaches after `time` (see [`MAX_BATCH_TIME`]).
fn answer_batch_within(
    rpc: &Rpc,
    requests: &[Value],
    call_turn: Option<&Turn>,
    time: std::time::Duration,
) -> Vec<Value> {
    let started = std::time::Instant::now();
    // Each lists the whole mempool (up to tens of megabytes): one per batch.
    let heavy = |request: &Value| {
        matches!(
            request.get("method").and_then(Value::as_str),
            Some("txpool_content" | "txpool_inspect")
        )
    };
    if requests.iter().filter(|request| heavy(request)).count() > 1 {
        return requests
            .iter()
            .map(|request| {
                let id = id_of(request);
                let message = "at most one txpool_content or txpool_inspect per batch";
                error_response(&id, -32600, message, None)
            })
            .collect();
    }
    let raw_of = |request: &Value| -> Option<Bytes> {
        if request.get("method").and_then(Value::as_str) != Some("eth_sendRawTransaction") {
            return None;
        }
        serde_json::from_value(request.get("params")?.get(0)?.clone()).ok()
    };
    let raws: Vec<(usize, Bytes)> = requests
        .iter()
        .enumerate()
        .filter_map(|(index, request)| raw_of(request).map(|raw| (index, raw)))
        .collect();
    let slices: Vec<&[u8]> = raws.iter().map(|(_, raw)| raw.as_ref()).collect();
    let mut submitted: std::collections::HashMap<usize, Value> = raws
        .iter()
        .zip(rpc.chain.submit_many(&slices))
        .map(|((index, _), result)| {
            let id = id_of(&requests[*index]);
            (*index, reply(&id, result.map(|hash| json!(hash)).map_err(RpcError::server)))
        })
        .collect();
    // Answered in order until the answers pass MAX_BATCH_RESPONSE bytes; the rest are refused.
    let mut bytes = 0;
    requests
        .iter()
        .enumerate()
        .map(|(index, request)| {
            // Transactions sent were taken in (or refused) already: always answered.
            if let Some(answer) = submitted.remove(&index) {
                return answer;
            }
            if bytes > MAX_BATCH_RESPONSE {
                let too_large = RpcError::too_large("a batch's answers", MAX_BATCH_RESPONSE);
                return reply(&id_of(request), Err(too_large));
            }
            if started.elapsed() >= time {
                let what = format!("a batch is answered for at most {} s", time.as_secs());
                return reply(&id_of(request), Err(RpcError::limit_exceeded(&what)));
            }
            let answer = answer(rpc, request, call_turn);
            bytes += json_size(&answer);
            answer
        })
        .collect()
}

/// The most bytes of answers one batch gets (geth's default): a thousand requests for busy
/// blocks' receipts or logs would otherwise build gigabytes.
const MAX_BATCH_RESPONSE: usize = 25_000_000;

/// How long one batch is answered: the requests it reaches later are refused (code -32005,
/// "limit exceeded"), so that a batch of a thousand `eth_estimateGas` (each up to a few dozen
/// executions) cannot hold one of the [`MAX_ANSWERING`] turns for many minutes. Transactions
/// sent in it are always answered.
const MAX_BATCH_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// The size of `value` written as JSON, counted without writing it out.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // INVARIANT: writing a JSON value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn answer(rpc: &Rpc, request: &Value, call_turn: Option<&Turn>) -> Value {
    let id = id_of(request);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return error_response(&id, -32600, "invalid request", None);
    };
    let params = request.get("params").cloned().unwrap_or(Value::Array(Vec::new()));
    let params = match params {
        Value::Array(params) => params,
        Value::Null => Vec::new(),
        _ => return error_response(&id, -32602, "params must be an array", None),
    };
    reply(&id, dispatch(rpc, method, &params, call_turn))
}

fn dispatch(
    rpc: &Rpc,
    method: &str,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    let chain = &rpc.chain;
    let head = chain.head();
    match method {
        "web3_clientVersion" => Ok(json!(CLIENT_VERSION)),
        "net_version" => Ok(json!(chain.config().chain_id.to_string())),
        "net_listening" => Ok(json!(true)),
        "net_peerCount" | "eth_hashrate" => Ok(json!("0x0")),
        "eth_chainId" => Ok(json!(hex(chain.config().chain_id))),
        "eth_syncing" | "eth_mining" => Ok(json!(false)),
        "eth_coinbase" => Ok(json!(head.beneficiary)),
        "web3_sha3" => {
            let data: Bytes = parse(params, 0, "data")?;
            Ok(json!(alloy_primitives::keccak256(&data)))
        }
        "eth_accounts" => {
            Ok(json!(rpc.unlocked.iter().map(PrivateKeySigner::address).collect::<Vec<_>>()))
        }
        "eth_sendTransaction" => send_transaction(rpc, params.first(), call_turn),
        "eth_signTransaction" => sign_transaction(rpc, params.first(), call_turn),
        // A dev node's, as anvil has them: blocks now, from the pool.
        "evm_mine" => mine(rpc, params, false),
        "anvil_mine" => mine(rpc, params, true),
        // EIP-191 messages, as wallets sign them: `personal_sign(data, account)` and
        // `eth_sign(account, data)`.
        "personal_sign" => sign_message(rpc, params, 0, 1),
        "eth_sign" => sign_message(rpc, params, 1, 0),
        // EIP-712 typed data, as wallets sign it: `eth_signTypedData_v4(account, typedData)`.
        "eth_signTypedData_v4" => sign_typed_data(rpc, params),
        "eth_blockNumber" => Ok(json!(hex(head.number))),
        "eth_gasPrice" => Ok(json!(hex(chain.config().base_fee + SUGGESTED_TIP))),
        "eth_maxPriorityFeePerGas" => Ok(json!(hex(SUGGESTED_TIP))),
        "eth_blobBaseFee" => Ok(json!("0x1")),
        "eth_feeHistory" => fee_history(chain, &head, params),
        "txpool_status" | "txpool_content" | "txpool_inspect" => txpool(chain, method),
        "eth_newFilter"
        | "eth_newBlockFilter"
        | "eth_newPendingTransactionFilter"
        | "eth_getFilterChanges"
        | "eth_getFilterLogs"
        | "eth_uninstallFilter" => filter_method(rpc, &head, method, params),
        _ => state_method(chain, &head, method, params, call_turn),
    }
}

/// The methods that read the state, blocks or transactions, or send a transaction.
fn state_method(
    chain: &Chain,
    head: &Block,
    method: &str,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    match method {
        "eth_getBalance" => {
            let address = address_param(params, 0)?;
            let balance = read_at(chain, params.get(1), |state| state.balance(address))?;
            Ok(json!(U256::from(balance)))
        }
        "eth_getTransactionCount" => {
            let address = address_param(params, 0)?;
            let pending = state_block(params.get(1), StateBlock::Latest)? == StateBlock::Pending;
            let nonce = if pending {
                chain.pending_nonce(address).map_err(RpcError::server)?
            } else {
                read_at(chain, params.get(1), |state| state.account(address))?.0
            };
            Ok(json!(hex(nonce)))
        }
        "eth_getCode" => {
            let address = address_param(params, 0)?;
            Ok(json!(read_at(chain, params.get(1), |state| state.code(address))?))
        }
        "eth_getStorageAt" => {
            let address = address_param(params, 0)?;
            let slot = B256::from(parse::<U256>(params, 1, "slot")?);
            let value = read_at(chain, params.get(2), |state| state.storage(address, slot))?;
            Ok(json!(B256::from(value)))
        }
        "eth_sendRawTransaction" => {
            let raw: Bytes = parse(params, 0, "raw transaction")?;
            let hash = chain.submit(&raw).map_err(RpcError::server)?;
            Ok(json!(hash))
        }
        "eth_call" => {
            let tx = call_request(chain, params.first())?;
            let block = state_block(params.get(1), StateBlock::Latest)?;
            let overrides = call_overrides(params.get(2), params.get(3))?;
            in_call_turn(call_turn, |turn| {
                chain.call_at_block(turn, tx, block, &overrides).map_err(call_error)
            })
            .map(|(output, _)| json!(output))
        }
        "eth_estimateGas" => {
            let tx = call_request(chain, params.first())?;
            // As geth: the pending block's unless one is named.
            let block = state_block(params.get(1), StateBlock::Pending)?;
            let overrides = call_overrides(params.get(2), params.get(3))?;
            in_call_turn(call_turn, |turn| {
                chain.estimate_gas(turn, tx, block, &overrides).map_err(call_error)
            })
            .map(|gas| json!(hex(gas)))
        }
        "eth_createAccessList" => create_access_list(chain, params, call_turn),
        "debug_traceTransaction" => debug::trace_transaction(chain, params, call_turn),
        "debug_traceBlockByNumber" | "debug_traceBlockByHash" => {
            debug::trace_block(chain, head, method, params, call_turn)
        }
        "debug_traceCall" => debug::trace_call(chain, params, call_turn),
        "eth_getBlockByNumber" => {
            let full = params.get(1).and_then(Value::as_bool).unwrap_or(false);
            match block_number(head, params.first())? {
                Some(number) => block_json(chain, number, full),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockByHash" => {
            let hash: B256 = parse(params, 0, "block hash")?;
            let full = params.get(1).and_then(Value::as_bool).unwrap_or(false);
            match chain.committed_block_number(hash).map_err(RpcError::server)? {
                Some(number) => block_json(chain, number, full),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockTransactionCountByNumber"
        | "eth_getBlockTransactionCountByHash"
        | "eth_getTransactionByBlockNumberAndIndex"
        | "eth_getTransactionByBlockHashAndIndex"
        | "eth_getBlockReceipts"
        | "eth_getUncleCountByBlockNumber"
        | "eth_getUncleCountByBlockHash"
        | "eth_getUncleByBlockNumberAndIndex"
        | "eth_getUncleByBlockHashAndIndex" => block_method(chain, head, method, params),
        "eth_getTransactionByHash" => {
            let hash: B256 = parse(params, 0, "transaction hash")?;
            if let Some(record) = chain.committed_transaction(hash).map_err(RpcError::server)? {
                return Ok(transaction_json(&record.raw, Some(&record), record.from));
            }
            Ok(chain.pending(&hash).map_or(Value::Null, |pending: PendingTransaction| {
                transaction_json(&pending.raw, None, pending.sender)
            }))
        }
        "eth_getTransactionReceipt" => {
            let hash: B256 = parse(params, 0, "transaction hash")?;
            Ok(chain
                .committed_transaction(hash)
                .map_err(RpcError::server)?
                .map_or(Value::Null, |record| receipt_json(&record)))
        }
        "eth_getLogs" => logs(chain, head, params.first()),
        // What became of a transaction: included, pending, dropped (and why) or unknown.
        "duet_transactionStatus" => transaction_status(chain, params),
        "duet_getProof" => proof(chain, params),
        method => Err(unavailable(method)),
    }
}

/// `duet_transactionStatus(hash)`: what became of a transaction, `{"status"}` with
/// `"included"` (and `blockNumber`, `blockHash`, `success`), `"pending"`, `"dropped"` (and
/// `reason`, and the `head` it was dropped at) or `"unknown"`.
fn transaction_status(chain: &Chain, params: &[Value]) -> Result<Value, RpcError> {
    let hash: B256 = parse(params, 0, "transaction hash")?;
    Ok(match chain.transaction_status(hash).map_err(RpcError::server)? {
        TransactionStatus::Included(record) => json!({
            "status": "included",
            "blockNumber": hex(record.block_number),
            "blockHash": record.block_hash,
            "success": record.success,
        }),
        TransactionStatus::Pending => json!({ "status": "pending" }),
        TransactionStatus::Dropped(dropped) => json!({
            "status": "dropped",
            "reason": dropped.reason,
            "head": hex(dropped.head),
        }),
        TransactionStatus::Unknown => json!({ "status": "unknown" }),
    })
}

/// The refusal of a method the node does not serve: an EIP-1186 proof (`eth_getProof`) walks
/// Ethereum's Patricia trie, which Duet's state root is not of, so that one says what to use.
fn unavailable(method: &str) -> RpcError {
    let message = if method == "eth_getProof" {
        "eth_getProof is not available: Duet's state root is a keccak256 sparse Merkle tree, not \
         Ethereum's Patricia trie; duet_getProof proves a state key against it"
            .to_owned()
    } else if matches!(method, "eth_subscribe" | "eth_unsubscribe") {
        format!(
            "the method {method} does not exist/is not available here: subscriptions are served \
             over WebSocket, each in a request of its own (not inside a batch)"
        )
    } else {
        format!("the method {method} does not exist/is not available")
    };
    RpcError { code: -32601, message, data: None }
}

/// `duet_getProof`: a state key's value with its Merkle proof against the head's state root. The
/// key: `{"kind": "account" | "balance", "address"}`, `{"kind": "storage", "address", "slot"}`,
/// `{"kind": "code", "hash"}`, or `{"kind": "raw", "key"}` (the key's canonical encoding).
fn proof(chain: &Chain, params: &[Value]) -> Result<Value, RpcError> {
    // Proofs are against the head's state root: another block is refused, not ignored.
    if !matches!(
        state_block(params.get(1), StateBlock::Latest)?,
        StateBlock::Latest | StateBlock::Pending
    ) {
        return Err(RpcError::server("proofs are of the latest state only"));
    }
    let object = params
        .first()
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("missing key object"))?;
    let address = || parse_value(object.get("address"), "address");
    let hash = |name: &str| parse_value(object.get(name), name);
    let key = match object.get("kind").and_then(Value::as_str) {
        Some("account") => StateKey::Account(address()?),
        Some("balance") => StateKey::Balance(address()?),
        Some("storage") => StateKey::Storage { address: address()?, slot: hash("slot")? },
        Some("code") => StateKey::Code(hash("hash")?),
        Some("raw") => {
            let bytes: Bytes = parse_value(object.get("key"), "key")?;
            StateKey::decode(&bytes)
                .map_err(|error| RpcError::invalid_params(format!("invalid key: {error}")))?
        }
        _ => return Err(RpcError::invalid_params("kind: account, balance, storage, code or raw")),
    };
    let (head, value, proof) = chain.prove(&key).map_err(RpcError::server)?;
    let encoded = value.map(|value| Bytes::from(value.encode()));
    Ok(json!({
        // The block proved against, so that its output root needs no second request (which a
        // new block could answer with another).
        "blockNumber": hex(head.number),
        "blockHash": head.hash,
        "outputRoot": head.output_root,
        "stateRoot": head.state_root,
        "key": Bytes::from(key.encode()),
        "keyHash": key.commitment_key(),
        "value": encoded,
        "valueHash": encoded.as_ref().map(alloy_primitives::keccak256),
        "proof": proof,
    }))
}

fn hex(number: u64) -> String {
    format!("{number:#x}")
}

fn parse<T: serde::de::DeserializeOwned>(
    params: &[Value],
    index: usize,
    what: &str,
) -> Result<T, RpcError> {
    parse_value(params.get(index), what)
}

/// `value`, the parameter or field `what`, as a `T`.
fn parse_value<T: serde::de::DeserializeOwned>(
    value: Option<&Value>,
    what: &str,
) -> Result<T, RpcError> {
    let value = value.ok_or_else(|| RpcError::invalid_params(format!("missing {what}")))?;
    serde_json::from_value(value.clone())
        .map_err(|error| RpcError::invalid_params(format!("invalid {what}: {error}")))
}

fn address_param(params: &[Value], index: usize) -> Result<Address, RpcError> {
    parse(params, index, "address")
}

/// A block named by a tag or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockSpec {
    /// "latest", and "safe" and "finalized", which are the same block here.
    Latest,
    /// "pending": the latest block for blocks, the next one for calls, with the pool for nonces.
    Pending,
    Earliest,
    Number(u64),
}

impl BlockSpec {
    /// The block a parameter names (a tag, a hex number, or EIP-1898's `{"blockNumber"}`);
    /// `None` when absent.
    fn parse(value: Option<&Value>) -> Result<Option<Self>, RpcError> {
        let text =
            match value {
                None | Some(Value::Null) => return Ok(None),
                // EIP-1898's object names a number here; one naming a hash (or nothing) is refused
                // rather than read as the latest block (queries by state take a hash: `state_block`).
                Some(Value::Object(object)) => match object.get("blockNumber") {
                    Some(number @ Value::String(_)) => return Self::parse(Some(number)),
                    _ => return Err(RpcError::invalid_params(
                        "invalid block number: expected a tag, a hex number or {\"blockNumber\"}",
                    )),
                },
                Some(Value::String(text)) => text,
                Some(other) => {
                    return Err(RpcError::invalid_params(format!("invalid block number {other}")))
                }
            };
        match text.as_str() {
            "latest" | "safe" | "finalized" => Ok(Some(Self::Latest)),
            "pending" => Ok(Some(Self::Pending)),
            "earliest" => Ok(Some(Self::Earliest)),
            _ => text
                .strip_prefix("0x")
                .and_then(|digits| u64::from_str_radix(digits, 16).ok())
                .map(|number| Some(Self::Number(number)))
                .ok_or_else(|| RpcError::invalid_params(format!("invalid block number {text}"))),
        }
    }

    /// Its number, with the head at `head` (a number above the head names nothing yet).
    fn resolve(self, head: u64) -> Option<u64> {
        match self {
            Self::Latest | Self::Pending => Some(head),
            Self::Earliest => Some(0),
            Self::Number(number) => (number <= head).then_some(number),
        }
    }

    /// Its number if it names a fixed block (a number, or "earliest"), not the moving head.
    fn fixed(self) -> Option<u64> {
        match self {
            Self::Latest | Self::Pending => None,
            Self::Earliest => Some(0),
            Self::Number(number) => Some(number),
        }
    }
}

/// The block a tag or number names (the head when none is given): `None` if it does not exist
/// (yet).
fn block_number(head: &Block, value: Option<&Value>) -> Result<Option<u64>, RpcError> {
    Ok(BlockSpec::parse(value)?.unwrap_or(BlockSpec::Latest).resolve(head.number))
}

/// The `blockHash` of a request object (EIP-1898's block parameter, a log filter), if it names
/// one.
fn block_hash_field(value: Option<&Value>) -> Result<Option<B256>, RpcError> {
    value
        .and_then(|value| value.get("blockHash"))
        .filter(|hash| !hash.is_null())
        .map(|hash| serde_json::from_value(hash.clone()))
        .transpose()
        .map_err(|error| RpcError::invalid_params(format!("invalid blockHash: {error}")))
}

/// The block whose state a query names (`value`: a tag, a number, or EIP-1898's object with a
/// `blockNumber` or a `blockHash`), `absent` when it names none.
fn state_block(value: Option<&Value>, absent: StateBlock) -> Result<StateBlock, RpcError> {
    let tag = match value {
        // EIP-1898: one of the two, as geth takes it.
        Some(Value::Object(object)) => match (object.get("blockHash"), object.get("blockNumber")) {
            (Some(_), Some(_)) => {
                return Err(RpcError::invalid_params(
                    "cannot specify both blockHash and blockNumber, choose one or the other",
                ))
            }
            (None, None) => {
                return Err(RpcError::invalid_params("expected blockHash or blockNumber"))
            }
            (Some(_), None) => {
                let hash = block_hash_field(value)?
                    .ok_or_else(|| RpcError::invalid_params("invalid blockHash: null"))?;
                return Ok(StateBlock::Hash(hash));
            }
            (None, number) => number,
        },
        other => other,
    };
    Ok(match BlockSpec::parse(tag)? {
        None => absent,
        Some(BlockSpec::Pending) => StateBlock::Pending,
        Some(spec) => spec.fixed().map_or(StateBlock::Latest, StateBlock::Number),
    })
}

/// What `read` finds in the state at the block `value` names (see [`Chain::read_at`]).
fn read_at<T>(
    chain: &Chain,
    value: Option<&Value>,
    read: impl FnOnce(&dyn ReadState) -> Result<T, StoreError>,
) -> Result<T, RpcError> {
    chain.read_at(state_block(value, StateBlock::Latest)?, read).map_err(RpcError::server)
}

fn call_error(error: CallError) -> RpcError {
    match error {
        CallError::Reverted(data) => {
            RpcError { code: 3, message: "execution reverted".to_owned(), data: Some(json!(data)) }
        }
        other => RpcError::server(other),
    }
}

/// The state (`accounts`) and block overrides of a call (`eth_call`'s and `eth_estimateGas`'s
/// third and fourth parameters, `debug_traceCall`'s `stateOverrides` and `blockOverrides`, as
/// geth takes them): by address, any of `balance`, `nonce`, `code`, and `state`
/// or `stateDiff`; and the block's `number`, `time`, `gasLimit`, `feeRecipient`, `prevRandao`
/// and `baseFeePerGas`. What cannot be honoured is refused rather than ignored, which would
/// answer a question not asked.
fn call_overrides(
    accounts: Option<&Value>,
    block: Option<&Value>,
) -> Result<CallOverrides, RpcError> {
    let block = block_overrides(block)?;
    let Some(accounts) = accounts.filter(|value| !value.is_null()) else {
        return Ok(CallOverrides { accounts: Vec::new(), block });
    };
    let bad = |what: String| RpcError::invalid_params(format!("state overrides: {what}"));
    let accounts = accounts.as_object().ok_or_else(|| bad("expected an object".to_owned()))?;
    // By address, the last one written for an address counting (as geth reads the object).
    let mut by_address = std::collections::BTreeMap::new();
    for (address, fields) in accounts {
        let address: Address =
            address.parse().map_err(|_| bad(format!("invalid address {address}")))?;
        if [MOVE_CALL_ADDRESS, MOVE_OVERLAY_ADDRESS, MOVE_ENTRY_ADDRESS].contains(&address) {
            return Err(bad(format!("{address} is Duet's own (the Move call precompile's)")));
        }
        let fields =
            fields.as_object().ok_or_else(|| bad(format!("{address}: expected an object")))?;
        let mut account = AccountOverride { address, ..AccountOverride::default() };
        let parse = |name: &str, value: &Value| -> Result<U256, RpcError> {
            serde_json::from_value(value.clone())
                .map_err(|error| bad(format!("{address}: invalid {name}: {error}")))
        };
        let slots = |name: &str, value: &Value| -> Result<Vec<(B256, U256)>, RpcError> {
            let slots: std::collections::BTreeMap<B256, B256> =
                serde_json::from_value(value.clone())
                    .map_err(|error| bad(format!("{address}: invalid {name}: {error}")))?;
            Ok(slots
                .into_iter()
                .map(|(slot, value)| (slot, U256::from_be_bytes(value.0)))
                .collect())
        };
        // A null field is no field.
        let fields = fields.iter().filter(|(_, value)| !value.is_null());
        let named = |name: &str| fields.clone().any(|(field, _)| field == name);
        if named("state") && named("stateDiff") {
            return Err(bad(format!("{address} has both state and stateDiff")));
        }
        for (name, value) in fields {
            match name.as_str() {
                "balance" => {
                    let balance = parse(name, value)?;
                    account.balance = Some(balance.try_into().map_err(|_| {
                        bad(format!("{address}: balance above 2^128 - 1 wei, the most Duet holds"))
                    })?);
                }
                "nonce" => {
                    let nonce = parse(name, value)?;
                    account.nonce = Some(
                        nonce.try_into().map_err(|_| bad(format!("{address}: nonce too large")))?,
                    );
                }
                "code" => {
                    let code: Bytes = serde_json::from_value(value.clone())
                        .map_err(|error| bad(format!("{address}: invalid code: {error}")))?;
                    // No chain holds code the EVM cannot take (EIP-3541): neither may a call.
                    revm::bytecode::Bytecode::new_raw_checked(code.clone())
                        .map_err(|error| bad(format!("{address}: invalid code: {error:?}")))?;
                    account.code = Some(code);
                }
                "state" => {
                    account.storage = slots(name, value)?;
                    account.replace_storage = true;
                }
                "stateDiff" => account.storage = slots(name, value)?,
                other => return Err(bad(format!("{address}: unknown field {other}"))),
            }
        }
        by_address.insert(address, account);
    }
    Ok(CallOverrides { accounts: by_address.into_values().collect(), block })
}

/// A block override's field `name` as a `T`.
fn block_field<T: serde::de::DeserializeOwned>(name: &str, value: &Value) -> Result<T, RpcError> {
    serde_json::from_value(value.clone()).map_err(|error| {
        RpcError::invalid_params(format!("block overrides: invalid {name}: {error}"))
    })
}

/// The block overrides of a call (see [`call_overrides`]).
fn block_overrides(value: Option<&Value>) -> Result<BlockOverrides, RpcError> {
    let mut overrides = BlockOverrides::default();
    let Some(value) = value.filter(|value| !value.is_null()) else { return Ok(overrides) };
    let bad = |what: String| RpcError::invalid_params(format!("block overrides: {what}"));
    let fields = value.as_object().ok_or_else(|| bad("expected an object".to_owned()))?;
    let quantity = |name: &str, value: &Value| -> Result<u64, RpcError> {
        let quantity: U256 = serde_json::from_value(value.clone())
            .map_err(|error| bad(format!("invalid {name}: {error}")))?;
        quantity.try_into().map_err(|_| bad(format!("{name} too large")))
    };
    for (name, value) in fields.iter().filter(|(_, value)| !value.is_null()) {
        match name.as_str() {
            "number" => overrides.number = Some(quantity(name, value)?),
            "time" => overrides.time = Some(quantity(name, value)?),
            "gasLimit" => overrides.gas_limit = Some(quantity(name, value)?),
            "baseFeePerGas" | "baseFee" => overrides.base_fee = Some(quantity(name, value)?),
            "feeRecipient" | "coinbase" => {
                overrides.fee_recipient = Some(block_field(name, value)?);
            }
            "prevRandao" | "random" => overrides.prev_randao = Some(block_field(name, value)?),
            other => return Err(bad(format!("{other} is not supported"))),
        }
    }
    Ok(overrides)
}

/// The quantity `name` of a request object, if it has one.
fn quantity(object: &serde_json::Map<String, Value>, name: &str) -> Result<Option<U256>, RpcError> {
    object
        .get(name)
        .filter(|value| !value.is_null())
        .map(|value| serde_json::from_value(value.clone()))
        .transpose()
        .map_err(|error| RpcError::invalid_params(format!("invalid {name}: {error}")))
}

/// `eth_createAccessList`: the access list of the call object at `params[0]`, on the state at
/// `params[1]`.
fn create_access_list(
    chain: &Chain,
    params: &[Value],
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    let tx = call_request(chain, params.first())?;
    // As `eth_estimateGas` (whose figure its gas is): the pending block's unless one is named.
    let block = state_block(params.get(1), StateBlock::Pending)?;
    let found = in_call_turn(call_turn, |turn| {
        chain.create_access_list(turn, tx, block).map_err(call_error)
    })?;
    let mut answer = json!({ "accessList": found.access_list, "gasUsed": hex(found.gas_used) });
    if let Some(error) = found.error {
        answer["error"] = json!(error);
    }
    Ok(answer)
}

/// A transaction from an `eth_call` / `eth_estimateGas` call object.
fn call_request(chain: &Chain, value: Option<&Value>) -> Result<TxEnv, RpcError> {
    let object = value
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("missing call object"))?;
    let field = |name: &str| object.get(name).filter(|value| !value.is_null());
    let from: Address = field("from")
        .map(|value| serde_json::from_value(value.clone()))
        .transpose()
        .map_err(|error| RpcError::invalid_params(format!("invalid from: {error}")))?
        .unwrap_or_default();
    let to: Option<Address> = field("to")
        .map(|value| serde_json::from_value(value.clone()))
        .transpose()
        .map_err(|error| RpcError::invalid_params(format!("invalid to: {error}")))?;
    let data: Bytes = field("input")
        .or_else(|| field("data"))
        .map(|value| serde_json::from_value(value.clone()))
        .transpose()
        .map_err(|error| RpcError::invalid_params(format!("invalid input: {error}")))?
        .unwrap_or_default();
    // A set-code transaction's authorizations (EIP-7702): applied before the call, as a block
    // would, and counted in its gas (an estimate without them would fall short).
    let authorizations: Vec<alloy_eips::eip7702::SignedAuthorization> = field("authorizationList")
        .map(|value| serde_json::from_value(value.clone()))
        .transpose()
        .map_err(|error| RpcError::invalid_params(format!("invalid authorizationList: {error}")))?
        .unwrap_or_default();
    // An EIP-2930 access list: its entries' gas counts, and what they warm is warm.
    let access_list: alloy_eips::eip2930::AccessList = field("accessList")
        .map(|value| serde_json::from_value(value.clone()))
        .transpose()
        .map_err(|error| RpcError::invalid_params(format!("invalid accessList: {error}")))?
        .unwrap_or_default();
    let nonce = chain.account(from).map_err(RpcError::server)?.0;
    // The price it names, as code reads it (GASPRICE).
    let fees = NamedFees::parse(object)?;
    let dynamic = fees.dynamic();
    let mut tx = TxEnv {
        caller: from,
        kind: to.map_or(TxKind::Create, TxKind::Call),
        value: quantity(object, "value")?.unwrap_or_default(),
        data,
        gas_limit: quantity(object, "gas")?.map_or(0, |gas| gas.saturating_to()),
        gas_price: if dynamic { fees.max_fee } else { fees.gas_price }.unwrap_or_default(),
        // A max fee without a tip tips nothing, as geth reads it.
        gas_priority_fee: dynamic.then(|| fees.tip.unwrap_or(0)),
        nonce,
        access_list,
        ..TxEnv::default()
    };
    tx.set_signed_authorization(authorizations);
    // Its type from what it carries, as revm derives it (a set-code one, 4, must call).
    tx.derive_tx_type()
        .map_err(|_| RpcError::invalid_params("a set-code transaction cannot create"))?;
    Ok(tx)
}

/// The fees a call or transaction object names: a legacy `gasPrice`, or EIP-1559's
/// `maxFeePerGas` and `maxPriorityFeePerGas` (not both kinds, as geth refuses).
struct NamedFees {
    gas_price: Option<u128>,
    max_fee: Option<u128>,
    tip: Option<u128>,
}

impl NamedFees {
    fn parse(object: &serde_json::Map<String, Value>) -> Result<Self, RpcError> {
        let price = |name: &str| -> Result<Option<u128>, RpcError> {
            Ok(quantity(object, name)?.map(|price: U256| price.saturating_to()))
        };
        let fees = Self {
            gas_price: price("gasPrice")?,
            max_fee: price("maxFeePerGas")?,
            tip: price("maxPriorityFeePerGas")?,
        };
        if fees.dynamic() && fees.gas_price.is_some() {
            return Err(RpcError::invalid_params(
                "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified",
            ));
        }
        Ok(fees)
    }

    /// Whether it names EIP-1559's fees.
    fn dynamic(&self) -> bool {
        self.max_fee.is_some() || self.tip.is_some()
    }
}

/// The key of an unlocked account.
fn unlocked(rpc: &Rpc, account: Address) -> Result<&PrivateKeySigner, RpcError> {
    rpc.unlocked.iter().find(|signer| signer.address() == account).ok_or_else(|| {
        RpcError::server(format!(
            "no key for {account}: the node signs only for the dev accounts (eth_accounts); \
             sign for others yourself (and send with eth_sendRawTransaction)"
        ))
    })
}

/// The EIP-191 signature (65 bytes, `v` 27 or 28) of the data at `params[data]` by the unlocked
/// account at `params[account]`.
fn sign_message(
    rpc: &Rpc,
    params: &[Value],
    data: usize,
    account: usize,
) -> Result<Value, RpcError> {
    let message: Bytes = parse(params, data, "data")?;
    let signer = unlocked(rpc, address_param(params, account)?)?;
    let signature =
        alloy_signer::SignerSync::sign_message_sync(signer, &message).map_err(RpcError::server)?;
    Ok(json!(Bytes::from(signature.as_bytes().to_vec())))
}

/// The EIP-712 signature (65 bytes, `v` 27 or 28) of the typed data at `params[1]` (an object,
/// or its JSON text, as viem and ethers send it) by the unlocked account at `params[0]`. The
/// domain separator hashes the domain's fields in EIP-712's order (name, version, chainId,
/// verifyingContract, salt), the order viem and ethers declare them in.
///
/// Its types are bounded before they are resolved ([`typed_data_fits`]): resolving builds each
/// struct type again wherever it is named, which a few kilobytes of types could make 2^40 times.
fn sign_typed_data(rpc: &Rpc, params: &[Value]) -> Result<Value, RpcError> {
    let signer = unlocked(rpc, address_param(params, 0)?)?;
    let typed: alloy_dyn_abi::eip712::TypedData = parse(params, 1, "typed data")?;
    typed_data_fits(&alloy_dyn_abi::Eip712Types::from(&typed.resolver))
        .map_err(|error| RpcError::invalid_params(format!("invalid typed data: {error}")))?;
    let hash = typed
        .eip712_signing_hash()
        .map_err(|error| RpcError::invalid_params(format!("invalid typed data: {error}")))?;
    let signature =
        alloy_signer::SignerSync::sign_hash_sync(signer, &hash).map_err(RpcError::server)?;
    Ok(json!(Bytes::from(signature.as_bytes().to_vec())))
}

/// The most struct types typed data may define (Permit2's and Seaport's define a handful).
const MAX_TYPED_DATA_TYPES: usize = 64;

/// The most types (structs, their fields' types, theirs…) one struct type of typed data may
/// unfold into, the most levels of structs within structs, and the most array dimensions of one
/// field (Seaport's bulk orders use 24).
const MAX_TYPED_DATA_NODES: usize = 4_096;
const MAX_TYPED_DATA_DEPTH: usize = 32;
const MAX_TYPED_DATA_DIMENSIONS: usize = 32;

/// Whether typed data's `types` are within [`MAX_TYPED_DATA_TYPES`], and each unfolds into at
/// most [`MAX_TYPED_DATA_NODES`] types over at most [`MAX_TYPED_DATA_DEPTH`] levels (a type
/// that contains itself never ends, and is refused here too), with fields of at most
/// [`MAX_TYPED_DATA_DIMENSIONS`] array dimensions (each is a level of the resolved type, which
/// is copied and dropped level by level on the stack). Each type is counted once.
fn typed_data_fits(types: &alloy_dyn_abi::Eip712Types) -> Result<(), String> {
    /// A struct type's count of types and levels, once unfolded.
    #[derive(Clone, Copy)]
    struct Unfolded {
        count: usize,
        levels: usize,
    }
    fn too_deep() -> String {
        format!("its types nest more than {MAX_TYPED_DATA_DEPTH} levels deep or contain themselves")
    }
    fn unfolded<'a>(
        types: &'a alloy_dyn_abi::Eip712Types,
        name: &'a str,
        depth: usize,
        counted: &mut std::collections::HashMap<&'a str, Unfolded>,
    ) -> Result<Unfolded, String> {
        if let Some(&known) = counted.get(name) {
            return Ok(known);
        }
        // Not a struct: an atomic or dynamic type, one node.
        let Some(fields) = types.get(name) else { return Ok(Unfolded { count: 1, levels: 0 }) };
        // A chain of types longer than the bound, or a cycle, met from its top.
        if depth == MAX_TYPED_DATA_DEPTH {
            return Err(too_deep());
        }
        let mut total = Unfolded { count: 1, levels: 1 };
        for field in fields {
            if field.type_name().matches('[').count() > MAX_TYPED_DATA_DIMENSIONS {
                return Err(format!(
                    "{name}.{}: more than {MAX_TYPED_DATA_DIMENSIONS} array dimensions",
                    field.name()
                ));
            }
            let inner = unfolded(types, field.root_type_name(), depth + 1, counted)?;
            total.count += inner.count;
            total.levels = total.levels.max(inner.levels + 1);
            if total.count > MAX_TYPED_DATA_NODES {
                return Err(format!("{name} unfolds into more than {MAX_TYPED_DATA_NODES} types"));
            }
        }
        // A chain met from below: each type's levels are counted whatever the order.
        if total.levels > MAX_TYPED_DATA_DEPTH {
            return Err(too_deep());
        }
        counted.insert(name, total);
        Ok(total)
    }
    if types.len() > MAX_TYPED_DATA_TYPES {
        return Err(format!("{} types, at most {MAX_TYPED_DATA_TYPES}", types.len()));
    }
    let mut counted = std::collections::HashMap::new();
    for name in types.keys() {
        unfolded(types, name, 0, &mut counted)?;
    }
    Ok(())
}

/// The most blocks one `anvil_mine` makes.
const MAX_MINED_BLOCKS: u64 = 1_000;

/// `evm_mine` (one block) and `anvil_mine` (`[blocks]`, one by default): builds blocks from the
/// pool at once, as the block time would, each stamped with the clock (at least a second after
/// its parent). Timestamps and intervals cannot be chosen: a parameter that asks for them is
/// refused. One request mines at a time.
fn mine(rpc: &Rpc, params: &[Value], several: bool) -> Result<Value, RpcError> {
    let absent = |index: usize| params.get(index).is_none_or(Value::is_null);
    let blocks = if several && !absent(0) {
        let blocks: alloy_primitives::U64 = parse(params, 0, "number of blocks")?;
        blocks.to::<u64>()
    } else {
        1
    };
    let interval_is_zero = || {
        parse::<alloy_primitives::U64>(params, 1, "interval")
            .is_ok_and(|interval| interval.is_zero())
    };
    let choosing_time = if several { !absent(1) && !interval_is_zero() } else { !absent(0) };
    if choosing_time {
        return Err(RpcError::invalid_params(
            "block timestamps follow the clock here: neither a timestamp nor an interval can be set",
        ));
    }
    if !(1..=MAX_MINED_BLOCKS).contains(&blocks) {
        return Err(RpcError::invalid_params(format!(
            "the number of blocks must be from 1 to {MAX_MINED_BLOCKS}"
        )));
    }
    let Some(_mining) = rpc.mining.try_lock() else {
        return Err(RpcError::limit_exceeded("another request is mining blocks"));
    };
    for mined in 0..blocks {
        let block = rpc.chain.produce_block().map_err(|error| {
            RpcError::server(format!("{mined} of {blocks} blocks mined: {error}"))
        })?;
        tracing::info!(
            number = block.number,
            transactions = block.transactions.len(),
            hash = %block.hash,
            "block committed on request"
        );
    }
    Ok(json!("0x0"))
}

/// geth's `txpool_*` methods: how many transactions wait (`status`), and which, by sender and
/// nonce, as transactions (`content`) or in a line each (`inspect`); `pending` are those a
/// block could take now, `queued` those above a nonce gap.
fn txpool(chain: &Chain, method: &str) -> Result<Value, RpcError> {
    txpool_within(chain, method, MAX_BATCH_RESPONSE)
}

/// [`txpool`], its answer at most `budget` bytes.
fn txpool_within(chain: &Chain, method: &str, budget: usize) -> Result<Value, RpcError> {
    let pool = chain.pool().map_err(RpcError::server)?;
    if method == "txpool_status" {
        let count = |part: fn(&crate::chain::PoolSender) -> usize| {
            hex(pool.iter().map(part).sum::<usize>() as u64)
        };
        return Ok(json!({
            "pending": count(|sender| sender.pending.len()),
            "queued": count(|sender| sender.queued.len()),
        }));
    }
    let describe = |sender: Address, transaction: &crate::chain::PoolTransaction| -> Value {
        if method == "txpool_content" {
            return transaction_json(&transaction.raw, None, sender);
        }
        let Ok(envelope) = TxEnvelope::decode_2718(&mut transaction.raw.as_ref()) else {
            return Value::Null;
        };
        let to = envelope.to().map_or_else(|| "contract creation".to_owned(), |to| to.to_string());
        json!(format!(
            "{to}: {} wei + {} gas × {} wei",
            envelope.value(),
            transaction.gas_limit,
            transaction.max_fee
        ))
    };
    // A full pool of large transactions would build gigabytes: the answer stops, as a batch's
    // do, past the budget.
    let mut bytes = 0;
    let mut part =
        |select: fn(&crate::chain::PoolSender) -> &Vec<crate::chain::PoolTransaction>| {
            let mut senders = serde_json::Map::new();
            for sender in &pool {
                let mut transactions = serde_json::Map::new();
                for transaction in select(sender) {
                    let described = describe(sender.sender, transaction);
                    bytes += json_size(&described);
                    if bytes > budget {
                        return Err(RpcError::too_large(
                            &format!("{method} (txpool_status counts the pool)"),
                            budget,
                        ));
                    }
                    transactions.insert(transaction.nonce.to_string(), described);
                }
                if !transactions.is_empty() {
                    senders.insert(sender.sender.to_string(), Value::Object(transactions));
                }
            }
            Ok(Value::Object(senders))
        };
    let pending = part(|sender| &sender.pending)?;
    let queued = part(|sender| &sender.queued)?;
    Ok(json!({ "pending": pending, "queued": queued }))
}

/// `eth_sendTransaction` from an unlocked account: the transaction [`sign_request`] signs,
/// submitted.
fn send_transaction(
    rpc: &Rpc,
    request: Option<&Value>,
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    sign_request(rpc, request, call_turn, |raw| {
        rpc.chain.submit(raw).map(|hash| json!(hash)).map_err(RpcError::server)
    })
}

/// `eth_signTransaction` from an unlocked account, as anvil has it: the transaction
/// [`sign_request`] signs, in its EIP-2718 encoding, not sent.
fn sign_transaction(
    rpc: &Rpc,
    request: Option<&Value>,
    call_turn: Option<&Turn>,
) -> Result<Value, RpcError> {
    sign_request(rpc, request, call_turn, |raw| Ok(json!(Bytes::copy_from_slice(raw))))
}

/// An EIP-1559 transaction (EIP-7702 with an `authorizationList`) from an unlocked account,
/// with what the request leaves out filled in (the pending nonce, the estimated gas, a max fee
/// of twice the base fee plus the suggested tip), signed with the account's key and handed to
/// `then`, while no other request of the kind takes a nonce.
fn sign_request(
    rpc: &Rpc,
    request: Option<&Value>,
    call_turn: Option<&Turn>,
    then: impl FnOnce(&[u8]) -> Result<Value, RpcError>,
) -> Result<Value, RpcError> {
    let chain = &rpc.chain;
    let object = request
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("missing transaction object"))?;
    let call = call_request(chain, request)?;
    if object.get("from").is_none_or(Value::is_null) {
        return Err(RpcError::invalid_params("missing from"));
    }
    let signer = unlocked(rpc, call.caller)?;
    let base_fee = u128::from(chain.config().base_fee);
    let fees = NamedFees::parse(object)?;
    let tip = fees.tip.unwrap_or(u128::from(SUGGESTED_TIP));
    let max_fee = fees
        .max_fee
        .or(fees.gas_price)
        .unwrap_or_else(|| base_fee.saturating_mul(2).saturating_add(tip));
    if tip > max_fee {
        return Err(RpcError::invalid_params(
            "max priority fee per gas higher than max fee per gas",
        ));
    }
    // Estimated at the fees it will be signed with (a tip alone was estimated under no max
    // fee, which revm refuses).
    let mut call = call;
    call.gas_price = max_fee;
    call.gas_priority_fee = Some(tip);
    call.derive_tx_type()
        .map_err(|_| RpcError::invalid_params("a set-code transaction cannot create"))?;
    let gas_limit = match quantity(object, "gas")? {
        Some(gas) => gas.saturating_to(),
        None => in_call_turn(call_turn, |turn| {
            let no_overrides = CallOverrides::default();
            chain
                .estimate_gas(turn, call.clone(), StateBlock::Pending, &no_overrides)
                .map_err(call_error)
        })?,
    };
    let _sending = rpc.sending.lock();
    let nonce = match quantity(object, "nonce")? {
        Some(nonce) => nonce.saturating_to(),
        None => chain.pending_nonce(call.caller).map_err(RpcError::server)?,
    };
    let chain_id = chain.config().chain_id;
    let raw = if call.authorization_list.is_empty() {
        let unsigned = TxEip1559 {
            chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: call.kind,
            value: call.value,
            input: call.data,
            // The estimate counted it: sent without it, the transaction could fall short.
            access_list: call.access_list,
        };
        crate::client::sign(signer, unsigned)
    } else {
        // A set-code transaction with the authorizations the request carries (signed by their
        // authorities; `call_request` refused one that creates).
        let unsigned = alloy_consensus::TxEip7702 {
            chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: call.kind.into_to().unwrap_or_default(),
            value: call.value,
            input: call.data,
            access_list: call.access_list,
            authorization_list: call
                .authorization_list
                .into_iter()
                .filter_map(revm::context_interface::either::Either::left)
                .collect(),
        };
        crate::client::sign(signer, unsigned)
    }
    .map_err(RpcError::server)?;
    then(&raw)
}

fn fee_history(chain: &Chain, head: &Block, params: &[Value]) -> Result<Value, RpcError> {
    let count: U256 = parse(params, 0, "block count")?;
    let percentiles = reward_percentiles(params.get(2))?;
    if count.is_zero() {
        // As geth: no blocks asked for, none given.
        return Ok(json!({ "oldestBlock": "0x0", "baseFeePerGas": [], "gasUsedRatio": [] }));
    }
    let count = count.saturating_to::<u64>().min(1024).min(head.number + 1);
    let newest = block_number(head, params.get(1))?.ok_or_else(|| {
        let asked = BlockSpec::parse(params.get(1)).ok().flatten().and_then(BlockSpec::fixed);
        RpcError::server(format!(
            "request beyond head block: requested {}, head {}",
            asked.unwrap_or_default(),
            head.number
        ))
    })?;
    let oldest = newest + 1 - count.min(newest + 1);
    let base_fee = hex(chain.config().base_fee);
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    // Reading the blocks' transactions for the percentiles is bounded, as a log query is: in
    // transactions, and in time (their records can be large).
    let mut budget = MAX_REWARD_TRANSACTIONS;
    let deadline = std::time::Instant::now() + LOG_LIMITS.time;
    for number in oldest..=newest {
        if !percentiles.is_empty() && std::time::Instant::now() > deadline {
            return Err(RpcError::server(format!(
                "reward percentiles took more than {:?}: ask for fewer blocks",
                LOG_LIMITS.time
            )));
        }
        let block = chain.store().block(number).map_err(RpcError::server)?;
        let ratio =
            block.as_ref().map_or(0.0, |block| block.gas_used as f64 / block.gas_limit as f64);
        ratios.push(json!(ratio));
        if !percentiles.is_empty() {
            let transactions = block.as_ref().map_or(&[][..], |block| &block.transactions);
            budget = budget.checked_sub(transactions.len()).ok_or_else(|| {
                RpcError::server(format!(
                    "reward percentiles over more than {MAX_REWARD_TRANSACTIONS} transactions: \
                     ask for fewer blocks"
                ))
            })?;
            let base_fee = block.as_ref().map_or(0, |block| block.base_fee);
            rewards.push(json!(block_rewards(chain, transactions, base_fee, &percentiles)?));
        }
    }
    let mut result = json!({
        "oldestBlock": hex(oldest),
        "baseFeePerGas": vec![base_fee; ratios.len() + 1],
        "gasUsedRatio": ratios,
        // No blobs: their base fee is 1 wei (as `eth_blobBaseFee` says) and no gas is used.
        "baseFeePerBlobGas": vec!["0x1"; ratios.len() + 1],
        "blobGasUsedRatio": vec![0.0; ratios.len()],
    });
    if !percentiles.is_empty() {
        result["reward"] = json!(rewards);
    }
    Ok(result)
}

/// The most transactions one `eth_feeHistory` reads for its reward percentiles.
const MAX_REWARD_TRANSACTIONS: usize = 200_000;

/// The tips paid at `percentiles` of a block's gas, as geth computes them: its `transactions`'
/// effective tips (over the block's `base_fee`) in ascending order, each weighted by its gas;
/// zero for a block without transactions.
fn block_rewards(
    chain: &Chain,
    transactions: &[B256],
    base_fee: u64,
    percentiles: &[f64],
) -> Result<Vec<String>, RpcError> {
    let mut tips = Vec::with_capacity(transactions.len());
    // The blocks asked for are at the head or below: their records are read as they are.
    for hash in transactions {
        let record = chain.store().transaction(*hash).map_err(RpcError::server)?;
        let record = record.ok_or_else(|| RpcError::internal(format!("transaction {hash}")))?;
        let tip = record.effective_gas_price.saturating_sub(u128::from(base_fee));
        tips.push((tip, record.gas_used));
    }
    tips.sort_unstable();
    let total: u64 = tips.iter().map(|(_, gas)| gas).sum();
    Ok(percentiles
        .iter()
        .map(|percentile| {
            // In whole gas, as geth truncates it (percentiles are from 0 to 100: never negative).
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
            let threshold = (total as f64 * percentile / 100.0) as u64;
            let mut sum = 0;
            let tip = tips.iter().find(|(_, gas)| {
                sum += gas;
                sum >= threshold
            });
            format!("{:#x}", tip.or(tips.last()).map_or(0, |(tip, _)| *tip))
        })
        .collect())
}

/// The reward percentiles `eth_feeHistory` asks for: at most 100, each from 0 to 100, each
/// above the one before (as geth checks them).
fn reward_percentiles(percentiles: Option<&Value>) -> Result<Vec<f64>, RpcError> {
    let percentiles = match percentiles {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(percentiles)) => percentiles,
        Some(_) => return Err(RpcError::invalid_params("reward percentiles: expected a list")),
    };
    if percentiles.len() > MAX_REWARD_PERCENTILES {
        return Err(RpcError::invalid_params(format!(
            "at most {MAX_REWARD_PERCENTILES} reward percentiles"
        )));
    }
    let mut read: Vec<f64> = Vec::with_capacity(percentiles.len());
    for percentile in percentiles {
        match percentile.as_f64() {
            Some(value)
                if (0.0..=100.0).contains(&value)
                    && read.last().is_none_or(|last| value > *last) =>
            {
                read.push(value);
            }
            _ => {
                return Err(RpcError::invalid_params(format!(
                    "reward percentile {percentile}: expected numbers from 0 to 100, ascending"
                )))
            }
        }
    }
    Ok(read)
}

/// The most reward percentiles one `eth_feeHistory` asks for.
const MAX_REWARD_PERCENTILES: usize = 100;

/// The methods that read one block, named by number (or tag) or by hash; `null` for a block
/// that does not exist. Blocks have no uncles.
fn block_method(
    chain: &Chain,
    head: &Block,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcError> {
    let by_hash =
        || chain.committed_block_number(parse(params, 0, "block hash")?).map_err(RpcError::server);
    let number = match (method, params.first()) {
        (_, None) => return Err(RpcError::invalid_params("missing block")),
        // eth_getBlockReceipts takes a number, a tag, a hash, or EIP-1898's `{"blockHash"}`.
        ("eth_getBlockReceipts", Some(Value::String(text))) if text.len() == 66 => by_hash()?,
        ("eth_getBlockReceipts", block @ Some(Value::Object(_))) => {
            match block_hash_field(block)? {
                Some(hash) => chain.committed_block_number(hash).map_err(RpcError::server)?,
                None => block_number(head, block)?,
            }
        }
        (method, _) if method.contains("Hash") => by_hash()?,
        (_, block) => block_number(head, block)?,
    };
    let Some(number) = number else { return Ok(Value::Null) };
    let Some(block) = chain.store().block(number).map_err(RpcError::server)? else {
        return Ok(Value::Null);
    };
    let record = |hash: &B256| chain.store().transaction(*hash).map_err(RpcError::server);
    match method {
        "eth_getBlockTransactionCountByNumber" | "eth_getBlockTransactionCountByHash" => {
            Ok(json!(hex(block.transactions.len() as u64)))
        }
        "eth_getTransactionByBlockNumberAndIndex" | "eth_getTransactionByBlockHashAndIndex" => {
            let index: U256 = parse(params, 1, "transaction index")?;
            let hash = usize::try_from(index).ok().and_then(|index| block.transactions.get(index));
            Ok(match hash.map(record).transpose()?.flatten() {
                Some(record) => transaction_json(&record.raw, Some(&record), record.from),
                None => Value::Null,
            })
        }
        "eth_getBlockReceipts" => {
            let mut receipts = Vec::with_capacity(block.transactions.len());
            for hash in &block.transactions {
                receipts.extend(record(hash)?.map(|record| receipt_json(&record)));
            }
            Ok(Value::Array(receipts))
        }
        "eth_getUncleCountByBlockNumber" | "eth_getUncleCountByBlockHash" => Ok(json!("0x0")),
        _ => Ok(Value::Null),
    }
}

fn block_json(chain: &Chain, number: u64, full: bool) -> Result<Value, RpcError> {
    match chain.store().block(number).map_err(RpcError::server)? {
        Some(block) => block_object(chain, &block, full),
        None => Ok(Value::Null),
    }
}

/// `block` as Ethereum clients show it, with its transactions' hashes or (`full`) objects.
fn block_object(chain: &Chain, block: &Block, full: bool) -> Result<Value, RpcError> {
    let transactions = if full {
        let mut objects = Vec::new();
        for hash in &block.transactions {
            if let Some(record) = chain.store().transaction(*hash).map_err(RpcError::server)? {
                objects.push(transaction_json(&record.raw, Some(&record), record.from));
            }
        }
        json!(objects)
    } else {
        json!(block.transactions)
    };
    // The fields of the header its hash is of (Ethereum's: keccak256 of the RLP header).
    let header = block.header();
    Ok(json!({
        "number": hex(header.number),
        "hash": block.hash,
        "parentHash": header.parent_hash,
        "nonce": header.nonce,
        "sha3Uncles": header.ommers_hash,
        "logsBloom": header.logs_bloom,
        "transactionsRoot": header.transactions_root,
        "stateRoot": header.state_root,
        "outputRoot": block.output_root,
        "receiptsRoot": header.receipts_root,
        // Also the header's `extraData`, where its hash commits to it.
        "moveOutcomesHash": block.move_outcomes_hash,
        "miner": header.beneficiary,
        "difficulty": header.difficulty,
        "totalDifficulty": "0x0",
        "extraData": header.extra_data,
        "size": hex(block.size),
        "gasLimit": hex(header.gas_limit),
        "gasUsed": hex(header.gas_used),
        "timestamp": hex(header.timestamp),
        "mixHash": header.mix_hash,
        "baseFeePerGas": header.base_fee_per_gas.map(hex),
        "withdrawals": [],
        "withdrawalsRoot": header.withdrawals_root,
        // The fork the EVM runs (Osaka) has these header fields; tools read the fork from them
        // (`cast run` replays as Cancun or later when it sees `excessBlobGas`). No blobs, no
        // beacon chain and no EIP-7685 requests: zero, zero, zero and the hash of none.
        "blobGasUsed": header.blob_gas_used.map(hex),
        "excessBlobGas": header.excess_blob_gas.map(hex),
        "parentBeaconBlockRoot": header.parent_beacon_block_root,
        "requestsHash": header.requests_hash,
        "transactions": transactions,
        "uncles": [],
    }))
}

fn transaction_json(raw: &Bytes, record: Option<&TransactionRecord>, from: Address) -> Value {
    let Ok(envelope) = TxEnvelope::decode_2718(&mut raw.as_ref()) else { return Value::Null };
    let signature = envelope.signature();
    let mut object = json!({
        "hash": envelope.tx_hash(),
        "type": hex(u64::from(envelope.ty())),
        "nonce": hex(envelope.nonce()),
        "from": from,
        "to": envelope.to(),
        "value": envelope.value(),
        "gas": hex(envelope.gas_limit()),
        "input": envelope.input(),
        "chainId": envelope.chain_id().map(hex),
        "r": signature.r(),
        "s": signature.s(),
        "v": hex(legacy_v(&envelope, signature.v())),
        "yParity": hex(u64::from(signature.v())),
        "blockHash": record.map(|record| record.block_hash),
        "blockNumber": record.map(|record| hex(record.block_number)),
        "transactionIndex": record.map(|record| hex(record.index)),
    });
    if envelope.is_dynamic_fee() {
        object["maxFeePerGas"] = json!(U256::from(envelope.max_fee_per_gas()));
        object["maxPriorityFeePerGas"] =
            json!(U256::from(envelope.max_priority_fee_per_gas().unwrap_or_default()));
        let price = record.map_or(envelope.max_fee_per_gas(), |record| record.effective_gas_price);
        object["gasPrice"] = json!(U256::from(price));
        object["accessList"] =
            json!(envelope.access_list().map(|list| list.0.clone()).unwrap_or_default());
        if let Some(authorizations) = envelope.authorization_list() {
            object["authorizationList"] = json!(authorizations);
        }
    } else {
        object["gasPrice"] = json!(U256::from(envelope.gas_price().unwrap_or_default()));
        if envelope.ty() == 1 {
            object["accessList"] =
                json!(envelope.access_list().map(|list| list.0.clone()).unwrap_or_default());
        }
    }
    object
}

/// `v` as Ethereum clients report it: the parity for typed transactions; for legacy ones
/// `chain_id × 2 + 35 + parity` (EIP-155), or `27 + parity` without a chain id.
fn legacy_v(envelope: &TxEnvelope, parity: bool) -> u64 {
    if envelope.ty() != 0 {
        return u64::from(parity);
    }
    match envelope.chain_id() {
        Some(chain_id) => chain_id * 2 + 35 + u64::from(parity),
        None => 27 + u64::from(parity),
    }
}

fn receipt_json(record: &TransactionRecord) -> Value {
    let logs: Vec<Value> =
        record.logs.iter().enumerate().map(|(index, log)| log_json(record, log, index)).collect();
    let mut bloom = alloy_primitives::Bloom::ZERO;
    bloom.accrue_logs(&record.logs);
    let envelope = TxEnvelope::decode_2718(&mut record.raw.as_ref()).ok();
    let mut object = json!({
        "transactionHash": record.hash,
        "transactionIndex": hex(record.index),
        "blockHash": record.block_hash,
        "blockNumber": hex(record.block_number),
        "from": record.from,
        "to": envelope.as_ref().and_then(Transaction::to),
        "cumulativeGasUsed": hex(record.cumulative_gas_used),
        "gasUsed": hex(record.gas_used),
        "effectiveGasPrice": U256::from(record.effective_gas_price),
        "contractAddress": record.contract_address,
        "logs": logs,
        "logsBloom": bloom,
        "status": if record.success { "0x1" } else { "0x0" },
        "type": hex(envelope.as_ref().map_or(0, |envelope| u64::from(envelope.ty()))),
    });
    if let Some(status) = &record.move_status {
        object["moveStatus"] = json!(status);
        object["moveEvents"] = json!(record
            .move_events
            .iter()
            .map(|(type_tag, data)| json!({ "type": type_tag, "data": data }))
            .collect::<Vec<_>>());
    }
    object
}

fn log_json(record: &TransactionRecord, log: &alloy_primitives::Log, index: usize) -> Value {
    json!({
        "address": log.address,
        "topics": log.data.topics(),
        "data": log.data.data,
        "blockNumber": hex(record.block_number),
        "blockHash": record.block_hash,
        "transactionHash": record.hash,
        "transactionIndex": hex(record.index),
        "logIndex": hex(record.first_log_index + index as u64),
        "removed": false,
    })
}

fn logs(chain: &Chain, head: &Block, filter: Option<&Value>) -> Result<Value, RpcError> {
    logs_of(chain, head, &LogFilter::parse(filter)?)
}

/// The logs `filter` selects, with the head at `head`.
fn logs_of(chain: &Chain, head: &Block, filter: &LogFilter) -> Result<Value, RpcError> {
    let (from, to) = match filter.block_hash {
        Some(hash) => match chain.committed_block_number(hash).map_err(RpcError::server)? {
            Some(number) => (number, number),
            None => return Err(RpcError::server("unknown block")),
        },
        None => match filter.blocks(head.number) {
            // Tags resolved, as numbers are when parsed (`latest` to `0x5`, past block 5).
            Some((from, to)) if from > to => {
                return Err(RpcError::invalid_params("invalid from and to block combination"))
            }
            Some(range) => range,
            // A range starting after the head holds nothing yet.
            None => return Ok(json!([])),
        },
    };
    if to.saturating_sub(from) >= MAX_LOG_BLOCKS {
        return Err(RpcError::server(format!("query exceeds {MAX_LOG_BLOCKS} blocks")));
    }
    scan_logs(chain, &filter.criteria, (from, to), false, LOG_LIMITS)
        .map(|(logs, _)| Value::Array(logs))
}

/// The most blocks one log query covers.
const MAX_LOG_BLOCKS: u64 = 10_000;

/// The most logs one answer holds: a query over busy blocks finds far more than a client can
/// take (a block of ERC-20 transfers holds one per transaction), and the node must not build an
/// answer that takes its memory. A query that finds more is refused; a narrower one succeeds.
const MAX_LOGS: usize = 20_000;

/// The most addresses a log query or filter names, and the most topic positions and options
/// per position (geth's limits): a filter is kept for minutes, so its size is bounded.
const MAX_FILTER_ADDRESSES: usize = 1_000;
const MAX_FILTER_TOPICS: usize = 4;
const MAX_TOPIC_OPTIONS: usize = 1_000;

/// A log query (`eth_getLogs`) or log filter (`eth_newFilter`): its blocks, and what it selects
/// in them.
struct LogFilter {
    /// One block, by hash (`eth_getLogs` only).
    block_hash: Option<B256>,
    from: Option<BlockSpec>,
    to: Option<BlockSpec>,
    criteria: LogCriteria,
    /// An installed filter's share of [`MAX_INSTALLED_CRITERIA`] ([`Rpc::installing`]).
    share: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl LogFilter {
    fn parse(value: Option<&Value>) -> Result<Self, RpcError> {
        let empty = serde_json::Map::new();
        let object = match value {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(object)) => object,
            Some(_) => return Err(RpcError::invalid_params("expected a filter object")),
        };
        let block_hash = block_hash_field(value)?;
        let from = BlockSpec::parse(object.get("fromBlock"))?;
        let to = BlockSpec::parse(object.get("toBlock"))?;
        if block_hash.is_some() && (from.is_some() || to.is_some()) {
            return Err(RpcError::invalid_params(
                "cannot specify both blockHash and fromBlock/toBlock, choose one or the other",
            ));
        }
        if let (Some(from), Some(to)) =
            (from.and_then(BlockSpec::fixed), to.and_then(BlockSpec::fixed))
        {
            if from > to {
                return Err(RpcError::invalid_params("invalid from and to block combination"));
            }
        }
        Ok(Self { block_hash, from, to, criteria: LogCriteria::parse(object)?, share: None })
    }

    /// Its blocks with the head at `head` (from the head to the head when it names none):
    /// `None` when they start after the head.
    fn blocks(&self, head: u64) -> Option<(u64, u64)> {
        let from = self.from.unwrap_or(BlockSpec::Latest).resolve(head)?;
        let to = self.to.unwrap_or(BlockSpec::Latest).resolve(head).unwrap_or(head);
        Some((from, to))
    }
}

/// Which logs a log query or filter selects, besides its blocks.
#[derive(Clone)]
struct LogCriteria {
    /// Any of these emitters (any emitter when empty), sorted.
    addresses: Vec<Address>,
    /// By position: any topic (`None`) or one of these, sorted.
    topics: Vec<Option<Vec<B256>>>,
    /// The keccak256 of each address and topic option, as a block's bloom filter is probed
    /// with them (hashed once, not at each block for each subscription).
    address_hashes: Vec<B256>,
    topic_hashes: Vec<Vec<B256>>,
}

impl LogCriteria {
    /// The `address` and `topics` of a filter object.
    fn parse(filter: &serde_json::Map<String, Value>) -> Result<Self, RpcError> {
        let addresses: Vec<Address> = match filter.get("address") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => serde_json::from_value(Value::Array(list.clone()))
                .map_err(|error| RpcError::invalid_params(format!("invalid address: {error}")))?,
            Some(one) => vec![serde_json::from_value(one.clone())
                .map_err(|error| RpcError::invalid_params(format!("invalid address: {error}")))?],
        };
        let topics: Vec<Option<Vec<B256>>> = match filter.get("topics") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|topic| match topic {
                    Value::Null => Ok(None),
                    // An empty list matches anything, as in Ethereum clients, and so does one
                    // holding null (geth).
                    Value::Array(options)
                        if options.is_empty() || options.iter().any(Value::is_null) =>
                    {
                        Ok(None)
                    }
                    Value::Array(options) => {
                        serde_json::from_value(Value::Array(options.clone())).map(Some)
                    }
                    one => serde_json::from_value(one.clone()).map(|topic| Some(vec![topic])),
                })
                .collect::<Result<_, _>>()
                .map_err(|error| RpcError::invalid_params(format!("invalid topics: {error}")))?,
            None | Some(Value::Null) => Vec::new(),
            // Not a list: refused, not taken as matching every log.
            Some(other) => {
                return Err(RpcError::invalid_params(format!(
                    "invalid topics: {other}: expected a list"
                )))
            }
        };
        if addresses.len() > MAX_FILTER_ADDRESSES {
            return Err(RpcError::invalid_params(format!(
                "a filter names at most {MAX_FILTER_ADDRESSES} addresses"
            )));
        }
        let options = topics.iter().flatten().map(Vec::len).max().unwrap_or(0);
        if topics.len() > MAX_FILTER_TOPICS || options > MAX_TOPIC_OPTIONS {
            return Err(RpcError::invalid_params(format!(
                "a filter names at most {MAX_FILTER_TOPICS} topics, each with at most \
                 {MAX_TOPIC_OPTIONS} options"
            )));
        }
        Ok(Self::new(addresses, topics))
    }

    /// Criteria of `addresses` and `topics`, sorted, so that a log is matched by binary search
    /// (a filter at the bounds, checked against every log of every block, would otherwise cost
    /// thousands of comparisons a log), with their bloom inputs hashed.
    fn new(mut addresses: Vec<Address>, mut topics: Vec<Option<Vec<B256>>>) -> Self {
        addresses.sort_unstable();
        addresses.dedup();
        for options in topics.iter_mut().flatten() {
            options.sort_unstable();
            options.dedup();
        }
        let address_hashes = addresses.iter().map(alloy_primitives::keccak256).collect();
        let topic_hashes = topics
            .iter()
            .flatten()
            .map(|options| options.iter().map(alloy_primitives::keccak256).collect())
            .collect();
        Self { addresses, topics, address_hashes, topic_hashes }
    }

    /// Whether a block's bloom filter allows a matching log: only then are its transactions
    /// read. An empty bloom is a block without logs, whatever the filter.
    fn may_match(&self, bloom: &alloy_primitives::Bloom) -> bool {
        let holds = |hash: &B256| bloom.contains_input(alloy_primitives::BloomInput::Hash(*hash));
        *bloom != alloy_primitives::Bloom::ZERO
            && (self.address_hashes.is_empty() || self.address_hashes.iter().any(holds))
            && self.topic_hashes.iter().all(|options| options.iter().any(holds))
    }

    fn matches(&self, log: &alloy_primitives::Log) -> bool {
        let address_matches =
            self.addresses.is_empty() || self.addresses.binary_search(&log.address).is_ok();
        // A log with fewer topics than the filter names does not match.
        let topics_match = log.data.topics().len() >= self.topics.len()
            && self.topics.iter().enumerate().all(|(position, wanted)| match wanted {
                None => true,
                Some(options) => {
                    let topic = log.data.topics().get(position);
                    topic.is_some_and(|topic| options.binary_search(topic).is_ok())
                }
            });
        address_matches && topics_match
    }
}

/// What one log query may take: at most `logs` logs and about `bytes` bytes of them (a log's
/// JSON is counted as its data and topics in hex and 400 bytes for the rest: a log's data may be
/// a megabyte, and 20 000 such logs would take gigabytes), reading blocks for at most `time` (a
/// filter whose topics a busy block's bloom admits, since the bloom does not know a topic's
/// position, reads every transaction of every block).
#[derive(Clone, Copy)]
struct LogLimits {
    logs: usize,
    bytes: usize,
    time: std::time::Duration,
}

/// What a log query over JSON-RPC may take.
const LOG_LIMITS: LogLimits = LogLimits {
    logs: MAX_LOGS,
    bytes: MAX_BATCH_RESPONSE,
    time: std::time::Duration::from_secs(5),
};

/// About the bytes of a log's JSON.
fn log_json_bytes(log: &alloy_primitives::Log) -> usize {
    400 + 70 * log.data.topics().len() + 2 * log.data.data.len()
}

/// The logs `criteria` selects in blocks `from` to `to`, and the last block looked at: past one
/// of the `limits`, an error, or with `stop_after_block` the logs of the blocks so far (never
/// part of a block; at least one block's, however large).
fn scan_logs(
    chain: &Chain,
    criteria: &LogCriteria,
    (from, to): (u64, u64),
    stop_after_block: bool,
    limits: LogLimits,
) -> Result<(Vec<Value>, u64), RpcError> {
    let deadline = std::time::Instant::now() + limits.time;
    let mut found = Vec::new();
    let mut bytes = 0;
    for number in from..=to {
        let Some(block) = chain.store().block(number).map_err(RpcError::server)? else { continue };
        if criteria.may_match(&block.logs_bloom) {
            each_log(chain, &block, |record, log, index| {
                // Past a bound, a query is refused and a poll stops after this block: what a
                // query finds past it is not built (a poll's one block is, whatever its size).
                let room =
                    stop_after_block || (found.len() <= limits.logs && bytes <= limits.bytes);
                if criteria.matches(log) && room {
                    bytes += log_json_bytes(log);
                    found.push(log_json(record, log, index));
                }
            })?;
        }
        let full = found.len() >= limits.logs || bytes > limits.bytes;
        let late = std::time::Instant::now() >= deadline;
        if stop_after_block && (full || late) {
            return Ok((found, number));
        }
        if found.len() > limits.logs {
            return Err(RpcError::server(format!(
                "query returned more than {} logs: ask for fewer blocks, addresses or topics",
                limits.logs
            )));
        }
        if bytes > limits.bytes {
            let what = "logs: ask for fewer blocks, addresses or topics";
            return Err(RpcError::too_large(what, limits.bytes));
        }
        if late && number < to {
            return Err(RpcError::limit_exceeded(&format!(
                "a log query reads blocks for at most {} s: ask for fewer blocks",
                limits.time.as_secs()
            )));
        }
    }
    Ok((found, to))
}

/// Calls `visit` on every log of `block`: its transaction, the log, its index there.
fn each_log(
    chain: &Chain,
    block: &Block,
    mut visit: impl FnMut(&TransactionRecord, &alloy_primitives::Log, usize),
) -> Result<(), RpcError> {
    for hash in &block.transactions {
        let Some(record) = chain.store().transaction(*hash).map_err(RpcError::server)? else {
            continue;
        };
        for (index, log) in record.logs.iter().enumerate() {
            visit(&record, log, index);
        }
    }
    Ok(())
}

/// The filter methods (see the module's documentation).
fn filter_method(
    rpc: &Rpc,
    head: &Block,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcError> {
    let now = std::time::Instant::now();
    let not_found = || RpcError::server("filter not found");
    // A filter reports what comes after it is installed: blocks after the head, accepted
    // transactions after the latest.
    let installed = |filter: Filter| {
        let first = filter.positions(&rpc.chain, head.number).end() + 1;
        rpc.filters.install(filter, first, now).map(|id| json!(id)).map_err(RpcError::server)
    };
    match method {
        "eth_newFilter" => {
            let filter = LogFilter::parse(Some(
                params
                    .first()
                    .ok_or_else(|| RpcError::invalid_params("expected a filter object"))?,
            ))?;
            if filter.block_hash.is_some() {
                return Err(RpcError::invalid_params(
                    "a filter cannot name a blockHash: use eth_getLogs for one block",
                ));
            }
            installed(Filter::Logs(Arc::new(rpc.installing(filter)?)))
        }
        "eth_newBlockFilter" => installed(Filter::Blocks),
        "eth_newPendingTransactionFilter" => installed(Filter::Pending),
        "eth_getFilterChanges" => {
            let id: U256 = parse(params, 0, "filter id")?;
            // Up to MAX_LOG_BLOCKS positions a poll, and a log filter's poll stops after the
            // block where MAX_LOGS logs are reached: the filter moves past what was reported,
            // and a client far behind catches up poll by poll, however many blocks come between
            // its polls.
            let positions = |filter: &Filter| filter.positions(&rpc.chain, head.number);
            let scan = |filter: &Filter, positions: std::ops::RangeInclusive<u64>| {
                let (first, last) = (*positions.start(), *positions.end());
                match filter {
                    Filter::Pending => Ok((json!(rpc.chain.accepted().get(positions)), last)),
                    Filter::Blocks => {
                        let mut hashes = Vec::new();
                        for number in first..=last {
                            if let Some(block) =
                                rpc.chain.store().block(number).map_err(RpcError::server)?
                            {
                                hashes.push(json!(block.hash));
                            }
                        }
                        Ok((Value::Array(hashes), last))
                    }
                    Filter::Logs(filter) => {
                        let from = first.max(filter.from.and_then(BlockSpec::fixed).unwrap_or(0));
                        let to =
                            filter.to.and_then(BlockSpec::fixed).map_or(last, |to| to.min(last));
                        if from > to {
                            return Ok((json!([]), last));
                        }
                        let (logs, covered) =
                            scan_logs(&rpc.chain, &filter.criteria, (from, to), true, LOG_LIMITS)?;
                        Ok((Value::Array(logs), if covered == to { last } else { covered }))
                    }
                }
            };
            rpc.filters
                .poll(id, MAX_LOG_BLOCKS, now, positions, scan, |_| json!([]))
                .ok_or_else(not_found)?
        }
        "eth_getFilterLogs" => {
            let id: U256 = parse(params, 0, "filter id")?;
            let Filter::Logs(filter) = rpc.filters.criteria(id, now).ok_or_else(not_found)? else {
                // Block and pending-transaction filters have no logs.
                return Err(not_found());
            };
            logs_of(&rpc.chain, head, &filter)
        }
        "eth_uninstallFilter" => {
            let id: U256 = parse(params, 0, "filter id")?;
            Ok(json!(rpc.filters.uninstall(id)))
        }
        _ => Err(RpcError::server(format!("{method} is not a filter method"))),
    }
}

#[cfg(test)]
mod tests {
    use super::{txpool_within, LogCriteria};
    use crate::chain::tests::{dev_signer, open_chain, transfer};
    use alloy_primitives::{Address, Bloom, Log, LogData, B256};

    /// `rpc`'s answer to one request of `method` with `params` (in `turn`, which calls need).
    fn asked(
        rpc: &super::Rpc,
        turn: Option<&super::Turn>,
        method: &str,
        params: &serde_json::Value,
    ) -> serde_json::Value {
        let request =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        super::answer(rpc, &request, turn)
    }

    /// Runtime code emitting three LOG0s of 64 zero bytes (PUSH1 64 PUSH1 0 LOG0), then STOP.
    fn three_logs() -> Vec<u8> {
        let mut runtime = [0x60, 0x40, 0x60, 0x00, 0xa0].repeat(3);
        runtime.push(0x00);
        runtime
    }

    /// An RPC over a new test chain (in `directory`) that takes in `received` bytes at once.
    pub(super) fn test_rpc(directory: &std::path::Path, received: usize) -> super::Rpc {
        signing_rpc(directory, received, Vec::new())
    }

    /// [`test_rpc`], signing for `unlocked`.
    pub(super) fn signing_rpc(
        directory: &std::path::Path,
        received: usize,
        unlocked: Vec<alloy_signer_local::PrivateKeySigner>,
    ) -> super::Rpc {
        let chain = open_chain(directory, crate::chain::ChainConfig::for_tests());
        let ping_every = crate::server::Limits::default().idle_timeout;
        let received = std::sync::Arc::new(tokio::sync::Semaphore::new(received));
        super::Rpc::new(std::sync::Arc::new(chain), unlocked, received, ping_every)
    }

    /// A request (`POST path`, `body`) on a connection of its own: the status and the JSON
    /// answer.
    async fn post(
        address: std::net::SocketAddr,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request_head(path, body.len()).as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        parse_answer(&answer)
    }

    fn request_head(path: &str, length: usize) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_waiting_for_a_turn_hold_up_no_other_request() {
        use serde_json::json;
        use std::time::Duration;
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(test_rpc(directory.path(), 64 << 20));
        let _watchdog = crate::turns::tests::Watchdog::new("calls blocked the runtime's threads");
        // Every call turn taken: calls wait.
        let mut held = Vec::new();
        while let Ok(turn) =
            tokio::time::timeout(Duration::from_millis(50), rpc.chain.call_turn()).await
        {
            held.push(turn);
        }
        assert!(!held.is_empty());
        let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_call",
            "params": [{ "to": Address::repeat_byte(0xbe), "data": "0x" }, "latest"] });
        let calls: Vec<_> = (0..2 * super::MAX_ANSWERING)
            .map(|_| {
                let (rpc, call) = (std::sync::Arc::clone(&rpc), call.clone());
                tokio::spawn(async move { rpc.respond_in_turn(call, ()).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(calls.iter().all(|call| !call.is_finished()), "a call ran without a turn");
        // Other requests are answered meanwhile.
        let number = json!({ "jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber" });
        let answer = tokio::time::timeout(Duration::from_secs(10), rpc.respond_in_turn(number, ()))
            .await
            .expect("eth_blockNumber waited behind the calls");
        assert_eq!(answer["result"], json!("0x0"), "{answer}");
        // And the calls, once turns are free.
        drop(held);
        for call in calls {
            let answer =
                tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap();
            assert_eq!(answer["result"], json!("0x"), "{answer}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sent_transaction_with_a_null_gas_is_estimated_in_a_call_turn() {
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(signing_rpc(directory.path(), 1 << 20, vec![dev_signer(0)]));
        let send = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
            "params": [{ "from": dev_signer(0).address(), "to": Address::repeat_byte(0xbe),
                "value": "0x1", "gas": null }] });
        let answer = rpc.respond_in_turn(send, ()).await;
        assert!(answer["result"].is_string(), "{answer}");
        // With a tip alone, estimated at the fees it is signed with.
        let tipped = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
            "params": [{ "from": dev_signer(0).address(), "to": Address::repeat_byte(0xbe),
                "value": "0x1", "maxPriorityFeePerGas": "0x1" }] });
        let answer = rpc.respond_in_turn(tipped, ()).await;
        assert!(answer["result"].is_string(), "{answer}");
        // A proof names no block but the latest.
        let proof = json!({ "jsonrpc": "2.0", "id": 2, "method": "duet_getProof",
            "params": [{ "kind": "balance", "address": Address::repeat_byte(0xbe) }, "0x0"] });
        let answer = rpc.respond_in_turn(proof, ()).await;
        assert!(answer["error"]["message"].as_str().unwrap().contains("latest state"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_move_transaction_is_estimated_and_called_as_move_runs_it() {
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(signing_rpc(directory.path(), 1 << 20, vec![dev_signer(0)]));
        let ask = |request: serde_json::Value| rpc.respond_in_turn(request, ());
        let sender = dev_signer(0).address();
        let recipient = Address::repeat_byte(0xbe);
        let payload = |amount: u128| {
            let transfer = duet_types::EntryFunction {
                module_address: Address::with_last_byte(1),
                module_name: "eth".into(),
                function: "transfer".into(),
                type_arguments: vec![],
                arguments: vec![recipient.to_vec(), amount.to_le_bytes().to_vec()],
            };
            alloy_primitives::Bytes::from(duet_types::MovePayload::EntryFunction(transfer).encode())
        };
        let request = |method: &str, amount: u128| {
            json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": [{ "from": sender,
                "to": duet_types::MOVE_ENTRY_ADDRESS, "data": payload(amount) }] })
        };
        // The estimate is Move's gas for the transfer, which a transaction sent with it uses.
        let estimate = ask(request("eth_estimateGas", 1_000)).await;
        let gas =
            u64::from_str_radix(estimate["result"].as_str().unwrap().trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("{estimate}"));
        assert!(gas > 21_000 + 16 * payload(1_000).len() as u64, "{gas}");
        // Priced far past what the sender holds for the gas cap: the same estimate (Move gas
        // does not depend on the price; a call charges no fee).
        let mut priced = request("eth_estimateGas", 1_000);
        priced["params"][0]["maxFeePerGas"] = json!("0xffffffffffffffffffffffff");
        assert_eq!(ask(priced).await["result"], estimate["result"]);
        // A Move transaction sends no ETH, estimated or sent.
        let mut paying = request("eth_estimateGas", 1_000);
        paying["params"][0]["value"] = json!("0x1");
        let refused = ask(paying).await;
        assert!(
            refused["error"]["message"].as_str().unwrap().contains("sends no ETH"),
            "{refused}"
        );
        // An abort is the call's failure, saying it: more than the sender holds.
        let refused = ask(request("eth_call", u128::MAX)).await;
        let message = refused["error"]["message"].as_str().unwrap_or_else(|| panic!("{refused}"));
        assert!(message.contains("Move transaction failed"), "{message}");
        // Sent without a gas limit, it is estimated so, and succeeds.
        let sent = ask(request("eth_sendTransaction", 1_000)).await;
        let hash: B256 =
            serde_json::from_value(sent["result"].clone()).unwrap_or_else(|_| panic!("{sent}"));
        let chain = rpc.chain.clone();
        tokio::task::spawn_blocking(move || chain.produce_block().unwrap()).await.unwrap();
        let receipt = ask(json!({ "jsonrpc": "2.0", "id": 1,
            "method": "eth_getTransactionReceipt", "params": [hash] }))
        .await;
        assert_eq!(receipt["result"]["status"], "0x1", "{receipt}");
        assert_eq!(receipt["result"]["gasUsed"], estimate["result"], "{receipt}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_signed_for_an_unlocked_account_is_filled_in_and_not_sent() {
        use alloy_consensus::Transaction;
        use alloy_eips::eip2718::Decodable2718;
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(signing_rpc(directory.path(), 1 << 20, vec![dev_signer(0)]));
        let to = Address::repeat_byte(0xbe);
        let sign = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_signTransaction",
            "params": [{ "from": dev_signer(0).address(), "to": to, "value": "0x5" }] });
        let answer = rpc.respond_in_turn(sign, ()).await;
        // Hex, as every client reads it.
        let hex = answer["result"].as_str().unwrap_or_else(|| panic!("{answer}"));
        let raw: alloy_primitives::Bytes = hex.parse().unwrap();
        let envelope = alloy_consensus::TxEnvelope::decode_2718_exact(&raw).unwrap();
        let signer = alloy_consensus::transaction::SignerRecoverable::recover_signer(&envelope);
        assert_eq!(signer.unwrap(), dev_signer(0).address());
        assert_eq!((envelope.to(), envelope.value()), (Some(to), alloy_primitives::U256::from(5)));
        assert_eq!(envelope.nonce(), 0);
        assert!(envelope.gas_limit() >= 21_000, "the gas is estimated");
        assert_eq!(rpc.chain.pending_count(), 0, "signed, not sent");
        // Sent as it is, it is the account's next transaction.
        let send = json!({ "jsonrpc": "2.0", "id": 2, "method": "eth_sendRawTransaction",
            "params": [raw] });
        let answer = rpc.respond_in_turn(send, ()).await;
        assert_eq!(answer["result"], json!(envelope.tx_hash()), "{answer}");
        // A request's access list is signed with it, and its gas estimated with it: 2 400 for
        // an account the transfer never touches.
        let listed = json!([{ "address": Address::repeat_byte(0x77), "storageKeys": [] }]);
        let sign = json!({ "jsonrpc": "2.0", "id": 4, "method": "eth_signTransaction",
            "params": [{ "from": dev_signer(0).address(), "to": to, "accessList": listed }] });
        let answer = rpc.respond_in_turn(sign, ()).await;
        let raw: alloy_primitives::Bytes =
            serde_json::from_value(answer["result"].clone()).unwrap_or_else(|_| panic!("{answer}"));
        let envelope = alloy_consensus::TxEnvelope::decode_2718_exact(&raw).unwrap();
        assert_eq!(serde_json::to_value(envelope.access_list().unwrap()).unwrap(), listed);
        assert_eq!(envelope.gas_limit(), 21_000 + 2_400);
        // An account without a key here is refused.
        let other = json!({ "jsonrpc": "2.0", "id": 3, "method": "eth_signTransaction",
            "params": [{ "from": dev_signer(5).address(), "to": to, "gas": "0x5208" }] });
        let answer = rpc.respond_in_turn(other, ()).await;
        assert!(answer["error"]["message"].as_str().unwrap().contains("no key"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sent_transaction_with_authorizations_is_a_set_code_one() {
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(signing_rpc(directory.path(), 1 << 20, vec![dev_signer(0)]));
        // The second dev account delegates to 0xbebe…be; the first sends the authorization.
        let delegate = Address::repeat_byte(0xbe);
        let signed = crate::chain::tests::authorization(&dev_signer(1), 0);
        let send = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
            "params": [{ "from": dev_signer(0).address(), "to": dev_signer(1).address(),
                "gas": "0x186a0", "authorizationList": [signed] }] });
        let answer = rpc.respond_in_turn(send, ()).await;
        let hash: alloy_primitives::B256 =
            serde_json::from_value(answer["result"].clone()).unwrap_or_else(|_| panic!("{answer}"));
        let chain = std::sync::Arc::clone(&rpc.chain);
        tokio::task::spawn_blocking(move || chain.produce_block().unwrap()).await.unwrap();
        let code =
            crate::store::ReadState::code(rpc.chain.store(), dev_signer(1).address()).unwrap();
        let mut expected = vec![0xef, 0x01, 0x00];
        expected.extend_from_slice(delegate.as_slice());
        assert_eq!(code.as_ref(), expected.as_slice(), "the delegation of {hash}");
        // A creation cannot carry authorizations.
        let create = json!({ "jsonrpc": "2.0", "id": 2, "method": "eth_sendTransaction",
            "params": [{ "from": dev_signer(0).address(), "gas": "0x186a0",
                "authorizationList": [signed] }] });
        let answer = rpc.respond_in_turn(create, ()).await;
        let refused = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("{answer}"));
        assert!(refused.contains("cannot create"), "{answer}");
    }

    #[test]
    fn reads_and_calls_at_a_recent_block_see_that_blocks_state() {
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), crate::chain::ChainConfig::for_tests());
        let recipient = Address::repeat_byte(0xbe);
        chain.submit(&transfer(&dev_signer(0), 0, 10)).unwrap();
        let asked_at = chain.produce_block().unwrap();
        // The next block pays the recipient another wei; a read or call at `asked_at`, by
        // number or by hash, still sees one.
        chain.submit(&transfer(&dev_signer(0), 1, 10)).unwrap();
        let head = chain.produce_block().unwrap();
        let code = crate::chain::tests::balance_and_number_code();
        let call = json!({ "data": alloy_primitives::Bytes::from(code) });
        let word = |value: u64| format!("{value:064x}");
        let turn = chain.call_turn_blocking();
        let ask = |method: &str, params: serde_json::Value| {
            let params = params.as_array().unwrap().clone();
            super::state_method(&chain, &head, method, &params, Some(&turn))
        };
        // (block, the recipient's balance and the sender's nonce there, NUMBER in a call on it:
        // the block's own, as geth runs calls; the next block's for `pending`)
        for (block, paid, number) in [
            (json!(format!("{:#x}", asked_at.number)), 1, asked_at.number),
            (json!({ "blockHash": asked_at.hash }), 1, asked_at.number),
            (json!({ "blockNumber": format!("{:#x}", asked_at.number) }), 1, asked_at.number),
            (json!("latest"), 2, head.number),
            (json!("pending"), 2, head.number + 1),
        ] {
            let balance = ask("eth_getBalance", json!([recipient, block])).unwrap();
            assert_eq!(balance, json!(format!("{paid:#x}")), "{block}");
            let nonce = ask("eth_getTransactionCount", json!([dev_signer(0).address(), block]));
            assert_eq!(nonce.unwrap(), json!(format!("{paid:#x}")), "{block}");
            let output = ask("eth_call", json!([call, block])).unwrap();
            assert_eq!(output, json!(format!("0x{}{}", word(paid), word(number))), "{block}");
        }
        // eth_estimateGas runs as the pending block unless told otherwise, as geth: code that
        // reverts unless NUMBER is n (NUMBER PUSH8 n EQ PUSH1 18 JUMPI PUSH1 0 DUP1 REVERT
        // JUMPDEST STOP).
        let expecting = |n: u64| {
            let mut code = vec![0x43, 0x67];
            code.extend(n.to_be_bytes());
            code.extend(alloy_primitives::hex!("14601257600080fd5b00"));
            json!({ "data": alloy_primitives::Bytes::from(code) })
        };
        let next = expecting(head.number + 1);
        assert!(ask("eth_estimateGas", json!([next])).is_ok());
        assert!(ask("eth_estimateGas", json!([next, "pending"])).is_ok());
        assert!(ask("eth_estimateGas", json!([next, "latest"])).is_err());
        assert!(ask("eth_estimateGas", json!([expecting(head.number), "latest"])).is_ok());
        assert!(ask("eth_call", json!([next])).is_err(), "eth_call runs as the latest block");
        // The pending nonce counts the pool's transactions, however `pending` is written.
        chain.submit(&transfer(&dev_signer(0), 2, 10)).unwrap();
        let sender = dev_signer(0).address();
        for (block, nonce) in [
            (json!("pending"), "0x3"),
            (json!({ "blockNumber": "pending" }), "0x3"),
            (json!("latest"), "0x2"),
        ] {
            let answer = ask("eth_getTransactionCount", json!([sender, block])).unwrap();
            assert_eq!(answer, json!(nonce), "{block}");
        }
        // EIP-1898 objects name one block: both, or neither, is refused.
        let both = json!({ "blockHash": asked_at.hash, "blockNumber": "0x1" });
        assert!(ask("eth_getBalance", json!([recipient, both])).is_err());
        assert!(ask("eth_getBalance", json!([recipient, {}])).is_err());
        // A block not there (yet), or unknown: refused, as geth words it.
        let later = json!(format!("{:#x}", head.number + 1));
        let error = ask("eth_getBalance", json!([recipient, later])).unwrap_err();
        assert_eq!(error.message, "header not found");
        let unknown = json!({ "blockHash": B256::repeat_byte(7) });
        let error = ask("eth_call", json!([call, unknown])).unwrap_err();
        assert!(error.message.contains("not found"), "{error:?}");
    }

    #[test]
    fn calls_count_a_given_access_list_and_a_malformed_one_is_refused() {
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), crate::chain::ChainConfig::for_tests());
        let (head, turn) = (chain.head(), chain.call_turn_blocking());
        let ask = |method: &str, params| ask_state(&chain, &head, &turn, method, params);
        let sender = dev_signer(0).address();
        let to = Address::repeat_byte(0xbe);
        let plain = json!({ "from": sender, "to": to });
        let gas = |answer: serde_json::Value| {
            u64::from_str_radix(answer.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        let without = gas(ask("eth_estimateGas", json!([plain])).unwrap());
        assert_eq!(without, 21_000);
        // An entry naming an account the call never touches, with one slot: 2 400 + 1 900.
        let unused = json!([{ "address": Address::repeat_byte(0x77),
            "storageKeys": [B256::repeat_byte(1)] }]);
        let listed = json!({ "from": sender, "to": to, "accessList": unused });
        assert_eq!(gas(ask("eth_estimateGas", json!([listed])).unwrap()), without + 4_300);
        // eth_createAccessList keeps what it was given and says what it costs.
        let answer = ask("eth_createAccessList", json!([listed])).unwrap();
        assert_eq!(answer["accessList"], unused, "{answer}");
        assert_eq!(gas(answer["gasUsed"].clone()), without + 4_300, "{answer}");
        assert!(answer.get("error").is_none(), "{answer}");
        // A malformed list is refused, and names the field.
        for malformed in
            [json!("0x12"), json!([{ "address": "0x12" }]), json!([{ "storageKeys": [] }])]
        {
            let call = json!({ "from": sender, "to": to, "accessList": malformed });
            for method in ["eth_call", "eth_estimateGas", "eth_createAccessList"] {
                let error = ask(method, json!([call])).unwrap_err();
                assert_eq!(error.code, -32602, "{method} {malformed}: {error:?}");
                assert!(error.message.contains("invalid accessList"), "{error:?}");
            }
        }
        assert_eq!(chain.head().number, head.number, "calls commit nothing");
    }

    #[test]
    fn a_call_trace_is_shaped_as_geths_call_tracer_and_other_tracers_are_refused() {
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), crate::chain::ChainConfig::for_tests());
        let (head, turn) = (chain.head(), chain.call_turn_blocking());
        let ask = |method: &str, params| ask_state(&chain, &head, &turn, method, params);
        let sender = dev_signer(0).address();
        // Creation code: STATICCALL the identity precompile, then LOG0 of nothing, then STOP.
        let code = alloy_primitives::hex!("60006000600060006004 5afa50 60006000a0 00");
        let call = json!({ "from": sender, "data": alloy_primitives::Bytes::from(code.to_vec()) });
        let tracer = json!({ "tracer": "callTracer", "tracerConfig": { "withLog": true } });
        let trace = ask("debug_traceCall", json!([call, "latest", tracer])).unwrap();
        assert_eq!(trace["type"], "CREATE", "{trace}");
        assert_eq!(trace["from"], json!(sender));
        assert_eq!(trace["to"], json!(sender.create(0)));
        assert_eq!(trace["value"], "0x0");
        assert!(trace["gas"].as_str().unwrap().starts_with("0x"), "{trace}");
        assert!(trace.get("error").is_none(), "{trace}");
        let inner = &trace["calls"][0];
        assert_eq!(inner["type"], "STATICCALL", "{trace}");
        assert_eq!(inner["to"], json!(Address::with_last_byte(4)));
        assert!(inner.get("value").is_none(), "{trace}");
        assert_eq!(
            trace["logs"],
            json!([{ "address": sender.create(0), "topics": [],
            "data": "0x", "position": "0x1" }])
        );
        // Without withLog, no logs; other tracers, options and configurations are refused.
        let plain_trace =
            ask("debug_traceCall", json!([call, "latest", { "tracer": "callTracer" }])).unwrap();
        assert!(plain_trace.get("logs").is_none());
        for options in [
            json!(null),
            json!({}),
            json!({ "tracer": "prestateTracer" }),
            json!({ "tracer": "callTracer", "tracerConfig": { "diffMode": true } }),
            json!({ "tracer": "callTracer", "tracerConfig": { "withLog": "yes" } }),
        ] {
            let error = ask("debug_traceCall", json!([call, "latest", options])).unwrap_err();
            assert_eq!(error.code, -32602, "{options}: {error:?}");
            assert!(error.message.contains("callTracer only"), "{error:?}");
        }
        let unknown = json!([B256::repeat_byte(9), { "tracer": "callTracer" }]);
        let error = ask("debug_traceTransaction", unknown).unwrap_err();
        assert!(error.message.contains("not found"), "{error:?}");
        // State and block overrides, as eth_call takes them: the created contract's address
        // comes from the sender's nonce, overridden to 7.
        let overridden = json!({ "tracer": "callTracer",
            "stateOverrides": { sender.to_string(): { "nonce": "0x7" } } });
        let trace = ask("debug_traceCall", json!([call, "latest", overridden])).unwrap();
        assert_eq!(trace["to"], json!(sender.create(7)), "{trace}");
        let bad = json!({ "tracer": "callTracer", "stateOverrides": { "0x12": {} } });
        let error = ask("debug_traceCall", json!([call, "latest", bad])).unwrap_err();
        assert_eq!(error.code, -32602);
        assert!(error.message.contains("state overrides"), "{error:?}");
        // A timeout as a Go duration (past 10 s, 10 s); geth's reexec is taken and means nothing.
        for good in ["1m", "2s500ms", "1.5s", "0", "300us"] {
            let timed = json!({ "tracer": "callTracer", "timeout": good, "reexec": 128 });
            assert!(ask("debug_traceCall", json!([call, "latest", timed])).is_ok(), "{good}");
        }
        assert_eq!(
            super::debug::duration("1m30.5s"),
            Some(std::time::Duration::from_millis(90_500))
        );
        for bad in [json!("5"), json!("5x"), json!(5), json!(""), json!("-1s"), json!("1..5s")] {
            let timed = json!({ "tracer": "callTracer", "timeout": bad });
            let error = ask("debug_traceCall", json!([call, "latest", timed])).unwrap_err();
            assert!(error.message.contains("invalid timeout"), "{bad}: {error:?}");
        }
        // As geth with a named tracer, the opcode logger's options are taken and mean nothing;
        // overrides are a call's only.
        let logger = json!({ "tracer": "callTracer", "disableStorage": true,
            "enableMemory": true, "disableStack": false, "enableReturnData": true, "limit": 5 });
        assert_eq!(ask("debug_traceCall", json!([call, "latest", logger])).unwrap(), plain_trace);
        let overridden = json!(["0x0", { "tracer": "callTracer", "stateOverrides": {} }]);
        let error = ask("debug_traceBlockByNumber", overridden).unwrap_err();
        assert!(error.message.contains("only a call's trace"), "{error:?}");
        // A call of the Move entry address is traced as the Move transaction it is: its own
        // frame, with the Move gas, failed with the Move status if it fails.
        let to = duet_types::MOVE_ENTRY_ADDRESS;
        for (amount, error) in [(5, None), (u128::MAX, Some("aborted in"))] {
            let payload = duet_types::MovePayload::EntryFunction(
                crate::chain::tests::move_transfer(to, amount),
            );
            let move_call = json!({ "from": sender, "to": to,
                "data": alloy_primitives::Bytes::from(payload.encode()) });
            let plain = json!({ "tracer": "callTracer" });
            let trace = ask("debug_traceCall", json!([move_call, "latest", plain])).unwrap();
            assert_eq!((&trace["type"], &trace["to"]), (&json!("CALL"), &json!(to)), "{trace}");
            assert_eq!(trace["error"].as_str().map(|text| &text[..10]), error, "{trace}");
            let used = u64::from_str_radix(&trace["gasUsed"].as_str().unwrap()[2..], 16).unwrap();
            if error.is_none() {
                let estimate = ask("eth_estimateGas", json!([move_call])).unwrap();
                assert_eq!(json!(format!("{used:#x}")), estimate, "{trace}");
            }
        }
        // A block without transactions has no traces.
        let genesis = ask("debug_traceBlockByNumber", json!(["0x0", { "tracer": "callTracer" }]));
        assert_eq!(genesis.unwrap(), json!([]));
        let later = ask("debug_traceBlockByNumber", json!(["0x5", { "tracer": "callTracer" }]));
        assert_eq!(later.unwrap_err().message, "block not found");
    }

    /// `method` with `params` (a JSON array) answered by `state_method` at `head`, in `turn`.
    fn ask_state(
        chain: &super::Chain,
        head: &super::Block,
        turn: &crate::turns::Turn,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, super::RpcError> {
        let serde_json::Value::Array(params) = params else { panic!("params: {params}") };
        super::state_method(chain, head, method, &params, Some(turn))
    }

    /// The status and JSON body of an HTTP answer (not chunked).
    fn parse_answer(answer: &[u8]) -> (u16, serde_json::Value) {
        let text = String::from_utf8_lossy(answer);
        let status = text[9..12].parse().unwrap();
        let body = &text[text.find("\r\n\r\n").expect("a whole head") + 4..];
        (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }

    /// `eth_chainId`, padded to `size` bytes.
    fn chain_id_request(size: usize) -> String {
        let head = r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[],"pad":""#;
        let padding = "x".repeat(size - head.len() - 2);
        let request = format!("{head}{padding}\"}}");
        assert_eq!(request.len(), size);
        request
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_bytes_past_the_budget_are_refused_until_those_held_are_answered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const FREE: usize = crate::server::UNCOUNTED_BYTES;
        let directory = tempfile::tempdir().unwrap();
        let chain = open_chain(directory.path(), crate::chain::ChainConfig::for_tests());
        let timeout = std::time::Duration::from_secs(20);
        // The test watches the budget: a request is read frame by frame, and a probe read
        // while the held body is still arriving could take the bytes the held body needs.
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(100_000));
        let router = super::router_within(
            std::sync::Arc::new(chain),
            Vec::new(),
            timeout,
            std::sync::Arc::clone(&budget),
        );
        let free_until = |permits: usize| {
            let budget = std::sync::Arc::clone(&budget);
            async move {
                let started = std::time::Instant::now();
                while budget.available_permits() != permits {
                    assert!(
                        started.elapsed().as_secs() < 10,
                        "{} bytes of the budget free, not {permits}",
                        budget.available_permits()
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = crate::server::Limits::default();
        tokio::spawn(crate::server::serve(listener, router, limits, std::future::pending()));
        // Within the budget: answered.
        let probe = chain_id_request(FREE + 30_000);
        let (status, answer) = post(address, "/", &probe).await;
        assert_eq!((status, answer["id"].as_u64()), (200, Some(7)), "{answer}");
        assert!(answer["result"].is_string(), "{answer}");
        // Its bytes are free once it is answered.
        free_until(100_000).await;
        // A client sends all but 10 000 bytes of a body whose counted part is 90 000, and waits.
        let held = chain_id_request(FREE + 90_000);
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(request_head("/", held.len()).as_bytes()).await.unwrap();
        slow.write_all(&held.as_bytes()[..FREE + 80_000]).await.unwrap();
        free_until(20_000).await;
        // The node holds those bytes: 30 000 more pass the budget of 100 000, and are refused at
        // once, in each route's form.
        let (status, answer) = post(address, "/", &probe).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (200, &serde_json::json!(-32005)),
            "{answer}"
        );
        let (status, answer) = post(address, "/move/v1/view", &probe).await;
        assert_eq!(status, 503, "{answer}");
        assert!(answer["error"].as_str().unwrap().starts_with("limit exceeded"), "{answer}");
        // Small requests are not counted: still answered.
        let (status, answer) = post(address, "/", &chain_id_request(400)).await;
        assert!(status == 200 && answer["result"].is_string(), "{answer}");
        // The held body arrives and is answered; its bytes are free again.
        slow.write_all(&held.as_bytes()[FREE + 80_000..]).await.unwrap();
        let mut answer = Vec::new();
        slow.read_to_end(&mut answer).await.unwrap();
        let (status, answer) = parse_answer(&answer);
        assert_eq!((status, answer["id"].as_u64()), (200, Some(7)), "{answer}");
        free_until(100_000).await;
        let (status, answer) = post(address, "/", &probe).await;
        assert!(status == 200 && answer["result"].is_string(), "{answer}");
    }

    /// EIP-712's own example: Cow's mail to Bob, signed with the key keccak256("cow").
    #[test]
    fn typed_data_is_signed_as_eip_712_says() {
        let directory = tempfile::tempdir().unwrap();
        let cow =
            alloy_signer_local::PrivateKeySigner::from_bytes(&alloy_primitives::keccak256("cow"))
                .unwrap();
        let rpc = signing_rpc(directory.path(), 1_000_000, vec![cow]);
        let mail = serde_json::json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
                "Mail": [
                    {"name": "from", "type": "Person"},
                    {"name": "to", "type": "Person"},
                    {"name": "contents", "type": "string"}
                ]
            },
            "primaryType": "Mail",
            "domain": {
                "name": "Ether Mail",
                "version": "1",
                "chainId": 1,
                "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
            },
            "message": {
                "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
                "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
                "contents": "Hello, Bob!"
            }
        });
        let cow_address = "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826";
        let ask = |method: &str, params: serde_json::Value| asked(&rpc, None, method, &params);
        let expected = "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d\
                        07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562\
                        1c";
        // As an object, and as its JSON text (viem and ethers send text).
        let signed = ask("eth_signTypedData_v4", serde_json::json!([cow_address, mail]));
        assert_eq!(signed["result"], expected, "{signed}");
        let signed =
            ask("eth_signTypedData_v4", serde_json::json!([cow_address, mail.to_string()]));
        assert_eq!(signed["result"], expected, "{signed}");
        // An account the node has no key for; typed data that is not.
        let stranger = "0x000000000000000000000000000000000000dEaD";
        let refused = ask("eth_signTypedData_v4", serde_json::json!([stranger, mail]));
        assert!(refused["error"]["message"].as_str().unwrap().contains("no key for"), "{refused}");
        let mut undefined = mail.clone();
        undefined["primaryType"] = "Letter".into();
        let refused = ask("eth_signTypedData_v4", serde_json::json!([cow_address, undefined]));
        assert_eq!(refused["error"]["code"], -32602, "{refused}");
        let refused = ask("eth_signTypedData_v4", serde_json::json!([cow_address, "{"]));
        assert_eq!(refused["error"]["code"], -32602, "{refused}");

        // Types that would unfold 2^21 times (each naming the next twice), a chain longer than
        // the depth, one containing itself, and more types than the bound: refused at once.
        let mut itself = serde_json::Map::new();
        itself.insert("T0".into(), serde_json::json!([{"name": "again", "type": "T0[]"}]));
        let itself = serde_json::json!({"types": itself, "primaryType": "T0", "message": {}});
        // A chain of 40 whose names sort from its bottom (T1 names T0, T2 names T1…), and a
        // field of 40 array dimensions (each a level of the resolved type).
        let mut upward: serde_json::Map<String, serde_json::Value> = (1..40)
            .map(|at| {
                (
                    format!("T{at}"),
                    serde_json::json!([{"name": "f", "type": format!("T{}", at - 1)}]),
                )
            })
            .collect();
        upward.insert("T0".into(), serde_json::json!([{"name": "v", "type": "uint256"}]));
        let upward = serde_json::json!({"types": upward, "primaryType": "T39", "message": {}});
        let dimensions = format!("uint256{}", "[]".repeat(40));
        let dimensions = serde_json::json!({"types": {"T0": [{"name": "deep", "type": dimensions}]},
            "primaryType": "T0", "message": {}});
        for (data, error) in [
            (typed_chain(20, 2, false), "T9 unfolds into more than 4096 types"),
            (typed_chain(40, 1, false), "nest more than 32 levels deep or contain themselves"),
            (upward, "nest more than 32 levels deep or contain themselves"),
            (itself, "nest more than 32 levels deep or contain themselves"),
            (dimensions, "T0.deep: more than 32 array dimensions"),
            (typed_chain(64, 1, false), "65 types, at most 64"),
        ] {
            let started = std::time::Instant::now();
            let refused = ask("eth_signTypedData_v4", serde_json::json!([cow_address, data]));
            let message = refused["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(error), "{refused}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "{error}");
        }
        // Within the bounds: 3071 types unfolded from 11 levels of two fields each, signed.
        let within = typed_chain(10, 2, true);
        let signed = ask("eth_signTypedData_v4", serde_json::json!([cow_address, within]));
        assert!(signed["result"].is_string(), "{signed}");
    }

    /// Typed data whose struct types `T0` … `T{length - 1}` each have `fields` fields of the
    /// next type, and `T{length}` one `uint256`; with a message that fills them if `filled`
    /// (else an empty one).
    fn typed_chain(length: usize, fields: usize, filled: bool) -> serde_json::Value {
        let field = |at: usize, field: usize| {
            let (name, kind) = (format!("f{field}"), format!("T{}", at + 1));
            serde_json::json!({"name": name, "type": kind})
        };
        let mut types: serde_json::Map<String, serde_json::Value> = (0..length)
            .map(|at| (format!("T{at}"), (0..fields).map(|index| field(at, index)).collect()))
            .collect();
        types.insert(format!("T{length}"), serde_json::json!([{"name": "v", "type": "uint256"}]));
        let fill = |inner: serde_json::Value| {
            (0..fields).map(|index| (format!("f{index}"), inner.clone())).collect()
        };
        let message = if filled {
            (0..length).fold(serde_json::json!({"v": 1}), |inner, _| {
                serde_json::Value::Object(fill(inner))
            })
        } else {
            serde_json::json!({})
        };
        serde_json::json!({"types": types, "primaryType": "T0", "message": message})
    }

    #[test]
    fn a_batch_past_its_time_refuses_the_requests_left() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let requests: Vec<serde_json::Value> = (0..3)
            .map(|id| serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "eth_chainId"}))
            .collect();
        let answers =
            super::answer_batch_within(&rpc, &requests, None, std::time::Duration::from_secs(60));
        assert!(answers.iter().all(|answer| answer["result"] == "0x1"), "{answers:?}");
        let answers = super::answer_batch_within(&rpc, &requests, None, std::time::Duration::ZERO);
        assert!(answers.iter().all(|answer| answer["error"]["code"] == -32005), "{answers:?}");
    }

    #[test]
    fn a_transactions_status_says_whether_it_is_pending_included_or_dropped_and_why() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let status = |hash: B256| {
            let request = serde_json::json!({"jsonrpc": "2.0", "id": 1,
                "method": "duet_transactionStatus", "params": [hash]});
            super::answer(&rpc, &request, None)["result"].clone()
        };
        let signer = dev_signer(0);
        let replaced = rpc.chain.submit(&transfer(&signer, 0, 10)).unwrap();
        assert_eq!(status(replaced), serde_json::json!({"status": "pending"}));
        let replacement = rpc.chain.submit(&transfer(&signer, 0, 20)).unwrap();
        let block = rpc.chain.produce_block().unwrap();
        assert_eq!(
            status(replaced),
            serde_json::json!({"status": "dropped", "reason": format!("replaced by {replacement}"),
                "head": "0x0"})
        );
        assert_eq!(
            status(replacement),
            serde_json::json!({"status": "included", "blockNumber": "0x1",
                "blockHash": block.hash, "success": true})
        );
        assert_eq!(status(B256::ZERO), serde_json::json!({"status": "unknown"}));
    }

    #[test]
    fn block_parameters_that_name_no_block_or_an_inverted_range_are_refused_not_read_as_the_head() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let ask = |method: &str, params: serde_json::Value| asked(&rpc, None, method, &params);
        for _ in 0..3 {
            rpc.chain.produce_block().unwrap();
        }
        let genesis =
            ask("eth_getBlockByNumber", serde_json::json!(["0x0", false]))["result"].clone();
        let hash = genesis["hash"].clone();
        // A block object names its number; one naming a hash (or nothing) is refused.
        let by_number =
            ask("eth_getBlockByNumber", serde_json::json!([{"blockNumber": "0x0"}, false]));
        assert_eq!(by_number["result"]["hash"], hash);
        for object in [serde_json::json!({"blockHash": hash}), serde_json::json!({})] {
            let refused = ask("eth_getBlockByNumber", serde_json::json!([object, false]));
            assert_eq!(refused["error"]["code"], -32602, "{object}: {refused}");
        }
        // A fee history ending past the head is refused, as geth refuses it.
        let beyond = ask("eth_feeHistory", serde_json::json!(["0x2", "0x9", []]));
        assert_eq!(beyond["error"]["message"], "request beyond head block: requested 9, head 3");
        let history = ask("eth_feeHistory", serde_json::json!(["0x2", "0x3", []]));
        assert_eq!(history["result"]["oldestBlock"], "0x2");
        // A log query naming a hash and a range, or a range inverted once its tags resolve.
        let refused =
            ask("eth_getLogs", serde_json::json!([{"blockHash": hash, "fromBlock": "0x0"}]));
        assert_eq!(refused["error"]["code"], -32602, "{refused}");
        let inverted =
            ask("eth_getLogs", serde_json::json!([{"fromBlock": "latest", "toBlock": "0x1"}]));
        assert_eq!(inverted["error"]["message"], "invalid from and to block combination");
        let answered =
            ask("eth_getLogs", serde_json::json!([{"fromBlock": "0x1", "toBlock": "latest"}]));
        assert_eq!(answered["result"], serde_json::json!([]));
        let by_hash = ask("eth_getLogs", serde_json::json!([{"blockHash": hash}]));
        assert_eq!(by_hash["result"], serde_json::json!([]));
    }

    /// Calls that halt are refused in geth's words (viem and ethers match on them): out of gas,
    /// an invalid opcode, and an estimate no gas limit is enough for; blocks carry the header
    /// fields of the fork the EVM runs; a log filter's topics are a list, whose options may
    /// hold null (a wildcard, as in geth).
    #[test]
    fn halted_calls_are_refused_in_geths_words_and_filters_read_topics_as_geth() {
        use serde_json::json;
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let turn = rpc.chain.call_turn_blocking();
        let ask =
            |method: &str, params: serde_json::Value| asked(&rpc, Some(&turn), method, &params);
        let from = dev_signer(0).address();
        // Creation code: JUMPDEST PUSH1 0 JUMP (a loop), and INVALID.
        let looping = json!({ "from": from, "data": "0x5b600056", "gas": "0x30000" });
        let invalid = json!({ "from": from, "data": "0xfe" });
        let error =
            |answer: serde_json::Value| answer["error"]["message"].as_str().unwrap().to_owned();
        assert_eq!(error(ask("eth_call", json!([looping, "latest"]))), "out of gas");
        assert_eq!(error(ask("eth_call", json!([invalid, "latest"]))), "invalid opcode: INVALID");
        let estimate =
            error(ask("eth_estimateGas", json!([{ "from": from, "data": "0x5b600056" }])));
        assert!(estimate.starts_with("gas required exceeds allowance ("), "{estimate}");
        let genesis = ask("eth_getBlockByNumber", json!(["0x0", false]))["result"].clone();
        assert_eq!(
            (&genesis["blobGasUsed"], &genesis["excessBlobGas"]),
            (&json!("0x0"), &json!("0x0"))
        );
        assert!(
            genesis["parentBeaconBlockRoot"].is_string() && genesis["requestsHash"].is_string()
        );
        // Topics: not a list is refused (it matched every log); null among options is anything.
        let refused = ask("eth_getLogs", json!([{ "topics": "0x01" }]));
        assert_eq!(refused["error"]["code"], -32602, "{refused}");
        let topic = B256::repeat_byte(1);
        let wildcard = ask("eth_newFilter", json!([{ "topics": [[null, topic]] }]));
        assert!(wildcard["result"].is_string(), "{wildcard}");
    }

    /// `eth_feeHistory`'s rewards are the tips its blocks paid at each percentile of their gas
    /// (zero for an empty block), as geth computes them; no blocks asked for, none given.
    #[test]
    fn fee_history_rewards_are_the_tips_paid_at_each_percentile_of_the_gas() {
        use crate::chain::tests::transfer;
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let ask = |method: &str, params: serde_json::Value| asked(&rpc, None, method, &params);
        // Tips over the base fee of 1 wei: 30, 10, 20 (a transfer's whole fee may be tip).
        for (index, max_fee) in [(0, 31), (1, 11), (2, 21)] {
            rpc.chain.submit(&transfer(&dev_signer(index), 0, max_fee)).unwrap();
        }
        assert_eq!(rpc.chain.produce_block().unwrap().transactions.len(), 3);
        rpc.chain.produce_block().unwrap();
        let history = ask("eth_feeHistory", serde_json::json!(["0x2", "latest", [0, 50, 100]]));
        let history = &history["result"];
        assert_eq!(history["oldestBlock"], "0x1");
        assert_eq!(
            history["reward"],
            serde_json::json!([["0xa", "0x14", "0x1e"], ["0x0", "0x0", "0x0"]])
        );
        assert_eq!(history["baseFeePerGas"].as_array().unwrap().len(), 3);
        assert_eq!(history["baseFeePerBlobGas"], serde_json::json!(["0x1", "0x1", "0x1"]));
        assert_eq!(history["blobGasUsedRatio"], serde_json::json!([0.0, 0.0]));
        let none = ask("eth_feeHistory", serde_json::json!(["0x0", "latest", []]));
        assert_eq!(
            none["result"],
            serde_json::json!({ "oldestBlock": "0x0", "baseFeePerGas": [], "gasUsedRatio": [] })
        );
    }

    #[test]
    fn calls_may_come_from_contracts_see_the_price_they_name_and_failed_creations_are_named() {
        use crate::chain::tests::{deploying, signed_call};
        use alloy_primitives::TxKind;
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let turn = rpc.chain.call_turn_blocking();
        let ask =
            |method: &str, params: serde_json::Value| asked(&rpc, Some(&turn), method, &params);
        let signer = dev_signer(0);
        let no_list = alloy_eips::eip2930::AccessList::default;
        // Returns GASPRICE and BASEFEE: GASPRICE PUSH1 0 MSTORE BASEFEE PUSH1 32 MSTORE PUSH1 64
        // PUSH1 0 RETURN.
        let prices = deploying(&alloy_primitives::hex!("3a6000524860205260406000f3"));
        // Creation code that reverts: PUSH1 0 PUSH1 0 REVERT.
        let failing = alloy_primitives::hex!("60006000fd").to_vec();
        for (nonce, code) in [(0, prices), (1, failing)] {
            rpc.chain
                .submit(&signed_call(&signer, nonce, TxKind::Create, code, no_list()))
                .unwrap();
        }
        let block = rpc.chain.produce_block().unwrap();
        let contract = signer.address().create(0);
        let call = |extra: serde_json::Value| {
            let mut object = serde_json::json!({"to": contract});
            object.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            ask("eth_call", serde_json::json!([object, "latest"]))
        };
        let words = |gas_price: u64, base_fee: u64| format!("0x{gas_price:064x}{base_fee:064x}");
        // No price: GASPRICE 0, and BASEFEE 0 as geth makes it, so that the one minus the other
        // does not underflow.
        let unpriced = call(serde_json::json!({}));
        assert_eq!(unpriced["result"], words(0, 0), "{unpriced}");
        let (gwei, base_fee) = (1_000_000_000u64, rpc.chain.config().base_fee);
        let legacy = call(serde_json::json!({"gasPrice": format!("{:#x}", 5 * gwei)}));
        assert_eq!(legacy["result"], words(5 * gwei, base_fee));
        let dynamic = call(serde_json::json!({"maxFeePerGas": format!("{:#x}", 3 * gwei),
            "maxPriorityFeePerGas": format!("{:#x}", gwei)}));
        assert_eq!(dynamic["result"], words(base_fee + gwei, base_fee), "base fee + tip");
        let capped = call(serde_json::json!({"maxFeePerGas": format!("{:#x}", gwei / 2),
            "maxPriorityFeePerGas": format!("{:#x}", gwei / 2)}));
        assert_eq!(capped["result"], words(gwei / 2, base_fee), "the max fee");
        let no_tip = call(serde_json::json!({"maxFeePerGas": format!("{:#x}", 3 * gwei)}));
        assert_eq!(no_tip["result"], words(base_fee, base_fee), "a max fee alone tips nothing");
        let both = call(serde_json::json!({"gasPrice": "0x1", "maxFeePerGas": "0x1"}));
        assert_eq!(both["error"]["code"], -32602, "{both}");
        // A call (and an estimate) may come from a contract, as in geth and anvil.
        let from_contract = call(serde_json::json!({"from": contract}));
        assert_eq!(from_contract["result"], words(0, 0), "{from_contract}");
        let estimate =
            ask("eth_estimateGas", serde_json::json!([{"from": contract, "to": contract}]));
        assert!(estimate["result"].is_string(), "{estimate}");
        // A failed creation's receipt names the address it would have had.
        let receipt = ask("eth_getTransactionReceipt", serde_json::json!([block.transactions[1]]));
        assert_eq!(receipt["result"]["status"], "0x0");
        assert_eq!(
            receipt["result"]["contractAddress"],
            serde_json::json!(signer.address().create(1))
        );
    }

    #[test]
    fn a_blocks_transactions_and_receipts_roots_are_ethereums_and_its_hash_commits_to_them() {
        use crate::chain::tests::{deploying, signed_call};
        use alloy_eips::eip2718::Decodable2718;
        use alloy_primitives::TxKind;
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let signer = dev_signer(0);
        let no_list = alloy_eips::eip2930::AccessList::default;
        // A contract emitting three logs, a call of it, and a transfer.
        let create = signed_call(&signer, 0, TxKind::Create, deploying(&three_logs()), no_list());
        rpc.chain.submit(&create).unwrap();
        let call = TxKind::Call(signer.address().create(0));
        rpc.chain.submit(&signed_call(&signer, 1, call, Vec::new(), no_list())).unwrap();
        rpc.chain.submit(&transfer(&signer, 2, 10_000_000_000)).unwrap();
        let block = rpc.chain.produce_block().unwrap();
        assert_eq!(block.transactions.len(), 3);
        let records: Vec<_> = block
            .transactions
            .iter()
            .map(|hash| rpc.chain.store().transaction(*hash).unwrap().unwrap())
            .collect();
        let envelopes: Vec<alloy_consensus::TxEnvelope> = records
            .iter()
            .map(|record| {
                alloy_consensus::TxEnvelope::decode_2718(&mut record.raw.as_ref()).unwrap()
            })
            .collect();
        let receipts: Vec<alloy_consensus::ReceiptEnvelope> = records
            .iter()
            .zip(&envelopes)
            .map(|(record, envelope)| {
                let receipt = alloy_consensus::Receipt {
                    status: record.success.into(),
                    cumulative_gas_used: record.cumulative_gas_used,
                    logs: record.logs.clone(),
                };
                alloy_consensus::ReceiptEnvelope::from_typed(
                    envelope.tx_type(),
                    receipt.with_bloom(),
                )
            })
            .collect();
        assert_eq!(records[1].logs.len(), 3);
        assert_eq!(
            block.transactions_root,
            alloy_consensus::proofs::calculate_transaction_root(&envelopes)
        );
        assert_eq!(block.receipts_root, alloy_consensus::proofs::calculate_receipt_root(&receipts));
        assert_ne!(block.receipts_root, alloy_consensus::EMPTY_ROOT_HASH);
        // The hash commits to them: another receipts root, another hash.
        let mut altered = (*block).clone();
        altered.receipts_root = B256::repeat_byte(1);
        assert_ne!(altered.compute_hash(), block.hash);
        assert_eq!(block.compute_hash(), block.hash);
        // As served.
        let served = asked(&rpc, None, "eth_getBlockByNumber", &serde_json::json!(["0x1", false]));
        assert_eq!(served["result"]["receiptsRoot"], serde_json::json!(block.receipts_root));
        assert_eq!(
            served["result"]["transactionsRoot"],
            serde_json::json!(block.transactions_root)
        );
        // Its hash is Ethereum's: keccak256 of the RLP header made of the fields served (as a
        // light client or `Header::hash_slow` checks it), the Move outcomes as `extraData`.
        let header = header_of(&served["result"]);
        assert_eq!(header.hash_slow(), block.hash);
        assert_eq!(header.extra_data.as_ref(), block.move_outcomes_hash.as_slice());
        // Its size is that of the block as Ethereum encodes it.
        let body = alloy_consensus::BlockBody {
            transactions: envelopes,
            ommers: Vec::new(),
            withdrawals: Some(alloy_eips::eip4895::Withdrawals::default()),
        };
        let length = alloy_rlp::Encodable::length(&alloy_consensus::Block { header, body });
        assert_eq!(served["result"]["size"], serde_json::json!(format!("{length:#x}")));
    }

    /// The Ethereum header a block's JSON describes, read field by field.
    fn header_of(block: &serde_json::Value) -> alloy_consensus::Header {
        let field = |name: &str| block[name].clone();
        let hash = |name: &str| serde_json::from_value::<B256>(field(name)).unwrap();
        let number = |name: &str| {
            u64::from_str_radix(field(name).as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        alloy_consensus::Header {
            parent_hash: hash("parentHash"),
            ommers_hash: hash("sha3Uncles"),
            beneficiary: serde_json::from_value(field("miner")).unwrap(),
            state_root: hash("stateRoot"),
            transactions_root: hash("transactionsRoot"),
            receipts_root: hash("receiptsRoot"),
            logs_bloom: serde_json::from_value(field("logsBloom")).unwrap(),
            difficulty: serde_json::from_value(field("difficulty")).unwrap(),
            number: number("number"),
            gas_limit: number("gasLimit"),
            gas_used: number("gasUsed"),
            timestamp: number("timestamp"),
            extra_data: serde_json::from_value(field("extraData")).unwrap(),
            mix_hash: hash("mixHash"),
            nonce: serde_json::from_value(field("nonce")).unwrap(),
            base_fee_per_gas: Some(number("baseFeePerGas")),
            withdrawals_root: Some(hash("withdrawalsRoot")),
            blob_gas_used: Some(number("blobGasUsed")),
            excess_blob_gas: Some(number("excessBlobGas")),
            parent_beacon_block_root: Some(hash("parentBeaconBlockRoot")),
            requests_hash: Some(hash("requestsHash")),
            block_access_list_hash: None,
            slot_number: None,
        }
    }

    #[test]
    fn blockhash_answers_the_hashes_of_the_blocks_before_in_blocks_and_calls() {
        use crate::chain::tests::{deploying, signed_call};
        use alloy_primitives::TxKind;
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let signer = dev_signer(0);
        let no_list = alloy_eips::eip2930::AccessList::default;
        // `reader` returns BLOCKHASH(NUMBER - 1) and BLOCKHASH(NUMBER); `keeper` stores
        // BLOCKHASH(NUMBER - 1) in its slot 0.
        let reader = deploying(&alloy_primitives::hex!("6001430340600052434060205260406000f3"));
        let keeper = deploying(&alloy_primitives::hex!("600143034060005500"));
        for (nonce, code) in [(0, reader), (1, keeper)] {
            rpc.chain
                .submit(&signed_call(&signer, nonce, TxKind::Create, code, no_list()))
                .unwrap();
        }
        rpc.chain.produce_block().unwrap();
        let (reader, keeper) = (signer.address().create(0), signer.address().create(1));
        let call = TxKind::Call(keeper);
        rpc.chain.submit(&signed_call(&signer, 2, call, Vec::new(), no_list())).unwrap();
        let kept_in = rpc.chain.produce_block().unwrap();
        for _ in 0..258 {
            rpc.chain.produce_block().unwrap();
        }
        let turn = rpc.chain.call_turn_blocking();
        let ask =
            |method: &str, params: serde_json::Value| asked(&rpc, Some(&turn), method, &params);
        let hash_of = |number: u64| {
            ask("eth_getBlockByNumber", serde_json::json!([format!("{number:#x}"), false]))
                ["result"]["hash"]
                .clone()
        };
        let words = |first: &serde_json::Value, second: &str| {
            format!("{}{}", first.as_str().unwrap(), second.trim_start_matches("0x"))
        };
        let zero = format!("0x{}", "00".repeat(32));
        // The transaction's block saw its parent's hash.
        let kept = ask("eth_getStorageAt", serde_json::json!([keeper, "0x0", "latest"]));
        assert_eq!(kept["result"], hash_of(kept_in.number - 1));
        // A call at the head sees the head's parent's; a pending call, the head's; a call at an
        // old block (past the hashes kept in memory), its parent's, read from the store.
        let head = rpc.chain.head().number;
        let old = head - 128;
        for (block, parent) in [
            ("latest".to_owned(), head - 1),
            ("pending".to_owned(), head),
            (format!("{old:#x}"), old - 1),
        ] {
            let answer = ask("eth_call", serde_json::json!([{"to": reader}, block]));
            assert_eq!(answer["result"], words(&hash_of(parent), &zero), "{block}: {answer}");
        }
    }

    #[test]
    fn blocks_are_mined_on_request_from_the_pool() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let ask = |method: &str, params: serde_json::Value| asked(&rpc, None, method, &params);
        let block_number = || ask("eth_blockNumber", serde_json::json!([]))["result"].clone();
        assert_eq!(block_number(), "0x0");
        let signer = dev_signer(0);
        rpc.chain.submit(&transfer(&signer, 0, 10_000_000_000)).unwrap();
        assert_eq!(ask("evm_mine", serde_json::json!([]))["result"], "0x0");
        assert_eq!(block_number(), "0x1");
        let count = ask("eth_getTransactionCount", serde_json::json!([signer.address(), "latest"]));
        assert_eq!(count["result"], "0x1", "the pool's transaction is in the block");
        assert_eq!(ask("anvil_mine", serde_json::json!(["0x3"]))["result"], "0x0");
        assert_eq!(block_number(), "0x4");
        assert_eq!(ask("anvil_mine", serde_json::json!([null, "0x0"]))["result"], "0x0");
        assert_eq!(block_number(), "0x5");
        // Times cannot be chosen, and the count is bounded: refused, and no block is made.
        for (method, params) in [
            ("evm_mine", serde_json::json!([1_900_000_000])),
            ("anvil_mine", serde_json::json!(["0x2", "0xc"])),
            ("anvil_mine", serde_json::json!(["0x0"])),
            ("anvil_mine", serde_json::json!(["0x3e9"])),
            ("anvil_mine", serde_json::json!(["many"])),
        ] {
            let answer = ask(method, params.clone());
            assert_eq!(answer["error"]["code"], -32602, "{method} {params}: {answer}");
        }
        assert_eq!(block_number(), "0x5");
    }

    #[test]
    fn the_pools_content_stops_at_its_budget() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let chain = &rpc.chain;
        let signer = dev_signer(0);
        for nonce in 0..3 {
            chain.submit(&transfer(&signer, nonce, 10)).unwrap();
        }
        let content = txpool_within(chain, "txpool_content", 1_000_000).ok().unwrap();
        assert_eq!(
            content["pending"]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            3
        );
        let refused = txpool_within(chain, "txpool_content", 1_000).err().unwrap();
        assert_eq!(refused.code, -32003);
        assert!(refused.message.starts_with("response too large"), "{}", refused.message);
    }

    #[test]
    fn installed_log_filters_name_a_bounded_number_of_addresses_and_topics_in_all() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let ask = |method: &str, params: serde_json::Value| asked(&rpc, None, method, &params);
        // A filter naming 1 000 addresses and 3 000 topic options takes 4 000 of the room.
        let addresses: Vec<Address> =
            (0..1_000u16).map(|index| Address::left_padding_from(&index.to_be_bytes())).collect();
        let topics: Vec<B256> =
            (0..1_000u16).map(|index| B256::left_padding_from(&index.to_be_bytes())).collect();
        let filter =
            serde_json::json!([{"address": addresses, "topics": [topics, topics, topics]}]);
        // Room for one such filter and a half.
        let left = super::MAX_INSTALLED_CRITERIA - 6_000;
        let _taken = rpc.criteria.clone().try_acquire_many_owned(left as u32).unwrap();
        let first = ask("eth_newFilter", filter.clone())["result"].clone();
        assert!(first.is_string(), "{first}");
        assert_eq!(rpc.criteria.available_permits(), 2_000);
        let refused = ask("eth_newFilter", filter.clone());
        assert_eq!(refused["error"]["code"], -32005, "{refused}");
        // A block filter names none; an uninstalled filter gives its room back.
        assert!(ask("eth_newBlockFilter", serde_json::json!([]))["result"].is_string());
        assert_eq!(ask("eth_uninstallFilter", serde_json::json!([first]))["result"], true);
        assert_eq!(rpc.criteria.available_permits(), 6_000);
        assert!(ask("eth_newFilter", filter)["result"].is_string());
    }

    #[tokio::test]
    async fn notifications_are_carried_out_and_not_answered() {
        use http_body_util::BodyExt;
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(test_rpc(directory.path(), 1_000_000));
        let post = |body: serde_json::Value| {
            let rpc = rpc.clone();
            async move {
                let body = axum::body::Bytes::from(body.to_string());
                let answer = super::handle(axum::extract::State(rpc), None, body).await;
                answer.into_body().collect().await.unwrap().to_bytes()
            }
        };
        // Alone: nothing answers it, but it is carried out (the transaction waits).
        let send = transfer(&dev_signer(0), 0, 10_000_000_000);
        let notification = serde_json::json!({"jsonrpc": "2.0",
            "method": "eth_sendRawTransaction", "params": [send]});
        assert!(post(notification.clone()).await.is_empty());
        assert_eq!(rpc.chain.pending_count(), 1);
        // In a batch, only the requests with an id are answered; a batch of notifications,
        // not at all. A request with a null id is answered.
        let chain_id = |id: Option<serde_json::Value>| {
            let mut request = serde_json::json!({"jsonrpc": "2.0", "method": "eth_chainId"});
            if let Some(id) = id {
                request["id"] = id;
            }
            request
        };
        let batch = serde_json::json!([
            chain_id(None),
            chain_id(Some(serde_json::json!(2))),
            chain_id(Some(serde_json::Value::Null))
        ]);
        let answers: serde_json::Value = serde_json::from_slice(&post(batch).await).unwrap();
        let ids: Vec<_> =
            answers.as_array().unwrap().iter().map(|answer| answer["id"].clone()).collect();
        assert_eq!(ids, [serde_json::json!(2), serde_json::Value::Null]);
        assert!(post(serde_json::json!([chain_id(None), chain_id(None)])).await.is_empty());
        let answer: serde_json::Value =
            serde_json::from_slice(&post(chain_id(Some(serde_json::json!(7)))).await).unwrap();
        assert_eq!(answer["result"], "0x1");
    }

    #[tokio::test]
    async fn an_http_answer_holds_its_bytes_in_the_budget_until_it_is_sent() {
        use http_body_util::BodyExt;
        // A batch whose answer is about 600 KB: the genesis block 500 times.
        let request = serde_json::json!((0..500)
            .map(|id| serde_json::json!({"jsonrpc": "2.0", "id": id,
                "method": "eth_getBlockByNumber", "params": ["0x0", true]}))
            .collect::<Vec<_>>());
        let body = axum::body::Bytes::from(request.to_string());
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(test_rpc(directory.path(), 10_000_000));
        let answer = super::handle(axum::extract::State(rpc.clone()), None, body.clone()).await;
        let held = 10_000_000 - rpc.received.available_permits();
        let text = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            held,
            text.len() - crate::server::UNCOUNTED_BYTES,
            "counted past the first bytes"
        );
        let answers: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(answers.as_array().unwrap().len(), 500);
        assert_eq!(answers[499]["result"]["number"], "0x0");
        drop(text);
        assert_eq!(rpc.received.available_permits(), 10_000_000, "freed once sent");
        // Without room for it, each request of the batch is refused (in a batch's answer, as
        // clients read it), but a transaction sent in it, and nothing stays held.
        let directory = tempfile::tempdir().unwrap();
        let rpc = std::sync::Arc::new(test_rpc(directory.path(), 100_000));
        let mut requests = request.as_array().unwrap().clone();
        let send = transfer(&dev_signer(0), 0, 10_000_000_000);
        requests[7] = serde_json::json!({"jsonrpc": "2.0", "id": 7,
            "method": "eth_sendRawTransaction", "params": [send]});
        // A notification before it: its answer is left out, the others' stay matched.
        requests[0] = serde_json::json!({"jsonrpc": "2.0", "method": "eth_chainId"});
        let body = axum::body::Bytes::from(serde_json::Value::Array(requests).to_string());
        let answer = super::handle(axum::extract::State(rpc.clone()), None, body).await;
        let text = answer.into_body().collect().await.unwrap().to_bytes();
        let answers: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let answers = answers.as_array().unwrap();
        assert_eq!(answers.len(), 499);
        let with_id = |id: u64| answers.iter().find(|answer| answer["id"] == id).unwrap();
        assert_eq!(with_id(3)["error"]["code"], -32005, "{}", with_id(3));
        assert!(with_id(7)["result"].is_string(), "the transaction's hash: {}", with_id(7));
        assert_eq!(rpc.chain.pending_count(), 1);
        assert_eq!(rpc.received.available_permits(), 100_000);
    }

    #[test]
    fn a_log_query_is_bounded_by_its_logs_bytes_and_time_and_a_poll_stops_after_a_block() {
        use crate::chain::tests::{deploying, signed_call};
        use alloy_primitives::TxKind;
        let directory = tempfile::tempdir().unwrap();
        let rpc = test_rpc(directory.path(), 1_000);
        let signer = dev_signer(0);
        let runtime = three_logs();
        let no_list = alloy_eips::eip2930::AccessList::default;
        let create = signed_call(&signer, 0, TxKind::Create, deploying(&runtime), no_list());
        rpc.chain.submit(&create).unwrap();
        rpc.chain.produce_block().unwrap();
        let emitter = signer.address().create(0);
        for nonce in 1..3 {
            let call = signed_call(&signer, nonce, TxKind::Call(emitter), Vec::new(), no_list());
            rpc.chain.submit(&call).unwrap();
            rpc.chain.produce_block().unwrap();
        }
        // Blocks 2 and 3 hold three logs each, of 528 bytes as counted.
        let any = LogCriteria::new(Vec::new(), Vec::new());
        let minute = std::time::Duration::from_secs(60);
        let scan = |range, poll, logs, bytes, time| {
            super::scan_logs(&rpc.chain, &any, range, poll, super::LogLimits { logs, bytes, time })
        };
        let (found, last) = scan((1, 3), false, 6, 6 * 528, minute).unwrap();
        assert_eq!((found.len(), last), (6, 3));
        assert_eq!(found[0]["data"], format!("0x{}", "00".repeat(64)));
        let too_large = scan((1, 3), false, 100, 5 * 528, minute).unwrap_err();
        assert_eq!(too_large.code, -32003, "{}", too_large.message);
        let too_many = scan((1, 3), false, 5, 1_000_000, minute).unwrap_err();
        assert!(too_many.message.contains("more than 5 logs"), "{}", too_many.message);
        // A poll stops after the block where it reaches a bound, with that whole block.
        let (found, last) = scan((1, 3), true, 100, 2 * 528, minute).unwrap();
        assert_eq!((found.len(), last), (3, 2));
        let (found, last) = scan((2, 3), true, 2, 1_000_000, minute).unwrap();
        assert_eq!((found.len(), last), (3, 2));
        let (found, last) = scan((3, 3), true, 2, 100, minute).unwrap();
        assert_eq!((found.len(), last), (3, 3), "a poll's last block too");
        // Past its time a query is refused, a poll stops, and one block is always read.
        let late = scan((1, 3), false, 100, 1_000_000, std::time::Duration::ZERO).unwrap_err();
        assert_eq!(late.code, -32005, "{}", late.message);
        let (found, last) = scan((2, 3), true, 100, 1_000_000, std::time::Duration::ZERO).unwrap();
        assert_eq!((found.len(), last), (3, 2));
        let (found, last) = scan((3, 3), false, 100, 1_000_000, std::time::Duration::ZERO).unwrap();
        assert_eq!((found.len(), last), (3, 3));
    }

    #[test]
    fn a_block_without_logs_is_never_read_for_them_whatever_the_filter() {
        let any = LogCriteria::new(Vec::new(), Vec::new());
        assert!(!any.may_match(&Bloom::ZERO));
        let emitter = Address::repeat_byte(7);
        let mut bloom = Bloom::ZERO;
        let log =
            Log { address: emitter, data: LogData::new_unchecked(vec![B256::ZERO], vec![].into()) };
        bloom.accrue_log(&log);
        assert!(any.may_match(&bloom));
        let other = LogCriteria::new(vec![Address::repeat_byte(8)], Vec::new());
        assert!(!other.may_match(&bloom));
        let same = LogCriteria::new(vec![emitter], vec![Some(vec![B256::ZERO])]);
        assert!(same.may_match(&bloom) && same.matches(&log));
    }

    #[test]
    fn a_filter_matches_any_of_its_addresses_and_topics_in_whatever_order_they_are_named() {
        let address = |byte| Address::repeat_byte(byte);
        let topic = |byte| B256::repeat_byte(byte);
        let filter = serde_json::json!({
            "address": [address(9), address(3), address(7), address(3)],
            "topics": [[topic(5), topic(1)], null, topic(2)],
        });
        let criteria = LogCriteria::parse(filter.as_object().unwrap()).unwrap();
        let log = |emitter: u8, topics: &[u8]| Log {
            address: address(emitter),
            data: LogData::new_unchecked(
                topics.iter().map(|&byte| topic(byte)).collect(),
                vec![].into(),
            ),
        };
        for emitter in [9, 3, 7] {
            assert!(criteria.matches(&log(emitter, &[1, 8, 2])), "{emitter}");
            assert!(criteria.matches(&log(emitter, &[5, 8, 2, 4])), "{emitter}");
        }
        for (emitter, topics) in [(4, [1, 8, 2]), (7, [2, 8, 2]), (7, [1, 8, 3])] {
            assert!(!criteria.matches(&log(emitter, &topics)), "{emitter} {topics:?}");
        }
        assert!(!criteria.matches(&log(7, &[1, 8])), "fewer topics than the filter names");
    }
}
