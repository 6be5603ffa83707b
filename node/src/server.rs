//! The node's HTTP server: JSON-RPC over HTTP and WebSocket, the Move API and the metrics, on
//! one port, with the limits a server that anyone on the network can reach needs.
//!
//! - **Open connections** are capped ([`Limits::max_connections`]): past the cap, the node stops
//!   accepting until one closes, and new clients wait in the kernel's queue instead of taking
//!   the file descriptors the database needs. A WebSocket connection counts until it closes.
//! - **A request's head** must arrive within [`Limits::idle_timeout`], counted from the moment
//!   the node waits for it: a client that opens connections and sends nothing, or a header a
//!   byte at a time, cannot hold them; a keep-alive connection idle that long is closed.
//! - **A request's body** must arrive within the same time once the head has ([`read_body`]),
//!   or the answer is `408 Request Timeout` and the connection closes.
//!
//! Shutdown stops accepting, lets each connection finish the request it is answering, and
//! closes idle ones.

use std::future::Future;
use std::sync::Arc;
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
    /// How long a request's head, and then its body, may take to arrive.
    pub idle_timeout: Duration,
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
    let router = router.layer(axum::middleware::from_fn_with_state(limits.idle_timeout, read_body));
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
        let stream = Counted { stream, _permit: permit };
        let task = connection(stream, router.clone(), limits, closing_seen.clone(), open.clone());
        tokio::spawn(task);
    }
    let _ = closing.send(true);
    drop(open);
    let _ = all_closed.recv().await;
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

/// Reads a request's body whole within `timeout` before the handlers see it: `408` if it takes
/// longer, `413` past [`crate::rpc::MAX_BODY`].
async fn read_body(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, crate::rpc::MAX_BODY);
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {error}"))
                .into_response();
        }
        Err(_) => {
            let message = format!("the request's body took more than {}s", timeout.as_secs_f64());
            let mut response = (StatusCode::REQUEST_TIMEOUT, message).into_response();
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, "close".parse().expect("a header value"));
            return response;
        }
    };
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes))).await
}

/// A connection's stream, holding its place among the open connections until it is dropped
/// (with the WebSocket it was upgraded to, if it was).
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(context, buffer)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
