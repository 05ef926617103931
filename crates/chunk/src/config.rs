//! Validated chunk-size configuration.

use crate::{ChunkError, MAX_SIZE_CEILING, MIN_SIZE_FLOOR};

/// Minimum, average and maximum chunk sizes, validated once by [`ChunkerConfig::new`].
///
/// Bounds: `MIN_SIZE_FLOOR <= min < avg <= max <= MAX_SIZE_CEILING`. Every chunk but the last
/// has `min <= len <= max`; lengths concentrate around `avg` (see `docs/format/chunk.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkerConfig {
    min: usize,
    avg: usize,
    max: usize,
}

impl ChunkerConfig {
    /// Cairn's default: 512 KiB / 1 MiB / 8 MiB (the reasons are in `docs/format/chunk.md`).
    pub const DEFAULT: Self = Self {
        min: 512 * 1024,
        avg: 1024 * 1024,
        max: 8 * 1024 * 1024,
    };

    /// Validates the sizes.
    ///
    /// # Errors
    /// [`ChunkError::MinTooSmall`], [`ChunkError::MaxTooLarge`] or [`ChunkError::NotOrdered`].
    pub fn new(min: usize, avg: usize, max: usize) -> Result<Self, ChunkError> {
        if min < MIN_SIZE_FLOOR {
            return Err(ChunkError::MinTooSmall { min });
        }
        if max > MAX_SIZE_CEILING {
            return Err(ChunkError::MaxTooLarge { max });
        }
        if !(min < avg && avg <= max) {
            return Err(ChunkError::NotOrdered { min, avg, max });
        }
        Ok(Self { min, avg, max })
    }

    /// The minimum chunk length (except for the last chunk of a stream).
    #[must_use]
    pub const fn min(&self) -> usize {
        self.min
    }

    /// The target average chunk length.
    #[must_use]
    pub const fn avg(&self) -> usize {
        self.avg
    }

    /// The maximum chunk length; a chunk is cut here if the content chose no earlier point.
    #[must_use]
    pub const fn max(&self) -> usize {
        self.max
    }
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        let d = ChunkerConfig::DEFAULT;
        assert_eq!(ChunkerConfig::new(d.min, d.avg, d.max).unwrap(), d);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(
            ChunkerConfig::new(63, 128, 256),
            Err(ChunkError::MinTooSmall { min: 63 })
        ));
        assert!(matches!(
            ChunkerConfig::new(64, 128, MAX_SIZE_CEILING + 1),
            Err(ChunkError::MaxTooLarge { .. })
        ));
        assert!(matches!(
            ChunkerConfig::new(128, 128, 256),
            Err(ChunkError::NotOrdered { .. })
        ));
        assert!(matches!(
            ChunkerConfig::new(128, 512, 256),
            Err(ChunkError::NotOrdered { .. })
        ));
        assert!(matches!(
            ChunkerConfig::new(usize::MAX, 1, 0),
            Err(ChunkError::MaxTooLarge { .. }) | Err(ChunkError::NotOrdered { .. })
        ));
        assert!(ChunkerConfig::new(64, 65, 65).is_ok());
    }
}
