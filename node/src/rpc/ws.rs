//! JSON-RPC over WebSocket, on the same port as HTTP (`ws://127.0.0.1:8545`, as anvil serves
//! it): every method, and subscriptions, `eth_subscribe` to `"newHeads"` or `"logs"` (with an
//! address and topics filter) and `eth_unsubscribe`.
//!
//! A subscription belongs to its connection and ends with it. Each connection with
//! subscriptions looks for new blocks every 100 ms and sends, block after block, a notification
//! per new header (`newHeads`) and per matching log (`logs`), as geth does:
//! `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription","result"}}`.
//! Subscribing is a request of its own (not inside a batch). Limits: 100 subscriptions per
//! connection, messages up to the HTTP body limit; pending-transaction subscriptions are not
//! offered.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;

use super::{
    block_json, error_response, find_logs, reply, respond, LogFilter, Rpc, RpcError, MAX_BODY,
    MAX_LOG_BLOCKS,
};
use axum::extract::State;
use serde_json::{json, Value};
use std::sync::Arc;

/// The most subscriptions one connection holds.
const MAX_SUBSCRIPTIONS: usize = 100;

/// How often a connection with subscriptions looks for new blocks.
const POLL: Duration = Duration::from_millis(100);

/// What a subscription sends.
#[derive(Clone)]
enum Subscription {
    Heads,
    Logs(Arc<LogFilter>),
}

/// Upgrades a `GET /` to a WebSocket connection.
pub(super) async fn upgrade(State(rpc): State<Arc<Rpc>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.max_message_size(MAX_BODY).on_upgrade(move |socket| connection(rpc, socket))
}

/// One connection: answers its requests in order, and notifies its subscriptions.
async fn connection(rpc: Arc<Rpc>, mut socket: WebSocket) {
    let mut subscriptions: Vec<(String, Subscription)> = Vec::new();
    let mut subscribed = 0u64;
    let mut notified = rpc.chain.head().number;
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outgoing: Vec<Value> = tokio::select! {
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let subscribing = Subscribing { list: &mut subscriptions, count: &mut subscribed };
                vec![answer(&rpc, &text, subscribing).await]
            }
            _ = ticker.tick() => {
                let head = rpc.chain.head().number;
                if subscriptions.is_empty() || head <= notified {
                    notified = notified.max(head);
                    continue;
                }
                // A connection far behind catches up MAX_LOG_BLOCKS at a time.
                let (from, to) = (notified + 1, head.min(notified + MAX_LOG_BLOCKS));
                notified = to;
                let (rpc, subscriptions) = (Arc::clone(&rpc), subscriptions.clone());
                match tokio::task::spawn_blocking(move || {
                    notifications(&rpc, &subscriptions, from, to)
                })
                .await
                {
                    Ok(Ok(notifications)) => notifications,
                    // The store failed: the connection ends, which its subscriber sees, rather
                    // than skip a block's notifications.
                    Ok(Err(_)) | Err(_) => return,
                }
            }
        };
        for value in outgoing {
            if socket.send(Message::Text(value.to_string().into())).await.is_err() {
                return;
            }
        }
    }
}

/// A connection's subscriptions, as a request changes them.
struct Subscribing<'a> {
    list: &'a mut Vec<(String, Subscription)>,
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
        return reply(&id, subscription_method(method, params, subscribing));
    }
    let rpc = Arc::clone(rpc);
    tokio::task::spawn_blocking(move || respond(&rpc, request))
        .await
        .unwrap_or_else(|_| error_response(&Value::Null, -32603, "internal error", None))
}

fn subscription_method(
    method: &str,
    params: &[Value],
    subscribing: Subscribing<'_>,
) -> Result<Value, RpcError> {
    let Subscribing { list, count } = subscribing;
    if method == "eth_unsubscribe" {
        let id = params.first().and_then(Value::as_str).unwrap_or_default();
        let before = list.len();
        list.retain(|(subscription, _)| subscription != id);
        return Ok(json!(list.len() < before));
    }
    let subscription = match params.first().and_then(Value::as_str) {
        Some("newHeads") => Subscription::Heads,
        Some("logs") => {
            let filter = LogFilter::parse(params.get(1))?;
            if filter.block_hash.is_some() || filter.from.is_some() || filter.to.is_some() {
                return Err(RpcError::invalid_params(
                    "a logs subscription takes an address and topics only: it follows new blocks",
                ));
            }
            Subscription::Logs(Arc::new(filter))
        }
        Some(other) => {
            return Err(RpcError::invalid_params(format!(
                "unsupported subscription {other}: newHeads and logs are offered"
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
    list.push((id.clone(), subscription));
    Ok(json!(id))
}

/// The notifications of blocks `from..=to` for `subscriptions`, block after block.
fn notifications(
    rpc: &Rpc,
    subscriptions: &[(String, Subscription)],
    from: u64,
    to: u64,
) -> Result<Vec<Value>, RpcError> {
    let notification = |subscription: &str, result: Value| {
        json!({
            "jsonrpc": "2.0",
            "method": "eth_subscription",
            "params": { "subscription": subscription, "result": result },
        })
    };
    let mut out = Vec::new();
    for number in from..=to {
        for (id, subscription) in subscriptions {
            match subscription {
                Subscription::Heads => {
                    let mut header = block_json(&rpc.chain, number, false)?;
                    if let Some(header) = header.as_object_mut() {
                        header.remove("transactions");
                        header.remove("uncles");
                    }
                    out.push(notification(id, header));
                }
                Subscription::Logs(filter) => {
                    for log in find_logs(&rpc.chain, &filter.criteria, number, number)? {
                        out.push(notification(id, log));
                    }
                }
            }
        }
    }
    Ok(out)
}
