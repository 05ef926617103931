//! Padmé length padding (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
//! Communication with PURBs", PETS 2019).
//!
//! A length `L` is rounded up so that only its top `floor(log2(log2 L)) + 1` bits may be non-zero:
//! at most 12 % overhead, and a padded length reveals `O(log log L)` bits instead of `log L`.

/// The Padmé size for a length (identity below 2).
#[must_use]
pub const fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - len.leading_zeros() as u64; // floor(log2 len)
    let s = 64 - e.leading_zeros() as u64; // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    (len + mask) & !mask
}

/// Whether `len` is itself a Padmé size (so a sealed length can be checked without a key).
#[must_use]
pub const fn is_padme(len: u64) -> bool {
    padme(len) == len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Hand-computed: E = floor(log2 L), S = floor(log2 E) + 1, keep the top S bits of L.
        assert_eq!(padme(0), 0);
        assert_eq!(padme(1), 1);
        assert_eq!(padme(2), 2);
        assert_eq!(padme(9), 10); // E=3, S=2, last_bits=1
        assert_eq!(padme(100), 104); // E=6, S=3, last_bits=3
        assert_eq!(padme(1000), 1024); // E=9, S=4, last_bits=5
        assert_eq!(padme(1_048_577), 1_081_344); // E=20, S=5, last_bits=15
        assert_eq!(padme(1 << 20), 1 << 20);
    }

    #[test]
    fn bounded_overhead_and_idempotent() {
        for len in (2u64..100_000).chain((1 << 20) - 300..(1 << 20) + 300) {
            let p = padme(len);
            assert!(p >= len);
            assert!((p - len) as f64 <= len as f64 * 0.12 + 1.0, "{len} -> {p}");
            assert_eq!(padme(p), p);
            assert!(is_padme(p));
        }
    }
}
