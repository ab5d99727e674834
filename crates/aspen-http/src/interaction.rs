//! `x-fapi-interaction-id` (COMMON-18): echoed verbatim when sent, a fresh
//! UUID otherwise, on every response; one tracing span per request carries
//! it so every log line of the request can be found by it.

use std::cell::RefCell;

use axum::http::{HeaderMap, Request};
use tracing::Span;

pub const HEADER: &str = "x-fapi-interaction-id";

/// The request's interaction id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct InteractionId(pub String);

thread_local! {
    /// Random bytes for the next interaction ids, and how many are used.
    static POOL: RefCell<([u8; 512], usize)> = const { RefCell::new(([0; 512], 512)) };
}

/// A version 4 UUID from aws-lc's generator (a per-thread DRBG), not
/// `Uuid::new_v4`'s `getrandom` system call on every request. The bytes are
/// drawn 512 at a time: one call into aws-lc costs about 2,300 instructions
/// whatever its length, 2.6% of a whole JWKS request (issue 15). An
/// interaction id correlates log lines; it is no secret, so holding the
/// bytes a while is harmless.
fn fresh_id() -> String {
    let bytes = POOL.with_borrow_mut(|(pool, used)| {
        if *used == pool.len() {
            aws_lc_rs::rand::fill(pool).ok()?;
            *used = 0;
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(&pool[*used..*used + 16]);
        *used += 16;
        Some(b)
    });
    match bytes {
        Some(b) => uuid::Builder::from_random_bytes(b).into_uuid().to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    }
}

/// The request's id: the client's when it sent a usable one, a fresh one
/// otherwise.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(fresh_id, str::to_string)
}

/// The span every log line of the request is written in. Its values are
/// recorded as strings, not through `Display`: the text formatter takes
/// them as they are (`aspen::logging`), where a `Display` value is
/// formatted into a buffer first.
pub fn span<B>(id: &str, req: &Request<B>) -> Span {
    tracing::info_span!(
        "request",
        interaction_id = id,
        method = req.method().as_str(),
        path = req.uri().path(),
    )
}

#[cfg(test)]
mod tests {
    use super::fresh_id;

    #[test]
    fn fresh_ids_are_distinct_v4_uuids_across_refills() {
        let ids: Vec<String> = (0..100).map(|_| fresh_id()).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{id}");
        }
    }
}
