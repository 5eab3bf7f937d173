//! Integration tests of the wall: each drives a real sandbox through the
//! `blastwall-sandbox-harness` binary, attacks it from inside (often with
//! `blastwall-sandbox-check`) and asserts on what happened outside.
//!
//! A test that cannot run on this host prints why and passes, unless
//! `BLASTWALL_REQUIRE_SANDBOX=1`, which turns every skip into a failure.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod suite;
