//! Event notification APIs (EVENTS.md): `event-subscriptions` and
//! `callback-urls` (one each per TPP, EVT-1..5), and aggregated polling
//! (`POST /events`, EVT-30..33). The events themselves come from the
//! outbox (`aspen_store::events`); pushes are `aspen_events::Deliverer`'s.

use std::time::Duration;

use aspen_auth::{BoundToken, GrantKind};
use aspen_http::{Json, ObError, ObErrorCode};
use aspen_store::events::{
    CONSENT_REVOKED, CallbackUrl, RESOURCE_UPDATE, Registered, Subscription,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::common;
use crate::{ApiState, pis, pis_schema};

pub const SUBSCRIPTIONS: &str = "/open-banking/v3.1/event-subscriptions";
pub const CALLBACK_URLS: &str = "/open-banking/v3.1/callback-urls";
pub const EVENTS: &str = "/open-banking/v3.1/events";

/// The event types aspen sends (EVT-10); a subscription may name these
/// only.
pub const SUPPORTED: &[&str] = &[RESOURCE_UPDATE, CONSENT_REVOKED];

/// Event-notification versions a TPP may implement; before 3.1.2 a
/// receiver takes resource-update events only (EVT-5).
const VERSIONS: &[&str] = &["3.0", "3.1", "3.1.1", "3.1.2"];

pub struct EventSettings {
    pub signer: std::sync::Arc<aspen_events::SetSigner>,
    /// Upper bound of `maxEvents` (and its default).
    pub max_events: i64,
    /// Longest a poll with `returnImmediately: false` waits for an event.
    pub long_poll: Duration,
    /// Callback hosts may be loopback or private addresses (sandbox).
    pub allow_private_callbacks: bool,
}

fn bad(code: ObErrorCode, msg: impl Into<String>, path: &str) -> ObError {
    ObError::bad_request(code, msg, Some(path))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// EVT-1: a client-credentials token with any of the API scopes.
fn registration_token(token: &BoundToken) -> Result<(), ObError> {
    if token.grant != GrantKind::ClientCredentials {
        return Err(ObError::unauthorized());
    }
    if !["accounts", "payments", "fundsconfirmations"]
        .iter()
        .any(|s| token.has_scope(s))
    {
        return Err(ObError::forbidden(
            aspen_http::Forbidden::Scope,
            "the access token carries none of the scopes accounts, payments, fundsconfirmations",
        ));
    }
    Ok(())
}

/// A signed write (EVT-1): token, media types, FAPI headers, the
/// request's detached JWS, then the body against its schema.
async fn signed_write(
    state: &ApiState,
    token: &BoundToken,
    headers: &HeaderMap,
    body: &[u8],
    schema: &jsonschema::Validator,
) -> Result<Value, ObError> {
    registration_token(token)?;
    common::check_content_type(headers)?;
    common::check_accept(headers)?;
    common::check_fapi_headers(headers)?;
    pis::verify_request(state, token, headers, body).await?;
    let value = common::parse_json(body)?;
    pis_schema::validate(schema, &value)?;
    Ok(value)
}

fn check_version(v: &Value, path: &str) -> Result<String, ObError> {
    let v = v.as_str().unwrap_or("");
    if VERSIONS.contains(&v) {
        Ok(v.to_string())
    } else {
        Err(bad(
            ObErrorCode::FieldInvalid,
            format!(
                "event-notification version {v:?} is not supported; one of {}",
                VERSIONS.join(", ")
            ),
            path,
        ))
    }
}

/// A TPP-hosted receiver: https, ending `/<version>/event-notifications`
/// (EVT-4), and in production not a loopback or private address [choice:
/// the bank must not be made to POST into its own network].
fn check_callback(settings: &EventSettings, url: &str, path: &str) -> Result<(), ObError> {
    let invalid = |why: &str| bad(ObErrorCode::FieldInvalid, format!("{url:?} {why}"), path);
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| invalid("must be an https URL"))?;
    let (authority, p) = rest.split_once('/').unwrap_or((rest, ""));
    let segments: Vec<&str> = p.split('/').collect();
    let versioned = segments.len() >= 2
        && segments[segments.len() - 1] == "event-notifications"
        && segments[segments.len() - 2]
            .strip_prefix('v')
            .is_some_and(|v| !v.is_empty() && v.split('.').all(|n| n.parse::<u32>().is_ok()));
    if !versioned || url.contains(['?', '#']) {
        return Err(invalid(
            "must end with /<version>/event-notifications, e.g. /open-banking/v3.1/event-notifications",
        ));
    }
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .trim_start_matches('[');
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h.trim_end_matches(']'),
        _ => host.trim_end_matches(']'),
    };
    if host.is_empty() {
        return Err(invalid("has no host"));
    }
    if !settings.allow_private_callbacks {
        let private = host.eq_ignore_ascii_case("localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
                std::net::IpAddr::V4(a) => {
                    a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified()
                }
                std::net::IpAddr::V6(a) => {
                    a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xfe00) == 0xfc00
                }
            });
        if private {
            return Err(invalid("points at a loopback or private address"));
        }
    }
    Ok(())
}

// ------------------------------------------------------ event subscriptions

fn subscription_json(s: &Subscription) -> Value {
    let mut d = Map::new();
    d.insert("EventSubscriptionId".into(), json!(s.subscription_id));
    if let Some(u) = &s.callback_url {
        d.insert("CallbackUrl".into(), json!(u));
    }
    d.insert("Version".into(), json!(s.version));
    if !s.event_types.is_empty() {
        d.insert("EventTypes".into(), json!(s.event_types));
    }
    Value::Object(d)
}

fn subscription_body(state: &ApiState, s: &Subscription) -> Value {
    json!({
        "Data": subscription_json(s),
        "Links": { "Self": format!("{}{SUBSCRIPTIONS}/{}", state.base_url, s.subscription_id) },
        "Meta": {},
    })
}

/// The subscription's fields from a request `Data` (EVT-4, EVT-5).
fn subscription_fields(
    settings: &EventSettings,
    d: &Value,
) -> Result<(Option<String>, String, Vec<String>), ObError> {
    let version = check_version(&d["Version"], "Data.Version")?;
    let callback = d["CallbackUrl"].as_str().map(str::to_string);
    if let Some(u) = &callback {
        check_callback(settings, u, "Data.CallbackUrl")?;
    }
    let mut types: Vec<String> = Vec::new();
    for t in d["EventTypes"].as_array().into_iter().flatten() {
        let t = t.as_str().unwrap_or("");
        if !SUPPORTED.contains(&t) {
            return Err(bad(
                ObErrorCode::UnsupportedEventType,
                format!(
                    "event type {t:?} is not supported; aspen sends {}",
                    SUPPORTED.join(", ")
                ),
                "Data.EventTypes",
            ));
        }
        if !types.iter().any(|x| x == t) {
            types.push(t.to_string());
        }
    }
    // A receiver older than 3.1.2 understands resource-update only.
    if !matches!(version.as_str(), "3.1.2") {
        if types.iter().any(|t| t != RESOURCE_UPDATE) {
            return Err(bad(
                ObErrorCode::UnsupportedEventType,
                format!("a version {version} receiver takes resource-update events only"),
                "Data.EventTypes",
            ));
        }
        types = vec![RESOURCE_UPDATE.to_string()];
    }
    Ok((callback, version, types))
}

pub async fn create_subscription(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let v = signed_write(
        &state,
        &token,
        &headers,
        &body,
        &state.schemas.event_subscription,
    )
    .await?;
    let (callback_url, version, event_types) = subscription_fields(&state.events, &v["Data"])?;
    let now = now_ms();
    let s = Subscription {
        subscription_id: format!("es-{}", uuid::Uuid::new_v4().simple()),
        client_id: token.client_id.clone(),
        callback_url,
        version,
        event_types,
        created_at: now,
        updated_at: now,
    };
    match state
        .store
        .insert_subscription(&s)
        .await
        .map_err(ObError::internal)?
    {
        Registered::New => {
            tracing::info!(subscription_id = %s.subscription_id, client_id = %s.client_id, "event subscription created");
            Ok(common::created(subscription_body(&state, &s)))
        }
        // EVT-2.
        Registered::AlreadyExists => Err(conflict("this TPP already has an event subscription")),
    }
}

/// EVT-2: one of each per TPP.
fn conflict(msg: &str) -> ObError {
    ObError::conflict("Aspen.Conflict.AlreadyRegistered", msg)
}

pub async fn list_subscriptions(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
) -> Result<Response, ObError> {
    registration_token(&token)?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let list: Vec<Value> = state
        .store
        .subscriptions(&token.client_id)
        .await
        .map_err(ObError::internal)?
        .iter()
        .map(subscription_json)
        .collect();
    Ok(Json(json!({
        "Data": { "EventSubscription": list },
        "Links": { "Self": format!("{}{SUBSCRIPTIONS}", state.base_url) },
        "Meta": {},
    }))
    .into_response())
}

/// The update body is a whole OBEventSubscriptionResponse1, `Meta` too,
/// whose `TotalPages` the OpenAPI declares `format: int32`. JSON Schema
/// takes formats as annotations, so the schema check lets any integer
/// through; a value outside int32 is refused as the schema says.
fn check_total_pages(v: &Value) -> Result<(), ObError> {
    match v["Meta"].get("TotalPages") {
        Some(n) if n.as_i64().and_then(|n| i32::try_from(n).ok()).is_none() => Err(bad(
            ObErrorCode::FieldInvalid,
            "Meta.TotalPages is not a 32-bit integer",
            "Meta.TotalPages",
        )),
        _ => Ok(()),
    }
}

/// A change to one of the caller's registrations: `false` means it has no
/// such registration.
fn found(
    changed: Result<bool, aspen_store::StoreError>,
    what: &str,
    path: &str,
) -> Result<(), ObError> {
    match changed {
        Ok(true) => Ok(()),
        Ok(false) => Err(no_such(what, path)),
        Err(e) => Err(ObError::internal(e)),
    }
}

fn no_such(what: &str, path: &str) -> ObError {
    bad(
        ObErrorCode::ResourceNotFound,
        format!("no such {what}"),
        path,
    )
}

pub async fn update_subscription(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ObError> {
    let v = signed_write(
        &state,
        &token,
        &headers,
        &body,
        &state.schemas.event_subscription_update,
    )
    .await?;
    check_total_pages(&v)?;
    if v["Data"]["EventSubscriptionId"].as_str() != Some(id.as_str()) {
        return Err(bad(
            ObErrorCode::FieldInvalid,
            "Data.EventSubscriptionId differs from the path",
            "Data.EventSubscriptionId",
        ));
    }
    let (callback_url, version, event_types) = subscription_fields(&state.events, &v["Data"])?;
    let current = state
        .store
        .subscriptions(&token.client_id)
        .await
        .map_err(ObError::internal)?
        .into_iter()
        .find(|s| s.subscription_id == id)
        .ok_or_else(|| no_such("event subscription", "EventSubscriptionId"))?;
    let s = Subscription {
        callback_url,
        version,
        event_types,
        updated_at: now_ms(),
        ..current
    };
    found(
        state.store.update_subscription(&s).await,
        "event subscription",
        "EventSubscriptionId",
    )?;
    Ok(Json(subscription_body(&state, &s)).into_response())
}

pub async fn delete_subscription(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    registration_token(&token)?;
    common::check_fapi_headers(&headers)?;
    found(
        state.store.delete_subscription(&token.client_id, &id).await,
        "event subscription",
        "EventSubscriptionId",
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------------ callback URLs

fn callback_json(c: &CallbackUrl) -> Value {
    json!({ "CallbackUrlId": c.callback_url_id, "Url": c.url, "Version": c.version })
}

fn callback_body(state: &ApiState, c: &CallbackUrl) -> Value {
    json!({
        "Data": callback_json(c),
        "Links": { "Self": format!("{}{CALLBACK_URLS}/{}", state.base_url, c.callback_url_id) },
        "Meta": {},
    })
}

pub async fn create_callback(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let v = signed_write(&state, &token, &headers, &body, &state.schemas.callback_url).await?;
    let d = &v["Data"];
    let version = check_version(&d["Version"], "Data.Version")?;
    let url = d["Url"].as_str().unwrap_or("").to_string();
    check_callback(&state.events, &url, "Data.Url")?;
    let now = now_ms();
    let c = CallbackUrl {
        callback_url_id: format!("cb-{}", uuid::Uuid::new_v4().simple()),
        client_id: token.client_id.clone(),
        url,
        version,
        created_at: now,
        updated_at: now,
    };
    match state
        .store
        .insert_callback_url(&c)
        .await
        .map_err(ObError::internal)?
    {
        Registered::New => Ok(common::created(callback_body(&state, &c))),
        Registered::AlreadyExists => Err(conflict("this TPP already has a callback URL")),
    }
}

pub async fn list_callbacks(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
) -> Result<Response, ObError> {
    registration_token(&token)?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let list: Vec<Value> = state
        .store
        .callback_urls(&token.client_id)
        .await
        .map_err(ObError::internal)?
        .iter()
        .map(callback_json)
        .collect();
    Ok(Json(json!({
        "Data": { "CallbackUrl": list },
        "Links": { "Self": format!("{}{CALLBACK_URLS}", state.base_url) },
        "Meta": {},
    }))
    .into_response())
}

pub async fn update_callback(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ObError> {
    let v = signed_write(&state, &token, &headers, &body, &state.schemas.callback_url).await?;
    let d = &v["Data"];
    let version = check_version(&d["Version"], "Data.Version")?;
    let url = d["Url"].as_str().unwrap_or("").to_string();
    check_callback(&state.events, &url, "Data.Url")?;
    let current = state
        .store
        .callback_urls(&token.client_id)
        .await
        .map_err(ObError::internal)?
        .into_iter()
        .find(|c| c.callback_url_id == id)
        .ok_or_else(|| no_such("callback URL", "CallbackUrlId"))?;
    let c = CallbackUrl {
        url,
        version,
        updated_at: now_ms(),
        ..current
    };
    found(
        state.store.update_callback_url(&c).await,
        "callback URL",
        "CallbackUrlId",
    )?;
    Ok(Json(callback_body(&state, &c)).into_response())
}

pub async fn delete_callback(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    registration_token(&token)?;
    common::check_fapi_headers(&headers)?;
    found(
        state.store.delete_callback_url(&token.client_id, &id).await,
        "callback URL",
        "CallbackUrlId",
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------- aggregated polling

/// `POST /events` (EVT-30..33): acknowledgements first, then up to
/// `maxEvents` pending SETs, oldest first. No JWS either way (the SETs are
/// signed themselves).
pub async fn poll(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::ClientCredentials, "eventpolling")?;
    common::check_content_type(&headers)?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let v = common::parse_json(&body)?;
    pis_schema::validate(&state.schemas.event_polling, &v)?;
    let subscribed = !state
        .store
        .subscriptions(&token.client_id)
        .await
        .map_err(ObError::internal)?
        .is_empty();
    // EVT-30: polling is enabled by an event subscription.
    if !subscribed {
        return Err(bad(
            ObErrorCode::ResourceNotFound,
            "this TPP has no event subscription; create one (POST /event-subscriptions) to poll",
            "event-subscriptions",
        ));
    }
    let max = v["maxEvents"]
        .as_i64()
        .unwrap_or(state.events.max_events)
        .clamp(0, state.events.max_events);
    if v["maxEvents"].as_i64().is_some_and(|m| m < 0) {
        return Err(bad(
            ObErrorCode::FieldInvalid,
            "maxEvents must not be negative",
            "maxEvents",
        ));
    }
    let ack: Vec<String> = v["ack"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j.as_str().map(str::to_string))
        .collect();
    let errs: Vec<(String, String)> = v["setErrs"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(jti, e)| {
            (
                jti.clone(),
                format!(
                    "{}: {}",
                    e["err"].as_str().unwrap_or(""),
                    e["description"].as_str().unwrap_or("")
                ),
            )
        })
        .collect();
    let wait = v["returnImmediately"] == json!(false) && max > 0;
    let deadline = tokio::time::Instant::now() + state.events.long_poll;
    let (mut events, mut more) = state
        .store
        .poll_events(&token.client_id, &ack, &errs, max)
        .await
        .map_err(ObError::internal)?;
    // Long polling: hold the request until an event arrives or the limit.
    while wait && events.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (events, more) = state
            .store
            .poll_events(&token.client_id, &[], &[], max)
            .await
            .map_err(ObError::internal)?;
    }
    let mut sets = Map::new();
    for e in &events {
        let set = state
            .events
            .signer
            .set_of(state.store.as_ref(), e)
            .await
            .map_err(ObError::internal)?;
        sets.insert(e.jti.clone(), json!(set));
    }
    // EVT-32: 201, as the v3.1.2 OpenAPI declares.
    Ok(common::created(
        json!({ "moreAvailable": more, "sets": Value::Object(sets) }),
    ))
}

pub fn routes() -> axum::Router<ApiState> {
    use axum::routing::{post, put};
    axum::Router::new()
        .route(
            SUBSCRIPTIONS,
            post(create_subscription).get(list_subscriptions),
        )
        .route(
            &format!("{SUBSCRIPTIONS}/{{id}}"),
            put(update_subscription).delete(delete_subscription),
        )
        .route(CALLBACK_URLS, post(create_callback).get(list_callbacks))
        .route(
            &format!("{CALLBACK_URLS}/{{id}}"),
            put(update_callback).delete(delete_callback),
        )
        .route(EVENTS, post(poll))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_end_with_a_version_and_stay_outside_the_bank() {
        let strict = EventSettings {
            signer: std::sync::Arc::new(aspen_events::SetSigner {
                key: aspen_jose::SigningKey::generate(None).unwrap(),
                issuer: "https://bank".into(),
                base_url: "https://bank".into(),
            }),
            max_events: 10,
            long_poll: Duration::ZERO,
            allow_private_callbacks: false,
        };
        let ok = "https://tpp.example.com/open-banking/v3.1/event-notifications";
        assert!(check_callback(&strict, ok, "p").is_ok());
        for bad in [
            "http://tpp.example.com/open-banking/v3.1/event-notifications",
            "https://tpp.example.com/event-notifications",
            "https://tpp.example.com/open-banking/v3.1/notifications",
            "https://tpp.example.com/open-banking/vX/event-notifications",
            "https://127.0.0.1:8443/open-banking/v3.1/event-notifications",
            "https://10.1.2.3/open-banking/v3.1/event-notifications",
            "https://localhost/open-banking/v3.1/event-notifications",
            "https://[::1]:443/open-banking/v3.1/event-notifications",
            "https://tpp.example.com/open-banking/v3.1/event-notifications?x=1",
        ] {
            assert!(check_callback(&strict, bad, "p").is_err(), "{bad}");
        }
        let sandbox = EventSettings {
            allow_private_callbacks: true,
            ..strict
        };
        assert!(
            check_callback(
                &sandbox,
                "https://127.0.0.1:9/open-banking/v3.1/event-notifications",
                "p"
            )
            .is_ok()
        );
    }
}
