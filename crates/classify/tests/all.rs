//! The one integration test binary of `blastwall-classify`: every module's
//! behaviour through the public API, property tests, and the fuzz corpus.

mod suite;
