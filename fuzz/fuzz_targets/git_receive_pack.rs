//! Fuzzes the `git-receive-pack` command-list parser: it must not panic,
//! and every update it returns must be well formed.
#![no_main]
#![forbid(unsafe_code)]

use blastwall_classify::git::{RefUpdateKind, parse_receive_pack, ref_labels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(updates) = parse_receive_pack(data) {
        for u in &updates {
            assert_eq!(u.old.len(), u.new.len());
            assert!(!u.name.is_empty());
            let _ = ref_labels(u);
            match u.kind {
                RefUpdateKind::Create => assert!(u.old.bytes().all(|b| b == b'0')),
                RefUpdateKind::Delete => assert!(u.new.bytes().all(|b| b == b'0')),
                RefUpdateKind::Update => {}
            }
        }
    }
});
