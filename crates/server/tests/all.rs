//! The server's tests: a real server on loopback driven with raw HTTP, and
//! webhooks posted to a local recorder.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

mod suite;
