//! Payment Initiation v3.1.2, domestic and international (PIS-1 D1–D5,
//! I1–I5): consents, funds confirmation, payment orders. Checks run in the
//! order of COMMON-43: token, media types, headers, request JWS,
//! idempotency, schema, existence and ownership, business rules.

use std::sync::Arc;

use aspen_auth::{BoundToken, GrantKind};
use aspen_core::sync::Placed;
use aspen_domain::payments::{self as rules, AspspProfile, PaymentType, RateTable, RuleCode};
use aspen_http::{Json, ObError, ObErrorCode};
use aspen_jose::{DetachedExpectations, SigningKey};
use aspen_store::consent::ConsentRecord;
use aspen_store::payments::{Created, IdemKey, IdemRecord, PaymentRecord};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::common::{self, format_ms};
use crate::pis_schema;
use crate::{ApiState, PISP};

pub struct PisSettings {
    pub profile: AspspProfile,
    pub rates: RateTable,
    /// `http://openbanking.org.uk/iss` of our signatures: the ASPSP's org id.
    pub iss: String,
    /// `http://openbanking.org.uk/tan` of our signatures.
    pub tan: String,
    /// Anchors accepted in TPP signatures.
    pub trusted_tans: Vec<String>,
    /// COMMON-31 #8: oldest and most-future `iat` accepted, seconds.
    pub iat_max_age: i64,
    pub iat_future_skew: i64,
    /// How long a payment consent can be authorised and used [choice].
    pub consent_ttl_ms: i64,
    /// Validity of an `Actual` rate quote (PIS-27).
    pub quote_ttl_ms: i64,
    /// How far an `Agreed` rate may sit from the table rate, in basis points.
    pub agreed_tolerance_bp: i64,
    pub signing_key: SigningKey,
    pub tpp_keys: Arc<aspen_auth::tpp_keys::TppKeyResolver>,
    /// Registered client key sets, parsed once per distinct text (the
    /// authorisation server's cache).
    pub client_keys: Arc<aspen_auth::client_keys::ClientKeys>,
    /// Submits new orders to the core and mirrors their status.
    pub payments: Arc<aspen_core::sync::PaymentSync>,
}

/// COMMON-24: the replay window.
const IDEM_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone, Copy)]
struct Kind {
    ty: PaymentType,
    consent_kind: &'static str,
    consents_path: &'static str,
    payments_path: &'static str,
    id_field: &'static str,
    /// Prefix of consent ids, so a log line tells the type at a glance.
    id_prefix: &'static str,
}

/// Route parameter: which payment type a handler serves.
pub const D: u8 = 0;
pub const I: u8 = 1;

const fn kind<const K: u8>() -> Kind {
    if K == D { DOMESTIC } else { INTERNATIONAL }
}

const DOMESTIC: Kind = Kind {
    ty: PaymentType::Domestic,
    consent_kind: "domestic-payment",
    consents_path: "domestic-payment-consents",
    payments_path: "domestic-payments",
    id_field: "DomesticPaymentId",
    id_prefix: "pdc",
};

const INTERNATIONAL: Kind = Kind {
    ty: PaymentType::International,
    consent_kind: "international-payment",
    consents_path: "international-payment-consents",
    payments_path: "international-payments",
    id_field: "InternationalPaymentId",
    id_prefix: "pic",
};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn bad(code: ObErrorCode, msg: impl Into<String>, path: &str) -> ObError {
    ObError::bad_request(code, msg, Some(path))
}

fn rule_code(c: RuleCode) -> ObErrorCode {
    match c {
        RuleCode::FieldMissing => ObErrorCode::FieldMissing,
        RuleCode::FieldInvalid => ObErrorCode::FieldInvalid,
        RuleCode::FieldExpected => ObErrorCode::FieldExpected,
        RuleCode::FieldUnexpected => ObErrorCode::FieldUnexpected,
        RuleCode::UnsupportedCurrency => ObErrorCode::UnsupportedCurrency,
        RuleCode::UnsupportedScheme => ObErrorCode::UnsupportedScheme,
        RuleCode::UnsupportedAccountIdentifier => ObErrorCode::UnsupportedAccountIdentifier,
        RuleCode::UnsupportedLocalInstrument => ObErrorCode::UnsupportedLocalInstrument,
    }
}

fn violations(v: Vec<rules::Violation>) -> Result<(), ObError> {
    let mut it = v.into_iter();
    let Some(first) = it.next() else {
        return Ok(());
    };
    let mut e = bad(rule_code(first.code), first.message, &first.path);
    for x in it {
        e = e.with(rule_code(x.code), x.message, Some(&x.path));
    }
    Err(e)
}

/// The header carrying a response's detached signature.
const SIGNATURE: &str = "x-jws-signature";

/// Whether every answer under `path` that has a body is signed, errors
/// included: PIS (COMMON-32, PIS-3) and the event registrations (EVT-1).
/// The application's edge signs them over the exact bytes sent, also those
/// answered before a handler runs (the router's 404/405, refusals reshaped
/// into OB errors), so a TPP can trust every such body.
pub fn signs_responses(path: &str) -> bool {
    path.starts_with(PISP)
        || path.starts_with(crate::events::SUBSCRIPTIONS)
        || path.starts_with(crate::events::CALLBACK_URLS)
}

pub async fn sign(state: &ApiState, resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ObError::internal(e).into_response(),
    };
    if !bytes.is_empty() {
        let pis = &state.pis;
        match aspen_jose::sign_detached(
            &pis.signing_key,
            &bytes,
            &pis.iss,
            &pis.tan,
            chrono::Utc::now().timestamp(),
            None,
        ) {
            Ok(sig) => {
                if let Ok(v) = HeaderValue::from_str(&sig) {
                    parts.headers.insert(SIGNATURE, v);
                }
            }
            Err(e) => return ObError::internal(e).into_response(),
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// COMMON-23: 1–40 characters, no leading or trailing whitespace.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ObError> {
    const H: &str = "x-idempotency-key";
    let v = headers.get(H).ok_or_else(|| {
        bad(
            ObErrorCode::HeaderMissing,
            "x-idempotency-key is required",
            H,
        )
    })?;
    let s = v.to_str().unwrap_or("");
    if s.is_empty() || s.chars().count() > 40 || s.trim() != s {
        return Err(bad(
            ObErrorCode::HeaderInvalid,
            "x-idempotency-key must be 1 to 40 characters without surrounding spaces",
            H,
        ));
    }
    Ok(s.to_string())
}

/// COMMON-31: the request's detached JWS, by a key registered for the
/// calling client, with `iss` = `{org_id}/{software_id}`.
pub(crate) async fn verify_request(
    state: &ApiState,
    token: &BoundToken,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ObError> {
    let client = match &token.signer {
        Some(c) => c.clone(),
        None => state
            .store
            .signer_client(&token.client_id)
            .await
            .map_err(ObError::internal)?
            .map(Arc::new)
            .ok_or_else(ObError::unauthorized)?,
    };
    let mut jwks = state.pis.client_keys.get(&client.jwks_json);
    if jwks.is_none()
        && let Some(url) = &client.jwks_uri
    {
        jwks = state
            .pis
            .tpp_keys
            .by_url(url, false)
            .await
            .ok()
            .map(Arc::new);
    }
    let jwks = jwks.unwrap_or_else(|| Arc::new(aspen_jose::Jwks::from_keys(Vec::new())));
    let iss = format!("{}/{}", client.org_id, client.software_id);
    let sig = headers
        .get(SIGNATURE)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let exp = DetachedExpectations {
        iss: &iss,
        tans: &state.pis.trusted_tans,
        now: chrono::Utc::now().timestamp(),
        max_future_skew: state.pis.iat_future_skew,
        max_age: state.pis.iat_max_age,
    };
    aspen_jose::verify_detached(sig, body, &jwks, &exp)
        .map(|_| ())
        .map_err(|e| {
            let path = e.claim().unwrap_or(SIGNATURE).to_string();
            let code = match e {
                aspen_jose::DetachedJwsError::Missing => ObErrorCode::SignatureMissing,
                aspen_jose::DetachedJwsError::Malformed => ObErrorCode::SignatureMalformed,
                aspen_jose::DetachedJwsError::MissingClaim(_) => ObErrorCode::SignatureMissingClaim,
                aspen_jose::DetachedJwsError::InvalidClaim(_) => ObErrorCode::SignatureInvalidClaim,
                aspen_jose::DetachedJwsError::Invalid => ObErrorCode::SignatureInvalid,
            };
            bad(code, e.to_string(), &path)
        })
}

fn body_hash(body: &[u8]) -> String {
    aspen_jose::sha256_b64url(body)
}

/// COMMON-25: the same key with another body is refused.
fn replayable(rec: &IdemRecord, hash: &str) -> Result<(), ObError> {
    if rec.body_hash == hash {
        Ok(())
    } else {
        Err(bad(
            ObErrorCode::FieldInvalid,
            "this x-idempotency-key was used with a different body",
            "x-idempotency-key",
        ))
    }
}

async fn signed_post(
    state: &ApiState,
    token: &BoundToken,
    grant: GrantKind,
    endpoint: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<IdemKey, ObError> {
    common::require(token, grant, "payments")?;
    common::check_content_type(headers)?;
    common::check_accept(headers)?;
    common::check_fapi_headers(headers)?;
    let key = idempotency_key(headers)?;
    verify_request(state, token, headers, body).await?;
    Ok(IdemKey {
        client_id: token.client_id.clone(),
        endpoint: endpoint.to_string(),
        key,
        body_hash: body_hash(body),
    })
}

async fn earlier(state: &ApiState, key: &IdemKey) -> Result<Option<IdemRecord>, ObError> {
    state
        .store
        .idempotency(
            &key.client_id,
            &key.endpoint,
            &key.key,
            now_ms() - IDEM_WINDOW_MS,
        )
        .await
        .map_err(ObError::internal)
}

// ---------------------------------------------------------------- consents

/// PIS-27: the rate request rules and our quote.
fn exchange_rate_info(
    pis: &PisSettings,
    initiation: &Value,
    now: i64,
) -> Result<Option<Value>, ObError> {
    const P: &str = "Data.Initiation.ExchangeRateInformation";
    let Some(x) = initiation.get("ExchangeRateInformation") else {
        return Ok(None);
    };
    let unit = x["UnitCurrency"].as_str().unwrap_or("");
    let transfer = initiation["CurrencyOfTransfer"].as_str().unwrap_or("");
    let rate_type = x["RateType"].as_str().unwrap_or("");
    let has_rate = x.get("ExchangeRate").is_some();
    let has_contract = x.get("ContractIdentification").is_some();
    let table = pis.rates.rate(unit, transfer).ok_or_else(|| {
        bad(
            ObErrorCode::UnsupportedCurrency,
            format!("no exchange rate from {unit} to {transfer}"),
            &format!("{P}.UnitCurrency"),
        )
    })?;
    let mut out = Map::new();
    out.insert("UnitCurrency".into(), json!(unit));
    out.insert("RateType".into(), json!(rate_type));
    match rate_type {
        "Agreed" => {
            if !has_rate {
                return Err(bad(
                    ObErrorCode::FieldExpected,
                    "an Agreed rate needs ExchangeRate",
                    &format!("{P}.ExchangeRate"),
                ));
            }
            if !has_contract {
                return Err(bad(
                    ObErrorCode::FieldExpected,
                    "an Agreed rate needs ContractIdentification",
                    &format!("{P}.ContractIdentification"),
                ));
            }
            let agreed = rules::rate_from_number(&x["ExchangeRate"]).ok_or_else(|| {
                bad(
                    ObErrorCode::FieldInvalid,
                    "ExchangeRate must be a positive number",
                    &format!("{P}.ExchangeRate"),
                )
            })?;
            // The sandbox honours an agreed rate close to its own [choice].
            if (agreed - table).abs() * 10_000 > table * i128::from(pis.agreed_tolerance_bp) {
                return Err(bad(
                    ObErrorCode::FieldInvalid,
                    "the agreed rate does not match a contract this bank can honour",
                    &format!("{P}.ExchangeRate"),
                ));
            }
            out.insert("ExchangeRate".into(), rules::rate_number(agreed));
            out.insert(
                "ContractIdentification".into(),
                x["ContractIdentification"].clone(),
            );
        }
        _ => {
            for (present, f) in [
                (has_rate, "ExchangeRate"),
                (has_contract, "ContractIdentification"),
            ] {
                if present {
                    return Err(bad(
                        ObErrorCode::FieldUnexpected,
                        format!("{f} is only sent with RateType Agreed"),
                        &format!("{P}.{f}"),
                    ));
                }
            }
            out.insert("ExchangeRate".into(), rules::rate_number(table));
            if rate_type == "Actual" {
                out.insert(
                    "ExpirationDateTime".into(),
                    json!(format_ms(now + pis.quote_ttl_ms)),
                );
            }
        }
    }
    Ok(Some(Value::Object(out)))
}

fn consent_body(state: &ApiState, k: Kind, c: &ConsentRecord) -> Value {
    let mut data = Map::new();
    data.insert("ConsentId".into(), json!(c.consent_id));
    data.insert("CreationDateTime".into(), json!(format_ms(c.created_at)));
    data.insert("Status".into(), json!(c.status));
    data.insert(
        "StatusUpdateDateTime".into(),
        json!(format_ms(c.status_updated_at)),
    );
    for f in ["Initiation", "Authorisation", "SCASupportData"] {
        if let Some(v) = c.data["Data"].get(f) {
            data.insert(f.into(), v.clone());
        }
    }
    if let Some(x) = c.data["Aspsp"].get("ExchangeRateInformation") {
        data.insert("ExchangeRateInformation".into(), x.clone());
    }
    json!({
        "Data": data,
        "Risk": c.data["Risk"],
        "Links": { "Self": format!("{}{PISP}/{}/{}", state.base_url, k.consents_path, c.consent_id) },
        "Meta": {},
    })
}

pub async fn create_consent<const K: u8>(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let k = kind::<K>();
    let endpoint = format!("POST /{}", k.consents_path);
    let key = signed_post(
        &state,
        &token,
        GrantKind::ClientCredentials,
        &endpoint,
        &headers,
        &body,
    )
    .await?;
    if let Some(rec) = earlier(&state, &key).await? {
        replayable(&rec, &key.body_hash)?;
        return replay_consent(&state, k, &rec).await;
    }
    let value = common::parse_json(&body)?;
    let schema = match k.ty {
        PaymentType::Domestic => &state.schemas.domestic_consent,
        PaymentType::International => &state.schemas.international_consent,
    };
    pis_schema::validate(schema, &value)?;
    let initiation = &value["Data"]["Initiation"];
    violations(state.pis.profile.check(k.ty, initiation))?;
    let now = now_ms();
    let mut aspsp = Map::new();
    if k.ty == PaymentType::International {
        let transfer = initiation["CurrencyOfTransfer"].as_str().unwrap_or("");
        if state
            .pis
            .rates
            .rate(&state.pis.rates.base, transfer)
            .is_none()
        {
            return Err(bad(
                ObErrorCode::UnsupportedCurrency,
                format!("{transfer} cannot be sent from this bank"),
                "Data.Initiation.CurrencyOfTransfer",
            ));
        }
        if let Some(x) = exchange_rate_info(&state.pis, initiation, now)? {
            aspsp.insert("ExchangeRateInformation".into(), x);
        }
    }
    let mut data = Map::new();
    for f in ["Initiation", "Authorisation", "SCASupportData"] {
        if let Some(v) = value["Data"].get(f) {
            data.insert(f.into(), v.clone());
        }
    }
    let record = ConsentRecord {
        consent_id: format!("{}-{}", k.id_prefix, uuid::Uuid::new_v4()),
        kind: k.consent_kind.into(),
        client_id: token.client_id.clone(),
        status: "AwaitingAuthorisation".into(),
        created_at: now,
        status_updated_at: now,
        expires_at: Some(now + state.pis.consent_ttl_ms),
        psu_id: None,
        accounts: Vec::new(),
        data: json!({ "Data": data, "Risk": value["Risk"], "Aspsp": aspsp }),
        authorised_at: None,
        deleted: false,
    };
    match state
        .store
        .insert_consent_once(&record, &key, now - IDEM_WINDOW_MS)
        .await
        .map_err(ObError::internal)?
    {
        Created::New => {
            tracing::info!(consent_id = %record.consent_id, client_id = %token.client_id, kind = k.consent_kind, "payment consent created");
            Ok(common::created(consent_body(&state, k, &record)))
        }
        Created::Existing(rec) => {
            replayable(&rec, &key.body_hash)?;
            replay_consent(&state, k, &rec).await
        }
    }
}

async fn replay_consent(state: &ApiState, k: Kind, rec: &IdemRecord) -> Result<Response, ObError> {
    let c = state
        .store
        .consent(&rec.resource_id)
        .await
        .map_err(ObError::internal)?
        .ok_or_else(|| ObError::internal("idempotency key names a missing consent"))?;
    Ok(common::created(consent_body(state, k, &c)))
}

pub async fn read_consent<const K: u8>(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    let k = kind::<K>();
    common::require(&token, GrantKind::ClientCredentials, "payments")?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let c = common::owned_consent(
        state.store.as_ref(),
        k.consent_kind,
        &token,
        &id,
        "ConsentId",
    )
    .await?;
    Ok(Json(consent_body(&state, k, &c)).into_response())
}

/// The debit a payment makes on `account_currency` (PIS-26, PIS-27): the
/// instructed amount, converted at the consent's locked rate when it has
/// one for this pair, else at the table rate.
fn debit_minor(
    pis: &PisSettings,
    consent: &ConsentRecord,
    account_currency: &str,
) -> Result<i64, ObError> {
    let i = &consent.data["Data"]["Initiation"];
    let ccy = i["InstructedAmount"]["Currency"].as_str().unwrap_or("");
    let amount = i["InstructedAmount"]["Amount"]
        .as_str()
        .and_then(aspen_domain::parse_minor)
        .ok_or_else(|| {
            bad(
                ObErrorCode::FieldInvalid,
                "InstructedAmount.Amount has more decimals than its currency",
                "Data.Initiation.InstructedAmount.Amount",
            )
        })?;
    if ccy == account_currency {
        return Ok(amount);
    }
    let x = &consent.data["Aspsp"]["ExchangeRateInformation"];
    let locked = (x["UnitCurrency"].as_str() == Some(account_currency)
        && i["CurrencyOfTransfer"].as_str() == Some(ccy)
        && x["RateType"].as_str() != Some("Indicative"))
    .then(|| rules::rate_from_number(&x["ExchangeRate"]))
    .flatten();
    let rate = locked
        .or_else(|| pis.rates.rate(account_currency, ccy))
        .ok_or_else(|| {
            bad(
                ObErrorCode::UnsupportedCurrency,
                format!("no exchange rate from {account_currency} to {ccy}"),
                "Data.Initiation.InstructedAmount.Currency",
            )
        })?;
    rules::debit_for(amount, rate).ok_or_else(|| ObError::internal("debit overflow"))
}

pub async fn funds_confirmation<const K: u8>(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    let k = kind::<K>();
    common::require(&token, GrantKind::AuthorizationCode, "payments")?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let c = common::owned_consent(
        state.store.as_ref(),
        k.consent_kind,
        &token,
        &id,
        "ConsentId",
    )
    .await?;
    if token.consent_id.as_deref() != Some(c.consent_id.as_str()) {
        return Err(bad(
            ObErrorCode::ResourceConsentMismatch,
            "the access token was issued for another consent",
            "ConsentId",
        ));
    }
    // PIS-35: only an Authorised consent; never after Consumed.
    if c.status != "Authorised" {
        return Err(bad(
            ObErrorCode::ResourceInvalidConsentStatus,
            format!("the consent is {}", c.status),
            "Data.Status",
        ));
    }
    let account = debtor_account(&state, &c).await?;
    let need = debit_minor(&state.pis, &c, &account.currency)?;
    let available = state
        .core
        .funds_available(&account.account_id, need)
        .await
        .map_err(common::core_error)?;
    let now = now_ms();
    Ok(Json(json!({
        "Data": { "FundsAvailableResult": {
            "FundsAvailableDateTime": format_ms(now),
            "FundsAvailable": available,
        }},
        "Links": { "Self": format!("{}{PISP}/{}/{}/funds-confirmation", state.base_url, k.consents_path, c.consent_id) },
        "Meta": {},
    }))
    .into_response())
}

async fn debtor_account(
    state: &ApiState,
    c: &ConsentRecord,
) -> Result<aspen_domain::Account, ObError> {
    let id = c
        .accounts
        .first()
        .ok_or_else(|| ObError::internal("authorised payment consent without an account"))?;
    state
        .core
        .account(id)
        .await
        .map_err(common::core_error)?
        .ok_or_else(|| ObError::internal("consent names a missing account"))
}

// ---------------------------------------------------------- payment orders

fn payment_body(state: &ApiState, k: Kind, p: &PaymentRecord) -> Value {
    let mut data = Map::new();
    data.insert(k.id_field.into(), json!(p.payment_id));
    data.insert("ConsentId".into(), json!(p.consent_id));
    data.insert("CreationDateTime".into(), json!(format_ms(p.created_at)));
    data.insert("Status".into(), json!(p.status));
    data.insert(
        "StatusUpdateDateTime".into(),
        json!(format_ms(p.status_updated_at)),
    );
    if let Some(x) = p.data.get("ExchangeRateInformation") {
        data.insert("ExchangeRateInformation".into(), x.clone());
    }
    data.insert("Initiation".into(), p.data["Initiation"].clone());
    json!({
        "Data": data,
        "Links": { "Self": format!("{}{PISP}/{}/{}", state.base_url, k.payments_path, p.payment_id) },
        "Meta": {},
    })
}

async fn load_payment(state: &ApiState, id: &str) -> Result<PaymentRecord, ObError> {
    state
        .store
        .payment(id)
        .await
        .map_err(ObError::internal)?
        .ok_or_else(|| ObError::internal("idempotency key names a missing payment"))
}

pub async fn create_payment<const K: u8>(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let k = kind::<K>();
    let endpoint = format!("POST /{}", k.payments_path);
    let key = signed_post(
        &state,
        &token,
        GrantKind::AuthorizationCode,
        &endpoint,
        &headers,
        &body,
    )
    .await?;
    if let Some(rec) = earlier(&state, &key).await? {
        replayable(&rec, &key.body_hash)?;
        let p = load_payment(&state, &rec.resource_id).await?;
        return Ok(common::created(payment_body(&state, k, &p)));
    }
    let value = common::parse_json(&body)?;
    let schema = match k.ty {
        PaymentType::Domestic => &state.schemas.domestic_payment,
        PaymentType::International => &state.schemas.international_payment,
    };
    pis_schema::validate(schema, &value)?;
    let consent_id = value["Data"]["ConsentId"].as_str().unwrap_or("");
    // PIS-20.1, COMMON-64.
    if token.consent_id.as_deref() != Some(consent_id) {
        return Err(bad(
            ObErrorCode::ResourceConsentMismatch,
            "the access token was issued for another consent",
            "Data.ConsentId",
        ));
    }
    let c = common::owned_consent(
        state.store.as_ref(),
        k.consent_kind,
        &token,
        consent_id,
        "Data.ConsentId",
    )
    .await?;
    let now = now_ms();
    if c.status != "Authorised" {
        return Err(bad(
            ObErrorCode::ResourceInvalidConsentStatus,
            format!("the consent is {}", c.status),
            "Data.ConsentId",
        ));
    }
    if c.expires_at.is_some_and(|e| e <= now) {
        return Err(bad(
            ObErrorCode::ResourceInvalidConsentStatus,
            "the consent has expired",
            "Data.ConsentId",
        ));
    }
    // PIS-20.4: Initiation and Risk exactly as consented.
    if let Some(path) = rules::first_difference(
        &c.data["Data"]["Initiation"],
        &value["Data"]["Initiation"],
        "Data.Initiation",
    )
    .or_else(|| rules::first_difference(&c.data["Risk"], &value["Risk"], "Risk"))
    {
        return Err(bad(
            ObErrorCode::ResourceConsentMismatch,
            format!("{path} differs from the consent"),
            &path,
        ));
    }
    // PIS-20.6: an Actual quote holds until it expires.
    if c.data["Aspsp"]["ExchangeRateInformation"]["ExpirationDateTime"]
        .as_str()
        .and_then(common::parse_request_datetime)
        .is_some_and(|e| e.timestamp_millis() <= now)
    {
        return Err(bad(
            ObErrorCode::FieldInvalidDate,
            "the exchange rate quoted for this consent has expired",
            "Data.Initiation.ExchangeRateInformation",
        ));
    }
    let account = debtor_account(&state, &c).await?;
    let debit = debit_minor(&state.pis, &c, &account.currency)?;
    let mut data = Map::new();
    data.insert("Initiation".into(), c.data["Data"]["Initiation"].clone());
    if let Some(x) = c.data["Aspsp"].get("ExchangeRateInformation") {
        data.insert("ExchangeRateInformation".into(), x.clone());
    }
    let p = PaymentRecord {
        payment_id: format!("pmt-{}", uuid::Uuid::new_v4().simple()),
        kind: k.consent_kind.into(),
        consent_id: c.consent_id.clone(),
        client_id: token.client_id.clone(),
        status: aspen_store::payments::PENDING.into(),
        created_at: now,
        status_updated_at: now,
        due_at: Some(now),
        account_id: account.account_id.clone(),
        debit_minor: debit,
        debit_currency: account.currency.clone(),
        reason: None,
        data: Value::Object(data),
    };
    match state
        .pis
        .payments
        .place(p, &key, now - IDEM_WINDOW_MS)
        .await
        .map_err(common::core_error)?
    {
        Placed::New(current) => {
            tracing::info!(payment_id = %current.payment_id, consent_id = %current.consent_id, debit_minor = debit, status = %current.status, "payment order accepted");
            Ok(common::created(payment_body(&state, k, &current)))
        }
        Placed::Existing(rec) => {
            replayable(&rec, &key.body_hash)?;
            let current = load_payment(&state, &rec.resource_id).await?;
            Ok(common::created(payment_body(&state, k, &current)))
        }
        Placed::ConsentNotAuthorised => Err(bad(
            ObErrorCode::ResourceInvalidConsentStatus,
            "the consent has already been used",
            "Data.ConsentId",
        )),
    }
}

pub async fn read_payment<const K: u8>(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    let k = kind::<K>();
    common::require(&token, GrantKind::ClientCredentials, "payments")?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let p = state
        .store
        .payment(&id)
        .await
        .map_err(ObError::internal)?
        .filter(|p| p.kind == k.consent_kind)
        .ok_or_else(|| bad(ObErrorCode::ResourceNotFound, "no such payment", k.id_field))?;
    if p.client_id != token.client_id {
        return Err(ObError::forbidden(
            aspen_http::Forbidden::OtherTpp,
            "the payment belongs to another TPP",
        ));
    }
    Ok(Json(payment_body(&state, k, &p)).into_response())
}

/// `/open-banking/v3.1/pisp` (PIS-1 D1–D5, I1–I5); the application's edge
/// signs every response with a body ([`signs_responses`]).
pub fn routes() -> axum::Router<ApiState> {
    use axum::routing::{get, post};
    let mut r = axum::Router::new();
    for (k, consent_post, consent_get, funds, payment_post, payment_get) in [
        (
            DOMESTIC,
            post(create_consent::<D>),
            get(read_consent::<D>),
            get(funds_confirmation::<D>),
            post(create_payment::<D>),
            get(read_payment::<D>),
        ),
        (
            INTERNATIONAL,
            post(create_consent::<I>),
            get(read_consent::<I>),
            get(funds_confirmation::<I>),
            post(create_payment::<I>),
            get(read_payment::<I>),
        ),
    ] {
        r = r
            .route(&format!("{PISP}/{}", k.consents_path), consent_post)
            .route(&format!("{PISP}/{}/{{id}}", k.consents_path), consent_get)
            .route(
                &format!("{PISP}/{}/{{id}}/funds-confirmation", k.consents_path),
                funds,
            )
            .route(&format!("{PISP}/{}", k.payments_path), payment_post)
            .route(&format!("{PISP}/{}/{{id}}", k.payments_path), payment_get);
    }
    r
}
