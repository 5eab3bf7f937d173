//! The proxy on real loopback listeners, driven by real curl and python3,
//! against echo upstreams that record what they receive.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "tests fail loudly on broken setup"
)]

mod suite;
