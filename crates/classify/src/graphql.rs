//! GraphQL documents as a policy sees them: every root field every operation
//! calls, whatever the aliases, fragments, batching or `operationName` say.

use serde::Serialize;

use crate::Labels;

/// The type of a GraphQL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// `query` or the `{ … }` shorthand.
    Query,
    /// `mutation`.
    Mutation,
    /// `subscription`.
    Subscription,
}

impl OpType {
    /// The keyword as written in a document and a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Query => "query",
            OpType::Mutation => "mutation",
            OpType::Subscription => "subscription",
        }
    }
}

/// One root field called by one operation: the unit a GraphQL rule decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    /// The operation's type.
    pub op: OpType,
    /// The operation's name as the client wrote it (client-chosen, never trusted for a verdict).
    pub operation_name: Option<String>,
    /// The root field called (`volumeDelete`), after resolving aliases and fragment spreads.
    pub field: String,
    /// The alias the client gave the field, if any.
    pub alias: Option<String>,
    /// Index of the request in a batched JSON array (0 when not batched).
    pub batch_index: usize,
    /// Labels from the operation type and the field name (`write`, `destructive`, …).
    pub labels: Labels,
}

/// Why a body could not be reduced to a list of calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Opaque {
    /// No body (or an empty one) where GraphQL was expected.
    Empty,
    /// The body is not JSON, or not a GraphQL request object or array of them.
    NotJson(String),
    /// The JSON carries duplicate keys (a parser differential waiting to happen).
    DuplicateKey(String),
    /// The `query` string does not parse as a GraphQL document.
    Syntax(String),
    /// A persisted-query hash with no document: the operation is unknown.
    PersistedQuery,
    /// The document has several operations and no `operationName` picks one,
    /// or `operationName` names none of them. (Calls of every operation are
    /// still listed where the document parsed; this marks the ambiguity.)
    UnknownOperation(String),
    /// A fragment spread names no fragment, or fragments spread in a cycle.
    BadFragment(String),
    /// The body is past the inspection bound.
    TooLarge,
    /// Past the bound on operations, fields or nesting the inspector walks.
    TooComplex,
}

/// What a GraphQL inspection found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Inspection {
    /// Every root field called, in every operation of every batched request.
    Calls {
        /// The calls, in document order.
        calls: Vec<Call>,
    },
    /// The body could not be fully inspected; a policy must give it the
    /// strictest verdict the host allows, never `allow`.
    Opaque {
        /// Why.
        reason: Opaque,
    },
}
