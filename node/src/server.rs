//! The node's HTTP server: JSON-RPC over HTTP and WebSocket, the Move API and the metrics, on
//! one port, with the limits a server that anyone on the network can reach needs.
//!
//! - **Open connections** are capped ([`Limits::max_connections`]): past the cap, the node stops
//!   accepting until one closes, and new clients wait in the kernel's queue instead of taking
//!   the file descriptors the database needs. A WebSocket connection counts until it closes.
//! - **A request's head** must arrive within [`Limits::idle_timeout`], counted from the moment
//!   the node waits for it: a client that opens connections and sends nothing, or a header a
//!   byte at a time, cannot hold them; a keep-alive connection idle that long is closed.
//! - **A request's body** must arrive within the same time once the head has (`read_body`), or
//!   the answer is `408 Request Timeout` and the connection closes. The bytes of a body past
//!   its first 64 KiB count against one budget (shared with the WebSocket messages) from the
//!   moment they arrive until the request's work is done: past it a request is refused at once,
//!   so that slow or many clients cannot make the node hold more request bytes than that (512
//!   connections sending 5 MiB each would be 2.5 GiB), while small requests, nearly all of
//!   them, are never refused for it (their first 64 KiB come to 32 MiB at most, with 512
//!   connections).
//! - **An answer** (or a WebSocket message) that the client does not take in for that long,
//!   no byte of it, ends the connection: a client that asks for large answers and never reads
//!   them cannot hold its place.
//!
//! Shutdown stops accepting, lets each connection finish the request it is answering (for at
//! most twice the idle timeout), and closes idle ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// The server's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most connections open at once.
    pub max_connections: usize,
    /// How long a request's head, and then its body, may take to arrive, and an answer to be
    /// taken in.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The most connections a node may be set to allow.
    pub const MAX_CONNECTIONS: usize = 1_000_000;
    /// The longest idle timeout a node may be set to: a day (far longer ones overflow the
    /// timers' deadlines).
    pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(86_400);

    /// Whether these limits are within the bounds above.
    ///
    /// # Errors
    /// The first one that is not, said as a setting.
    pub fn check(&self) -> Result<(), String> {
        let most = Self::MAX_CONNECTIONS;
        if !(1..=most).contains(&self.max_connections) {
            return Err(format!("the HTTP connection limit must be from 1 to {most}"));
        }
        let longest = Self::MAX_IDLE_TIMEOUT.as_secs();
        if self.idle_timeout > Self::MAX_IDLE_TIMEOUT {
            return Err(format!("the HTTP idle timeout must be at most {longest} seconds"));
        }
        Ok(())
    }
}

impl Default for Limits {
    /// 512 connections, half the 1 024 file descriptors many systems give a process by default
    /// (RocksDB needs its own), and 30 seconds.
    fn default() -> Self {
        Self { max_connections: 512, idle_timeout: Duration::from_secs(30) }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then until the
/// requests being answered have their answers.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    // Each connection's task holds a sender: when all are gone, so are the connections.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // The semaphore is never closed.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.ok(),
            () = &mut shutdown => None,
        };
        let Some(permit) = permit else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    refused(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are small and latency matters more than packets: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let stream = Counted::new(stream, permit, limits.idle_timeout);
        let task = connection(stream, router.clone(), limits, closing_seen.clone(), open.clone());
        tokio::spawn(task);
    }
    let _ = closing.send(true);
    drop(open);
    // A connection whose client takes in nothing ends after the idle timeout; this is a bound
    // of its own in case.
    let waited = tokio::time::timeout(limits.idle_timeout * 2, all_closed.recv()).await;
    if waited.is_err() {
        tracing::warn!("connections still open at shutdown are dropped");
    }
}

/// A failed `accept`: a connection that went away before it was taken is nothing; anything else
/// (out of file descriptors, above all) is logged and waited out for a moment, as axum does.
async fn refused(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection (upgrades to WebSocket included) until it closes, or until shutdown
/// lets it finish its request.
async fn connection(
    stream: Counted,
    router: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
) {
    let service = TowerToHyperService::new(router);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended");
            }
        }
        // It only ever changes to `true`.
        _ = closing.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// What [`read_body`] holds requests to.
#[derive(Clone)]
pub struct BodyLimits {
    /// How long a body may take to arrive once the head has.
    pub timeout: Duration,
    /// A permit per byte of the request bodies (and WebSocket messages) the node holds at once.
    pub received: Arc<Semaphore>,
    /// The answer to a request refused because the budget is spent, in the form its route
    /// answers errors.
    pub refusal: fn(&axum::http::request::Parts) -> Response,
}

/// The bytes at the start of each body that the budget does not count.
pub const UNCOUNTED_BYTES: usize = 64 << 10;

/// A request's share of the budget of bytes (none for a small body), in the request's
/// extensions: a handler whose work outlives the request (the client hung up) keeps a clone
/// with the work.
#[derive(Clone)]
pub struct Received(pub Arc<OwnedSemaphorePermit>);

/// Reads a request's body whole within the timeout before the handlers see it (a middleware of
/// the routers, inside their CORS layer), counting its bytes past [`UNCOUNTED_BYTES`] against
/// the budget as they come and until the answer is made ([`Received`]): `408` if it takes
/// longer, and the connection closes; `413` past the body limit (5 MiB); `400` if it cannot be
/// read; the route's refusal (and the connection closes) if the budget is spent.
pub async fn read_body(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body_util::BodyExt;
    let (mut parts, mut body) = request.into_parts();
    // The declared length, when it is within the limit, is allocated at once (pages are only
    // touched as bytes arrive) rather than doubled into.
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<usize>().ok())
        .filter(|&length| length <= crate::rpc::MAX_BODY);
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0));
    let mut held: Option<OwnedSemaphorePermit> = None;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else { continue };
            if buffer.len() + data.len() > crate::rpc::MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            let counted = (buffer.len() + data.len()).saturating_sub(UNCOUNTED_BYTES)
                - buffer.len().saturating_sub(UNCOUNTED_BYTES);
            if counted > 0 {
                let more = take_bytes(&limits.received, counted).ok_or(BodyError::OverBudget)?;
                match &mut held {
                    Some(held) => held.merge(more),
                    None => held = Some(more),
                }
            }
            buffer.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(())) => {}
        Ok(Err(BodyError::TooLarge)) => {
            let message = format!("request body: more than {} bytes", crate::rpc::MAX_BODY);
            return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
        }
        Ok(Err(BodyError::OverBudget)) => return closing((limits.refusal)(&parts)),
        Ok(Err(BodyError::Unreadable(error))) => {
            return (StatusCode::BAD_REQUEST, format!("request body: {error}")).into_response();
        }
        Err(_) => {
            let message =
                format!("the request's body took more than {}s", limits.timeout.as_secs_f64());
            return closing((StatusCode::REQUEST_TIMEOUT, message).into_response());
        }
    }
    // Only a body with counted bytes carries them on (nearly none has any): the handlers treat
    // no `Received` as one holding nothing.
    let received = held.map(Arc::new);
    if let Some(received) = &received {
        parts.extensions.insert(Received(Arc::clone(received)));
    }
    let response = next.run(axum::extract::Request::from_parts(parts, Body::from(buffer))).await;
    // The body's bytes count until the answer is made (or longer, in work that outlives it).
    drop(received);
    response
}

/// A permit for `bytes` of the `received` budget (a body's, or a WebSocket message's), if it
/// has room for them.
pub(crate) fn take_bytes(received: &Arc<Semaphore>, bytes: usize) -> Option<OwnedSemaphorePermit> {
    // INVARIANT: a request is at most MAX_BODY bytes, far below u32::MAX.
    let size = u32::try_from(bytes).unwrap_or(u32::MAX);
    Arc::clone(received).try_acquire_many_owned(size).ok()
}

/// Why a body was not read whole.
enum BodyError {
    TooLarge,
    OverBudget,
    Unreadable(axum::Error),
}

impl From<axum::Error> for BodyError {
    fn from(error: axum::Error) -> Self {
        Self::Unreadable(error)
    }
}

/// `response`, closing the connection after it (the rest of its request is not read, and a
/// client still sending it may see the connection reset instead).
fn closing(mut response: Response) -> Response {
    let close = axum::http::HeaderValue::from_static("close");
    response.headers_mut().insert(axum::http::header::CONNECTION, close);
    response
}

/// A connection's stream, holding its place among the open connections until it is dropped
/// (with the WebSocket it was upgraded to, if it was), and failing a write that makes no
/// progress for `stall`.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    stall: Duration,
    /// When the write waiting now fails, if one is waiting.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, stall: Duration) -> Self {
        Self { stream, _permit: permit, stall, stalled: None }
    }

    /// `written` as the stream gave it: progress disarms the stall timer; waiting arms it (once)
    /// and fails when it runs out.
    fn watch<T>(
        &mut self,
        context: &mut std::task::Context<'_>,
        written: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if written.is_ready() {
            self.stalled = None;
            return written;
        }
        let stall = self.stall;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(context) {
            Poll::Ready(()) => {
                self.stalled = None;
                let message = "the client took in nothing of an answer for the idle timeout";
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(context, buffer);
        self.watch(context, written)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(context);
        self.watch(context, flushed)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(context, buffers);
        self.watch(context, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::{Counted, Duration, Semaphore};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// The node's side of a loopback connection, failing writes stalled for `stall`, and the
    /// client's side.
    async fn connected(stall: Duration) -> (Counted, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().expect("a free place");
        (Counted::new(stream, permit, stall), client)
    }

    #[tokio::test]
    async fn a_write_the_client_never_takes_in_fails_after_the_stall_time() {
        let stall = Duration::from_millis(300);
        let (mut counted, client) = connected(stall).await;
        let chunk = vec![0u8; 1 << 20];
        let started = std::time::Instant::now();
        let error = loop {
            // The client reads nothing: the buffers fill, then the write waits.
            if let Err(error) = counted.write_all(&chunk).await {
                break error;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the writes never stalled");
        };
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= stall);
        drop(client);
    }

    #[tokio::test]
    async fn writes_that_progress_slowly_do_not_time_out() {
        let stall = Duration::from_millis(500);
        let (mut counted, client) = connected(stall).await;
        // The client reads at most 1 MiB every 50 ms: slower than the writes, which wait, but
        // never 500 ms without progress.
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut client = client;
            let mut buffer = vec![0u8; 1 << 20];
            let mut total = 0;
            while total < 32 << 20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                match client.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => total += read,
                }
            }
            total
        });
        let chunk = vec![0u8; 1 << 20];
        let started = std::time::Instant::now();
        for _ in 0..24 {
            counted.write_all(&chunk).await.expect("slow progress is progress");
        }
        assert!(started.elapsed() > stall, "the writes did wait for the client");
        drop(counted);
        assert!(reader.await.unwrap() > 0);
    }
}
