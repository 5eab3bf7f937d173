//! Integration tests of `blastwall-audit`, as one test binary; the tests live
//! in `suite/`.

mod suite;
