//! `blastwall-server` owns the approval channels beyond the command line:
//! the local web page and its JSON API (`blastwall serve`), the data the
//! terminal view shows (`blastwall watch`: the live feed of running
//! sessions' audit logs, pending approvals, deciding), and outgoing
//! webhooks (Slack, Discord, plain JSON) posted when an ask is held.
//!
//! It must not listen beyond loopback without auth (DESIGN.md §6): the page
//! binds to `127.0.0.1` unless told otherwise, every request must carry a
//! session cookie obtained with the random access token `serve` prints, and
//! a non-loopback address needs an explicit flag and still needs the token.
//!
//! Deciding goes exactly the way `blastwall approve` and `deny` do: a
//! compare-and-set from `pending` in the user's approval store, then a
//! wake-up on the session's control socket ([`decide::decide`]). The store
//! is the authority; nothing here reaches inside a wall, and nothing inside
//! a wall reaches this (I5).
//!
//! Every string an agent can influence (a summary, a path, a host, an audit
//! record's fields) reaches a person only through [`blastwall_gate::Summary`]'s
//! renderers or [`blastwall_gate::summary::clean`], then the channel's own
//! escaping: HTML entities on the page, code spans for Slack and Discord.
//! XSS on the page would be self-approval.
//!
//! Main types: [`web::Server`] and [`web::ServeConfig`], [`feed::Feed`] and
//! [`feed::FeedEvent`], [`webhook::Poster`] and [`webhook::Format`],
//! [`decide::Decided`].
//!
//! # Choices
//!
//! The HTTP server is axum on tokio (hyper underneath, as the proxy uses);
//! webhooks are posted with ureq from one background thread, so a slow or
//! dead webhook never touches the agent's request path (a bounded queue,
//! dropped notices are counted, a timeout per post).
//!
//! # Test strategy
//!
//! `tests/suite/web.rs` drives a real server on loopback with raw HTTP/1.1
//! (so a wrong `Host` or a missing `Origin` can be sent at all): no token,
//! a wrong token, a wrong Host, a cross-origin or token-less POST are all
//! refused, and a decision made through the page is in the store.
//! `tests/suite/webhook.rs` posts to a local recorder and checks each
//! format's payload for hostile summaries. The browser test (a real
//! Chromium clicking approve while a sandboxed curl is held) lives with the
//! CLI's tests.
#![forbid(unsafe_code)]

pub mod decide;
pub mod feed;
mod page;
pub mod serve_file;
pub mod token;
pub mod web;
pub mod webhook;

/// Who is deciding, as `decided_by` records it: `uid 1000 (ana) via web`.
pub fn decided_by(uid: u32, name: Option<&str>, channel: &str) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => format!("uid {uid} ({n}) via {channel}"),
        None => format!("uid {uid} via {channel}"),
    }
}
