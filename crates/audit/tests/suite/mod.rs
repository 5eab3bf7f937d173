//! Test modules, and the helpers they share.

mod anomaly;
mod bytes;
mod checkpoint;
mod common;
mod docs;
mod reopen;
mod roundtrip;
mod sinks;
mod syncer;
mod tamper;
mod time;
mod writer;
