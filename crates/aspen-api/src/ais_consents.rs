//! `account-access-consents` (AIS-1..14).

use std::sync::Arc;

use aspen_auth::{BoundToken, GrantKind};
use aspen_http::{Json, ObError, ObErrorCode};
use aspen_store::consent::ConsentRecord;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::common::{self, format_datetime, format_ms, parse_request_datetime};
use crate::{AISP, ApiState};

pub const KIND: &str = "account-access";

/// OBExternalPermissions1Code (AIS-18).
pub const PERMISSIONS: &[&str] = &[
    "ReadAccountsBasic",
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadBeneficiariesBasic",
    "ReadBeneficiariesDetail",
    "ReadDirectDebits",
    "ReadOffers",
    "ReadPAN",
    "ReadParty",
    "ReadPartyPSU",
    "ReadProducts",
    "ReadScheduledPaymentsBasic",
    "ReadScheduledPaymentsDetail",
    "ReadStandingOrdersBasic",
    "ReadStandingOrdersDetail",
    "ReadStatementsBasic",
    "ReadStatementsDetail",
    "ReadTransactionsBasic",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
    "ReadTransactionsDetail",
];

fn invalid(code: ObErrorCode, msg: impl Into<String>, path: &str) -> ObError {
    ObError::bad_request(code, msg, Some(path))
}

/// The validated request: permissions and the three optional dates
/// normalised for echoing (AIS-13, AIS-14).
struct ConsentRequest {
    permissions: Vec<String>,
    expiration: Option<chrono::DateTime<chrono::FixedOffset>>,
    from: Option<chrono::DateTime<chrono::FixedOffset>>,
    to: Option<chrono::DateTime<chrono::FixedOffset>>,
}

fn validate(body: &Value, strict: bool) -> Result<ConsentRequest, ObError> {
    let obj = body.as_object().ok_or_else(|| {
        invalid(
            ObErrorCode::ResourceInvalidFormat,
            "the body must be a JSON object",
            "$",
        )
    })?;
    let data = obj
        .get("Data")
        .ok_or_else(|| invalid(ObErrorCode::FieldMissing, "Data is required", "Data"))?
        .as_object()
        .ok_or_else(|| {
            invalid(
                ObErrorCode::ResourceInvalidFormat,
                "Data must be an object",
                "Data",
            )
        })?;
    match obj.get("Risk") {
        None => {
            return Err(invalid(
                ObErrorCode::FieldMissing,
                "Risk is required",
                "Risk",
            ));
        }
        Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(invalid(
                ObErrorCode::ResourceInvalidFormat,
                "Risk must be an object",
                "Risk",
            ));
        }
    }
    if strict {
        // COMMON-21: the strict profile refuses fields the schema lacks.
        // OBError1.Path is 1..500 characters: an empty key is named by
        // its parent ("$" at the top).
        let path = |parent: &str, k: &str| match (parent, k) {
            ("", "") => "$".to_string(),
            (p, "") => p.to_string(),
            ("", k) => k.to_string(),
            (p, k) => format!("{p}.{k}"),
        };
        for k in obj.keys() {
            if k != "Data" && k != "Risk" {
                return Err(invalid(
                    ObErrorCode::ResourceInvalidFormat,
                    format!("unknown field {k:?}"),
                    &path("", k),
                ));
            }
        }
        // OBRisk2 has no properties and admits none (additionalProperties:
        // false in the v3.1.2 OpenAPI).
        if let Some(k) = obj
            .get("Risk")
            .and_then(Value::as_object)
            .and_then(|r| r.keys().next())
        {
            return Err(invalid(
                ObErrorCode::ResourceInvalidFormat,
                format!("unknown field Risk.{k:?}: the account-access Risk object is empty"),
                &path("Risk", k),
            ));
        }
        for k in data.keys() {
            if !matches!(
                k.as_str(),
                "Permissions"
                    | "ExpirationDateTime"
                    | "TransactionFromDateTime"
                    | "TransactionToDateTime"
            ) {
                return Err(invalid(
                    ObErrorCode::ResourceInvalidFormat,
                    format!("unknown field Data.{k:?}"),
                    &path("Data", k),
                ));
            }
        }
    }
    let perms_value = data.get("Permissions").ok_or_else(|| {
        invalid(
            ObErrorCode::FieldMissing,
            "Permissions is required",
            "Data.Permissions",
        )
    })?;
    let arr = perms_value.as_array().ok_or_else(|| {
        invalid(
            ObErrorCode::ResourceInvalidFormat,
            "Permissions must be an array",
            "Data.Permissions",
        )
    })?;
    let mut permissions: Vec<String> = Vec::new();
    for p in arr {
        let p = p.as_str().ok_or_else(|| {
            invalid(
                ObErrorCode::ResourceInvalidFormat,
                "Permissions must be strings",
                "Data.Permissions",
            )
        })?;
        if !PERMISSIONS.contains(&p) {
            return Err(invalid(
                ObErrorCode::FieldInvalid,
                format!("unknown permission {p}"),
                "Data.Permissions",
            ));
        }
        // AIS-13: duplicates are tolerated; they are kept as sent.
        permissions.push(p.to_string());
    }
    let has = |p: &str| permissions.iter().any(|x| x == p);
    if permissions.is_empty() {
        return Err(invalid(
            ObErrorCode::FieldInvalid,
            "Permissions must not be empty",
            "Data.Permissions",
        ));
    }
    if !has("ReadAccountsBasic") && !has("ReadAccountsDetail") {
        return Err(invalid(
            ObErrorCode::FieldInvalid,
            "Permissions must include ReadAccountsBasic or ReadAccountsDetail",
            "Data.Permissions",
        ));
    }
    let tx_level = has("ReadTransactionsBasic") || has("ReadTransactionsDetail");
    let tx_direction = has("ReadTransactionsCredits") || has("ReadTransactionsDebits");
    if tx_level != tx_direction {
        return Err(invalid(
            ObErrorCode::FieldInvalid,
            "ReadTransactionsBasic/Detail and ReadTransactionsCredits/Debits must be requested together",
            "Data.Permissions",
        ));
    }
    let date = |name: &str| -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, ObError> {
        match data.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => parse_request_datetime(s).map(Some).ok_or_else(|| {
                invalid(
                    ObErrorCode::FieldInvalidDate,
                    format!("{name} is not an ISO 8601 date-time"),
                    &format!("Data.{name}"),
                )
            }),
            Some(_) => Err(invalid(
                ObErrorCode::ResourceInvalidFormat,
                format!("{name} must be a string"),
                &format!("Data.{name}"),
            )),
        }
    };
    let expiration = date("ExpirationDateTime")?;
    let from = date("TransactionFromDateTime")?;
    let to = date("TransactionToDateTime")?;
    if expiration.is_some_and(|e| e <= chrono::Utc::now()) {
        return Err(invalid(
            ObErrorCode::FieldInvalidDate,
            "ExpirationDateTime is in the past",
            "Data.ExpirationDateTime",
        ));
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(invalid(
            ObErrorCode::FieldInvalidDate,
            "TransactionFromDateTime is later than TransactionToDateTime",
            "Data.TransactionFromDateTime",
        ));
    }
    Ok(ConsentRequest {
        permissions,
        expiration,
        from,
        to,
    })
}

fn self_link(state: &ApiState, id: &str) -> String {
    format!("{}{AISP}/account-access-consents/{id}", state.base_url)
}

/// OBReadConsentResponse1 (AIS-3).
pub fn response_body(state: &ApiState, c: &ConsentRecord) -> Value {
    let mut data = Map::new();
    data.insert("ConsentId".into(), json!(c.consent_id));
    data.insert("CreationDateTime".into(), json!(format_ms(c.created_at)));
    data.insert("Status".into(), json!(c.status));
    data.insert(
        "StatusUpdateDateTime".into(),
        json!(format_ms(c.status_updated_at)),
    );
    data.insert("Permissions".into(), c.data["Data"]["Permissions"].clone());
    for k in [
        "ExpirationDateTime",
        "TransactionFromDateTime",
        "TransactionToDateTime",
    ] {
        if let Some(v) = c.data["Data"].get(k) {
            data.insert(k.into(), v.clone());
        }
    }
    json!({
        "Data": data,
        "Risk": c.data.get("Risk").cloned().unwrap_or_else(|| json!({})),
        "Links": { "Self": self_link(state, &c.consent_id) },
        "Meta": {},
    })
}

pub async fn create(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::ClientCredentials, "accounts")?;
    common::check_content_type(&headers)?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let value = common::parse_json(&body)?;
    let req = validate(&value, state.strict)?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut data = Map::new();
    data.insert("Permissions".into(), json!(req.permissions));
    if let Some(d) = req.expiration {
        data.insert("ExpirationDateTime".into(), json!(format_datetime(&d)));
    }
    if let Some(d) = req.from {
        data.insert("TransactionFromDateTime".into(), json!(format_datetime(&d)));
    }
    if let Some(d) = req.to {
        data.insert("TransactionToDateTime".into(), json!(format_datetime(&d)));
    }
    let record = ConsentRecord {
        consent_id: format!("aac-{}", uuid::Uuid::new_v4()),
        kind: KIND.into(),
        client_id: token.client_id.clone(),
        status: "AwaitingAuthorisation".into(),
        created_at: now,
        status_updated_at: now,
        expires_at: req.expiration.map(|d| d.timestamp_millis()),
        psu_id: None,
        accounts: Vec::new(),
        data: json!({ "Data": data, "Risk": value["Risk"] }),
        authorised_at: None,
        deleted: false,
    };
    state
        .store
        .insert_consent(&record)
        .await
        .map_err(ObError::internal)?;
    tracing::info!(consent_id = %record.consent_id, client_id = %token.client_id, "account-access consent created");
    Ok(common::created(response_body(&state, &record)))
}

async fn owned(
    state: &ApiState,
    token: &BoundToken,
    id: &str,
) -> Result<Arc<ConsentRecord>, ObError> {
    common::owned_consent(state.store.as_ref(), KIND, token, id, "ConsentId").await
}

pub async fn read(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::ClientCredentials, "accounts")?;
    common::check_accept(&headers)?;
    common::check_fapi_headers(&headers)?;
    let c = owned(&state, &token, &id).await?;
    Ok(Json(response_body(&state, &c)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::ClientCredentials, "accounts")?;
    common::check_fapi_headers(&headers)?;
    owned(&state, &token, &id).await?;
    // AIS-9: gone at once, with every token bound to it.
    state
        .store
        .end_consent(&id, None, chrono::Utc::now().timestamp_millis())
        .await
        .map_err(ObError::internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(perms: &[&str]) -> Value {
        json!({"Data": {"Permissions": perms}, "Risk": {}})
    }

    #[test]
    fn ais_13_permission_rules() {
        assert!(validate(&req(&["ReadAccountsBasic"]), true).is_ok());
        assert!(
            validate(
                &req(&[
                    "ReadAccountsDetail",
                    "ReadAccountsBasic",
                    "ReadAccountsBasic"
                ]),
                true
            )
            .is_ok()
        );
        for bad in [
            vec![],
            vec!["ReadBalances"],
            vec!["ReadAccountsBasic", "ReadTransactionsBasic"],
            vec!["ReadAccountsBasic", "ReadTransactionsCredits"],
            vec!["ReadAccountsBasic", "ReadEverything"],
        ] {
            let e = validate(&req(&bad), true).err().expect("rejected");
            assert_eq!(
                e.errors[0].path.as_deref(),
                Some("Data.Permissions"),
                "{bad:?}"
            );
        }
        assert!(
            validate(
                &req(&[
                    "ReadAccountsBasic",
                    "ReadTransactionsDetail",
                    "ReadTransactionsDebits"
                ]),
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn ais_14_dates() {
        let mut v = req(&["ReadAccountsBasic"]);
        v["Data"]["ExpirationDateTime"] = json!("2001-01-01T00:00Z");
        assert_eq!(
            validate(&v, true).err().unwrap().errors[0].error_code,
            "UK.OBIE.Field.InvalidDate"
        );
        let mut v = req(&["ReadAccountsBasic"]);
        v["Data"]["TransactionFromDateTime"] = json!("2020-02-01T00:00:00+00:00");
        v["Data"]["TransactionToDateTime"] = json!("2020-01-01T00:00:00+00:00");
        assert!(validate(&v, true).is_err());
        let mut v = req(&["ReadAccountsBasic"]);
        v["Data"]["Extra"] = json!(1);
        assert!(validate(&v, true).is_err());
        assert!(validate(&v, false).is_ok());
    }
}
