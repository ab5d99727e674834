//! Issue 13, Confirmation of Funds (COF-1..13): a CBPII creates a consent
//! for one account, the PSU authorises it, the CBPII asks yes/no questions
//! about amounts, the PSU revokes it in the dashboard. Every body is
//! validated against `confirmation-funds-openapi.yaml`.

mod common;

use common::*;
use serde_json::{Value, json};

const P: &str = "/open-banking/v3.1/cbpii";
const SCOPE: &str = "openid fundsconfirmations";

struct Cbpii {
    c: Client,
    cc: String,
}

impl TestServer {
    async fn cbpii(&self, name: &str) -> Cbpii {
        let c = self
            .client_with(
                name,
                json!({"aspen_headless": true, "scope": "openid accounts fundsconfirmations"}),
            )
            .await;
        let cc = self.cc_token(&c.tpp, &c.id, "fundsconfirmations").await;
        Cbpii { c, cc }
    }

    async fn cof(
        &self,
        who: &Cbpii,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .kit_client(&who.c.tpp.dir)
            .request(method, self.url(&format!("{P}{path}")))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Headless authorisation: the token response (access and refresh).
    async fn authorise_cof(&self, who: &Cbpii, consent: &str) -> Value {
        let f = self.headless_fragment(&who.c, consent, SCOPE).await;
        self.tokens(&who.c, &f["code"], &who.c.redirect).await
    }
}

/// rora's first account with a sort code, as a CBPII names it.
async fn debtor(s: &TestServer) -> (Value, aspen_domain::Account) {
    let store = &s.server.store;
    let rora = store.psu_by_username("rora").await.unwrap().unwrap();
    let account = store
        .accounts_for_psu(&rora.id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| {
            a.identifications
                .iter()
                .any(|i| i.scheme_name == "UK.OBIE.SortCodeAccountNumber")
        })
        .expect("an account with a sort code");
    let id = account
        .identifications
        .iter()
        .find(|i| i.scheme_name == "UK.OBIE.SortCodeAccountNumber")
        .unwrap();
    (
        json!({ "SchemeName": id.scheme_name, "Identification": id.identification, "Name": "Rora" }),
        account,
    )
}

fn confirmation(consent: &str, amount: &str, currency: &str) -> Value {
    json!({ "Data": { "ConsentId": consent, "Reference": "Purchase01",
        "InstructedAmount": { "Amount": amount, "Currency": currency } } })
}

fn codes(body: &Value) -> Vec<(String, String)> {
    body["Errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["ErrorCode"].as_str().unwrap_or("").to_string(),
                        e["Path"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_cbpii_asks_yes_or_no_and_never_sees_a_balance() {
    let s = start_sandbox().await;
    let api = OpenApi::load("confirmation-funds-openapi.yaml");
    let b = s.cbpii("cardco").await;
    let (debtor_account, account) = debtor(&s).await;
    let expiry = (chrono::Utc::now() + chrono::Duration::days(90))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let body = json!({ "Data": { "DebtorAccount": debtor_account, "ExpirationDateTime": expiry } });
    // COF-1, COF-13.1: no signature, a CC token, AwaitingAuthorisation.
    let (st, consent) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::POST,
            "/funds-confirmation-consents",
            Some(&body),
        )
        .await;
    assert_eq!(st, 201, "{consent:#}");
    api.validate("/funds-confirmation-consents", "post", "201", &consent);
    assert_eq!(consent["Data"]["Status"], "AwaitingAuthorisation");
    assert_eq!(consent["Data"]["DebtorAccount"], debtor_account);
    assert_eq!(consent["Data"]["ExpirationDateTime"], expiry);
    let id = consent["Data"]["ConsentId"].as_str().unwrap().to_string();
    let (st, got) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::GET,
            &format!("/funds-confirmation-consents/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 200);
    api.validate(
        "/funds-confirmation-consents/{ConsentId}",
        "get",
        "200",
        &got,
    );

    let t = s.authorise_cof(&b, &id).await;
    let ac = t["access_token"].as_str().unwrap().to_string();
    let stored = s.server.store.consent(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, "Authorised");
    assert_eq!(
        stored.accounts,
        vec![account.account_id.clone()],
        "the named account only"
    );

    // COF-13.3: yes for what the account can cover, no beyond it.
    let available = aspen_domain::format_minor(account.available_minor());
    let too_much = aspen_domain::format_minor(account.available_minor() + 1);
    for (amount, yes) in [
        ("1.00", true),
        (available.as_str(), true),
        (too_much.as_str(), false),
    ] {
        let (st, r) = s
            .cof(
                &b,
                &ac,
                reqwest::Method::POST,
                "/funds-confirmations",
                Some(&confirmation(&id, amount, &account.currency)),
            )
            .await;
        assert_eq!(st, 201, "{r:#}");
        api.validate("/funds-confirmations", "post", "201", &r);
        assert_eq!(r["Data"]["FundsAvailable"], yes, "{amount}");
        // COF-11: the answer and the echo, nothing about the balance.
        let mut keys: Vec<&String> = r["Data"].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "ConsentId",
                "CreationDateTime",
                "FundsAvailable",
                "FundsConfirmationId",
                "InstructedAmount",
                "Reference"
            ]
        );
        assert!(!r.to_string().contains(&available) || amount == available);
    }
    // COF-13.7: the same request twice is two confirmations.
    let same = confirmation(&id, "2.00", &account.currency);
    let (_, one) = s
        .cof(
            &b,
            &ac,
            reqwest::Method::POST,
            "/funds-confirmations",
            Some(&same),
        )
        .await;
    let (_, two) = s
        .cof(
            &b,
            &ac,
            reqwest::Method::POST,
            "/funds-confirmations",
            Some(&same),
        )
        .await;
    assert_ne!(
        one["Data"]["FundsConfirmationId"],
        two["Data"]["FundsConfirmationId"]
    );
    // COF-13.4: another currency.
    let other = if account.currency == "GBP" {
        "EUR"
    } else {
        "GBP"
    };
    let (st, e) = s
        .cof(
            &b,
            &ac,
            reqwest::Method::POST,
            "/funds-confirmations",
            Some(&confirmation(&id, "1.00", other)),
        )
        .await;
    assert_eq!(st, 400);
    api.validate("/funds-confirmations", "post", "400", &e);
    assert_eq!(
        codes(&e),
        [(
            "UK.OBIE.Unsupported.Currency".to_string(),
            "Data.InstructedAmount.Currency".to_string()
        )]
    );
    // COF-3: a CC token cannot confirm funds; an AC token cannot read consents.
    let (st, _) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::POST,
            "/funds-confirmations",
            Some(&same),
        )
        .await;
    assert_eq!(st, 401);
    let (st, _) = s
        .cof(
            &b,
            &ac,
            reqwest::Method::GET,
            &format!("/funds-confirmation-consents/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 401);

    // COF-13.5: the token is for consent A, the body names consent B.
    let (_, other_consent) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::POST,
            "/funds-confirmation-consents",
            Some(&body),
        )
        .await;
    let other_id = other_consent["Data"]["ConsentId"].as_str().unwrap();
    let (st, e) = s
        .cof(
            &b,
            &ac,
            reqwest::Method::POST,
            "/funds-confirmations",
            Some(&confirmation(other_id, "1.00", &account.currency)),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(codes(&e)[0].0, "UK.OBIE.Resource.ConsentMismatch");

    // Another CBPII sees none of it.
    let nosy = s.cbpii("nosyco").await;
    let (st, e) = s
        .cof(
            &nosy,
            &nosy.cc,
            reqwest::Method::GET,
            &format!("/funds-confirmation-consents/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(codes(&e)[0].0, "Aspen.Forbidden.OtherTpp");

    // AUTH-54: refresh tokens as for AIS; the new token works.
    let r = s.refresh(&b.c, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let ac2 = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = s
        .cof(
            &b,
            &ac2,
            reqwest::Method::POST,
            "/funds-confirmations",
            Some(&same),
        )
        .await;
    assert_eq!(st, 201);

    // COF-13.6: DELETE ends it; the token stops working, the consent is gone.
    let (st, _) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::DELETE,
            &format!("/funds-confirmation-consents/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .cof(
            &b,
            &ac2,
            reqwest::Method::POST,
            "/funds-confirmations",
            Some(&same),
        )
        .await;
    assert_eq!(st, 401);
    let (st, e) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::GET,
            &format!("/funds-confirmation-consents/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 400);
    api.validate("/funds-confirmation-consents/{ConsentId}", "get", "400", &e);
    assert_eq!(codes(&e)[0].0, "UK.OBIE.Resource.NotFound");
    s.stop().await;
}

#[tokio::test]
async fn consent_requests_are_checked() {
    let s = start_sandbox().await;
    let api = OpenApi::load("confirmation-funds-openapi.yaml");
    let b = s.cbpii("strictco").await;
    let (debtor_account, _) = debtor(&s).await;
    let cases = [
        (
            json!({ "Data": {} }),
            "UK.OBIE.Field.Missing",
            "Data.DebtorAccount",
        ),
        (
            json!({ "Data": { "DebtorAccount": { "SchemeName": "UK.OBIE.Bitcoin", "Identification": "x" } } }),
            "UK.OBIE.Unsupported.AccountIdentifier",
            "Data.DebtorAccount.SchemeName",
        ),
        (
            json!({ "Data": { "DebtorAccount": debtor_account, "ExpirationDateTime": "2001-01-01T00:00:00+00:00" } }),
            "UK.OBIE.Field.InvalidDate",
            "Data.ExpirationDateTime",
        ),
        (
            json!({ "Data": { "DebtorAccount": debtor_account, "Permissions": ["ReadBalances"] } }),
            "UK.OBIE.Resource.InvalidFormat",
            "Data.Permissions",
        ),
    ];
    for (body, code, path) in cases {
        let (st, e) = s
            .cof(
                &b,
                &b.cc,
                reqwest::Method::POST,
                "/funds-confirmation-consents",
                Some(&body),
            )
            .await;
        assert_eq!(st, 400, "{body}: {e:#}");
        api.validate("/funds-confirmation-consents", "post", "400", &e);
        assert!(
            codes(&e).iter().any(|(c, p)| c == code && p == path),
            "{body}: {e:#}"
        );
    }
    // The accounts scope is not the funds scope.
    let ais = s.cc_token(&b.c.tpp, &b.c.id, "accounts").await;
    let (st, _) = s
        .cof(
            &b,
            &ais,
            reqwest::Method::POST,
            "/funds-confirmation-consents",
            Some(&json!({ "Data": { "DebtorAccount": debtor_account } })),
        )
        .await;
    assert_eq!(st, 403);
    s.stop().await;
}

/// The PSU sees one account and the expiry on the consent page, and
/// revokes the consent in the dashboard: it becomes `Revoked` and its
/// tokens stop at once.
#[tokio::test]
async fn the_psu_authorises_and_revokes_in_the_browser() {
    let s = start_sandbox().await;
    let c = s
        .client_with("cofweb", json!({"scope": "openid fundsconfirmations"}))
        .await;
    let cc = s.cc_token(&c.tpp, &c.id, "fundsconfirmations").await;
    let b = Cbpii { c, cc };
    let (debtor_account, account) = debtor(&s).await;
    let expiry = "2099-06-30T12:00:00+00:00";
    let (_, consent) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::POST,
            "/funds-confirmation-consents",
            Some(&json!({ "Data": { "DebtorAccount": debtor_account, "ExpirationDateTime": expiry } })),
        )
        .await;
    let id = consent["Data"]["ConsentId"].as_str().unwrap().to_string();
    if common::browser::ready() {
        let url = authorize_url(
            &s,
            &b.c,
            &b.c.tpp.sign(&request_claims(&s, &b.c, &id, SCOPE)),
            SCOPE,
        );
        let seen = common::browser::drive(json!({
            "mode": "authorize", "start_url": url, "username": "rora", "password": "rora.",
            "accounts": [0], "decision": "allow", "redirect_prefix": b.c.redirect,
        }))
        .await;
        assert_eq!(seen["input_type"], "radio", "one account: {seen}");
        let details = seen["details"].as_str().unwrap();
        assert!(details.contains("2099"), "the expiry is shown: {details}");
        let f = fragment(seen["final_url"].as_str().unwrap());
        assert!(f.contains_key("code"), "{f:?}");
    } else {
        return;
    }
    assert_eq!(
        s.server.store.consent(&id).await.unwrap().unwrap().accounts,
        vec![account.account_id]
    );

    let mut br = Browser::new(&s);
    let page = br
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    br.post(
        "/login",
        &[("csrf", &csrf), ("username", "rora"), ("password", "rora.")],
    )
    .await;
    br.second_factor("rora").await;
    let page = br
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("cofweb") && page.contains("confirm funds"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let r = br
        .post(
            &format!("/account/consents/{id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 200);
    let (st, got) = s
        .cof(
            &b,
            &b.cc,
            reqwest::Method::GET,
            &format!("/funds-confirmation-consents/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(got["Data"]["Status"], "Revoked");
    s.stop().await;
}
