//! The mocks over real sockets, driven by curl and git.
#![expect(clippy::unwrap_used, reason = "tests")]

mod suite;
