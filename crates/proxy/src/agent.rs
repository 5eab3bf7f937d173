//! The agent's side of one exchange, whatever the protocol: the request
//! body is read, and the answer (a refusal, or the upstream's response)
//! written, through [`Agent`]. HTTP/1.1 connections ([`Conn`]) and HTTP/2
//! streams ([`crate::h2::Stream`]) implement it, so every request, on
//! either protocol, goes through the same decision path in `serve.rs`.

use std::future::Future;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::h1::{Conn, Framing, ReadError, Reply, Reservation, push_header, status_line};

/// How the body of a response that streams is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyLen {
    /// No body follows (a `HEAD`, a 1xx, 204 or 304); the upstream's
    /// `Content-Length`, if any, is passed on as it describes the resource.
    None(Option<String>),
    /// Exactly this many bytes follow.
    Length(String),
    /// The length is not known in advance.
    Unknown,
}

/// Where the agent's request came from and where its answer goes.
pub(crate) trait Agent: Send {
    /// Tells the agent to send its body (`100 Continue` on HTTP/1.1);
    /// returns false when the connection failed.
    fn send_continue(&mut self) -> impl Future<Output = bool> + Send;

    /// Reads the whole request body, at most `max` bytes, each byte
    /// reserved in `held` first.
    fn read_body(
        &mut self,
        framing: Framing,
        max: usize,
        held: &mut Reservation,
    ) -> impl Future<Output = Result<Vec<u8>, ReadError>> + Send;

    /// Completes when the agent gives up on the request it is waiting for
    /// (closes the connection or cancels the stream). `max` bounds what an
    /// HTTP/1.1 agent may send meanwhile.
    fn wait_closed(&mut self, max: usize) -> impl Future<Output = ()> + Send;

    /// Writes a whole answer of the proxy's own; `close` ends an HTTP/1.1
    /// connection after it. Returns false when it could not be written.
    fn send_reply(
        &mut self,
        reply: &Reply,
        close: bool,
        head_only: bool,
    ) -> impl Future<Output = bool> + Send;

    /// Writes a response's status and headers (hop-by-hop and framing
    /// headers already removed); the body follows with [`Agent::send_data`]
    /// and ends with [`Agent::finish`].
    fn send_head(
        &mut self,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        len: BodyLen,
    ) -> impl Future<Output = bool> + Send;

    /// Writes the next piece of the response body.
    fn send_data(&mut self, data: Bytes) -> impl Future<Output = bool> + Send;

    /// Passes the response's trailers on where the protocol carries them
    /// (HTTP/2); an HTTP/1.1 agent gets none, as it never asked for them.
    fn send_trailers(&mut self, trailers: http::HeaderMap) -> impl Future<Output = bool> + Send;

    /// Ends the response body.
    fn finish(&mut self) -> impl Future<Output = bool> + Send;

    /// After an accepted WebSocket handshake: writes `head` (the 101) and
    /// relays bytes both ways until either side closes. Returns the bytes
    /// sent up and down, or `None` when the protocol has no upgrade.
    fn splice(
        &mut self,
        head: Vec<u8>,
        up: hyper::upgrade::Upgraded,
    ) -> impl Future<Output = Option<(u64, u64)>> + Send;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Agent for Conn<S> {
    async fn send_continue(&mut self) -> bool {
        self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_ok()
    }

    async fn read_body(
        &mut self,
        framing: Framing,
        max: usize,
        held: &mut Reservation,
    ) -> Result<Vec<u8>, ReadError> {
        Conn::read_body(self, framing, max, held).await
    }

    async fn wait_closed(&mut self, max: usize) {
        Conn::wait_closed(self, max).await;
    }

    async fn send_reply(&mut self, reply: &Reply, close: bool, head_only: bool) -> bool {
        self.write_all(&reply.to_bytes(close, head_only))
            .await
            .is_ok()
    }

    /// The head is kept until the first piece of the body (or the end)
    /// so that a small response leaves in one write.
    async fn send_head(
        &mut self,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        len: BodyLen,
    ) -> bool {
        let mut out = status_line(status);
        for (k, v) in &headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        self.chunked_out = false;
        match &len {
            BodyLen::None(Some(cl)) | BodyLen::Length(cl) => {
                push_header(&mut out, "content-length", cl);
            }
            BodyLen::None(None) => {}
            BodyLen::Unknown => {
                push_header(&mut out, "transfer-encoding", "chunked");
                self.chunked_out = true;
            }
        }
        out.extend_from_slice(b"\r\n");
        self.pending = out;
        true
    }

    /// An empty piece writes a head still kept back, and nothing else.
    async fn send_data(&mut self, data: Bytes) -> bool {
        let mut out = std::mem::take(&mut self.pending);
        if !data.is_empty() {
            if self.chunked_out {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            } else if out.is_empty() {
                return self.write_all(&data).await.is_ok();
            } else {
                out.extend_from_slice(&data);
            }
        }
        out.is_empty() || self.write_all(&out).await.is_ok()
    }

    async fn send_trailers(&mut self, _trailers: http::HeaderMap) -> bool {
        true
    }

    async fn finish(&mut self) -> bool {
        let mut out = std::mem::take(&mut self.pending);
        if std::mem::take(&mut self.chunked_out) {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        out.is_empty() || self.write_all(&out).await.is_ok()
    }

    async fn splice(&mut self, head: Vec<u8>, up: hyper::upgrade::Upgraded) -> Option<(u64, u64)> {
        use tokio::io::AsyncWriteExt as _;
        let mut up = hyper_util::rt::TokioIo::new(up);
        self.write_all(&head).await.ok()?;
        let early = self.buf.split();
        if !early.is_empty() {
            up.write_all(&early).await.ok()?;
        }
        Some(
            tokio::io::copy_bidirectional(&mut self.io, &mut up)
                .await
                .unwrap_or((0, 0)),
        )
    }
}
