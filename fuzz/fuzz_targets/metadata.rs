//! The full `_metadata` reader on arbitrary bytes. Checked on every input:
//!
//! - nothing panics, nests without bound or allocates past what the input can hold;
//! - what it reads is bounded by the input: no more files, operators or inline bytes
//!   than the bytes could encode;
//! - reading is deterministic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use savepoint_webhook::verify::metadata;

fuzz_target!(|bytes: &[u8]| {
    let first = metadata::parse(bytes);
    assert_eq!(first, metadata::parse(bytes), "reading is deterministic");
    if let Ok(snapshot) = &first {
        // Every file reference takes at least 11 bytes, every operator 28.
        assert!(snapshot.files.len() * 11 <= bytes.len());
        assert!(snapshot.operators.len() * 28 <= bytes.len());
        assert!(snapshot.inline.bytes <= bytes.len() as u64);
    }
});
