//! AIS data endpoints (AIS-16..33): every resource of the consent's
//! accounts, with permissions applied field by field and keyset
//! pagination behind opaque, signed links.

use std::collections::HashMap;
use std::sync::Arc;

use aspen_auth::{BoundToken, GrantKind};
use aspen_core::{Direction, TxFilter, TxPageRequest};
use aspen_domain::{Account, ResourceKind, format_minor};
use aspen_http::{Json, ObError, ObErrorCode};
use aspen_store::consent::ConsentRecord;
use aws_lc_rs::hmac;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::common::{self, core_error, format_ms, parse_query_datetime};
use crate::{AISP, ApiState, links, tx_body};

/// Transactions per call to the core when aspen walks a whole period.
const CORE_PAGE: u32 = 1000;
/// Most entries a statement file holds.
const STATEMENT_FILE_MAX: usize = 100_000;

/// What the token's consent allows, checked once per request (AIS-16).
pub struct Grant {
    pub consent: Arc<ConsentRecord>,
    pub permissions: Vec<String>,
    pub psu_id: String,
}

fn missing_permission(any: &[&str]) -> ObError {
    ObError::forbidden(
        aspen_http::Forbidden::Permission,
        format!(
            "the consent grants none of the permissions {}",
            any.join(", ")
        ),
    )
}

impl Grant {
    fn has(&self, p: &str) -> bool {
        self.permissions.iter().any(|x| x == p)
    }

    /// Basic or Detail (AIS-19): true for Detail; neither is a 403.
    fn level(&self, basic: &str, detail: &str) -> Result<bool, ObError> {
        if self.has(detail) {
            Ok(true)
        } else if self.has(basic) {
            Ok(false)
        } else {
            Err(missing_permission(&[basic, detail]))
        }
    }

    fn require(&self, any: &[&str]) -> Result<(), ObError> {
        // AIS-23: a missing permission is a 403, not an empty list.
        if any.iter().any(|p| self.has(p)) {
            Ok(())
        } else {
            Err(missing_permission(any))
        }
    }

    /// The consent's transaction window in ms (AIS-17).
    fn window(&self) -> (i64, i64) {
        let d = &self.consent.data["Data"];
        let at = |k: &str| {
            d[k].as_str()
                .and_then(common::parse_request_datetime)
                .map(|x| x.timestamp_millis())
        };
        (
            at("TransactionFromDateTime").unwrap_or(i64::MIN),
            at("TransactionToDateTime").map_or(i64::MAX, |t| t + 1),
        )
    }
}

pub async fn grant(
    state: &ApiState,
    token: &BoundToken,
    headers: &HeaderMap,
) -> Result<Grant, ObError> {
    common::require(token, GrantKind::AuthorizationCode, "accounts")?;
    common::check_accept(headers)?;
    common::check_fapi_headers(headers)?;
    let consent_id = token
        .consent_id
        .as_deref()
        .ok_or_else(ObError::unauthorized)?;
    let consent = common::consent(state.store.as_ref(), token, consent_id)
        .await?
        .filter(|c| c.kind == crate::ais_consents::KIND && !c.deleted)
        .ok_or_else(ObError::unauthorized)?;
    // AIS-15, COMMON-37: an expired or no-longer-authorised consent makes
    // the token unusable.
    if consent.status != "Authorised"
        || consent
            .expires_at
            .is_some_and(|e| e <= chrono::Utc::now().timestamp_millis())
    {
        return Err(ObError::unauthorized());
    }
    let permissions = consent.data["Data"]["Permissions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let psu_id = consent.psu_id.clone().unwrap_or_default();
    Ok(Grant {
        consent,
        permissions,
        psu_id,
    })
}

/// The consent's accounts, or the one in the path: 400 if it does not
/// exist, 403 if it is not in the consent (AIS-25). The list is one call to
/// the core (the PSU's accounts), whatever the number of accounts.
async fn accounts(state: &ApiState, g: &Grant, one: Option<&str>) -> Result<Vec<Account>, ObError> {
    match one {
        Some(id) => {
            let a = state
                .core
                .account(id)
                .await
                .map_err(core_error)?
                .ok_or_else(no_such_account)?;
            if !g.consent.accounts.contains(&a.account_id) {
                return Err(not_in_consent());
            }
            Ok(vec![a])
        }
        None => {
            let mut held: HashMap<String, Account> = state
                .core
                .accounts_for_psu(&g.psu_id)
                .await
                .map_err(core_error)?
                .into_iter()
                .map(|a| (a.account_id.clone(), a))
                .collect();
            // In the consent's order; an account the PSU no longer holds
            // drops out.
            Ok(g.consent
                .accounts
                .iter()
                .filter_map(|id| held.remove(id))
                .collect())
        }
    }
}

fn no_such_account() -> ObError {
    ObError::bad_request(
        ObErrorCode::ResourceNotFound,
        "no such account",
        Some("AccountId"),
    )
}

fn not_in_consent() -> ObError {
    ObError::forbidden(
        aspen_http::Forbidden::Account,
        "the account is not covered by the consent",
    )
}

/// AIS-28: the absolute request URI, on the public base URL.
fn self_url(state: &ApiState, uri: &OriginalUri) -> String {
    let pq = uri.0.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{}{pq}", state.base_url)
}

fn envelope(data: Value, self_link: String, meta: Value) -> Response {
    Json(json!({ "Data": data, "Links": { "Self": self_link }, "Meta": meta })).into_response()
}

fn account_json(a: &Account, detail: bool, pan: bool) -> Value {
    let mut m = Map::new();
    m.insert("AccountId".into(), json!(a.account_id));
    m.insert("Status".into(), json!("Enabled"));
    m.insert("Currency".into(), json!(a.currency));
    m.insert("AccountType".into(), json!(a.account_type));
    m.insert("AccountSubType".into(), json!(a.account_sub_type));
    m.insert("Description".into(), json!(a.description));
    if let Some(n) = &a.nickname {
        m.insert("Nickname".into(), json!(n));
    }
    // AIS-20: identifiers and servicer only with ReadAccountsDetail.
    if detail {
        let ids: Vec<Value> = a
            .identifications
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("SchemeName".into(), json!(i.scheme_name));
                let id = if i.scheme_name == "UK.OBIE.PAN" && !pan {
                    aspen_domain::wire::mask_pan(&i.identification)
                } else {
                    i.identification.clone()
                };
                o.insert("Identification".into(), json!(id));
                if let Some(n) = &i.name {
                    o.insert("Name".into(), json!(n));
                }
                if let Some(s) = &i.secondary_identification {
                    o.insert("SecondaryIdentification".into(), json!(s));
                }
                Value::Object(o)
            })
            .collect();
        m.insert("Account".into(), json!(ids));
        if let Some(s) = &a.servicer {
            m.insert("Servicer".into(), s.clone());
        }
    }
    Value::Object(m)
}

pub async fn list_accounts(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    account_response(&s, &g, None, &uri).await
}

pub async fn one_account(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    account_response(&s, &g, Some(&id), &uri).await
}

async fn account_response(
    s: &ApiState,
    g: &Grant,
    id: Option<&str>,
    uri: &OriginalUri,
) -> Result<Response, ObError> {
    let detail = g.level("ReadAccountsBasic", "ReadAccountsDetail")?;
    let list: Vec<Value> = accounts(s, g, id)
        .await?
        .iter()
        .map(|a| account_json(a, detail, g.has("ReadPAN")))
        .collect();
    Ok(envelope(
        json!({ "Account": list }),
        self_url(s, uri),
        json!({ "TotalPages": 1 }),
    ))
}

fn balances_json(a: &Account) -> Vec<Value> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    [
        ("InterimBooked", a.booked_minor),
        ("InterimAvailable", a.available_minor()),
    ]
    .into_iter()
    .map(|(t, v)| {
        json!({
            "AccountId": a.account_id,
            "CreditDebitIndicator": if v < 0 { "Debit" } else { "Credit" },
            "Type": t,
            "DateTime": now,
            "Amount": { "Amount": format_minor(v.abs()), "Currency": a.currency },
        })
    })
    .collect()
}

pub async fn balances(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
    id: Option<Path<String>>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    g.require(&["ReadBalances"])?;
    let list: Vec<Value> = accounts(&s, &g, id.as_ref().map(|p| p.0.as_str()))
        .await?
        .iter()
        .flat_map(balances_json)
        .collect();
    Ok(envelope(
        json!({ "Balance": list }),
        self_url(&s, &uri),
        json!({ "TotalPages": 1 }),
    ))
}

/// Resource kinds served from stored OB JSON, with the fields a Basic
/// permission must not see (AIS-20).
fn resource_rules(
    kind: ResourceKind,
) -> (
    &'static str,
    &'static [&'static str],
    Option<&'static str>,
    &'static [&'static str],
) {
    // (array name, permissions (basic, detail), detail permission, detail-only fields)
    match kind {
        ResourceKind::Beneficiary => (
            "Beneficiary",
            &["ReadBeneficiariesBasic", "ReadBeneficiariesDetail"],
            Some("ReadBeneficiariesDetail"),
            &["CreditorAgent", "CreditorAccount"],
        ),
        ResourceKind::DirectDebit => ("DirectDebit", &["ReadDirectDebits"], None, &[]),
        ResourceKind::StandingOrder => (
            "StandingOrder",
            &["ReadStandingOrdersBasic", "ReadStandingOrdersDetail"],
            Some("ReadStandingOrdersDetail"),
            &["CreditorAgent", "CreditorAccount"],
        ),
        ResourceKind::ScheduledPayment => (
            "ScheduledPayment",
            &["ReadScheduledPaymentsBasic", "ReadScheduledPaymentsDetail"],
            Some("ReadScheduledPaymentsDetail"),
            &["CreditorAgent", "CreditorAccount"],
        ),
        ResourceKind::Statement => (
            "Statement",
            &["ReadStatementsBasic", "ReadStatementsDetail"],
            Some("ReadStatementsDetail"),
            &["StatementAmount"],
        ),
        ResourceKind::Product => ("Product", &["ReadProducts"], None, &[]),
        ResourceKind::Offer => ("Offer", &["ReadOffers"], None, &[]),
        ResourceKind::Party => ("Party", &["ReadParty"], None, &[]),
    }
}

fn shape(g: &Grant, kind: ResourceKind, mut body: Value) -> Value {
    let (_, _, detail, hidden) = resource_rules(kind);
    if let (Some(d), Value::Object(m)) = (detail, &mut body)
        && !g.has(d)
    {
        for f in hidden {
            m.remove(*f);
        }
    }
    body
}

#[derive(Deserialize, Default)]
pub struct StatementQuery {
    #[serde(rename = "fromStatementDateTime")]
    from: Option<String>,
    #[serde(rename = "toStatementDateTime")]
    to: Option<String>,
}

fn query_date(v: Option<&String>, name: &str) -> Result<Option<i64>, ObError> {
    match v {
        None => Ok(None),
        Some(s) => parse_query_datetime(s)
            .map(|d| Some(d.timestamp_millis()))
            .ok_or_else(|| {
                ObError::bad_request(
                    ObErrorCode::FieldInvalidDate,
                    format!("{name} is not an ISO 8601 date-time"),
                    Some(name),
                )
            }),
    }
}

fn statement_bounds(body: &Value) -> (i64, i64) {
    let at = |k: &str| {
        body[k]
            .as_str()
            .and_then(common::parse_request_datetime)
            .map(|d| d.timestamp_millis())
    };
    (
        at("StartDateTime").unwrap_or(i64::MIN),
        at("EndDateTime").unwrap_or(i64::MAX),
    )
}

async fn resource_list(
    s: &ApiState,
    g: &Grant,
    kind: ResourceKind,
    id: Option<&str>,
    q: &StatementQuery,
    uri: &OriginalUri,
) -> Result<Response, ObError> {
    let (name, perms, _, _) = resource_rules(kind);
    g.require(perms)?;
    let (wf, wt) = g.window();
    let (qf, qt) = (
        query_date(q.from.as_ref(), "fromStatementDateTime")?,
        query_date(q.to.as_ref(), "toStatementDateTime")?,
    );
    let mut out = Vec::new();
    for a in accounts(s, g, id).await? {
        for r in s
            .core
            .resources(&a.account_id, kind)
            .await
            .map_err(core_error)?
        {
            if kind == ResourceKind::Statement {
                // AIS-17: only statements wholly inside the consent window;
                // AIS-30: and inside the query filter.
                let (start, end) = statement_bounds(&r.body);
                if start < wf
                    || end >= wt
                    || qf.is_some_and(|f| start < f)
                    || qt.is_some_and(|t| end > t)
                {
                    continue;
                }
            }
            out.push(shape(g, kind, r.body));
        }
    }
    Ok(envelope(
        json!({ name: out }),
        self_url(s, uri),
        json!({ "TotalPages": 1 }),
    ))
}

macro_rules! resource_handlers {
    ($bulk:ident, $per:ident, $kind:expr) => {
        pub async fn $bulk(
            State(s): State<ApiState>,
            token: BoundToken,
            headers: HeaderMap,
            uri: OriginalUri,
            Query(q): Query<StatementQuery>,
        ) -> Result<Response, ObError> {
            let g = grant(&s, &token, &headers).await?;
            resource_list(&s, &g, $kind, None, &q, &uri).await
        }

        pub async fn $per(
            State(s): State<ApiState>,
            token: BoundToken,
            headers: HeaderMap,
            uri: OriginalUri,
            Path(id): Path<String>,
            Query(q): Query<StatementQuery>,
        ) -> Result<Response, ObError> {
            let g = grant(&s, &token, &headers).await?;
            resource_list(&s, &g, $kind, Some(&id), &q, &uri).await
        }
    };
}

resource_handlers!(
    beneficiaries,
    account_beneficiaries,
    ResourceKind::Beneficiary
);
resource_handlers!(
    direct_debits,
    account_direct_debits,
    ResourceKind::DirectDebit
);
resource_handlers!(
    standing_orders,
    account_standing_orders,
    ResourceKind::StandingOrder
);
resource_handlers!(
    scheduled_payments,
    account_scheduled_payments,
    ResourceKind::ScheduledPayment
);
resource_handlers!(statements, account_statements, ResourceKind::Statement);
resource_handlers!(products, account_product, ResourceKind::Product);
resource_handlers!(offers, account_offers, ResourceKind::Offer);

/// `/accounts/{AccountId}/parties`: every party of the account (AIS-26).
pub async fn account_parties(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    resource_list(
        &s,
        &g,
        ResourceKind::Party,
        Some(&id),
        &StatementQuery::default(),
        &uri,
    )
    .await
}

async fn one_statement(
    s: &ApiState,
    g: &Grant,
    account: &str,
    sid: &str,
) -> Result<Value, ObError> {
    accounts(s, g, Some(account)).await?;
    let r = s
        .core
        .resource(account, ResourceKind::Statement, sid)
        .await
        .map_err(core_error)?
        .ok_or_else(|| {
            ObError::bad_request(
                ObErrorCode::ResourceNotFound,
                "no such statement",
                Some("StatementId"),
            )
        })?;
    let (wf, wt) = g.window();
    let (start, end) = statement_bounds(&r.body);
    if start < wf || end >= wt {
        // Outside the consent's window the statement does not exist for
        // this consent (AIS-17).
        return Err(ObError::bad_request(
            ObErrorCode::ResourceNotFound,
            "no such statement",
            Some("StatementId"),
        ));
    }
    Ok(r.body)
}

pub async fn statement(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
    Path((account, sid)): Path<(String, String)>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    g.require(&["ReadStatementsBasic", "ReadStatementsDetail"])?;
    let body = one_statement(&s, &g, &account, &sid).await?;
    Ok(envelope(
        json!({ "Statement": [shape(&g, ResourceKind::Statement, body)] }),
        self_url(&s, &uri),
        json!({ "TotalPages": 1 }),
    ))
}

/// The statement as CSV (AIS-24: the file type is the ASPSP's to
/// document); needs ReadStatementsDetail.
pub async fn statement_file(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path((account, sid)): Path<(String, String)>,
) -> Result<Response, ObError> {
    common::require(&token, GrantKind::AuthorizationCode, "accounts")?;
    common::check_fapi_headers(&headers)?;
    let g = grant_without_accept(&s, &token).await?;
    g.require(&["ReadStatementsDetail"])?;
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accept.split(',').any(|p| {
            matches!(
                p.split(';').next().unwrap_or("").trim(),
                "text/csv" | "text/*" | "*/*"
            )
        })
    {
        return Err(ObError::not_acceptable());
    }
    let body = one_statement(&s, &g, &account, &sid).await?;
    let (start, end) = statement_bounds(&body);
    let filter = TxFilter {
        from_ms: start,
        to_ms: end + 1,
        credits: true,
        debits: true,
    };
    // The whole period, a core page at a time.
    let mut txs = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .core
            .transactions(
                &account,
                &TxPageRequest {
                    filter: filter.clone(),
                    cursor: cursor.take(),
                    direction: Direction::Forward,
                    limit: CORE_PAGE,
                },
            )
            .await
            .map_err(core_error)?;
        let full = page.len() as u32 == CORE_PAGE;
        cursor = page.last().map(|e| e.cursor.clone());
        txs.extend(page.into_iter().map(|e| e.transaction));
        if !full || txs.len() > STATEMENT_FILE_MAX {
            break;
        }
    }
    let mut csv = String::from(
        "BookingDateTime,TransactionId,CreditDebitIndicator,Amount,Currency,TransactionInformation\n",
    );
    for t in txs.iter().filter(|t| t.status == "Booked") {
        let info = t
            .information
            .clone()
            .unwrap_or_default()
            .replace('"', "\"\"");
        csv.push_str(&format!(
            "{},{},{},{},{},\"{}\"\n",
            format_ms(t.booking_ms),
            t.transaction_id,
            t.credit_debit.as_str(),
            format_minor(t.amount_minor),
            t.currency,
            info
        ));
    }
    let mut resp = csv.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(resp)
}

async fn grant_without_accept(s: &ApiState, token: &BoundToken) -> Result<Grant, ObError> {
    grant(s, token, &HeaderMap::new()).await
}

pub async fn psu_party(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    g.require(&["ReadPartyPSU"])?;
    let psu = s
        .core
        .customer(&g.psu_id)
        .await
        .map_err(core_error)?
        .ok_or_else(ObError::unauthorized)?;
    Ok(envelope(
        json!({ "Party": psu.party }),
        self_url(&s, &uri),
        json!({}),
    ))
}

pub async fn account_party(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    g.require(&["ReadParty"])?;
    accounts(&s, &g, Some(&id)).await?;
    let parties = s
        .core
        .resources(&id, ResourceKind::Party)
        .await
        .map_err(core_error)?;
    let party = parties
        .into_iter()
        .next()
        .map(|p| p.body)
        .unwrap_or_else(|| json!({}));
    Ok(envelope(
        json!({ "Party": party }),
        self_url(&s, &uri),
        json!({}),
    ))
}

// ---- transactions ----

#[derive(Deserialize, Default)]
pub struct TxQuery {
    #[serde(rename = "fromBookingDateTime")]
    from: Option<String>,
    #[serde(rename = "toBookingDateTime")]
    to: Option<String>,
    /// Opaque page token (COMMON-48: names are the ASPSP's).
    page: Option<String>,
}

/// What a page link carries; sealed so it cannot be edited, and bound to
/// the consent, the account and the endpoint path that made it
/// ([`page_binding`]), so it works only for the token that listed it, and
/// an account's page cannot be replayed on a statement's (whose period is
/// narrower).
#[derive(Serialize, Deserialize, Clone)]
struct PageToken {
    /// The window; an open side is left out of the link.
    #[serde(default = "open_from", skip_serializing_if = "is_open_from")]
    f: i64,
    #[serde(default = "open_to", skip_serializing_if = "is_open_to")]
    t: i64,
    /// `n` next (after cursor), `p` previous (before cursor).
    d: char,
    /// The core's cursor; none: from the start (`n`) or the end (`p`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cur: Option<String>,
    n: u32,
    tp: i64,
    total: i64,
    /// Page number (1-based) this token opens.
    pg: i64,
    /// Booking times of the account's first and last entries (AIS-32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lo: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hi: Option<i64>,
}

fn open_from() -> i64 {
    i64::MIN
}

fn open_to() -> i64 {
    i64::MAX
}

fn is_open_from(f: &i64) -> bool {
    *f == i64::MIN
}

fn is_open_to(t: &i64) -> bool {
    *t == i64::MAX
}

/// A page link of the first format ([`links::open_first_format`]), which
/// carried its binding.
#[derive(Deserialize)]
struct FirstFormatPageToken {
    c: String,
    a: String,
    e: String,
    #[serde(flatten)]
    rest: PageToken,
}

/// What a page link is bound to: consent, account, endpoint path.
fn page_binding<'a>(consent: &'a str, account: &'a str, path: &'a str) -> [&'a str; 3] {
    [consent, account, path]
}

/// Opens a transactions page link made for `bound` ([`page_binding`]),
/// whose `binding` is `sealed`.
fn open_page_token(
    key: &hmac::Key,
    sealed: &links::Binding,
    bound: [&str; 3],
    link: &str,
) -> Option<PageToken> {
    sealed.open(link).or_else(|| {
        links::open_first_format::<FirstFormatPageToken>(key, link)
            .filter(|t| [t.c.as_str(), t.a.as_str(), t.e.as_str()] == bound)
            .map(|t| t.rest)
    })
}

fn tx_filter(g: &Grant, q_from: Option<i64>, q_to: Option<i64>) -> TxFilter {
    let (wf, wt) = g.window();
    TxFilter {
        from_ms: wf.max(q_from.unwrap_or(i64::MIN)),
        to_ms: wt.min(q_to.map_or(i64::MAX, |t| t + 1)),
        // AIS-22: only the sides the consent allows.
        credits: g.has("ReadTransactionsCredits"),
        debits: g.has("ReadTransactionsDebits"),
    }
}

pub async fn account_transactions(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TxQuery>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    let detail = g.level("ReadTransactionsBasic", "ReadTransactionsDetail")?;
    if !g.consent.accounts.contains(&id) {
        // AIS-25: 400 if the account does not exist, else 403. An account
        // of the consent is checked for existence by the page's own call.
        accounts(&s, &g, Some(&id)).await?;
        return Err(not_in_consent());
    }
    let path = format!("{AISP}/accounts/{id}/transactions");
    transactions_page(&s, &g, &id, detail, &q, &path, None).await
}

pub async fn statement_transactions(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    Path((id, sid)): Path<(String, String)>,
    Query(q): Query<TxQuery>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    let detail = g.level("ReadTransactionsBasic", "ReadTransactionsDetail")?;
    let body = one_statement(&s, &g, &id, &sid).await?;
    let (start, end) = statement_bounds(&body);
    let path = format!("{AISP}/accounts/{id}/statements/{sid}/transactions");
    transactions_page(&s, &g, &id, detail, &q, &path, Some((start, end + 1))).await
}

/// One page of an account's transactions (AIS-29, AIS-33, COMMON-45..48).
/// The first page asks the core for the count and the period once; later
/// links carry them, so a deep page costs one call like the first.
async fn transactions_page(
    s: &ApiState,
    g: &Grant,
    account: &str,
    detail: bool,
    q: &TxQuery,
    path: &str,
    bound: Option<(i64, i64)>,
) -> Result<Response, ObError> {
    let here = page_binding(&g.consent.consent_id, account, path);
    let binding = links::Binding::new(&s.link_key, &here);
    let page = open_page(q.page.as_ref(), |p| {
        open_page_token(&s.link_key, &binding, here, p)
    })?;
    let mut filter = tx_filter(
        g,
        query_date(q.from.as_ref(), "fromBookingDateTime")?,
        query_date(q.to.as_ref(), "toBookingDateTime")?,
    );
    if let Some(p) = &page {
        filter.from_ms = p.f;
        filter.to_ms = p.t;
    }
    // Applied after the link's window too: a statement never shows rows
    // outside its period, whatever a link says.
    if let Some((f, t)) = bound {
        filter.from_ms = filter.from_ms.max(f);
        filter.to_ms = filter.to_ms.min(t);
    }
    let size = s.page_size;
    let request = match &page {
        None => TxPageRequest {
            filter: filter.clone(),
            cursor: None,
            direction: Direction::Forward,
            limit: size as u32,
        },
        Some(p) => TxPageRequest {
            filter: filter.clone(),
            cursor: p.cur.clone(),
            direction: if p.d == 'p' {
                Direction::Backward
            } else {
                Direction::Forward
            },
            limit: p.n.clamp(1, size as u32),
        },
    };
    // One call: the account's existence, the page, and on a first page the
    // count and period (later links carry them). The transactions are
    // written into the body as the core hands them over.
    let mut body = tx_body::PageWriter::new(request.limit as usize, detail, g.has("ReadPAN"));
    let fetched = s
        .core
        .transaction_page(account, &request, page.is_none(), &mut body)
        .await
        .map_err(|e| match e {
            // The core no longer knows the position the link holds.
            aspen_core::CoreError::BadRequest(_) if request.cursor.is_some() => {
                ObError::bad_request(
                    ObErrorCode::FieldInvalid,
                    "the page link is no longer valid; start again from the first page",
                    Some("page"),
                )
            }
            e => core_error(e),
        })?
        .ok_or_else(no_such_account)?;
    let (total, pages, lo, hi) = match (&page, fetched.summary) {
        (Some(p), _) => (p.total, p.tp, p.lo, p.hi),
        (None, sum) => {
            let sum = sum.ok_or_else(|| {
                core_error(aspen_core::CoreError::BadResponse(
                    "a first page without its summary".into(),
                ))
            })?;
            (
                sum.count,
                ((sum.count + size - 1) / size).max(1),
                sum.first_booking_ms,
                sum.last_booking_ms,
            )
        }
    };
    let page_no = page.as_ref().map_or(1, |p| p.pg);
    // Concatenated, not formatted: format! for a page's five links was 1.3%
    // of its server CPU (issue 15, twenty-fourth pass).
    let first_link = [s.base_url.as_str(), path].concat();
    let link_prefix = [first_link.as_str(), "?page="].concat();
    let token = |d: char, cur: Option<&str>, n: i64, pg: i64| {
        let t = PageToken {
            f: filter.from_ms,
            t: filter.to_ms,
            d,
            cur: cur.map(str::to_string),
            n: n as u32,
            tp: pages,
            total,
            pg,
            lo,
            hi,
        };
        binding.link(&link_prefix, &t)
    };
    let self_link = match &q.page {
        Some(p) => [link_prefix.as_str(), p].concat(),
        None => {
            let mut qs = Vec::new();
            if let Some(f) = &q.from {
                qs.push(format!("fromBookingDateTime={}", urlencode(f)));
            }
            if let Some(t) = &q.to {
                qs.push(format!("toBookingDateTime={}", urlencode(t)));
            }
            if qs.is_empty() {
                first_link
            } else {
                format!("{first_link}?{}", qs.join("&"))
            }
        }
    };
    let last_size = if total % size == 0 {
        size.min(total.max(1))
    } else {
        total % size
    };
    let links_obj = tx_body::PageLinks {
        self_link,
        // First carries the original filters through a token (COMMON-48).
        first: token('n', None, size, 1),
        prev: fetched
            .first_cursor
            .as_deref()
            .filter(|_| page_no > 1)
            .map(|first| token('p', Some(first), size, page_no - 1)),
        next: fetched
            .last_cursor
            .as_deref()
            .filter(|_| page_no < pages)
            .map(|last| token('n', Some(last), size, page_no + 1)),
        last: Some(token('p', None, last_size, pages)),
    };
    // AIS-32: the period the data covers (history ∩ consent window ∩ filter).
    let period = lo.zip(hi).and_then(|(lo, hi)| {
        let from = lo.max(filter.from_ms);
        let to = hi.min(filter.to_ms.saturating_sub(1));
        (from <= to).then(|| (format_ms(from), format_ms(to)))
    });
    let (first_available, last_available) = period.unzip();
    let meta = tx_body::PageMeta {
        total_pages: pages,
        first_available,
        last_available,
    };
    Ok(aspen_http::json::bytes(body.finish(
        fetched.descending,
        &links_obj,
        &meta,
    )))
}

/// Opens a page link with `open`: it must be sealed by this bank for the
/// request's consent (and account and endpoint), or it is refused.
fn open_page<T>(
    raw: Option<&String>,
    open: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ObError> {
    raw.map(|p| {
        open(p).ok_or_else(|| {
            ObError::bad_request(
                ObErrorCode::FieldInvalid,
                "the page link is not valid",
                Some("page"),
            )
        })
    })
    .transpose()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)])
        .unwrap_or_default()
        .trim_start_matches("v=")
        .to_string()
}

/// Where a `/transactions` walk across the consent's accounts stands:
/// which account, and the core's cursor inside it.
/// Bound to the consent, as [`PageToken`] is.
#[derive(Serialize, Deserialize)]
struct BulkToken {
    #[serde(default = "open_from", skip_serializing_if = "is_open_from")]
    f: i64,
    #[serde(default = "open_to", skip_serializing_if = "is_open_to")]
    t: i64,
    ai: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cur: Option<String>,
    tp: i64,
    pg: i64,
}

/// A bulk link of the first format, which carried its consent.
#[derive(Deserialize)]
struct FirstFormatBulkToken {
    c: String,
    #[serde(flatten)]
    rest: BulkToken,
}

/// `/transactions`: the consent's accounts one after another, each in
/// booking order, paged with the core's cursors like the per-account
/// endpoint (forward links: Self, First, Next).
pub async fn bulk_transactions(
    State(s): State<ApiState>,
    token: BoundToken,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ObError> {
    let g = grant(&s, &token, &headers).await?;
    let detail = g.level("ReadTransactionsBasic", "ReadTransactionsDetail")?;
    let accts = accounts(&s, &g, None).await?;
    let binding = links::Binding::new(&s.link_key, &[&g.consent.consent_id]);
    let page = open_page(q.get("page"), |p| {
        binding.open::<BulkToken>(p).or_else(|| {
            links::open_first_format::<FirstFormatBulkToken>(&s.link_key, p)
                .filter(|t| t.c == g.consent.consent_id)
                .map(|t| t.rest)
        })
    })?;
    let mut filter = tx_filter(
        &g,
        query_date(q.get("fromBookingDateTime"), "fromBookingDateTime")?,
        query_date(q.get("toBookingDateTime"), "toBookingDateTime")?,
    );
    if let Some(p) = &page {
        filter.from_ms = p.f;
        filter.to_ms = p.t;
    }
    let size = s.page_size;
    let pages = match &page {
        Some(p) => p.tp,
        None => {
            let mut total = 0;
            for a in &accts {
                total += s
                    .core
                    .transaction_summary(&a.account_id, &filter)
                    .await
                    .map_err(core_error)?
                    .count;
            }
            ((total + size - 1) / size).max(1)
        }
    };
    let (mut ai, mut cursor, page_no) = match &page {
        Some(p) => (p.ai, p.cur.clone(), p.pg),
        None => (0, None, 1),
    };
    let mut list = Vec::new();
    let mut last: Option<(usize, String)> = None;
    while ai < accts.len() && (list.len() as i64) < size {
        let want = size - list.len() as i64;
        let rows = s
            .core
            .transactions(
                &accts[ai].account_id,
                &TxPageRequest {
                    filter: filter.clone(),
                    cursor: cursor.take(),
                    direction: Direction::Forward,
                    limit: want as u32,
                },
            )
            .await
            .map_err(core_error)?;
        if let Some(e) = rows.last() {
            last = Some((ai, e.cursor.clone()));
            cursor = Some(e.cursor.clone());
        }
        let exhausted = (rows.len() as i64) < want;
        list.extend(rows);
        if exhausted {
            ai += 1;
            cursor = None;
        }
    }
    let base = format!("{}{AISP}/transactions?page=", s.base_url);
    let seal = |ai: usize, cur: Option<String>, pg: i64| {
        let t = BulkToken {
            f: filter.from_ms,
            t: filter.to_ms,
            ai,
            cur,
            tp: pages,
            pg,
        };
        binding.link(&base, &t)
    };
    let next = last
        .filter(|_| page_no < pages)
        .map(|(ai, c)| seal(ai, Some(c), page_no + 1));
    let links = tx_body::PageLinks {
        self_link: self_url(&s, &uri),
        first: seal(0, None, 1),
        prev: None,
        next,
        last: None,
    };
    let meta = tx_body::PageMeta {
        total_pages: pages,
        first_available: None,
        last_available: None,
    };
    let body = tx_body::page(
        list.iter().map(|e| &e.transaction),
        detail,
        g.has("ReadPAN"),
        &links,
        &meta,
    );
    Ok(aspen_http::json::bytes(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pg: i64) -> PageToken {
        PageToken {
            f: i64::MIN,
            t: i64::MAX,
            d: 'n',
            cur: Some("1779401088000.blk-000000000096".into()),
            n: 100,
            tp: 104,
            total: 10_376,
            pg,
            lo: Some(1_779_235_200_000),
            hi: None,
        }
    }

    const PATH: &str = "/open-banking/v3.1/aisp/accounts/acc-1/transactions";

    fn open(key: &hmac::Key, bound: [&str; 3], link: &str) -> Option<PageToken> {
        open_page_token(key, &links::Binding::new(key, &bound), bound, link)
    }

    fn seal(key: &hmac::Key, bound: [&str; 3], t: &PageToken) -> String {
        links::Binding::new(key, &bound).seal(t)
    }

    #[test]
    fn a_page_link_opens_for_its_consent_account_and_endpoint_only() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let here = page_binding("aac-1", "acc-1", PATH);
        let link = seal(&key, here, &state(2));
        let opened = open(&key, here, &link).unwrap();
        assert_eq!((opened.pg, opened.cur, opened.n), (2, state(2).cur, 100));
        // Open sides and absent values are left out, and come back.
        assert_eq!(
            (opened.f, opened.t, opened.lo, opened.hi),
            (i64::MIN, i64::MAX, state(2).lo, None)
        );
        let closed = PageToken {
            f: -5,
            t: 10,
            cur: None,
            hi: Some(7),
            ..state(1)
        };
        let opened = open(&key, here, &seal(&key, here, &closed)).unwrap();
        assert_eq!(
            (opened.f, opened.t, opened.cur, opened.hi),
            (-5, 10, None, Some(7))
        );
        for elsewhere in [
            page_binding("aac-2", "acc-1", PATH),
            page_binding("aac-1", "acc-2", PATH),
            page_binding(
                "aac-1",
                "acc-1",
                "/open-banking/v3.1/aisp/accounts/acc-1/statements/s-1/transactions",
            ),
        ] {
            assert!(open(&key, elsewhere, &link).is_none(), "{elsewhere:?}");
        }
    }

    #[test]
    fn a_first_format_page_link_still_opens_where_it_was_made() {
        // Made by a node before the twenty-fourth pass of issue 15: the
        // binding inside the sealed state.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let mut old = serde_json::to_value(state(3)).unwrap();
        for (k, v) in [("c", "aac-1"), ("a", "acc-1"), ("e", PATH)] {
            old[k] = json!(v);
        }
        let link = links::seal_first_format(&key, &old);
        let opened = open(&key, page_binding("aac-1", "acc-1", PATH), &link).unwrap();
        assert_eq!(
            (opened.pg, opened.total, opened.lo),
            (3, 10_376, state(3).lo)
        );
        for elsewhere in [
            page_binding("aac-2", "acc-1", PATH),
            page_binding("aac-1", "acc-2", PATH),
            page_binding("aac-1", "acc-1", "/open-banking/v3.1/aisp/transactions"),
        ] {
            assert!(open(&key, elsewhere, &link).is_none(), "{elsewhere:?}");
        }
    }

    #[test]
    fn a_page_link_is_under_half_what_it_was() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let consent = "aac-52d7b22b-b5d4-412e-a5bd-3a79c9818727";
        let account = "acc-f3453fc625799188ae90";
        let path = format!("/open-banking/v3.1/aisp/accounts/{account}/transactions");
        let now = seal(&key, page_binding(consent, account, &path), &state(2));
        let mut old = serde_json::to_value(state(2)).unwrap();
        for (k, v) in [("c", consent), ("a", account), ("e", path.as_str())] {
            old[k] = json!(v);
        }
        let before = links::seal_first_format(&key, &old);
        assert!(
            now.len() * 2 < before.len(),
            "{} vs {}",
            now.len(),
            before.len()
        );
    }
}
