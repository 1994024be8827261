//! The accept loop: a cap on open connections, a header-read timeout that also bounds
//! an idle keep-alive connection, a write timeout for clients that stop reading, and a
//! back-off on accept errors instead of a spin.
//!
//! HTTP/1.1 through hyper's connection builder, with upgrades for the WebSocket stream
//! (HTTP/2 without TLS, which `axum::serve` also took, is not served).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::Layer as _;

/// Bounds on connections, each a `serve` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; past it, new ones wait in the kernel's backlog.
    pub connections_max: usize,
    /// Time a client has to send a request's headers, counted from the moment the
    /// connection is ready for a request: its start, or the end of the previous
    /// response. So it is also how long a keep-alive connection may sit idle.
    pub header_read_timeout_ms: u64,
    /// Time a write may wait for a client that does not read before the connection is
    /// closed; it bounds what a stalled reader holds.
    pub write_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            connections_max: 1_024,
            header_read_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
        }
    }
}

/// The first and the longest wait after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits) {
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, peer) = match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                (stream, peer)
            }
            Err(error) => {
                // Out of file descriptors, or a connection reset before it was
                // accepted: wait, so that the loop does not spin, and try again.
                tracing::warn!(%error, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Handlers that charge a source (node registrations) read its address.
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(router.clone()));
        tokio::spawn(async move {
            let io = TokioIo::new(WriteTimeout::new(
                stream,
                Duration::from_millis(limits.write_timeout_ms),
                permit,
            ));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
                .serve_connection(io, service)
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
}

/// A TCP stream whose writes fail with `TimedOut` once one has waited `timeout` for
/// the peer to read. It holds its connection's permit for as long as the socket
/// lives, an upgraded WebSocket included, so the cap counts every open socket.
struct WriteTimeout {
    stream: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    waiting: bool,
    _permit: OwnedSemaphorePermit,
}

impl WriteTimeout {
    fn new(stream: TcpStream, timeout: Duration, permit: OwnedSemaphorePermit) -> WriteTimeout {
        WriteTimeout {
            stream,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
            _permit: permit,
        }
    }

    /// Runs one write-side poll under the deadline: the deadline starts when a write
    /// first has to wait and is cleared by any progress.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll(Pin::new(&mut self.stream), cx) {
            Poll::Ready(answer) => {
                self.waiting = false;
                Poll::Ready(answer)
            }
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    let deadline = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(deadline);
                }
                ready!(self.deadline.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read the response in time",
                )))
            }
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .timed(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .timed(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().timed(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
