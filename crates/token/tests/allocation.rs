//! T-13: hostile tokens of any size are rejected without allocation proportional to their size
//! (measured with a counting allocator, one test at a time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::alloc::System;
use std::sync::Mutex;

use cairn_token::*;

#[global_allocator]
static ALLOC: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes allocated (cumulatively, freed or not) while `f` runs.
fn allocated_during(f: impl FnOnce()) -> usize {
    let before = ALLOC.total_allocated();
    f();
    ALLOC.total_allocated() - before
}

#[test]
fn oversize_and_hostile_inputs_allocate_nothing_proportional() {
    let _guard = SERIAL.lock().unwrap();
    let fx = common::fixture();
    let acme = common::tenant("acme");
    let inputs = [
        "{".repeat(1 << 20),
        "\"a\":1,".repeat(1 << 18),
        format!("v4.public.{}", "A".repeat(1 << 20)),
        format!("v4.public.{}.{}", "A".repeat(100), "B".repeat(1 << 20)),
        "v4.public.".repeat(1 << 16),
        "x".repeat(MAX_TOKEN_LEN + 1),
    ];
    for input in &inputs {
        let bytes = allocated_during(|| {
            let err = fx.verifier.verify(input, &acme).unwrap_err();
            assert_eq!(err.reason(), Reason::Oversize);
        });
        assert_eq!(bytes, 0, "{} input bytes", input.len());
    }
    // Within the size limit, hostile footers cost at most a few token-sized buffers.
    let kid = common::key(1).verifying_key().id().to_string();
    let footer = format!(r#"{{"kid":"{kid}","x":{}}}"#, "[".repeat(100));
    let token = common::sign_with(1, b"{}", footer.as_bytes(), b"tenant:acme");
    let bytes = allocated_during(|| {
        assert!(fx.verifier.verify(&token, &acme).is_err());
    });
    assert!(bytes < 8 * MAX_TOKEN_LEN, "{bytes} bytes");
}
