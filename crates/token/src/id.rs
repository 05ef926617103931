//! Canonical identifiers: tenants, users, devices and token ids.
//!
//! Identifiers are compared byte for byte, so they are validated to one canonical spelling when
//! they are built and never normalised afterwards: `ACME`, `acme ` and `аcme` (Cyrillic `а`) are
//! not spellings of `acme`, they are rejected.

use core::fmt;

use crate::error::IdError;

/// Longest tenant, user or device id, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Shortest token id (`jti`), in characters.
pub const MIN_TOKEN_ID_LEN: usize = 16;
/// Longest token id (`jti`), in characters.
pub const MAX_TOKEN_ID_LEN: usize = 64;

/// `[a-z0-9-]{1,63}`: the one spelling of a tenant, user or device id.
fn check_name(s: &str) -> Result<(), IdError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(IdError::Length);
    }
    if s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(IdError::Charset)
    }
}

/// `[A-Za-z0-9_-]{16,64}`: a token id (the issuer uses 22 characters of base64url randomness).
fn check_token_id(s: &str) -> Result<(), IdError> {
    if s.len() < MIN_TOKEN_ID_LEN || s.len() > MAX_TOKEN_ID_LEN {
        return Err(IdError::Length);
    }
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(IdError::Charset)
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $check:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it; the only constructor.
            pub fn new(s: &str) -> Result<Self, IdError> {
                $check(s)?;
                Ok(Self(s.to_owned()))
            }

            /// The canonical spelling.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }

        /// Serialized as its canonical spelling (a JSON string).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl core::str::FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A tenant id: `[a-z0-9-]{1,63}`. Every API route is scoped to one.
    TenantId,
    check_name
);
id_type!(
    /// A user id within a tenant: `[a-z0-9-]{1,63}`.
    UserId,
    check_name
);
id_type!(
    /// A device id within a tenant: `[a-z0-9-]{1,63}`.
    DeviceId,
    check_name
);
id_type!(
    /// A token id (`jti`): `[A-Za-z0-9_-]{16,64}`; the key of the revocation deny list.
    TokenId,
    check_token_id
);

impl TokenId {
    /// A fresh random token id: 16 bytes from the operating system, base64url (22 characters).
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw)?;
        Ok(Self(crate::encoding::base64url(&raw)))
    }
}
