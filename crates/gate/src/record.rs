//! The `data` of the records the gate writes, as structs serialized straight
//! into the log's line (`AuditLog::append_data`): no `serde_json::Value`
//! tree, no map of keys, no copy of the action's strings per request.
//!
//! The members, their order and their JSON are those of the `json!` values
//! the gate wrote before (`docs/audit-schema.md`): the field order of each
//! struct is the order of its members in the record. `tests/all.rs` checks
//! the bytes against the `Value` path.

use blastwall_policy::{Action, Labels, RuleRef, Verdict};
use serde::Serialize;
use serde_json::Value;

/// A `decision` record from [`crate::Gate::check_with`].
#[derive(Serialize)]
pub(crate) struct DecisionRecord<'a> {
    pub(crate) action: &'a Action,
    pub(crate) verdict: Verdict,
    pub(crate) rule: &'a RuleRef,
    pub(crate) reason: &'a str,
    pub(crate) labels: Labels,
    pub(crate) subject: Option<&'a str>,
    pub(crate) side_effects: bool,
    pub(crate) approval: Option<&'a str>,
}

/// A `decision` record from [`crate::Gate::refuse`]: an interceptor's own
/// refusal, by a built-in rule.
#[derive(Serialize)]
pub(crate) struct RefusalRecord<'a> {
    pub(crate) action: Option<&'a Action>,
    pub(crate) verdict: Verdict,
    pub(crate) rule: BuiltinRule<'a>,
    pub(crate) reason: &'a str,
    pub(crate) labels: [&'a str; 0],
    pub(crate) subject: &'a str,
    pub(crate) side_effects: bool,
    pub(crate) approval: Option<&'a str>,
    pub(crate) detail: &'a Value,
}

/// An `outcome` record.
#[derive(Serialize)]
pub(crate) struct OutcomeRecord<'a, T: Serialize + ?Sized> {
    pub(crate) decision_seq: u64,
    pub(crate) outcome: &'a str,
    pub(crate) detail: &'a T,
}

/// A built-in rule, serialized as a [`RuleRef`] (`file` "blastwall", line
/// and column 0) without building one.
#[derive(Serialize)]
pub(crate) struct BuiltinRule<'a> {
    id: &'a str,
    file: &'static str,
    line: u32,
    col: u32,
}

impl<'a> BuiltinRule<'a> {
    pub(crate) fn new(id: &'a str) -> BuiltinRule<'a> {
        BuiltinRule {
            id,
            file: "blastwall",
            line: 0,
            col: 0,
        }
    }
}
