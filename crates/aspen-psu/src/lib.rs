//! PSU authentication that is not web plumbing: TOTP codes, passkey
//! (WebAuthn) ceremonies, the sealing of factor secrets at rest, and the
//! client of an upstream OpenID provider (the bank's own login). The pages
//! that use them live in `aspen-auth`.

pub mod sealed;
#[cfg(any(test, feature = "soft-authenticator"))]
pub mod soft_authenticator;
pub mod totp;
pub mod upstream;
pub mod webauthn;

/// Byte strings compared in constant time (challenges, codes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
