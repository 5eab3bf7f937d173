//! Integration tests of the manifest, its diagnostics and `decide()`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

mod suite;
