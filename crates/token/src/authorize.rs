//! The authorization decision: deny by default.

use crate::claims::{Capability, Role};
use crate::error::Denied;
use crate::id::{DeviceId, TenantId, UserId};
use crate::verify::VerifiedToken;

/// Who owns the resource a request touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// A tenant-wide resource (the user list, the tenant's event search, its settings).
    Tenant,
    /// A user's resource (their archive, their escrowed key).
    User(&'a UserId),
    /// A device's resource (its event stream, its backup set), owned by a user.
    Device {
        /// The device's user.
        user: &'a UserId,
        /// The device.
        device: &'a DeviceId,
    },
}

/// Allows or denies one request, given a token the [`Verifier`](crate::Verifier) accepted.
///
/// - The token's tenant must be the request's tenant (the verifier already ensures it; checked
///   again so that this function is safe on its own).
/// - The token must hold `needed`; only the admin role may use [`Capability::Admin`].
/// - A user's token reaches only that user's resources (their own and their devices'); a
///   device's token reaches its user's resources and its own device's, not the user's other
///   devices'; neither reaches tenant-wide resources.
/// - Admin and service tokens reach every resource of their own tenant.
pub fn authorize(
    token: &VerifiedToken,
    tenant: &TenantId,
    needed: Capability,
    owner: Owner<'_>,
) -> Result<(), Denied> {
    let claims = token.claims();
    if &claims.tenant != tenant {
        return Err(Denied::OtherTenant);
    }
    if !claims.capabilities.contains(needed) {
        return Err(Denied::MissingCapability);
    }
    if needed == Capability::Admin && claims.role != Role::Admin {
        return Err(Denied::RoleNotAllowed);
    }
    match claims.role {
        Role::Admin | Role::Service => Ok(()),
        Role::User => match owner {
            Owner::Tenant => Err(Denied::NotOwner),
            Owner::User(user) if *user == claims.subject => Ok(()),
            Owner::Device { user, device }
                if *user == claims.subject
                    && claims.device.as_ref().is_none_or(|own| own == device) =>
            {
                Ok(())
            }
            _ => Err(Denied::NotOwner),
        },
    }
}
