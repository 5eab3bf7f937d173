//! `blastwall-policy` owns the capability manifest, `blastwall.toml`: its
//! schema ([`json_schema`]), parsing with spans, validation with
//! file:line:col diagnostics, and the compiled matcher behind
//! [`Policy::decide`] — the one question every interceptor asks: *given this
//! action, allow, ask or deny — by which rule, and why?*
//!
//! It must not do I/O: the caller reads files and passes text and the facts
//! of the world (project root, home, the user's own grants) in a
//! [`Context`]. `decide()` is pure and does not allocate on the common path.
//!
//! Main types: [`Source`] and [`Diagnostic`] (input and errors), [`load`]
//! (text → [`Policy`]), [`Action`] (what an interceptor saw), [`Decision`]
//! (verdict, rule, reason, labels).
//!
//! # Test strategy
//!
//! Golden diagnostics for bad manifests (`tests/manifests/bad/*.toml` next
//! to `*.stderr`), the PocketOS attack cases against
//! `examples/pocketos.toml`, and property tests: with no rule every request
//! is denied, and adding a deny rule in front never turns a deny into an
//! allow.
#![forbid(unsafe_code)]

mod action;
mod check;
mod decide;
mod diag;
mod host;
mod manifest;
mod schema;
mod settings;

pub use action::{
    Action, ExecAction, FsAction, FsOp, GitPush, NetAction, PushUpdate, RefUpdateView,
    RequestError, Scheme, parse_header_lines,
};
pub use blastwall_classify::{Label, Labels};
pub use decide::{Decision, Policy, RuleRef, Verdict};
pub use diag::{Diagnostic, Severity, Source};
pub use host::{HostName, HostPattern};
pub use manifest::{
    Context, Loaded, Origin, TestAction, TestCase, UserGrants, load, load_user_grants, normalize,
    parse_duration, parse_size,
};
pub use schema::json_schema;
pub use settings::*;
