//! A-8 / F-6 class: decompression is bounded before it starts. Bombs and frames that declare huge
//! sizes fail without allocating more than the expected length (measured with a counting allocator).

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::sync::Mutex;

use cairn_seal::{SealError, decompress_bounded};

/// Counts live and peak heap bytes for the whole test binary.
#[global_allocator]
static ALLOC: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

/// Tests in this binary run one at a time, so the peak belongs to the test that reads it.
static SERIAL: Mutex<()> = Mutex::new(());

/// The largest heap size the process has reached so far, in bytes.
fn peak() -> usize {
    ALLOC.max_allocated()
}

#[test]
fn bomb_is_cut_off_at_the_expected_length() {
    let _guard = SERIAL.lock().unwrap();
    // 64 MiB of zeros in a frame without a declared size (streaming encoder): about 2 KiB.
    let frame = zstd::stream::encode_all(std::io::repeat(0).take_bytes(64 << 20), 3).unwrap();
    assert!(frame.len() < 64 << 10);
    assert_eq!(
        decompress_bounded(&frame, 1 << 20),
        Err(SealError::Decompress)
    );
    // The output buffer (1 MiB), zstd's decoder context and the encoder's buffers; never 64 MiB.
    assert!(peak() < 16 << 20, "peak heap {} bytes", peak());
}

#[test]
fn declared_huge_size_is_rejected_before_decoding() {
    let _guard = SERIAL.lock().unwrap();
    // Frame header: magic, descriptor with an 8-byte content size of 2^40, then a raw block.
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0b1110_0000];
    frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
    frame.extend_from_slice(&[0x01, 0x00, 0x00]); // last raw block of size 0
    assert_eq!(
        decompress_bounded(&frame, 1 << 20),
        Err(SealError::Decompress)
    );
    // And an expected length over the maximum is refused before anything else.
    assert!(matches!(
        decompress_bounded(&frame, usize::MAX),
        Err(SealError::TooLarge { .. })
    ));
    assert!(peak() < 16 << 20, "peak heap {} bytes", peak());
}

#[test]
fn garbage_frames_are_errors() {
    let _guard = SERIAL.lock().unwrap();
    for junk in [
        &b""[..],
        b"\x28\xb5\x2f\xfd",
        b"not zstd at all",
        &[0xff; 64],
    ] {
        assert_eq!(decompress_bounded(junk, 10), Err(SealError::Decompress));
    }
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}
impl<R: std::io::Read> TakeBytes for R {}
