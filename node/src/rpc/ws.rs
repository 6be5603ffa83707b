//! JSON-RPC over WebSocket, on the same port as HTTP (`ws://127.0.0.1:8545`, as anvil serves
//! it): every method, and subscriptions, `eth_subscribe` to `"newHeads"`, `"logs"` (with an
//! address and topics filter) or `"newPendingTransactions"` (hashes, or with `true` as geth
//! takes it the transactions), and `eth_unsubscribe`.
//!
//! A subscription belongs to its connection and ends with it. It is notified of the blocks
//! committed after it was made, block after block: a header per block (`newHeads`, without
//! transactions) and a notification per matching log (`logs`), as geth sends them:
//! `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription","result"}}`. Each
//! connection with subscriptions looks at the head every 100 ms; a block's logs are read once
//! per connection, whatever its number of subscriptions.
//!
//! A connection answers up to [`MAX_IN_FLIGHT`] requests at a time, each as soon as it is
//! ready (a quick request is not held up by a slow one sent before it; match answers by `id`),
//! and reads no further message while that many are being answered. Its requests and their
//! answers until sent count against the node's 64 MiB of requests in hand, as HTTP bodies do;
//! past it, a request gets "limit exceeded" (-32005). Requests taken in before the client
//! closed are still carried out. Subscribing and
//! unsubscribing are answered at once, in order with the connection's notifications, and are
//! requests of their own (not inside a batch). A pending-transaction
//! subscription is told of each transaction the node accepts after it was made (from the last
//! 10 000: one that falls further behind misses some).
//!
//! Limits, so that clients cannot take the node's memory or threads: at most
//! [`MAX_CONNECTIONS`] connections (then the upgrade is refused with 503), 100 subscriptions per
//! connection, 16 blocks of notifications per look at the head (a connection far behind
//! catches up look by look), messages and frames up to [`MAX_MESSAGE`] (1 MiB: a message is
//! held until its last frame, outside the bytes counted in hand, so 256 connections may hold
//! 256 MiB of unfinished ones; a transaction is at most 128 KiB), a client that
//! does not take a message within 10 s is disconnected, a connection is pinged every idle
//! timeout (`--http-idle-timeout`, 30 s by default) and closed (code 1001) when nothing, not
//! even a pong, came from it for twice that, and a connection whose notifications
//! of one block (or of one look's accepted transactions) pass [`MAX_NOTIFICATION_BYTES`] is
//! closed (code 1009, with the reason). At most [`MAX_NOTIFYING`] connections build and send
//! notifications at a time (the others wait their turn, in order, answering requests
//! meanwhile), each within 10 s of starting (else it is closed, code 1008): the notifications
//! the node holds are bounded as a whole, not only per connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::parse_request;
use super::{
    block_object, each_log, error_response, log_json, reply, Filter, LogCriteria, LogFilter, Rpc,
    RpcError,
};
use crate::chain::Chain;

/// The most WebSocket connections open at a time.
pub(super) const MAX_CONNECTIONS: usize = 256;

/// The largest message (and frame) a client may send.
pub(super) const MAX_MESSAGE: usize = 1 << 20;

/// The most requests of one connection answered at a time (each also waits for one of the
/// node's turns, as over HTTP).
const MAX_IN_FLIGHT: usize = 16;

/// The most subscriptions one connection holds.
const MAX_SUBSCRIPTIONS: usize = 100;

/// How often a connection with subscriptions looks for new blocks.
const POLL: Duration = Duration::from_millis(100);

/// The most blocks notified per look at the head.
const BLOCKS_PER_POLL: u64 = 16;

/// How long a client may take to accept a message.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections build and send notifications at a time, node-wide: each may hold up to
/// [`MAX_NOTIFICATION_BYTES`] of them, so the node holds at most four times that.
pub(super) const MAX_NOTIFYING: usize = 4;

/// How long a connection has to send one look's notifications once it has its turn.
const NOTIFY_TIME: Duration = Duration::from_secs(10);

/// A subscription of a connection: its id, what it sends, and what it was last told of (for
/// blocks, the head when it was made; for pending transactions, the number of the last one
/// accepted that it was told of).
#[derive(Clone)]
struct Active {
    id: Arc<str>,
    since: u64,
    kind: Filter,
    /// For pending transactions: told of each as an object, not its hash (geth's flag).
    full: bool,
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
    upgrade.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(
        move |socket| async move {
            connection(rpc, socket).await;
            drop(permit);
        },
    )
}

/// One connection: answers its requests, and notifies its subscriptions. Requests taken in
/// before the connection ended are still carried out (a transaction sent just before the
/// client closed is submitted); their answers go nowhere.
async fn connection(rpc: Arc<Rpc>, mut socket: WebSocket) {
    let mut in_flight = InFlight::new();
    serve(&rpc, &mut socket, &mut in_flight).await;
    while in_flight.join_next().await.is_some() {}
}

/// Requests being answered (at most [`MAX_IN_FLIGHT`]), each giving its answer's text and the
/// room it holds among the node's requests in hand until it is sent.
type InFlight = tokio::task::JoinSet<(String, Option<tokio::sync::OwnedSemaphorePermit>)>;

/// The connection's loop, until the client leaves, or fails to take a message in time.
async fn serve(rpc: &Arc<Rpc>, socket: &mut WebSocket, in_flight: &mut InFlight) {
    let mut subscriptions: Vec<Active> = Vec::new();
    let mut subscribed = 0u64;
    let mut notified = rpc.chain.head().number;
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keepalive = Keepalive::new(rpc.ping_every);
    // When the loop last stopped listening to the client, to hand an event.
    let mut woke = None;
    // The wait for a notification turn, while there are notifications to send.
    let mut waiting: Option<TurnWait> = None;
    loop {
        if let Some(woke) = woke.take() {
            keepalive.listened_since(woke);
        }
        let event = tokio::select! {
            // A turn first: once handed over, it is the connection's, whatever else is ready.
            biased;
            turn = async { waiting.as_mut().expect("waiting for a turn").await },
                if waiting.is_some() => Event::Turn(turn),
            message = socket.recv(), if in_flight.len() < MAX_IN_FLIGHT => Event::Message(message),
            Some(answered) = in_flight.join_next(), if !in_flight.is_empty() => {
                Event::Answered(answered)
            }
            _ = keepalive.pinger.tick() => Event::Ping,
            _ = ticker.tick() => Event::Poll,
        };
        woke = Some(tokio::time::Instant::now());
        match event {
            Event::Message(message) => {
                keepalive.heard();
                let text = match message {
                    Some(Ok(Message::Text(text))) => axum::body::Bytes::from(text),
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let subscribing = Subscribing { list: &mut subscriptions, count: &mut subscribed };
                if let Some(answer) = take(rpc, text, subscribing, in_flight).await {
                    if !send(socket, answer.to_string()).await {
                        return;
                    }
                }
            }
            Event::Answered(answered) => {
                let (answer, held) = answered.unwrap_or_else(|_| {
                    (error_response(&Value::Null, -32603, "internal error", None).to_string(), None)
                });
                if !answer.is_empty() && !send(socket, answer).await {
                    return;
                }
                drop(held);
            }
            Event::Ping => {
                if !keepalive.ping(socket, in_flight.len() >= MAX_IN_FLIGHT).await {
                    return;
                }
            }
            Event::Poll => {
                if waiting.is_none() && news(rpc, &subscriptions, &mut notified) {
                    waiting = Some(Box::pin(Arc::clone(&rpc.notifying).acquire_owned()));
                }
            }
            Event::Turn(turn) => {
                waiting = None;
                // The node never closes the semaphore.
                let Ok(turn) = turn else { return };
                if !notify(rpc, socket, &mut subscriptions, &mut notified, turn).await {
                    return;
                }
            }
        }
    }
}

/// Whether there are notifications to send: transactions accepted or blocks committed since the
/// last look. Without any, moves `notified` on to the head (no subscription follows blocks).
fn news(rpc: &Rpc, subscriptions: &[Active], notified: &mut u64) -> bool {
    let head = rpc.chain.head().number;
    let last_accepted = rpc.chain.accepted().last();
    let news = subscriptions.iter().any(|active| {
        if active.follows_pending() {
            active.since < last_accepted
        } else {
            head > *notified
        }
    });
    if !news {
        *notified = (*notified).max(head);
    }
    news
}

/// A wait for one of the node's [`MAX_NOTIFYING`] notification turns (handed out in the order
/// asked for).
type TurnWait = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
            > + Send,
    >,
>;

/// Sends the notifications of the transactions accepted and the blocks committed since the last
/// look (at most [`BLOCKS_PER_POLL`] blocks), in `turn`, moving `notified` on; `false` if the
/// connection is to end.
///
/// A connection with notifications to send asks for one of the node's [`MAX_NOTIFYING`] turns
/// and, while it waits, goes on answering requests; once it has one, it has [`NOTIFY_TIME`] to
/// send them (else the connection ends): what connections hold of built notifications, and the
/// threads that build them, are bounded node-wide, not only per connection, a client slow to read
/// keeps a turn 20 s at most (a turn handed over while the connection sends an answer, which
/// may take 10 s, waits for that send), and turns go in the order asked for. (A build under
/// way when the time runs out finishes on its thread, and is dropped.)
async fn notify(
    rpc: &Arc<Rpc>,
    socket: &mut WebSocket,
    subscriptions: &mut [Active],
    notified: &mut u64,
    turn: tokio::sync::OwnedSemaphorePermit,
) -> bool {
    let sent =
        tokio::time::timeout(NOTIFY_TIME, notify_in_turn(rpc, socket, subscriptions, notified));
    let sent = sent.await;
    drop(turn);
    if let Ok(keep) = sent {
        return keep;
    }
    let reason = format!("notifications not sent within {} s of their turn", NOTIFY_TIME.as_secs());
    close(socket, CLOSE_POLICY, &reason).await;
    false
}

/// [`notify`], in one of the node's turns.
async fn notify_in_turn(
    rpc: &Arc<Rpc>,
    socket: &mut WebSocket,
    subscriptions: &mut [Active],
    notified: &mut u64,
) -> bool {
    // Hashes come from the feed, here; told in full, a transaction is read from the pool or
    // the store and written out, off the async threads, as a block's notifications are.
    let told_in_full = subscriptions.iter().any(|active| active.follows_pending() && active.full);
    let accepted = if told_in_full {
        let mut pending: Vec<Active> =
            subscriptions.iter().filter(|active| active.follows_pending()).cloned().collect();
        let rpc = Arc::clone(rpc);
        let built = tokio::task::spawn_blocking(move || {
            let accepted = accepted(&rpc, &mut pending);
            (accepted, pending)
        });
        let Ok((accepted, told)) = built.await else { return false };
        for told in told {
            if let Some(active) = subscriptions.iter_mut().find(|active| active.id == told.id) {
                active.since = told.since;
            }
        }
        accepted
    } else {
        accepted(rpc, subscriptions)
    };
    let Ok(accepted) = accepted else {
        let reason = "the accepted transactions' notifications pass the budget";
        close(socket, CLOSE_TOO_BIG, reason).await;
        return false;
    };
    for (subscription, result) in &accepted {
        if !send(socket, notification(subscription, result)).await {
            return false;
        }
    }
    let head = rpc.chain.head().number;
    if head <= *notified {
        return true;
    }
    // Blocks concern only subscriptions to blocks or logs: taken once per poll.
    let following: Arc<[Active]> =
        subscriptions.iter().filter(|active| !active.follows_pending()).cloned().collect();
    if following.is_empty() {
        *notified = head;
        return true;
    }
    // Blocks before every subscription to blocks or logs have nothing for them (a connection
    // that waited for its turn with none may have fallen behind).
    let since = following.iter().map(|active| active.since).min().unwrap_or(head);
    *notified = (*notified).max(since.min(head));
    if head <= *notified {
        return true;
    }
    let to = head.min(*notified + BLOCKS_PER_POLL);
    for number in *notified + 1..=to {
        let (chain, active) = (Arc::clone(&rpc.chain), Arc::clone(&following));
        let built =
            tokio::task::spawn_blocking(move || notifications(&chain, &active, number)).await;
        // The store failed, or the notifications passed the budget: the connection ends, with
        // the reason, rather than skip a block's notifications.
        let (code, reason) = match built {
            Ok(Ok(notifications)) => {
                for (subscription, result) in &notifications {
                    if !send(socket, notification(subscription, result)).await {
                        return false;
                    }
                }
                *notified = number;
                continue;
            }
            Ok(Err(Unsent::OverBudget)) => (
                CLOSE_TOO_BIG,
                format!(
                    "block {number}'s notifications pass {MAX_NOTIFICATION_BYTES} bytes: \
                     subscribe with narrower filters"
                ),
            ),
            Ok(Err(Unsent::Failed(error))) => (CLOSE_INTERNAL, error.message),
            Err(_) => (CLOSE_INTERNAL, "internal error".to_owned()),
        };
        close(socket, code, &reason).await;
        return false;
    }
    true
}

/// What woke a connection's loop.
enum Event {
    /// A message from the client, or its end.
    Message(Option<Result<Message, axum::Error>>),
    /// A request's answer is ready.
    Answered(Result<(String, Option<tokio::sync::OwnedSemaphorePermit>), tokio::task::JoinError>),
    /// Time to ping the client.
    Ping,
    /// Time to look for new blocks and accepted transactions.
    Poll,
    /// A notification turn, waited for since a look found some.
    Turn(Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>),
}

/// A connection's pings: one every `every`; the connection ends when nothing came from the
/// client for twice that.
struct Keepalive {
    pinger: tokio::time::Interval,
    last_heard: tokio::time::Instant,
}

impl Keepalive {
    fn new(every: Duration) -> Self {
        let now = tokio::time::Instant::now();
        let mut pinger = tokio::time::interval_at(now + every, every);
        pinger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { pinger, last_heard: now }
    }

    /// Something came from the client.
    fn heard(&mut self) {
        self.last_heard = tokio::time::Instant::now();
    }

    /// The loop read nothing from `started` until now, handing an event (sending notifications
    /// or answers): if that was long, the client's pongs wait unread, which is not silence.
    fn listened_since(&mut self, started: tokio::time::Instant) {
        if started.elapsed() >= self.pinger.period() {
            self.heard();
        }
    }

    /// At a tick: closes the connection if the client has been silent too long, and pings it
    /// if not; `false` if the connection is to end. A connection `busy` answering as many
    /// requests as it may reads nothing meanwhile (pongs included): that is not silence.
    async fn ping(&mut self, socket: &mut WebSocket, busy: bool) -> bool {
        if busy {
            self.heard();
        }
        if self.last_heard.elapsed() >= self.pinger.period() * 2 {
            let reason = "nothing heard from the client, not even a pong";
            close(socket, CLOSE_GOING_AWAY, reason).await;
            return false;
        }
        send_message(socket, Message::Ping(axum::body::Bytes::new())).await
    }
}

/// The close code for an endpoint going away (RFC 6455): here, a client that stopped answering.
const CLOSE_GOING_AWAY: u16 = 1001;
/// The close code for a message too big to process (RFC 6455).
const CLOSE_TOO_BIG: u16 = 1009;

/// The close code for a client that broke the node's rules (here: too slow to read).
const CLOSE_POLICY: u16 = 1008;
/// The close code for a failure of the server (RFC 6455).
const CLOSE_INTERNAL: u16 = 1011;

/// Ends the connection with a close frame saying why, and logs it.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    tracing::warn!(code, reason, "WebSocket connection closed");
    let frame = axum::extract::ws::CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// Sends `text`; `false` if the client is gone or did not take it in time.
async fn send(socket: &mut WebSocket, text: String) -> bool {
    send_message(socket, Message::Text(text.into())).await
}

/// Sends `message`; `false` if the client is gone or did not take it in time.
async fn send_message(socket: &mut WebSocket, message: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await, Ok(Ok(())))
}

/// A connection's subscriptions, as a request changes them.
struct Subscribing<'a> {
    list: &'a mut Vec<Active>,
    count: &'a mut u64,
}

/// Takes in one message: its answer if it has one now (subscribing, a parse error, or a refusal
/// when the node holds too many bytes of requests); otherwise its request is being answered in
/// `in_flight`, counted with the node's requests in hand until then, as over HTTP, and its
/// answer in turn until it is sent (past the room, the request gets "limit exceeded" instead),
/// so that answers waiting for a slow reader cannot pile up.
async fn take(
    rpc: &Arc<Rpc>,
    text: impl AsRef<[u8]> + Send + 'static,
    subscribing: Subscribing<'_>,
    in_flight: &mut InFlight,
) -> Option<Value> {
    let received = match rpc.take_in(text.as_ref().len()) {
        Ok(received) => received,
        Err(error) => return Some(reply(&Value::Null, Err(error))),
    };
    let request = match parse_request(text, ()).await {
        Ok(request) => request,
        Err(answer) => return Some(answer),
    };
    match answer(rpc, request, subscribing) {
        Answer::Now(answer) => Some(answer),
        Answer::Later(request) => {
            let rpc = Arc::clone(rpc);
            in_flight.spawn(async move {
                let sends = super::sending(&request);
                let answer = rpc.respond_in_turn(request, ()).await;
                drop(received);
                if super::is_silent(&answer) {
                    // Notifications only: nothing is sent.
                    return (String::new(), None);
                }
                // Every byte counted (at least one): a connection's answers wait in its queue.
                rpc.held_answer(answer, &sends, |length| length.max(1))
            });
            None
        }
    }
}

/// What to do with one message.
enum Answer {
    /// Answered already: a parse error, or subscribing and unsubscribing (which change the
    /// connection's subscriptions, so they are answered in order with its notifications).
    Now(Value),
    /// A request (or batch) to answer as over HTTP, alongside the connection's others.
    Later(Value),
}

/// What to do with one request: subscribing and unsubscribing here, anything else as over HTTP.
fn answer(rpc: &Rpc, request: Value, subscribing: Subscribing<'_>) -> Answer {
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
    if matches!(method, "eth_subscribe" | "eth_unsubscribe") {
        let id = super::id_of(&request);
        let params = match request.get("params") {
            Some(Value::Array(params)) => params.as_slice(),
            _ => &[],
        };
        return Answer::Now(reply(&id, subscription_method(method, params, rpc, subscribing)));
    }
    Answer::Later(request)
}

/// `eth_subscribe` and `eth_unsubscribe`.
fn subscription_method(
    method: &str,
    params: &[Value],
    rpc: &Rpc,
    subscribing: Subscribing<'_>,
) -> Result<Value, RpcError> {
    let chain = &rpc.chain;
    let Subscribing { list, count } = subscribing;
    if method == "eth_unsubscribe" {
        let id = params
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("expected a subscription id"))?;
        let before = list.len();
        list.retain(|active| &*active.id != id);
        return if list.len() < before {
            Ok(json!(true))
        } else {
            Err(RpcError::server("subscription not found"))
        };
    }
    let mut full = false;
    let kind = match params.first().and_then(Value::as_str) {
        Some("newHeads") => Filter::Blocks,
        Some("logs") => {
            let filter = LogFilter::parse(params.get(1))?;
            // It follows new blocks: `latest` bounds are what it does anyway (geth takes them).
            let latest = |bound: &Option<super::BlockSpec>| {
                matches!(bound, None | Some(super::BlockSpec::Latest))
            };
            if filter.block_hash.is_some() || !latest(&filter.from) || !latest(&filter.to) {
                return Err(RpcError::invalid_params(
                    "a logs subscription takes an address and topics only (and `latest` bounds): \
                     it follows new blocks",
                ));
            }
            Filter::Logs(Arc::new(rpc.installing(filter)?))
        }
        Some("newPendingTransactions") => {
            full = match params.get(1) {
                None | Some(Value::Null) => false,
                Some(Value::Bool(full)) => *full,
                Some(other) => {
                    let message = format!("newPendingTransactions takes true or false: {other}");
                    return Err(RpcError::invalid_params(message));
                }
            };
            Filter::Pending
        }
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
    list.push(Active { id: id.as_str().into(), since, kind, full });
    Ok(json!(id))
}

/// The notifications of the transactions accepted since each pending-transaction subscription
/// was last told, which it is told of now.
fn accepted(rpc: &Rpc, subscriptions: &mut [Active]) -> Result<Vec<Notice>, OverBudget> {
    let mut out = Notifications::default();
    if !subscriptions.iter().any(Active::follows_pending) {
        return Ok(out.items);
    }
    let last = rpc.chain.accepted().last();
    let behind = |active: &Active| active.follows_pending() && active.since < last;
    let Some(from) =
        subscriptions.iter().filter(|active| behind(active)).map(|a| a.since + 1).min()
    else {
        return Ok(out.items);
    };
    // Each hash (or transaction) written out once for all the subscriptions told of it. The
    // feed holds the last of them (up to `last`), those that it still holds.
    let hashes = rpc.chain.accepted().get(from..=last);
    let first = last + 1 - hashes.len() as u64;
    let wanted =
        |full: bool| subscriptions.iter().any(|active| behind(active) && active.full == full);
    let mut results = |full: bool| -> Result<Vec<Option<Arc<str>>>, OverBudget> {
        if !wanted(full) {
            return Ok(Vec::new());
        }
        hashes
            .iter()
            .map(|hash| {
                let result = if full {
                    // As `eth_getTransactionByHash` shows it (one in a block since, as the block
                    // has it); one dropped since is not told of.
                    let pending = rpc
                        .chain
                        .pending(hash)
                        .map(|pending| super::transaction_json(&pending.raw, None, pending.sender));
                    let included = || {
                        let record = rpc.chain.committed_transaction(*hash).ok().flatten()?;
                        Some(super::transaction_json(&record.raw, Some(&record), record.from))
                    };
                    pending.or_else(included).map(|transaction| transaction.to_string())
                } else {
                    Some(json!(hash).to_string())
                };
                result.map(|result| out.content(result)).transpose()
            })
            .collect()
    };
    let (hash_results, full_results) = (results(false)?, results(true)?);
    for active in subscriptions.iter_mut().filter(|active| behind(active)) {
        let skip = (active.since + 1).saturating_sub(first) as usize;
        let results = if active.full { &full_results } else { &hash_results };
        for result in results[skip.min(results.len())..].iter().flatten() {
            out.push(&active.id, result)?;
        }
        active.since = last;
    }
    Ok(out.items)
}

/// A notification to send: the subscription, and what it is told (JSON text, shared by the
/// subscriptions told the same).
type Notice = (Arc<str>, Arc<str>);

/// A subscription's notification of `result` (JSON text), as geth sends it.
fn notification(subscription: &str, result: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{subscription}","result":{result}}}}}"#
    )
}

/// The most bytes a connection's notifications of one block, or of one look's accepted
/// transactions, may take: each distinct result once, and each notification's envelope. Past it
/// the connection ends (with the reason), as geth drops a subscriber that cannot keep up: a
/// hundred subscriptions to every log of heavy blocks would otherwise hold gigabytes. A block
/// of 19 397 ERC-20 transfers takes about 12 MB of logs, and about 2 MB more per subscription
/// to all of them.
const MAX_NOTIFICATION_BYTES: usize = 64 << 20;

/// The bytes of a notification's envelope, besides its subscription id and result.
const ENVELOPE_BYTES: usize = 84;

/// Notifications past [`MAX_NOTIFICATION_BYTES`].
#[derive(Debug)]
struct OverBudget;

/// Why a block's notifications were not sent.
enum Unsent {
    OverBudget,
    Failed(RpcError),
}

impl From<OverBudget> for Unsent {
    fn from(OverBudget: OverBudget) -> Self {
        Self::OverBudget
    }
}

/// Notifications within a budget of bytes.
struct Notifications {
    items: Vec<Notice>,
    bytes: usize,
    budget: usize,
}

impl Default for Notifications {
    fn default() -> Self {
        Self { items: Vec::new(), bytes: 0, budget: MAX_NOTIFICATION_BYTES }
    }
}

impl Notifications {
    /// Takes in a result (JSON text) that notifications will share.
    fn content(&mut self, result: String) -> Result<Arc<str>, OverBudget> {
        self.count(result.len())?;
        Ok(result.into())
    }

    /// Adds a subscription's notification of `result` (from [`content`](Self::content)).
    fn push(&mut self, subscription: &Arc<str>, result: &Arc<str>) -> Result<(), OverBudget> {
        self.count(ENVELOPE_BYTES + subscription.len())?;
        self.items.push((Arc::clone(subscription), Arc::clone(result)));
        Ok(())
    }

    fn count(&mut self, bytes: usize) -> Result<(), OverBudget> {
        self.bytes += bytes;
        if self.bytes > self.budget {
            return Err(OverBudget);
        }
        Ok(())
    }
}

/// The notifications of block `number` for the subscriptions to blocks or logs (`following`)
/// made before it, in order.
fn notifications(chain: &Chain, following: &[Active], number: u64) -> Result<Vec<Notice>, Unsent> {
    let active: Vec<&Active> = following.iter().filter(|active| active.since < number).collect();
    if active.is_empty() {
        return Ok(Vec::new());
    }
    let Some(block) =
        chain.store().block(number).map_err(|error| Unsent::Failed(RpcError::server(error)))?
    else {
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
    let mut out = Notifications::default();
    // The block's logs that one of them takes, read and written out once for the connection.
    let mut logs = Vec::new();
    if !criteria.is_empty() {
        let mut over_budget = false;
        each_log(chain, &block, |record, log, index| {
            if !over_budget && criteria.iter().any(|criteria| criteria.matches(log)) {
                match out.content(log_json(record, log, index).to_string()) {
                    Ok(text) => logs.push((log.clone(), text)),
                    Err(OverBudget) => over_budget = true,
                }
            }
        })
        .map_err(Unsent::Failed)?;
        if over_budget {
            return Err(Unsent::OverBudget);
        }
    }
    let mut header: Option<Arc<str>> = None;
    for subscription in active {
        match &subscription.kind {
            Filter::Blocks => {
                let header = if let Some(header) = &header {
                    Arc::clone(header)
                } else {
                    let mut object = block_object(chain, &block, false).map_err(Unsent::Failed)?;
                    if let Some(fields) = object.as_object_mut() {
                        // A header, as geth sends it.
                        for body in
                            ["transactions", "uncles", "withdrawals", "size", "totalDifficulty"]
                        {
                            fields.remove(body);
                        }
                    }
                    let text = out.content(object.to_string())?;
                    Arc::clone(header.insert(text))
                };
                out.push(&subscription.id, &header)?;
            }
            Filter::Pending => {}
            Filter::Logs(filter) => {
                for (log, text) in &logs {
                    if filter.criteria.matches(log) {
                        out.push(&subscription.id, text)?;
                    }
                }
            }
        }
    }
    Ok(out.items)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{notification, take, Notifications, Subscribing, ENVELOPE_BYTES};

    #[tokio::test]
    async fn a_notification_is_carried_out_and_nothing_is_sent_for_it() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = Arc::new(super::super::tests::test_rpc(directory.path(), 1_000_000));
        let (mut list, mut count) = (Vec::new(), 0);
        let mut in_flight = tokio::task::JoinSet::new();
        let send = crate::chain::tests::transfer(&crate::chain::tests::dev_signer(0), 0, 10);
        let notification = serde_json::json!({"jsonrpc": "2.0", "method": "eth_sendRawTransaction", "params": [send]});
        let subscribing = Subscribing { list: &mut list, count: &mut count };
        assert!(take(&rpc, notification.to_string(), subscribing, &mut in_flight).await.is_none());
        let (answer, held) = in_flight.join_next().await.unwrap().unwrap();
        assert!(answer.is_empty() && held.is_none(), "nothing to send: {answer}");
        assert_eq!(rpc.chain.pending_count(), 1, "the transaction was sent");
    }

    #[tokio::test]
    async fn a_message_past_the_bytes_taken_in_at_once_is_refused_and_others_are_answered() {
        let directory = tempfile::tempdir().unwrap();
        let rpc = Arc::new(super::super::tests::test_rpc(directory.path(), 1_000));
        let (mut list, mut count) = (Vec::new(), 0);
        let mut in_flight = tokio::task::JoinSet::new();
        let request = |padding: usize| {
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"eth_chainId","pad":"{}"}}"#,
                "x".repeat(padding)
            )
        };
        // While another request holds most of the room: refused at once, nothing started.
        let held = Arc::clone(&rpc.received).try_acquire_many_owned(900).unwrap();
        let subscribing = Subscribing { list: &mut list, count: &mut count };
        let refused = take(&rpc, request(200), subscribing, &mut in_flight).await.unwrap();
        assert_eq!(refused["error"]["code"], -32005, "{refused}");
        assert!(in_flight.is_empty());
        drop(held);
        // Then it is answered, off the loop; its bytes are held until then, and its answer's
        // until it is sent.
        let subscribing = Subscribing { list: &mut list, count: &mut count };
        assert!(take(&rpc, request(200), subscribing, &mut in_flight).await.is_none());
        assert!(rpc.received.available_permits() <= 800);
        let (answer, held) = in_flight.join_next().await.unwrap().unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!((&answer["id"], &answer["result"]), (&7.into(), &"0x1".into()), "{answer}");
        assert!(held.is_some());
        assert!(rpc.received.available_permits() < 1_000);
        drop(held);
        assert_eq!(rpc.received.available_permits(), 1_000);
        // An answer that does not fit in the room left is refused instead, naming its request.
        let held = Arc::clone(&rpc.received).try_acquire_many_owned(900).unwrap();
        let subscribing = Subscribing { list: &mut list, count: &mut count };
        let block =
            r#"{"jsonrpc":"2.0","id":7,"method":"eth_getBlockByNumber","params":["latest",false]}"#;
        assert!(take(&rpc, block.to_owned(), subscribing, &mut in_flight).await.is_none());
        let (answer, none) = in_flight.join_next().await.unwrap().unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!((&answer["id"], &answer["error"]["code"]), (&7.into(), &(-32005).into()));
        assert!(none.is_none());
        // A transaction sent is answered whatever the room (here refused by the node: the
        // bytes are not a transaction).
        let subscribing = Subscribing { list: &mut list, count: &mut count };
        let send =
            r#"{"jsonrpc":"2.0","id":9,"method":"eth_sendRawTransaction","params":["0x00"]}"#;
        assert!(take(&rpc, send.to_owned(), subscribing, &mut in_flight).await.is_none());
        let (answer, none) = in_flight.join_next().await.unwrap().unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["id"], 9, "{answer}");
        assert_ne!(answer["error"]["code"], -32005, "{answer}");
        assert!(none.is_none());
        drop(held);
        // Subscribing is answered at once.
        let subscribing = Subscribing { list: &mut list, count: &mut count };
        let subscribe =
            r#"{"jsonrpc":"2.0","id":8,"method":"eth_subscribe","params":["newHeads"]}"#;
        let subscribed =
            take(&rpc, subscribe.to_owned(), subscribing, &mut in_flight).await.unwrap();
        assert_eq!(subscribed["result"], "0x00000000000000000000000000000001", "{subscribed}");
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn notifications_are_json_rpc_share_their_results_and_stop_at_their_budget() {
        let sent: serde_json::Value =
            serde_json::from_str(&notification("0x1", r#"{"a":1}"#)).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": { "subscription": "0x1", "result": { "a": 1 } },
            })
        );
        assert_eq!(notification("0x1", r#"{"a":1}"#).len(), ENVELOPE_BYTES + 3 + 7);
        let mut notifications = Notifications { budget: 1_000, ..Notifications::default() };
        let result = notifications.content("x".repeat(500)).unwrap();
        let subscription: Arc<str> = "0x1".into();
        // Each notification of it costs its envelope, not the result again.
        for _ in 0..5 {
            notifications.push(&subscription, &result).unwrap();
        }
        assert_eq!(notifications.bytes, 500 + 5 * (ENVELOPE_BYTES + 3));
        assert!(Arc::ptr_eq(&notifications.items[4].1, &result));
        // The sixth takes it past 1 000 bytes.
        assert!(notifications.push(&subscription, &result).is_err());
        assert_eq!(notifications.items.len(), 5);
    }
}
