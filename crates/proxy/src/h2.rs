//! The agent's side of HTTP/2, inside an intercepted TLS connection that
//! negotiated `h2` by ALPN. hyper's server (on the `h2` crate) does the
//! framing, HPACK and flow control, and refuses what HTTP/2 calls
//! malformed: connection-specific headers (`Connection`, `Upgrade`,
//! `Transfer-Encoding`, …), a `Content-Length` the DATA frames do not
//! match, pseudo-headers out of place. Each stream becomes a [`Head`] and
//! is decided on its own, exactly like an HTTP/1.1 request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Agent, BodyLen};
use crate::h1::{
    Framing, Head, ReadError, Reply, Reservation, content_length, declared_within, past_bound,
    refuse,
};

/// A response body sent to the agent over HTTP/2.
#[derive(Debug)]
pub(crate) enum OutBody {
    /// Nothing (a `HEAD`, a 204, …).
    Empty,
    /// A whole body the proxy already holds.
    Full(Option<Bytes>),
    /// Frames the exchange hands over as the upstream sends them, and
    /// whether it finished them: a channel closed before that is an error,
    /// so hyper resets the stream rather than end it as if complete (an
    /// upstream that failed mid-body must not look like a short body).
    Chan(mpsc::Receiver<Frame<Bytes>>, Arc<AtomicBool>),
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            OutBody::Empty => Poll::Ready(None),
            OutBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Chan(rx, finished) => rx.poll_recv(cx).map(|f| match f {
                Some(f) => Some(Ok(f)),
                None if finished.load(Ordering::Acquire) => None,
                None => Some(Err(std::io::Error::other(
                    "the upstream's answer ended before it was complete",
                ))),
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutBody::Empty => true,
            OutBody::Full(b) => b.is_none(),
            OutBody::Chan(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Empty => SizeHint::with_exact(0),
            OutBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            OutBody::Chan(..) => SizeHint::default(),
        }
    }
}

/// One HTTP/2 stream: its request body, and the way back for the answer.
#[derive(Debug)]
pub(crate) struct Stream {
    body: Option<Incoming>,
    reply: Option<oneshot::Sender<http::Response<OutBody>>>,
    data: Option<(mpsc::Sender<Frame<Bytes>>, Arc<AtomicBool>)>,
}

impl Stream {
    pub(crate) fn new(body: Incoming, reply: oneshot::Sender<http::Response<OutBody>>) -> Stream {
        Stream {
            body: Some(body),
            reply: Some(reply),
            data: None,
        }
    }

    fn respond(&mut self, resp: http::Response<OutBody>) -> bool {
        self.reply.take().is_some_and(|tx| tx.send(resp).is_ok())
    }
}

/// The stream's request as the decision path reads it: the method, the
/// target as a path (`:path`), the headers in order, and `Host` from
/// `:authority` (which must agree with a `Host` header if both are sent).
/// Also how its body is framed.
pub(crate) fn head(
    parts: &http::request::Parts,
    body: &Incoming,
    max_headers: usize,
) -> Result<(Head, Framing), ReadError> {
    // The same bound as an HTTP/1.1 head's (`Limits::max_headers`).
    if parts.headers.len() > max_headers {
        return Err(refuse(431, "too many header fields"));
    }
    let target = if parts.method == http::Method::CONNECT {
        parts
            .uri
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned())
    } else {
        parts
            .uri
            .path_and_query()
            .map_or_else(String::new, |p| p.as_str().to_owned())
    };
    let mut headers: Vec<(String, String)> = Vec::with_capacity(parts.headers.len() + 1);
    // HTTP/2 clients may split `cookie` into several fields; they are one
    // field joined by "; " for everything downstream, an HTTP/1.1 upstream
    // among them (RFC 9113 §8.2.3).
    let mut cookie: Option<usize> = None;
    for (k, v) in &parts.headers {
        let v = v
            .to_str()
            .map_err(|_| refuse(400, format!("header `{k}` is not visible ASCII")))?;
        if k == http::header::COOKIE {
            if let Some(i) = cookie {
                if let Some((_, joined)) = headers.get_mut(i) {
                    joined.push_str("; ");
                    joined.push_str(v);
                }
                continue;
            }
            cookie = Some(headers.len());
        }
        headers.push((k.as_str().to_owned(), v.to_owned()));
    }
    let mut h = Head {
        method: parts.method.as_str().to_owned(),
        target,
        minor: 1,
        headers,
    };
    if h.all("host").count() > 1 {
        return Err(refuse(400, "duplicate Host header"));
    }
    if let Some(a) = parts.uri.authority() {
        match h.one("host") {
            Some(host) if !host.trim().eq_ignore_ascii_case(a.as_str()) => {
                return Err(refuse(
                    400,
                    format!("`:authority` {a} and the Host header `{host}` differ"),
                ));
            }
            Some(_) => {}
            None => h.headers.push(("host".to_owned(), a.as_str().to_owned())),
        }
    }
    let cl: Vec<&str> = h.all("content-length").collect();
    let declared = content_length(&cl)?;
    let framing = if body.is_end_stream() {
        Framing::None
    } else {
        // Without a Content-Length, the DATA frames are read to the end of
        // the stream, bounded as they come.
        declared.unwrap_or(Framing::Chunked)
    };
    Ok((h, framing))
}

fn response(status: u16, headers: &[(String, Vec<u8>)], body: OutBody) -> http::Response<OutBody> {
    let mut resp = http::Response::new(body);
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let map = resp.headers_mut();
    for (k, v) in headers {
        let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_bytes(v),
        ) else {
            continue;
        };
        map.append(k, v);
    }
    resp
}

impl Agent for Stream {
    async fn send_continue(&mut self) -> bool {
        // hyper answers `Expect: 100-continue` itself when the body is read.
        true
    }

    async fn read_body(
        &mut self,
        framing: Framing,
        max: usize,
        held: &mut Reservation,
    ) -> Result<Vec<u8>, ReadError> {
        let Some(mut body) = self.body.take() else {
            return Ok(Vec::new());
        };
        if framing == Framing::None {
            return Ok(Vec::new());
        }
        if let Framing::Length(n) = framing {
            declared_within(n, max)?;
        }
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ReadError::Io(std::io::Error::other(e)))?;
            // Trailers are read and dropped, as on HTTP/1.1.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if out.len().saturating_add(data.len()) > max {
                return Err(past_bound(max));
            }
            held.grow(data.len()).await?;
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    async fn wait_closed(&mut self, _max: usize) {
        // The stream's task is dropped when the agent resets the stream or
        // the connection ends, which closes the answer's channel.
        match &mut self.reply {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    async fn send_reply(&mut self, reply: &Reply, _close: bool, head_only: bool) -> bool {
        let mut headers: Vec<(String, Vec<u8>)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        headers.push(("content-length".into(), reply.body.len().to_string().into()));
        let body = if head_only || reply.body.is_empty() {
            OutBody::Empty
        } else {
            OutBody::Full(Some(Bytes::from(reply.body.clone())))
        };
        self.respond(response(reply.status, &headers, body))
    }

    async fn send_head(
        &mut self,
        status: u16,
        mut headers: Vec<(String, Vec<u8>)>,
        len: BodyLen,
    ) -> bool {
        match len {
            BodyLen::None(cl) => {
                if let Some(cl) = cl {
                    headers.push(("content-length".into(), cl.into_bytes()));
                }
                self.respond(response(status, &headers, OutBody::Empty))
            }
            BodyLen::Length(cl) => {
                headers.push(("content-length".into(), cl.into_bytes()));
                self.stream_head(status, &headers)
            }
            BodyLen::Unknown => self.stream_head(status, &headers),
        }
    }

    async fn send_data(&mut self, data: Bytes) -> bool {
        if data.is_empty() {
            return true;
        }
        match &self.data {
            Some((tx, _)) => tx.send(Frame::data(data)).await.is_ok(),
            None => false,
        }
    }

    async fn send_trailers(&mut self, trailers: http::HeaderMap) -> bool {
        match &self.data {
            Some((tx, _)) => tx.send(Frame::trailers(trailers)).await.is_ok(),
            None => false,
        }
    }

    async fn finish(&mut self) -> bool {
        if let Some((_, finished)) = self.data.take() {
            finished.store(true, Ordering::Release);
        }
        true
    }

    async fn splice(
        &mut self,
        _head: Vec<u8>,
        _up: hyper::upgrade::Upgraded,
    ) -> Option<(u64, u64)> {
        None
    }
}

impl Stream {
    fn stream_head(&mut self, status: u16, headers: &[(String, Vec<u8>)]) -> bool {
        let (tx, rx) = mpsc::channel(4);
        let finished = Arc::new(AtomicBool::new(false));
        self.data = Some((tx, Arc::clone(&finished)));
        self.respond(response(status, headers, OutBody::Chan(rx, finished)))
    }
}
