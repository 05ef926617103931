//! zstd compression with a fast incompressibility check, and bounded decompression.

use crate::{MAX_PLAINTEXT_LEN, SealError};

/// Inputs shorter than this are compressed without probing first.
const PROBE_MIN_LEN: usize = 64 * 1024;
/// Bytes per probe sample, and how many samples (spread evenly over the input).
const PROBE_SAMPLE: usize = 4096;
const PROBE_SAMPLES: usize = 4;
/// Order-0 entropy (bits per byte, times 1000) above which the input is treated as incompressible.
const PROBE_ENTROPY_MILLIBITS: u64 = 7_600;

/// Whether a quick look says compression will not pay: the order-0 byte entropy of a few samples
/// is near 8 bits per byte (encrypted, already compressed or random data).
pub(crate) fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < PROBE_MIN_LEN {
        return false;
    }
    let mut counts = [0u32; 256];
    let stride = (data.len() - PROBE_SAMPLE) / (PROBE_SAMPLES - 1);
    for i in 0..PROBE_SAMPLES {
        let start = i * stride;
        for &b in &data[start..start + PROBE_SAMPLE] {
            counts[usize::from(b)] += 1;
        }
    }
    let total: u32 = counts.iter().sum();
    // Order-0 entropy in bits per byte, in f64: a heuristic that only picks a code path; it never
    // changes what a reader accepts.
    let total_f = f64::from(total);
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total_f;
            -p * p.log2()
        })
        .sum();
    bits * 1000.0 >= PROBE_ENTROPY_MILLIBITS as f64
}

/// Appends `data` compressed with zstd at `level` to `out` (at its current length), straight
/// into `out`'s spare room: no buffer of the compressor's own, and no copy of the frame. Returns
/// whether it did: `false`, with `out` as it was, if the input looks incompressible or the frame
/// does not save at least 1/32 of the input.
pub(crate) fn compress_into(data: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    if data.is_empty() || looks_incompressible(data) {
        return false;
    }
    // A frame of `worth` bytes or more is not kept.
    let worth = data.len() - data.len() / 32;
    let start = out.len();
    out.reserve(worth);
    // One compression context per thread and level, reused: creating one costs about as much
    // as compressing a few KiB (measured: 1.3 % of a backup's profile).
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let written = COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        // zstd writes into `out`'s capacity after `start` and sets its length; a frame that
        // does not fit fails ("destination too small") and is not kept either.
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(u64::try_from(start).ok()?);
        compressor.compress_to_buffer(data, &mut cursor).ok()
    });
    match written {
        Some(n) if n < worth && out.len() == start + n => true,
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// Compresses with zstd at `level`; `None` if compression saves less than 1/32 of the input or the
/// input looks incompressible.
#[cfg(test)]
pub(crate) fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    compress_into(data, level, &mut out).then_some(out)
}

/// Decompresses one zstd frame that must expand to exactly `expected_len` bytes, never allocating
/// or writing more than that (A-8: bombs and frames declaring huge sizes fail without a large
/// allocation).
///
/// # Errors
/// [`SealError::TooLarge`] if `expected_len` exceeds [`MAX_PLAINTEXT_LEN`];
/// [`SealError::Decompress`] if the frame is invalid, expands to any other length, or is followed
/// by trailing bytes.
pub fn decompress_bounded(frame: &[u8], expected_len: usize) -> Result<Vec<u8>, SealError> {
    if expected_len > MAX_PLAINTEXT_LEN {
        return Err(SealError::TooLarge {
            len: expected_len,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    // A frame that declares its size must declare exactly this one.
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(declared)) if declared != expected_len as u64 => {
            return Err(SealError::Decompress);
        }
        Err(_) => return Err(SealError::Decompress),
        _ => {}
    }
    // Exactly one frame, no trailing bytes.
    let frame_len =
        zstd::zstd_safe::find_frame_compressed_size(frame).map_err(|_| SealError::Decompress)?;
    if frame_len != frame.len() {
        return Err(SealError::Decompress);
    }
    let mut out = Vec::with_capacity(expected_len);
    // One decompression context per thread, reused (a context per block cost ~2 % of a
    // restore's profile). A frame that fails leaves the context reusable: zstd resets it at
    // the start of every frame.
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let n = DECOMPRESSOR
        .with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().ok()?);
            }
            slot.as_mut()?.decompress_to_buffer(frame, &mut out).ok()
        })
        .ok_or(SealError::Decompress)?;
    if n != expected_len || out.len() != expected_len {
        return Err(SealError::Decompress);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_incompressible_text_is_not() {
        let mut random = vec![0u8; 1 << 20];
        blake3::Hasher::new().finalize_xof().fill(&mut random);
        assert!(looks_incompressible(&random));
        assert!(compress(&random, 3).is_none());
        let text = b"the quick brown fox jumps over the lazy dog. ".repeat(30_000);
        assert!(!looks_incompressible(&text));
        let c = compress(&text, 3).unwrap();
        assert_eq!(decompress_bounded(&c, text.len()).unwrap(), text);
    }

    #[test]
    fn compress_into_appends_after_what_is_there_or_leaves_it_alone() {
        let prefix = b"header and lengths".to_vec();
        // Compressible: the frame follows the prefix, which is kept.
        let text = b"a line of text that repeats, and repeats again. ".repeat(2_000);
        let mut out = prefix.clone();
        assert!(compress_into(&text, 3, &mut out));
        assert_eq!(&out[..prefix.len()], prefix.as_slice());
        let frame = &out[prefix.len()..];
        assert!(frame.len() < text.len() - text.len() / 32);
        assert_eq!(decompress_bounded(frame, text.len()).unwrap(), text);
        // Short random bytes (too short for the probe) are tried and not kept: `out` unchanged.
        let mut random = vec![0u8; 20_000];
        blake3::Hasher::new().finalize_xof().fill(&mut random);
        let mut out = prefix.clone();
        out.reserve(random.len() * 2);
        assert!(!compress_into(&random, 3, &mut out));
        assert_eq!(out, prefix);
        // Nothing to compress.
        assert!(!compress_into(&[], 3, &mut out));
        assert_eq!(out, prefix);
    }

    #[test]
    fn bounded_decompression_rejects_wrong_sizes() {
        let data = vec![0u8; 100_000];
        let frame = zstd::bulk::compress(&data, 3).unwrap();
        assert!(decompress_bounded(&frame, 99_999).is_err());
        assert!(decompress_bounded(&frame, 100_001).is_err());
        assert!(decompress_bounded(&frame, MAX_PLAINTEXT_LEN + 1).is_err());
        let mut trailing = frame.clone();
        trailing.push(0);
        assert!(decompress_bounded(&trailing, 100_000).is_err());
        assert_eq!(decompress_bounded(&frame, 100_000).unwrap(), data);
    }
}
