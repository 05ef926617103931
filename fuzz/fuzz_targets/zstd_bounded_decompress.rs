//! F-6: arbitrary frames into the bounded decompressor: output is exactly the expected length or an
//! error, never more (the decompress_dstSize_tooSmall and stream_decompress classes).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    expected_len: u32,
    frame: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // Cap the expectation so the fuzzer explores decoding, not 64 MiB buffers.
    let expected = usize::try_from(input.expected_len % (1 << 20)).expect("fits");
    if let Ok(out) = cairn_seal::decompress_bounded(&input.frame, expected) {
        assert_eq!(out.len(), expected);
    }
});
