//! A Postman v2.1 collection and environment for the kit's bank, for
//! those who prefer clicking. Postman cannot make FAPI's signatures, so
//! the requests take them from variables the CLI fills in
//! (`aspen tpp token --print`, `aspen tpp sign FILE`).

use serde_json::{Value, json};

use crate::{Kit, State};

pub const SCHEMA: &str = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json";

const DESCRIPTION: &str = "Open Banking UK v3.1 flows (AIS, PIS, CoF) against the bank in the kit.\n\n\
mTLS: add the kit's transport certificate (`transport.pem`, key `transport-key.pem`) for the \
bank's host under Settings → Certificates → Client certificates, and its `ca.pem` under CA \
certificates; without them the bank refuses the TLS handshake.\n\n\
Signatures and assertions are made by the CLI, not by Postman:\n\
- `aspen tpp token --scope accounts --print` prints a client-credentials token for `cc_token`;\n\
- `aspen tpp authorize --consent ID` prints the authorisation URL; after sign-in, \
`aspen tpp exchange --code 'REDIRECT_URL' --print` prints the access token for `access_token`;\n\
- `aspen tpp sign FILE` prints the `x-jws-signature` for a body saved in FILE (the exact bytes \
Postman sends, so paste the body into the file unchanged) for `jws_signature`.";

fn raw_url(path: &str) -> Value {
    let full = format!("{{{{server}}}}{path}");
    let (p, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut url = json!({
        "raw": full,
        "host": ["{{server}}"],
        "path": p.trim_start_matches('/').split('/').collect::<Vec<_>>(),
    });
    if let Some(q) = query {
        url["query"] = q
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
    }
    url
}

fn header(key: &str, value: &str) -> Value {
    json!({"key": key, "value": value, "type": "text"})
}

fn request(
    name: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut headers = vec![header("x-fapi-interaction-id", "{{$guid}}")];
    if let Some(t) = token {
        headers.push(header("Authorization", &format!("Bearer {{{{{t}}}}}")));
    }
    let signed = method == "POST" && path.contains("/pisp/");
    if body.is_some() {
        headers.push(header("Content-Type", "application/json"));
    }
    if signed {
        headers.push(header("x-jws-signature", "{{jws_signature}}"));
        headers.push(header("x-idempotency-key", "{{$guid}}"));
    }
    let mut req = json!({
        "method": method,
        "header": headers,
        "url": raw_url(path),
    });
    if let Some(b) = body {
        req["body"] = json!({
            "mode": "raw",
            "raw": serde_json::to_string_pretty(&b).unwrap_or_default(),
            "options": {"raw": {"language": "json"}},
        });
    }
    json!({ "name": name, "request": req })
}

fn folder(name: &str, description: &str, items: Vec<Value>) -> Value {
    json!({ "name": name, "description": description, "item": items })
}

/// The collection.
pub fn collection(kit: &Kit) -> Value {
    let ob = crate::client::OB_BASE;
    let initiation = json!({
        "InstructionIdentification": "INSTR-0001",
        "EndToEndIdentification": "E2E-0001",
        "InstructedAmount": { "Amount": "10.00", "Currency": "GBP" },
        "CreditorAccount": {
            "SchemeName": "UK.OBIE.SortCodeAccountNumber",
            "Identification": "08080021325698",
            "Name": "ACME Inc",
        },
        "RemittanceInformation": { "Reference": "INV-0001" },
    });
    let risk = json!({ "PaymentContextCode": "PartyToParty" });
    json!({
        "info": {
            "_postman_id": uuid::Uuid::new_v4().to_string(),
            "name": format!("aspen TPP — {} ({})", kit.org_name.as_deref().unwrap_or(&kit.software_id), kit.server),
            "description": DESCRIPTION,
            "schema": SCHEMA,
        },
        "item": [
            folder("Discovery", "The bank's OpenID configuration and keys (no client certificate needed).", vec![
                request("OpenID configuration", "GET", "/.well-known/openid-configuration", None, None),
                request("JWKS", "GET", "/jwks", None, None),
            ]),
            folder("Accounts (AIS)", "Create the consent with `cc_token` (scope accounts), authorise it with the CLI, then read with `access_token`.", vec![
                request("Create account-access consent", "POST", &format!("{ob}/aisp/account-access-consents"), Some("cc_token"), Some(json!({
                    "Data": { "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsCredits", "ReadTransactionsDebits", "ReadTransactionsDetail"] },
                    "Risk": {},
                }))),
                request("Get account-access consent", "GET", &format!("{ob}/aisp/account-access-consents/{{{{consent_id}}}}"), Some("cc_token"), None),
                request("Accounts", "GET", &format!("{ob}/aisp/accounts"), Some("access_token"), None),
                request("Balances", "GET", &format!("{ob}/aisp/accounts/{{{{account_id}}}}/balances"), Some("access_token"), None),
                request("Transactions", "GET", &format!("{ob}/aisp/accounts/{{{{account_id}}}}/transactions"), Some("access_token"), None),
            ]),
            folder("Domestic payment (PIS)", "Every POST needs `jws_signature` over its exact body: `aspen tpp sign FILE`.", vec![
                request("Create domestic payment consent", "POST", &format!("{ob}/pisp/domestic-payment-consents"), Some("cc_token"), Some(json!({
                    "Data": { "Initiation": initiation }, "Risk": risk,
                }))),
                request("Get domestic payment consent", "GET", &format!("{ob}/pisp/domestic-payment-consents/{{{{consent_id}}}}"), Some("cc_token"), None),
                request("Funds confirmation", "GET", &format!("{ob}/pisp/domestic-payment-consents/{{{{consent_id}}}}/funds-confirmation"), Some("access_token"), None),
                request("Create domestic payment", "POST", &format!("{ob}/pisp/domestic-payments"), Some("access_token"), Some(json!({
                    "Data": { "ConsentId": "{{consent_id}}", "Initiation": initiation }, "Risk": risk,
                }))),
                request("Get domestic payment", "GET", &format!("{ob}/pisp/domestic-payments/{{{{payment_id}}}}"), Some("cc_token"), None),
            ]),
            folder("Confirmation of funds (CBPII)", "The consent with `cc_token` (scope fundsconfirmations); the confirmation with the consent's `access_token`.", vec![
                request("Create funds-confirmation consent", "POST", &format!("{ob}/cbpii/funds-confirmation-consents"), Some("cc_token"), Some(json!({
                    "Data": { "DebtorAccount": { "SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "{{debtor_account}}" } },
                }))),
                request("Confirm funds", "POST", &format!("{ob}/cbpii/funds-confirmations"), Some("access_token"), Some(json!({
                    "Data": { "ConsentId": "{{consent_id}}", "Reference": "Purchase01", "InstructedAmount": { "Amount": "20.00", "Currency": "GBP" } },
                }))),
            ]),
        ],
    })
}

/// The environment: the bank and what the kit and its state know.
pub fn environment(kit: &Kit, state: &State) -> Value {
    let var = |k: &str, v: &str, secret: bool| json!({"key": k, "value": v, "type": if secret { "secret" } else { "default" }, "enabled": true});
    let consent = state.last_consent.clone().unwrap_or_default();
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "name": format!("aspen — {}", kit.server),
        "values": [
            var("server", &kit.server, false),
            var("client_id", state.client_id.as_deref().unwrap_or(""), false),
            var("org_id", &kit.org_id, false),
            var("software_id", &kit.software_id, false),
            var("aspsp_org_id", kit.aspsp_org_id.as_deref().unwrap_or(""), false),
            var("redirect_uri", kit.redirect_uris.first().map(String::as_str).unwrap_or(""), false),
            var("cc_token", "", true),
            var("access_token", "", true),
            var("jws_signature", "", true),
            var("consent_id", &consent, false),
            var("account_id", "", false),
            var("payment_id", "", false),
            var("debtor_account", "", false),
        ],
        "_postman_variable_scope": "environment",
    })
}
