//! Size limits and the strict base64url check that run before any decoding.

/// Longest token accepted, in bytes, checked before anything is decoded.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest footer accepted, in bytes after decoding.
pub const MAX_FOOTER_LEN: usize = 256;
/// Longest footer accepted, in base64url characters (`MAX_FOOTER_LEN` bytes encoded).
pub(crate) const MAX_FOOTER_B64_LEN: usize = (MAX_FOOTER_LEN * 4).div_ceil(3);

/// The 6-bit value of a base64url character, or `None` outside the alphabet.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// True if `s` is canonical unpadded base64url: only the URL-safe alphabet, no `=`, no
/// whitespace, a length that some byte string encodes to, and zero bits after the last byte
/// (so that exactly one string encodes each byte string).
pub(crate) fn is_canonical_base64url(s: &[u8]) -> bool {
    let mut last = 0u8;
    for &c in s {
        match sextet(c) {
            Some(v) => last = v,
            None => return false,
        }
    }
    match s.len() % 4 {
        0 => true,
        1 => false,
        // 2 chars carry 12 bits for 8: the low 4 bits of the last must be zero.
        2 => last & 0x0f == 0,
        // 3 chars carry 18 bits for 16: the low 2 bits of the last must be zero.
        _ => last & 0x03 == 0,
    }
}

/// Unpadded base64url of `bytes` (through `ct-codecs`, the encoder `pasetors` uses).
pub(crate) fn base64url(bytes: &[u8]) -> String {
    use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
    // The encoder fails only if the output buffer is too small; `encode_to_string` sizes it.
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert!(is_canonical_base64url(b""));
        assert!(is_canonical_base64url(b"AA"));
        assert!(!is_canonical_base64url(b"AB")); // non-zero trailing bits
        assert!(is_canonical_base64url(b"AAA"));
        assert!(!is_canonical_base64url(b"AAB"));
        assert!(!is_canonical_base64url(b"A"));
        assert!(!is_canonical_base64url(b"AA=="));
        assert!(!is_canonical_base64url(b"A+/A"));
        assert!(!is_canonical_base64url(b"AA AA"));
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(b"hello"), "aGVsbG8");
        assert!(is_canonical_base64url(base64url(b"hello").as_bytes()));
    }
}
