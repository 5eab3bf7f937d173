//! Fuzzes GraphQL inspection: a JSON body, the same bytes as a raw document,
//! and as a GET query string. None may panic; a `Calls` inspection is never
//! empty, and an opaque one lists no call.
#![no_main]
#![forbid(unsafe_code)]

use blastwall_classify::graphql::{Inspection, inspect_body, inspect_document, inspect_query_string};
use libfuzzer_sys::fuzz_target;

fn check(i: &Inspection) {
    match i {
        Inspection::Calls { calls } => assert!(!calls.is_empty()),
        Inspection::Opaque { .. } => assert!(i.calls().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    check(&inspect_body(data));
    if let Ok(s) = std::str::from_utf8(data) {
        check(&inspect_document(s));
        if let Some(i) = inspect_query_string(s) {
            check(&i);
        }
    }
});
