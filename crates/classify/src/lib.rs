//! `blastwall-classify` turns what an interceptor saw into facts a policy can
//! match on: the risk labels of an HTTP method (including method-override
//! headers), every operation and root field of a GraphQL document, the ref
//! updates of a git push, and the labels of a command line.
//!
//! It owns the parsing of hostile, agent-controlled input into typed,
//! bounded summaries. It must not do I/O: no files, no sockets, no clock,
//! no async runtime. Every function here takes bytes or strings and returns
//! a value; nothing panics on any input (each parser has a property test and
//! a fuzz target).
//!
//! Main types: [`Label`] and [`Labels`], [`graphql::Inspection`] with its
//! [`graphql::Call`]s, [`git::RefUpdate`], [`http::MethodInfo`].
//!
//! # How a policy should read the results
//!
//! - A [`graphql::Inspection::Opaque`] (and the [`Label::Opaque`] label of
//!   [`graphql::Inspection::labels`] or [`argv::argv_labels`]) means "could
//!   not tell": give it the strictest verdict the host allows, never
//!   `allow`.
//! - GraphQL calls are listed for every operation of a document, whatever
//!   `operationName` says; decide on each call and keep the strictest.
//! - An empty label set from [`argv::argv_labels`] means "not one of the
//!   commands this crate knows", not "harmless".
//! - Labels are a help to manifests ("ask on destructive"), not a
//!   substitute for allowlists: a word list cannot know every API.
//!
//! # Compatibility
//!
//! GraphQL documents are parsed with `graphql-parser` 0.4 (GraphQL October
//! 2021 executable documents); the nesting prescan in [`graphql`] mirrors
//! that version's tokenizer and must be checked when it is upgraded. Git
//! pushes are read as protocol v0/v1 `git-receive-pack` requests (v2 has no
//! push), with SHA-1 or SHA-256 object ids; signed pushes are refused.
//!
//! # Test strategy
//!
//! Unit tests sit next to each parser; `tests/all.rs` holds the acceptance
//! cases through the public API, property tests that no parser panics on
//! arbitrary input, and a run of every committed fuzz corpus file
//! (`fuzz/corpus/*`) through the function its `cargo fuzz` target calls.
#![forbid(unsafe_code)]

pub mod argv;
pub mod git;
pub mod graphql;
pub mod http;
pub mod pack;
mod text;

use serde::Serialize;

/// A risk label a classifier attaches to an action, so that a manifest can
/// say "ask on destructive" instead of enumerating every dangerous call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    /// Reads state and changes nothing (GET, a GraphQL query).
    Read,
    /// Changes state (POST/PUT/PATCH, a GraphQL mutation, a git push).
    Write,
    /// Deletes or overwrites state (DELETE, `volumeDelete`, `rm -rf`, a ref deletion).
    Destructive,
    /// Cannot be undone by the caller (a delete with no undo, a force push).
    Irreversible,
    /// Touches a credential (a token file, a secret store, an auth endpoint).
    CredentialAccess,
    /// Moves data out (an upload to a host that is not the data's home).
    Exfiltration,
    /// The classifier could not tell what the input does (unparseable body,
    /// persisted-query hash with no document, body past the inspection bound).
    Opaque,
}

impl Label {
    /// Every label, in a stable order (used by the manifest checker and the schema).
    pub const ALL: [Label; 7] = [
        Label::Read,
        Label::Write,
        Label::Destructive,
        Label::Irreversible,
        Label::CredentialAccess,
        Label::Exfiltration,
        Label::Opaque,
    ];

    /// The label's name as written in a manifest (`credential-access`).
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Read => "read",
            Label::Write => "write",
            Label::Destructive => "destructive",
            Label::Irreversible => "irreversible",
            Label::CredentialAccess => "credential-access",
            Label::Exfiltration => "exfiltration",
            Label::Opaque => "opaque",
        }
    }

    /// Parses a label name as written in a manifest.
    pub fn parse(s: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Label::Read => 1,
            Label::Write => 1 << 1,
            Label::Destructive => 1 << 2,
            Label::Irreversible => 1 << 3,
            Label::CredentialAccess => 1 << 4,
            Label::Exfiltration => 1 << 5,
            Label::Opaque => 1 << 6,
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A small set of [`Label`]s; `Copy`, no allocation (the policy's hot path
/// tests it with one AND).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Labels(u8);

impl Labels {
    /// The empty set.
    pub const EMPTY: Labels = Labels(0);

    /// A set holding the given labels.
    pub fn of(labels: &[Label]) -> Labels {
        let mut s = Labels::EMPTY;
        for l in labels {
            s.insert(*l);
        }
        s
    }

    /// Adds a label.
    pub fn insert(&mut self, l: Label) {
        self.0 |= l.bit();
    }

    /// Whether the set holds `l`.
    pub fn contains(self, l: Label) -> bool {
        self.0 & l.bit() != 0
    }

    /// Whether every label of `other` is in this set.
    pub fn contains_all(self, other: Labels) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the two sets share a label.
    pub fn intersects(self, other: Labels) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of two sets.
    #[must_use]
    pub fn union(self, other: Labels) -> Labels {
        Labels(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The labels in the set, in [`Label::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Label> {
        Label::ALL.into_iter().filter(move |l| self.contains(*l))
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}
