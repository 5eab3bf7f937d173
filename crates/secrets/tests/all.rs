//! The secret store and the credential sources.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

mod suite;
