//! Password protection: Argon2id (v0x13, 16-byte random salt) to a key-encryption key, a key
//! commitment checked in constant time, then AES-256-GCM.

use core::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use cairn_keys::ArchiveKey;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::EscrowError;
use crate::hpke::{EscrowPublicKey, EscrowSecretKey};
use crate::recipient::{Identity, Recipient, archive_key_from};
use crate::stanza::{Stanza, WrapContext, stanza_type};

/// Length of the Argon2 salt.
pub const SALT_LEN: usize = 16;
/// Length of the encoded parameters: `m_kib`, `t`, `p` (u32 LE each) and the salt.
pub const PARAMS_LEN: usize = 12 + SALT_LEN;
/// Length of a password stanza payload: commitment (32) and AES-256-GCM of the key (32 + 16).
pub const PAYLOAD_LEN: usize = 32 + 32 + 16;

/// The commitment label, keyed by the key-encryption key.
pub const COMMITMENT_LABEL: &[u8] = b"cairn escrow v1 password commitment";
/// BLAKE3 `derive_key` context of the AEAD key.
pub const AEAD_KEY_CONTEXT: &str = "cairn 2026-11-27 v1 escrow password aead key";

/// Argon2id costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory, in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Argon2Params {
    /// The floor (OWASP): m = 19 MiB, t = 2, p = 1. Nothing weaker is created or opened.
    pub const FLOOR: Argon2Params = Argon2Params {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    /// The default (RFC 9106, second recommendation): m = 64 MiB, t = 3, p = 4.
    pub const DEFAULT: Argon2Params = Argon2Params {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
    };
    /// The ceiling: m = 1 GiB, t = 10, p = 16. Checked before any work, so a hostile envelope
    /// cannot make us allocate or compute more (K-4).
    pub const CEILING: Argon2Params = Argon2Params {
        m_kib: 1024 * 1024,
        t: 10,
        p: 16,
    };

    /// Whether the costs are within [floor, ceiling] (each cost on its own).
    pub fn check(self) -> Result<(), EscrowError> {
        let (lo, hi) = (Self::FLOOR, Self::CEILING);
        let ok = (lo.m_kib..=hi.m_kib).contains(&self.m_kib)
            && (lo.t..=hi.t).contains(&self.t)
            && (lo.p..=hi.p).contains(&self.p);
        if ok {
            Ok(())
        } else {
            Err(EscrowError::Parameters)
        }
    }

    fn encode(self, salt: &[u8; SALT_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(PARAMS_LEN);
        out.extend_from_slice(&self.m_kib.to_le_bytes());
        out.extend_from_slice(&self.t.to_le_bytes());
        out.extend_from_slice(&self.p.to_le_bytes());
        out.extend_from_slice(salt);
        out
    }

    /// Decodes stanza parameters and applies the bounds, before anything else happens.
    pub fn decode(params: &[u8]) -> Result<(Self, [u8; SALT_LEN]), EscrowError> {
        let bytes: &[u8; PARAMS_LEN] = params.try_into().map_err(|_| EscrowError::Parameters)?;
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let params = Self {
            m_kib: u32_at(0),
            t: u32_at(4),
            p: u32_at(8),
        };
        params.check()?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[12..]);
        Ok((params, salt))
    }
}

/// A password. Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Takes the password bytes (UTF-8 as typed; no normalisation is applied).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// Argon2id(password, salt, params) → 32-byte key-encryption key. `params` must be checked.
pub fn derive_kek(
    password: &Password,
    salt: &[u8; SALT_LEN],
    params: Argon2Params,
) -> Result<Zeroizing<[u8; 32]>, EscrowError> {
    let argon_params = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|_| EscrowError::Parameters)?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(&password.0, salt, kek.as_mut())
        .map_err(|_| EscrowError::Parameters)?;
    Ok(kek)
}

fn commitment(kek: &[u8; 32]) -> [u8; 32] {
    *blake3::keyed_hash(kek, COMMITMENT_LABEL).as_bytes()
}

/// The inner payload: commitment || AES-256-GCM(aead key, zero nonce, aad, key).
fn seal_with_kek(kek: &[u8; 32], aad: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, EscrowError> {
    let aead_key = Zeroizing::new(blake3::derive_key(AEAD_KEY_CONTEXT, kek));
    let cipher = Aes256Gcm::new((&*aead_key).into());
    // The AEAD key is fresh for every wrap (random salt), so the zero nonce is used once.
    let ct = cipher
        .encrypt(&Default::default(), Payload { msg: key, aad })
        .map_err(|_| EscrowError::Wrap)?;
    let mut out = Vec::with_capacity(PAYLOAD_LEN);
    out.extend_from_slice(&commitment(kek));
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_with_kek(kek: &[u8; 32], aad: &[u8], payload: &[u8]) -> Result<ArchiveKey, EscrowError> {
    if payload.len() != PAYLOAD_LEN {
        return Err(EscrowError::Unwrap);
    }
    let (commit, ct) = payload.split_at(32);
    // The commitment first, in constant time: a KEK that did not make this stanza is refused
    // before the AEAD runs, so no ciphertext can decrypt under two passwords (K-6).
    if !bool::from(commitment(kek).ct_eq(commit)) {
        return Err(EscrowError::Unwrap);
    }
    let aead_key = Zeroizing::new(blake3::derive_key(AEAD_KEY_CONTEXT, kek));
    let cipher = Aes256Gcm::new((&*aead_key).into());
    let pt = Zeroizing::new(
        cipher
            .decrypt(&Default::default(), Payload { msg: ct, aad })
            .map_err(|_| EscrowError::Unwrap)?,
    );
    archive_key_from(&pt)
}

fn random_salt() -> Result<[u8; SALT_LEN], EscrowError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| EscrowError::Random)?;
    Ok(salt)
}

/// Wraps under a password (stanza type 2; kept on the endpoint, e.g. in the custom-key mode).
#[derive(Clone, Debug)]
pub struct PasswordRecipient {
    password: Password,
    params: Argon2Params,
}

impl PasswordRecipient {
    /// A recipient with the given costs, which must be within [floor, ceiling].
    pub fn new(password: Password, params: Argon2Params) -> Result<Self, EscrowError> {
        params.check()?;
        Ok(Self { password, params })
    }
}

impl Recipient for PasswordRecipient {
    fn wrap(&self, key: &ArchiveKey, ctx: &WrapContext<'_>) -> Result<Stanza, EscrowError> {
        let salt = random_salt()?;
        let params = self.params.encode(&salt);
        let aad = Stanza::aad(ctx.header_bytes, stanza_type::PASSWORD, &[], &params);
        let kek = derive_kek(&self.password, &salt, self.params)?;
        let payload = seal_with_kek(&kek, &aad, key.expose_secret())?;
        Ok(Stanza {
            kind: stanza_type::PASSWORD,
            key_id: Vec::new(),
            params,
            payload,
        })
    }
}

/// Unwraps password (type 2) stanzas.
#[derive(Clone, Debug)]
pub struct PasswordIdentity(pub Password);

impl Identity for PasswordIdentity {
    fn unwrap(
        &self,
        stanza: &Stanza,
        ctx: &WrapContext<'_>,
    ) -> Option<Result<ArchiveKey, EscrowError>> {
        if stanza.kind != stanza_type::PASSWORD {
            return None;
        }
        Some((|| {
            // Bounds before work: a hostile m = 4 GiB fails here, not in Argon2.
            let (params, salt) = Argon2Params::decode(&stanza.params)?;
            if !stanza.key_id.is_empty() {
                return Err(EscrowError::Unwrap);
            }
            let aad = stanza.own_aad(ctx.header_bytes);
            let kek = derive_kek(&self.0, &salt, params)?;
            open_with_kek(&kek, &aad, &stanza.payload)
        })())
    }
}

/// Wraps under a password, then seals that to the escrow authority (stanza type 3; the
/// `ArchivePassword` mode): unwrapping needs both the escrow private key and the password.
#[derive(Clone, Debug)]
pub struct PasswordEscrowRecipient {
    escrow: EscrowPublicKey,
    password: Password,
    params: Argon2Params,
}

impl PasswordEscrowRecipient {
    /// A recipient with the given costs, which must be within [floor, ceiling].
    pub fn new(
        escrow: EscrowPublicKey,
        password: Password,
        params: Argon2Params,
    ) -> Result<Self, EscrowError> {
        params.check()?;
        Ok(Self {
            escrow,
            password,
            params,
        })
    }
}

impl Recipient for PasswordEscrowRecipient {
    fn wrap(&self, key: &ArchiveKey, ctx: &WrapContext<'_>) -> Result<Stanza, EscrowError> {
        let salt = random_salt()?;
        let params = self.params.encode(&salt);
        let key_id = self.escrow.id().to_vec();
        // The inner (password) layer is bound to everything but the escrow key id, so that the
        // outer layer can be moved to a new escrow key without the password.
        let inner_aad = Stanza::aad(ctx.header_bytes, stanza_type::PASSWORD_ESCROW, &[], &params);
        let outer_aad = Stanza::aad(
            ctx.header_bytes,
            stanza_type::PASSWORD_ESCROW,
            &key_id,
            &params,
        );
        let kek = derive_kek(&self.password, &salt, self.params)?;
        let inner = Zeroizing::new(seal_with_kek(&kek, &inner_aad, key.expose_secret())?);
        let payload = crate::hpke::seal(&self.escrow, &ctx.header.hpke_info(), &outer_aad, &inner)?;
        Ok(Stanza {
            kind: stanza_type::PASSWORD_ESCROW,
            key_id,
            params,
            payload,
        })
    }
}

/// Unwraps password-then-escrow (type 3) stanzas: needs the escrow key and the password.
#[derive(Clone, Debug)]
pub struct PasswordEscrowIdentity {
    /// The escrow authority's key.
    pub escrow: EscrowSecretKey,
    /// The user's password.
    pub password: Password,
}

impl Identity for PasswordEscrowIdentity {
    fn unwrap(
        &self,
        stanza: &Stanza,
        ctx: &WrapContext<'_>,
    ) -> Option<Result<ArchiveKey, EscrowError>> {
        if stanza.kind != stanza_type::PASSWORD_ESCROW || stanza.key_id != self.escrow.public().id()
        {
            return None;
        }
        Some((|| {
            let (params, salt) = Argon2Params::decode(&stanza.params)?;
            let outer_aad = stanza.own_aad(ctx.header_bytes);
            let inner = crate::hpke::open(
                &self.escrow,
                &ctx.header.hpke_info(),
                &outer_aad,
                &stanza.payload,
                PAYLOAD_LEN,
            )?;
            let inner_aad = Stanza::aad(ctx.header_bytes, stanza.kind, &[], &stanza.params);
            let kek = derive_kek(&self.password, &salt, params)?;
            open_with_kek(&kek, &inner_aad, &inner)
        })())
    }
}

/// Re-seals a type-3 stanza's outer HPKE layer from one escrow key to another, without the
/// password (escrow key rotation in the archive-password mode).
pub(crate) fn reseal_password_escrow(
    stanza: &Stanza,
    ctx: &WrapContext<'_>,
    old: &EscrowSecretKey,
    new: &EscrowPublicKey,
) -> Result<Stanza, EscrowError> {
    Argon2Params::decode(&stanza.params)?;
    let old_aad = stanza.own_aad(ctx.header_bytes);
    let info = ctx.header.hpke_info();
    let inner = crate::hpke::open(old, &info, &old_aad, &stanza.payload, PAYLOAD_LEN)?;
    let key_id = new.id().to_vec();
    let new_aad = Stanza::aad(ctx.header_bytes, stanza.kind, &key_id, &stanza.params);
    let payload = crate::hpke::seal(new, &info, &new_aad, &inner)?;
    Ok(Stanza {
        kind: stanza.kind,
        key_id,
        params: stanza.params.clone(),
        payload,
    })
}
