//! End-to-end tests of the real `blastwall` binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

mod suite;
