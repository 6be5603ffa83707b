//! JSON-RPC over WebSocket, on the same port as HTTP (`ws://127.0.0.1:8545`, as anvil serves
//! it): every method, and subscriptions, `eth_subscribe` to `"newHeads"`, `"logs"` (with an
//! address and topics filter) or `"newPendingTransactions"` (hashes), and `eth_unsubscribe`.
//!
//! A subscription belongs to its connection and ends with it. It is notified of the blocks
//! committed after it was made, block after block: a header per block (`newHeads`, without
//! transactions) and a notification per matching log (`logs`), as geth sends them:
//! `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription","result"}}`. Each
//! connection with subscriptions looks at the head every 100 ms; a block's logs are read once
//! per connection, whatever its number of subscriptions.
//!
//! A connection answers its requests one after another; notifications wait while a request is
//! answered. Subscribing is a request of its own (not inside a batch). A pending-transaction
//! subscription is told of each transaction the node accepts after it was made (from the last
//! 10 000: one that falls further behind misses some).
//!
//! Limits, so that clients cannot take the node's memory or threads: at most
//! [`MAX_CONNECTIONS`] connections (then the upgrade is refused with 503), 100 subscriptions per
//! connection, 16 blocks of notifications per look at the head (a connection far behind
//! catches up look by look), messages and frames up to the HTTP body limit, and a client that
//! does not take a message within 10 s is disconnected.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{
    block_object, each_log, error_response, log_json, reply, Filter, LogCriteria, LogFilter, Rpc,
    RpcError, MAX_BODY,
};
use crate::chain::Chain;

/// The most WebSocket connections open at a time.
pub(super) const MAX_CONNECTIONS: usize = 256;

/// The most subscriptions one connection holds.
const MAX_SUBSCRIPTIONS: usize = 100;

/// How often a connection with subscriptions looks for new blocks.
const POLL: Duration = Duration::from_millis(100);

/// The most blocks notified per look at the head.
const BLOCKS_PER_POLL: u64 = 16;

/// How long a client may take to accept a message.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A subscription of a connection: its id, what it sends, and what it was last told of (for
/// blocks, the head when it was made; for pending transactions, the number of the last one
/// accepted that it was told of).
#[derive(Clone)]
struct Active {
    id: String,
    since: u64,
    kind: Filter,
}

impl Active {
    /// Whether it follows accepted transactions (and so not blocks: blocks or logs).
    fn follows_pending(&self) -> bool {
        matches!(self.kind, Filter::Pending)
    }
}

/// Upgrades a `GET /` to a WebSocket connection, if fewer than [`MAX_CONNECTIONS`] are open.
pub(super) async fn upgrade(State(rpc): State<Arc<Rpc>>, upgrade: WebSocketUpgrade) -> Response {
    let Ok(permit) = Arc::clone(&rpc.connections).try_acquire_owned() else {
        let message = format!("too many WebSocket connections: at most {MAX_CONNECTIONS}");
        return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    };
    upgrade.max_message_size(MAX_BODY).max_frame_size(MAX_BODY).on_upgrade(
        move |socket| async move {
            connection(rpc, socket).await;
            drop(permit);
        },
    )
}

/// One connection: answers its requests in order, and notifies its subscriptions.
async fn connection(rpc: Arc<Rpc>, mut socket: WebSocket) {
    let mut subscriptions: Vec<Active> = Vec::new();
    let mut subscribed = 0u64;
    let mut notified = rpc.chain.head().number;
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let subscribing = Subscribing { list: &mut subscriptions, count: &mut subscribed };
                let answer = answer(&rpc, &text, subscribing).await;
                if !send(&mut socket, answer.to_string()).await {
                    return;
                }
            }
            _ = ticker.tick() => {
                // Past the budget, the connection ends (see `Notifications`).
                let Ok(accepted) = accepted(&rpc, &mut subscriptions) else { return };
                for notification in accepted {
                    if !send(&mut socket, notification).await {
                        return;
                    }
                }
                let head = rpc.chain.head().number;
                if head <= notified {
                    continue;
                }
                // Blocks concern only subscriptions to blocks or logs: taken once per poll.
                let following: Arc<[Active]> = subscriptions
                    .iter()
                    .filter(|active| !active.follows_pending())
                    .cloned()
                    .collect();
                if following.is_empty() {
                    notified = head;
                    continue;
                }
                let to = head.min(notified + BLOCKS_PER_POLL);
                for number in notified + 1..=to {
                    let (chain, active) = (Arc::clone(&rpc.chain), Arc::clone(&following));
                    let built =
                        tokio::task::spawn_blocking(move || notifications(&chain, &active, number))
                            .await;
                    // The store failed: the connection ends, which its subscriber sees, rather
                    // than skip a block's notifications.
                    // The store failed, or the notifications passed the budget.
                    let Ok(Ok(notifications)) = built else { return };
                    for notification in notifications {
                        if !send(&mut socket, notification).await {
                            return;
                        }
                    }
                    notified = number;
                }
            }
        }
    }
}

/// Sends `text`; `false` if the client is gone or did not take it in time.
async fn send(socket: &mut WebSocket, text: String) -> bool {
    let message = Message::Text(text.into());
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await, Ok(Ok(())))
}

/// A connection's subscriptions, as a request changes them.
struct Subscribing<'a> {
    list: &'a mut Vec<Active>,
    count: &'a mut u64,
}

/// The answer to one message: subscribing and unsubscribing here, anything else as over HTTP.
async fn answer(rpc: &Arc<Rpc>, text: &str, subscribing: Subscribing<'_>) -> Value {
    let request: Value = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(error) => {
            return error_response(&Value::Null, -32700, &format!("parse error: {error}"), None)
        }
    };
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
    if matches!(method, "eth_subscribe" | "eth_unsubscribe") {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let params = match request.get("params") {
            Some(Value::Array(params)) => params.as_slice(),
            _ => &[],
        };
        return reply(&id, subscription_method(method, params, &rpc.chain, subscribing));
    }
    rpc.respond_in_turn(request).await
}

/// `eth_subscribe` and `eth_unsubscribe`.
fn subscription_method(
    method: &str,
    params: &[Value],
    chain: &Chain,
    subscribing: Subscribing<'_>,
) -> Result<Value, RpcError> {
    let Subscribing { list, count } = subscribing;
    if method == "eth_unsubscribe" {
        let id = params
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("expected a subscription id"))?;
        let before = list.len();
        list.retain(|active| active.id != id);
        return if list.len() < before {
            Ok(json!(true))
        } else {
            Err(RpcError::server("subscription not found"))
        };
    }
    let kind = match params.first().and_then(Value::as_str) {
        Some("newHeads") => Filter::Blocks,
        Some("logs") => {
            let filter = LogFilter::parse(params.get(1))?;
            if filter.block_hash.is_some() || filter.from.is_some() || filter.to.is_some() {
                return Err(RpcError::invalid_params(
                    "a logs subscription takes an address and topics only: it follows new blocks",
                ));
            }
            Filter::Logs(Arc::new(filter))
        }
        Some("newPendingTransactions") => Filter::Pending,
        Some(other) => {
            return Err(RpcError::invalid_params(format!(
                "unsupported subscription {other}: newHeads, logs and newPendingTransactions \
                 are offered"
            )))
        }
        None => return Err(RpcError::invalid_params("expected a subscription name")),
    };
    if list.len() >= MAX_SUBSCRIPTIONS {
        return Err(RpcError::server(format!(
            "too many subscriptions: at most {MAX_SUBSCRIPTIONS} per connection"
        )));
    }
    *count += 1;
    let id = format!("0x{:032x}", *count);
    let since = *kind.positions(chain, chain.head().number).end();
    list.push(Active { id: id.clone(), since, kind });
    Ok(json!(id))
}

/// The notifications of the transactions accepted since each pending-transaction subscription
/// was last told, which it is told of now.
fn accepted(rpc: &Rpc, subscriptions: &mut [Active]) -> Result<Vec<String>, OverBudget> {
    let mut out = Notifications::default();
    if !subscriptions.iter().any(Active::follows_pending) {
        return Ok(out.texts);
    }
    let last = rpc.chain.accepted().last();
    for active in subscriptions {
        if active.follows_pending() && active.since < last {
            for hash in rpc.chain.accepted().get(active.since + 1..=last) {
                out.push(&active.id, &json!(hash).to_string())?;
            }
            active.since = last;
        }
    }
    Ok(out.texts)
}

/// The most bytes a connection's notifications of one block, or of one poll's accepted
/// transactions, may take. Each subscription gets its own copy of what it is told of, so a
/// connection with many subscriptions to every log of a heavy block would otherwise hold
/// gigabytes; past the budget the connection ends instead, as geth drops a subscriber that
/// cannot keep up. One subscription to every log of a block full of ERC-20 transfers (19 397
/// logs) takes about 12 MB.
const MAX_NOTIFICATION_BYTES: usize = 64 << 20;

/// Notifications past [`MAX_NOTIFICATION_BYTES`].
#[derive(Debug)]
struct OverBudget;

/// Notifications, serialized, within a budget of bytes.
struct Notifications {
    texts: Vec<String>,
    bytes: usize,
    budget: usize,
}

impl Default for Notifications {
    fn default() -> Self {
        Self { texts: Vec::new(), bytes: 0, budget: MAX_NOTIFICATION_BYTES }
    }
}

impl Notifications {
    /// Adds a subscription's notification of `result` (JSON text).
    fn push(&mut self, subscription: &str, result: &str) -> Result<(), OverBudget> {
        let text = format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{subscription}","result":{result}}}}}"#
        );
        self.bytes += text.len();
        if self.bytes > self.budget {
            return Err(OverBudget);
        }
        self.texts.push(text);
        Ok(())
    }
}

/// The notifications of block `number` for the subscriptions to blocks or logs (`following`)
/// made before it, in order.
fn notifications(
    chain: &Chain,
    following: &[Active],
    number: u64,
) -> Result<Vec<String>, RpcError> {
    let active: Vec<&Active> = following.iter().filter(|active| active.since < number).collect();
    if active.is_empty() {
        return Ok(Vec::new());
    }
    let Some(block) = chain.store().block(number).map_err(RpcError::server)? else {
        return Ok(Vec::new());
    };
    // The logs subscriptions whose filter the block's bloom does not rule out.
    let criteria: Vec<&LogCriteria> = active
        .iter()
        .filter_map(|active| match &active.kind {
            Filter::Logs(filter) if filter.criteria.may_match(&block.logs_bloom) => {
                Some(&filter.criteria)
            }
            _ => None,
        })
        .collect();
    // The block's logs that one of them takes, read once for the connection.
    let mut logs = Vec::new();
    if !criteria.is_empty() {
        each_log(chain, &block, |record, log, index| {
            if criteria.iter().any(|criteria| criteria.matches(log)) {
                logs.push((log.clone(), log_json(record, log, index).to_string()));
            }
        })?;
    }
    let mut header: Option<String> = None;
    let mut out = Notifications::default();
    let over = |_: OverBudget| {
        RpcError::server(format!(
            "block {number}'s notifications pass {MAX_NOTIFICATION_BYTES} bytes: subscribe with \
             narrower filters"
        ))
    };
    for subscription in active {
        match &subscription.kind {
            Filter::Blocks => {
                let header = if let Some(header) = &header {
                    header
                } else {
                    let mut object = block_object(chain, &block, false)?;
                    if let Some(fields) = object.as_object_mut() {
                        // A header, as geth sends it.
                        for body in
                            ["transactions", "uncles", "withdrawals", "size", "totalDifficulty"]
                        {
                            fields.remove(body);
                        }
                    }
                    header.insert(object.to_string())
                };
                out.push(&subscription.id, header).map_err(over)?;
            }
            Filter::Pending => {}
            Filter::Logs(filter) => {
                for (log, value) in &logs {
                    if filter.criteria.matches(log) {
                        out.push(&subscription.id, value).map_err(over)?;
                    }
                }
            }
        }
    }
    Ok(out.texts)
}

#[cfg(test)]
mod tests {
    use super::Notifications;

    #[test]
    fn notifications_are_json_rpc_and_stop_at_their_budget() {
        let mut notifications = Notifications { budget: 300, ..Notifications::default() };
        notifications.push("0x1", r#"{"a":1}"#).unwrap();
        let sent: serde_json::Value = serde_json::from_str(&notifications.texts[0]).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": { "subscription": "0x1", "result": { "a": 1 } },
            })
        );
        let pushed = (0..10)
            .map(|_| notifications.push("0x1", r#"{"a":1}"#))
            .position(|pushed| pushed.is_err());
        assert!(matches!(pushed, Some(2)), "{pushed:?}");
        assert!(notifications.bytes > 300 && notifications.texts.len() == 3);
    }
}
