//! What both kinds of segment storage share ([`crate::segments`] stages the active segment on
//! local disk, [`crate::parts`] keeps it as parts in a shared store): segment naming and the
//! mapping of object-store errors to I/O errors. Below both, so neither imports the other for it.

use std::io;

/// Whether the active segment `name` (`seg-….active`) was already published under its sealed
/// name (`seg-…`): a crash between the publishing and the removal of the active copy leaves
/// both. (Also a name published as itself.)
pub(crate) fn superseded(name: &str, published: &[String]) -> bool {
    let sealed = name.strip_suffix(".active").unwrap_or(name);
    published.iter().any(|p| p == sealed || p == name)
}

/// An object-store error as the `io::Error` the archive's `Storage` trait speaks: not found and
/// already exists keep their kinds (the archive relies on both), anything else is `Other`.
pub(crate) fn store_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::from(io::ErrorKind::NotFound),
        object_store::Error::AlreadyExists { .. } => io::Error::from(io::ErrorKind::AlreadyExists),
        other => io::Error::other(other.to_string()),
    }
}
