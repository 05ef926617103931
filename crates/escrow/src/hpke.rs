//! The escrow authority's recipient: HPKE (RFC 9180) base mode with DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and AES-256-GCM, through the `hpke` crate.

use core::fmt;

use cairn_keys::ArchiveKey;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::error::EscrowError;
use crate::recipient::{Identity, Recipient, archive_key_from};
use crate::stanza::{Stanza, WrapContext, stanza_type};

type Kem = X25519HkdfSha256;

/// Length of an encapsulated key (`enc`).
pub const ENC_LEN: usize = 32;
/// Length of an escrow key id.
pub const ESCROW_KEY_ID_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// BLAKE3 `derive_key` context of escrow key ids.
pub const KEY_ID_CONTEXT: &str = "cairn 2026-11-27 v1 escrow key id";

/// The escrow authority's public key. Construction rejects keys that give an all-zero shared
/// secret (the low-order points), so no envelope is ever wrapped to one.
#[derive(Clone, PartialEq, Eq)]
pub struct EscrowPublicKey {
    key: <Kem as hpke::Kem>::PublicKey,
    id: [u8; ESCROW_KEY_ID_LEN],
}

impl EscrowPublicKey {
    /// From the 32-byte X25519 encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EscrowError> {
        let key =
            <Kem as hpke::Kem>::PublicKey::from_bytes(bytes).map_err(|_| EscrowError::PublicKey)?;
        // A trial encapsulation: the RFC 9180 all-zero DH check refuses low-order points.
        hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem>(&OpModeS::Base, &key, b"", b"", b"")
            .map_err(|_| EscrowError::PublicKey)?;
        let id = key_id(bytes);
        Ok(Self { key, id })
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.key.to_bytes());
        out
    }

    /// The key id stanzas carry: the first 16 bytes of BLAKE3 `derive_key(KEY_ID_CONTEXT, key)`.
    pub fn id(&self) -> [u8; ESCROW_KEY_ID_LEN] {
        self.id
    }
}

impl fmt::Debug for EscrowPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EscrowPublicKey(id {})", hex16(&self.id))
    }
}

fn hex16(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_id(public: &[u8]) -> [u8; ESCROW_KEY_ID_LEN] {
    let full = blake3::derive_key(KEY_ID_CONTEXT, public);
    let mut id = [0u8; ESCROW_KEY_ID_LEN];
    id.copy_from_slice(&full[..ESCROW_KEY_ID_LEN]);
    id
}

/// The escrow authority's private key. Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct EscrowSecretKey {
    key: <Kem as hpke::Kem>::PrivateKey,
    public: EscrowPublicKey,
}

impl EscrowSecretKey {
    /// A fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, EscrowError> {
        let (key, public) = Kem::gen_keypair();
        Self::from_pair(key, &public.to_bytes())
    }

    /// From the 32-byte private scalar (as stored in the server's key file).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, EscrowError> {
        let key = <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| EscrowError::PublicKey)?;
        let public = <Kem as hpke::Kem>::sk_to_pk(&key);
        Self::from_pair(key, &public.to_bytes())
    }

    /// RFC 9180 `DeriveKeyPair(ikm)` (for known-answer tests and deterministic set-ups).
    pub fn derive(ikm: &[u8]) -> Result<Self, EscrowError> {
        let (key, public) = Kem::derive_keypair(ikm);
        Self::from_pair(key, &public.to_bytes())
    }

    fn from_pair(key: <Kem as hpke::Kem>::PrivateKey, public: &[u8]) -> Result<Self, EscrowError> {
        Ok(Self {
            key,
            public: EscrowPublicKey::from_bytes(public)?,
        })
    }

    /// The 32-byte private scalar, for the server's key file. The caller owns the copy.
    pub fn expose_secret(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.key.to_bytes());
        out
    }

    /// The public key.
    pub fn public(&self) -> &EscrowPublicKey {
        &self.public
    }
}

impl fmt::Debug for EscrowSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EscrowSecretKey([REDACTED], id {})",
            hex16(&self.public.id)
        )
    }
}

/// HPKE-seals `plaintext`: returns `enc || ciphertext || tag`.
pub(crate) fn seal(
    to: &EscrowPublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EscrowError> {
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem>(
        &OpModeS::Base,
        &to.key,
        info,
        plaintext,
        aad,
    )
    .map_err(|_| EscrowError::Wrap)?;
    let mut out = Vec::with_capacity(ENC_LEN + ct.len());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens `enc || ciphertext || tag`; any failure (a bad `enc`, a low-order `enc`, a wrong key,
/// tampering) is [`EscrowError::Unwrap`].
pub(crate) fn open(
    with: &EscrowSecretKey,
    info: &[u8],
    aad: &[u8],
    payload: &[u8],
    expected_plaintext_len: usize,
) -> Result<Zeroizing<Vec<u8>>, EscrowError> {
    if payload.len() != ENC_LEN + expected_plaintext_len + TAG_LEN {
        return Err(EscrowError::Unwrap);
    }
    let (enc, ct) = payload.split_at(ENC_LEN);
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| EscrowError::Unwrap)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &with.key,
        &enc,
        info,
        ct,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| EscrowError::Unwrap)
}

/// Wraps to the escrow authority (stanza type 1; the `Standard` mode).
#[derive(Clone, Debug)]
pub struct EscrowRecipient(pub EscrowPublicKey);

impl Recipient for EscrowRecipient {
    fn wrap(&self, key: &ArchiveKey, ctx: &WrapContext<'_>) -> Result<Stanza, EscrowError> {
        let key_id = self.0.id().to_vec();
        let aad = Stanza::aad(ctx.header_bytes, stanza_type::HPKE, &key_id, &[]);
        let payload = seal(&self.0, &ctx.header.hpke_info(), &aad, key.expose_secret())?;
        Ok(Stanza {
            kind: stanza_type::HPKE,
            key_id,
            params: Vec::new(),
            payload,
        })
    }
}

/// Unwraps escrow (type 1) stanzas addressed to its key id.
#[derive(Clone, Debug)]
pub struct EscrowIdentity(pub EscrowSecretKey);

impl Identity for EscrowIdentity {
    fn unwrap(
        &self,
        stanza: &Stanza,
        ctx: &WrapContext<'_>,
    ) -> Option<Result<ArchiveKey, EscrowError>> {
        if stanza.kind != stanza_type::HPKE || stanza.key_id != self.0.public.id {
            return None;
        }
        Some((|| {
            if !stanza.params.is_empty() {
                return Err(EscrowError::Unwrap);
            }
            let aad = stanza.own_aad(ctx.header_bytes);
            let pt = open(&self.0, &ctx.header.hpke_info(), &aad, &stanza.payload, 32)?;
            archive_key_from(&pt)
        })())
    }
}
