//! Issue 5: an AISP end to end — consent, authorisation of two of three
//! accounts through the journey, every endpoint read and validated against
//! the official OpenAPI, then narrower consents, another client, revoked
//! and expired consents, and paging through thousands of transactions.

mod common;

use common::*;
use serde_json::{Value, json};

const SCOPE: &str = "openid accounts";
const P: &str = "/open-banking/v3.1/aisp";

/// Authorises a consent for `rora` choosing `pick` of her accounts (by
/// index) through the HTML forms, and returns an AC token.
async fn authorised(
    s: &TestServer,
    c: &Client,
    data: Value,
    pick: &[usize],
) -> (String, String, Vec<String>) {
    let consent = s.ais_consent(c, data).await;
    let http = s.client();
    let url = authorize_url(
        s,
        c,
        &c.tpp.sign(&request_claims(s, c, &consent, SCOPE)),
        SCOPE,
    );
    let r = http.get(&url).send().await.unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(s.url("/login"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = between(&page, "name=\"csrf\" value=\"", "\"");
    let r = http
        .post(s.url("/login"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "rora"),
            ("password", "rora."),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(s.url("/consent"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = between(&page, "name=\"csrf\" value=\"", "\"");
    let all: Vec<String> = page
        .match_indices("name=\"account\" value=\"")
        .map(|(i, m)| page[i + m.len()..].split('"').next().unwrap().to_string())
        .collect();
    let chosen: Vec<String> = pick.iter().map(|i| all[*i].clone()).collect();
    let mut form = vec![
        ("csrf".to_string(), csrf),
        ("decision".to_string(), "allow".to_string()),
    ];
    form.extend(chosen.iter().map(|a| ("account".to_string(), a.clone())));
    let r = http
        .post(s.url("/consent"))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    let f = fragment(r.headers()["location"].to_str().unwrap());
    let t: Value = s.tokens(c, &f["code"], &c.redirect).await;
    (
        consent,
        t["access_token"].as_str().unwrap().to_string(),
        chosen,
    )
}

fn between(s: &str, start: &str, end: &str) -> String {
    let i = s.find(start).unwrap() + start.len();
    s[i..].split(end).next().unwrap().to_string()
}

async fn read(s: &TestServer, c: &Client, token: &str, path: &str) -> reqwest::Response {
    s.kit_client(&c.tpp.dir)
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_endpoint_validates_against_the_openapi() {
    let s = start_sandbox().await;
    let api = OpenApi::load("account-info-openapi.yaml");
    let c = s.client_with("aisp", json!({})).await;

    // The consent resource itself.
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    let r = s
        .kit_client(&c.tpp.dir)
        .post(s.url(&format!("{P}/account-access-consents")))
        .bearer_auth(&cc)
        .json(&json!({"Data": {"Permissions": ALL_PERMISSIONS, "ExpirationDateTime": "2099-01-01T00:00Z", "TransactionFromDateTime": "2000-01-01T00:00:00.000+01:00"}, "Risk": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body: Value = r.json().await.unwrap();
    api.validate("/account-access-consents", "post", "201", &body);
    assert_eq!(body["Data"]["Status"], "AwaitingAuthorisation");
    // COMMON-11/12: accepted without seconds, echoed with a timezone.
    assert_eq!(body["Data"]["ExpirationDateTime"], "2099-01-01T00:00:00Z");
    let id = body["Data"]["ConsentId"].as_str().unwrap();
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!("{P}/account-access-consents/{id}")))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    api.validate(
        "/account-access-consents/{ConsentId}",
        "get",
        "200",
        &r.json().await.unwrap(),
    );

    let (_, token, chosen) =
        authorised(&s, &c, json!({"Permissions": ALL_PERMISSIONS}), &[0, 2]).await;
    let r = read(&s, &c, &token, &format!("{P}/accounts")).await;
    assert_eq!(r.status(), 200);
    let accounts: Value = r.json().await.unwrap();
    api.validate("/accounts", "get", "200", &accounts);
    let ids: Vec<String> = accounts["Data"]["Account"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AccountId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, chosen, "exactly the two chosen accounts (AIS-25)");
    assert!(
        accounts["Data"]["Account"][0]["Account"].is_array(),
        "Detail shows identifiers"
    );
    assert!(
        accounts["Links"]["Self"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );

    let a = &ids[0];
    let statement_id = {
        let r: Value = read(&s, &c, &token, &format!("{P}/accounts/{a}/statements"))
            .await
            .json()
            .await
            .unwrap();
        r["Data"]["Statement"][0]["StatementId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let endpoints = [
        ("/accounts/{AccountId}", format!("{P}/accounts/{a}")),
        (
            "/accounts/{AccountId}/balances",
            format!("{P}/accounts/{a}/balances"),
        ),
        ("/balances", format!("{P}/balances")),
        (
            "/accounts/{AccountId}/transactions",
            format!("{P}/accounts/{a}/transactions"),
        ),
        ("/transactions", format!("{P}/transactions")),
        (
            "/accounts/{AccountId}/beneficiaries",
            format!("{P}/accounts/{a}/beneficiaries"),
        ),
        ("/beneficiaries", format!("{P}/beneficiaries")),
        (
            "/accounts/{AccountId}/direct-debits",
            format!("{P}/accounts/{a}/direct-debits"),
        ),
        ("/direct-debits", format!("{P}/direct-debits")),
        (
            "/accounts/{AccountId}/standing-orders",
            format!("{P}/accounts/{a}/standing-orders"),
        ),
        ("/standing-orders", format!("{P}/standing-orders")),
        (
            "/accounts/{AccountId}/scheduled-payments",
            format!("{P}/accounts/{a}/scheduled-payments"),
        ),
        ("/scheduled-payments", format!("{P}/scheduled-payments")),
        (
            "/accounts/{AccountId}/statements",
            format!("{P}/accounts/{a}/statements"),
        ),
        ("/statements", format!("{P}/statements")),
        (
            "/accounts/{AccountId}/statements/{StatementId}",
            format!("{P}/accounts/{a}/statements/{statement_id}"),
        ),
        (
            "/accounts/{AccountId}/statements/{StatementId}/transactions",
            format!("{P}/accounts/{a}/statements/{statement_id}/transactions"),
        ),
        (
            "/accounts/{AccountId}/product",
            format!("{P}/accounts/{a}/product"),
        ),
        ("/products", format!("{P}/products")),
        (
            "/accounts/{AccountId}/offers",
            format!("{P}/accounts/{a}/offers"),
        ),
        ("/offers", format!("{P}/offers")),
        ("/party", format!("{P}/party")),
        (
            "/accounts/{AccountId}/party",
            format!("{P}/accounts/{a}/party"),
        ),
        (
            "/accounts/{AccountId}/parties",
            format!("{P}/accounts/{a}/parties"),
        ),
    ];
    for (template, path) in &endpoints {
        let r = read(&s, &c, &token, path).await;
        assert_eq!(r.status(), 200, "{path}");
        let body: Value = r.json().await.unwrap();
        api.validate(template, "get", "200", &body);
        assert!(
            body["Links"]["Self"].is_string() && body["Meta"].is_object(),
            "{path}"
        );
    }
    // The transactions are real history with codes and descriptions.
    let txs: Value = read(&s, &c, &token, &format!("{P}/accounts/{a}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let t0 = &txs["Data"]["Transaction"][0];
    assert!(
        t0["ProprietaryBankTransactionCode"]["Code"].is_string()
            && t0["TransactionInformation"].is_string()
    );
    // The statement file is a document, not JSON.
    let r = read(
        &s,
        &c,
        &token,
        &format!("{P}/accounts/{a}/statements/{statement_id}/file"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );

    // AIS-25: an account outside the consent → 403; one that does not
    // exist → 400 NotFound (validated as an OB error).
    let r: Value = read(&s, &c, &token, &format!("{P}/accounts"))
        .await
        .json()
        .await
        .unwrap();
    let _ = r;
    let rora = s
        .server
        .store
        .psu_by_username("rora")
        .await
        .unwrap()
        .unwrap();
    let all = s.server.store.accounts_for_psu(&rora.id).await.unwrap();
    let excluded = all.iter().find(|x| !ids.contains(&x.account_id)).unwrap();
    assert_eq!(
        read(
            &s,
            &c,
            &token,
            &format!("{P}/accounts/{}", excluded.account_id)
        )
        .await
        .status(),
        403
    );
    assert_forbidden(
        read(
            &s,
            &c,
            &token,
            &format!("{P}/accounts/{}/transactions", excluded.account_id),
        )
        .await,
        "Aspen.Forbidden.Account",
    )
    .await;
    let r = read(&s, &c, &token, &format!("{P}/accounts/acc-nope")).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    api.validate("/accounts/{AccountId}", "get", "400", &e);
    assert_eq!(e["Errors"][0]["ErrorCode"], "UK.OBIE.Resource.NotFound");
    // COMMON-44: a client-credentials token on data → 401.
    assert_eq!(
        read(&s, &c, &cc, &format!("{P}/accounts")).await.status(),
        401
    );
    // COMMON-20: 406 for an Accept the API cannot meet.
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!("{P}/accounts")))
        .bearer_auth(&token)
        .header("accept", "application/xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    // COMMON-16: malformed FAPI headers.
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!("{P}/accounts")))
        .bearer_auth(&token)
        .header("x-fapi-auth-date", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!("{P}/accounts")))
        .bearer_auth(&token)
        .header("x-fapi-auth-date", "Sun, 10 Sep 2017 19:43:31 GMT")
        .header("x-fapi-customer-ip-address", "104.25.212.99")
        .header("x-fapi-financial-id", "anything")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "valid FAPI headers; x-fapi-financial-id ignored (COMMON-15)"
    );
    s.stop().await;
}

#[tokio::test]
async fn narrower_permissions_show_less_and_refuse_the_rest() {
    let s = start_sandbox().await;
    let c = s.client_with("narrow", json!({})).await;
    let perms = [
        "ReadAccountsBasic",
        "ReadTransactionsBasic",
        "ReadTransactionsCredits",
        "ReadBeneficiariesBasic",
    ];
    let (_, token, chosen) = authorised(&s, &c, json!({"Permissions": perms}), &[2]).await;
    let a = &chosen[0];
    let accts: Value = read(&s, &c, &token, &format!("{P}/accounts"))
        .await
        .json()
        .await
        .unwrap();
    // AIS-20: no identifiers or servicer with Basic.
    assert!(
        accts["Data"]["Account"][0].get("Account").is_none()
            && accts["Data"]["Account"][0].get("Servicer").is_none()
    );
    let txs: Value = read(&s, &c, &token, &format!("{P}/accounts/{a}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let list = txs["Data"]["Transaction"].as_array().unwrap();
    assert!(!list.is_empty());
    for t in list {
        // AIS-22: credits only; AIS-20: no detail fields.
        assert_eq!(t["CreditDebitIndicator"], "Credit");
        for f in [
            "TransactionInformation",
            "Balance",
            "MerchantDetails",
            "CreditorAccount",
            "DebtorAccount",
        ] {
            assert!(t.get(f).is_none(), "{f}");
        }
    }
    let bens: Value = read(&s, &c, &token, &format!("{P}/accounts/{a}/beneficiaries"))
        .await
        .json()
        .await
        .unwrap();
    for b in bens["Data"]["Beneficiary"].as_array().unwrap() {
        assert!(b.get("CreditorAccount").is_none());
    }
    // AIS-23: missing permissions → 403.
    for p in [
        "balances",
        "direct-debits",
        "standing-orders",
        "statements",
        "product",
        "offers",
        "party",
        "scheduled-payments",
    ] {
        assert_eq!(
            read(&s, &c, &token, &format!("{P}/accounts/{a}/{p}"))
                .await
                .status(),
            403,
            "{p}"
        );
    }
    assert_forbidden(
        read(&s, &c, &token, &format!("{P}/party")).await,
        "Aspen.Forbidden.Permission",
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn card_numbers_are_masked_without_read_pan() {
    let s = start_sandbox().await;
    let c = s.client_with("pan", json!({})).await;
    let base = [
        "ReadAccountsBasic",
        "ReadTransactionsDetail",
        "ReadTransactionsDebits",
    ];
    let (_, masked, _) = authorised(&s, &c, json!({"Permissions": base}), &[0, 1, 2]).await;
    let mut with_pan = base.to_vec();
    with_pan.push("ReadPAN");
    let (_, clear, _) = authorised(&s, &c, json!({"Permissions": with_pan}), &[0, 1, 2]).await;
    let card = |v: &Value| -> String {
        v["Data"]["Transaction"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|t| {
                t["CardInstrument"]["Identification"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap()
    };
    let a = &aspen_sandbox_account(&s).await;
    let m: Value = read(&s, &c, &masked, &format!("{P}/accounts/{a}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let u: Value = read(&s, &c, &clear, &format!("{P}/accounts/{a}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let (m, u) = (card(&m), card(&u));
    assert!(m.starts_with("************") && !u.contains('*'), "{m} {u}");
    assert_eq!(&m[12..], &u[12..]);
    s.stop().await;
}

/// Issue 15: a page is written from each transaction's stored form
/// (`aspen_domain::wire`); with those gone (rows an older release wrote)
/// it is written from the columns, and a TPP sees the same bytes either
/// way, in each form: Detail or Basic (AIS-20), card numbers clear or
/// masked (AIS-21).
#[tokio::test]
async fn pages_read_the_same_from_stored_forms_and_from_columns() {
    let s = start_sandbox().await;
    let c = s.client_with("stored", json!({})).await;
    let a = &aspen_sandbox_account(&s).await;
    let mut tokens = vec![];
    for (detail, pan) in [(true, true), (true, false), (false, true), (false, false)] {
        let mut perms = vec![
            "ReadAccountsBasic",
            if detail {
                "ReadTransactionsDetail"
            } else {
                "ReadTransactionsBasic"
            },
            "ReadTransactionsCredits",
            "ReadTransactionsDebits",
        ];
        if pan {
            perms.push("ReadPAN");
        }
        let (_, token, _) = authorised(&s, &c, json!({"Permissions": perms}), &[0, 1, 2]).await;
        tokens.push(token);
    }
    // Each form's first page and the one after it, as the bytes of `Data`
    // (the links carry sealed tokens, fresh each time).
    let pages = || async {
        let mut out = vec![];
        for token in &tokens {
            let mut path = format!("{P}/accounts/{a}/transactions");
            for _ in 0..2 {
                let body = read(&s, &c, token, &path).await.text().await.unwrap();
                let v: Value = serde_json::from_str(&body).unwrap();
                let data = &body[..body.find(",\"Links\":").unwrap()];
                out.push(data.to_string());
                path = v["Links"]["Next"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches(&s.server.public_url)
                    .to_string();
            }
        }
        out
    };
    let stored = pages().await;
    let joined = stored.join("\n");
    assert!(joined.contains("\"CardInstrument\"") && joined.contains("\"Balance\""));
    assert!(
        joined.contains("************"),
        "a masked card among the pages"
    );
    assert_ne!(stored[0], stored[2], "Detail and Basic differ");
    assert_ne!(stored[0], stored[1], "clear and masked cards differ");
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        s.data_dir().join("aspen.db").display()
    ))
    .await
    .unwrap();
    let cleared = sqlx::query("UPDATE transactions SET wire = NULL WHERE wire IS NOT NULL")
        .execute(&db)
        .await
        .unwrap()
        .rows_affected();
    assert!(cleared > 100, "every row was stored ready: {cleared}");
    db.close().await;
    let columns = pages().await;
    for (i, (x, y)) in stored.iter().zip(&columns).enumerate() {
        assert_eq!(x, y, "page {i}");
    }
    s.stop().await;
}

#[tokio::test]
async fn date_window_and_filters() {
    let s = start_sandbox().await;
    let c = s.client_with("window", json!({})).await;
    let anchor = chrono::Utc::now().date_naive();
    let from = anchor - chrono::Duration::days(60);
    let to = anchor - chrono::Duration::days(30);
    let data = json!({
        "Permissions": ["ReadAccountsBasic", "ReadTransactionsBasic", "ReadTransactionsCredits", "ReadTransactionsDebits", "ReadStatementsBasic"],
        "TransactionFromDateTime": format!("{from}T00:00:00Z"),
        "TransactionToDateTime": format!("{to}T00:00:00Z"),
    });
    let (_, token, _) = authorised(&s, &c, data, &[0, 1, 2]).await;
    let a = &aspen_sandbox_account(&s).await;
    let lo = format!("{from}T00:00:00Z");
    let hi = format!("{to}T00:00:00Z");
    let mut page = format!("{P}/accounts/{a}/transactions");
    let mut n = 0;
    loop {
        let body: Value = read(&s, &c, &token, &page).await.json().await.unwrap();
        for t in body["Data"]["Transaction"].as_array().unwrap() {
            let b = t["BookingDateTime"].as_str().unwrap();
            assert!(
                b >= lo.as_str() && b <= hi.as_str(),
                "{b} outside the consent window"
            );
            n += 1;
        }
        match body["Links"]["Next"].as_str() {
            Some(next) => page = next.trim_start_matches(&s.server.public_url).to_string(),
            None => break,
        }
    }
    assert!(n > 10);
    // A filter inside the window narrows further; one outside returns the
    // valid part (here nothing), not an error (AIS-31).
    let mid = anchor - chrono::Duration::days(45);
    let body: Value = read(
        &s,
        &c,
        &token,
        &format!("{P}/accounts/{a}/transactions?fromBookingDateTime={mid}T00:00:00"),
    )
    .await
    .json()
    .await
    .unwrap();
    for t in body["Data"]["Transaction"].as_array().unwrap() {
        assert!(t["BookingDateTime"].as_str().unwrap() >= format!("{mid}T00:00:00Z").as_str());
    }
    let body: Value = read(&s, &c, &token, &format!("{P}/accounts/{a}/transactions?fromBookingDateTime=1990-01-01&toBookingDateTime=1990-02-01")).await.json().await.unwrap();
    assert_eq!(body["Data"]["Transaction"], json!([]));
    let r = read(
        &s,
        &c,
        &token,
        &format!("{P}/accounts/{a}/transactions?fromBookingDateTime=notadate"),
    )
    .await;
    assert_eq!(r.status(), 400);
    // AIS-17: statements only when wholly inside the window.
    let st: Value = read(&s, &c, &token, &format!("{P}/accounts/{a}/statements"))
        .await
        .json()
        .await
        .unwrap();
    for x in st["Data"]["Statement"].as_array().unwrap() {
        assert!(
            x["StartDateTime"].as_str().unwrap() >= lo.as_str()
                && x["EndDateTime"].as_str().unwrap() <= hi.as_str()
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn other_clients_revoked_expired_and_deleted_consents() {
    let s = start_sandbox().await;
    let c = s.client_with("owner", json!({})).await;
    let other = s.client_with("intruder", json!({})).await;
    let (consent, token, _) =
        authorised(&s, &c, json!({"Permissions": ALL_PERMISSIONS}), &[0]).await;
    // Another client's CC token on this consent → 403 (COMMON-34).
    let theirs = s.cc_token(&other.tpp, &other.id, "accounts").await;
    let r = s
        .kit_client(&other.tpp.dir)
        .get(s.url(&format!("{P}/account-access-consents/{consent}")))
        .bearer_auth(&theirs)
        .send()
        .await
        .unwrap();
    assert_forbidden(r, "Aspen.Forbidden.OtherTpp").await;
    let r = s
        .kit_client(&other.tpp.dir)
        .delete(s.url(&format!("{P}/account-access-consents/{consent}")))
        .bearer_auth(&theirs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Our AC token presented by the other client's certificate → 401.
    let r = s
        .kit_client(&other.tpp.dir)
        .get(s.url(&format!("{P}/accounts")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A payments-scoped CC token on the AIS consent API → 403 (COMMON-38).
    let pay = s.cc_token(&c.tpp, &c.id, "payments").await;
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!("{P}/account-access-consents/{consent}")))
        .bearer_auth(&pay)
        .send()
        .await
        .unwrap();
    assert_forbidden(r, "Aspen.Forbidden.Scope").await;

    // Expired: ExpirationDateTime passes → 401 on the next call.
    let (exp_consent, exp_token, _) = authorised(&s, &c, json!({"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339()}), &[0]).await;
    assert_eq!(
        read(&s, &c, &exp_token, &format!("{P}/accounts"))
            .await
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        read(&s, &c, &exp_token, &format!("{P}/accounts"))
            .await
            .status(),
        401
    );
    let _ = exp_consent;

    // DELETE by the TPP: gone at once, GET → 400 NotFound (AIS-9).
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    let r = s
        .kit_client(&c.tpp.dir)
        .delete(s.url(&format!("{P}/account-access-consents/{consent}")))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        read(&s, &c, &token, &format!("{P}/accounts"))
            .await
            .status(),
        401
    );
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url(&format!("{P}/account-access-consents/{consent}")))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["Errors"][0]["ErrorCode"], "UK.OBIE.Resource.NotFound");
    s.stop().await;
}

#[tokio::test]
async fn consent_request_validation() {
    let s = start_sandbox().await;
    let api = OpenApi::load("account-info-openapi.yaml");
    let c = s.client_with("validate", json!({})).await;
    let cc = s.cc_token(&c.tpp, &c.id, "accounts").await;
    let post = |body: String, ct: &'static str| {
        let s = &s;
        let c = &c;
        let cc = cc.clone();
        async move {
            s.kit_client(&c.tpp.dir)
                .post(s.url(&format!("{P}/account-access-consents")))
                .bearer_auth(cc)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    for (body, code) in [
        (
            json!({"Data": {"Permissions": ["ReadBalances"]}, "Risk": {}}),
            "UK.OBIE.Field.Invalid",
        ),
        (
            json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadTransactionsBasic"]}, "Risk": {}}),
            "UK.OBIE.Field.Invalid",
        ),
        (
            json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadNothing"]}, "Risk": {}}),
            "UK.OBIE.Field.Invalid",
        ),
        (
            json!({"Data": {"Permissions": []}, "Risk": {}}),
            "UK.OBIE.Field.Invalid",
        ),
        (
            json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": "2001-01-01T00:00:00Z"}, "Risk": {}}),
            "UK.OBIE.Field.InvalidDate",
        ),
        (
            json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": "soon"}, "Risk": {}}),
            "UK.OBIE.Field.InvalidDate",
        ),
        (
            json!({"Data": {"Permissions": ["ReadAccountsBasic"]}}),
            "UK.OBIE.Field.Missing",
        ),
    ] {
        let r = post(body.to_string(), "application/json").await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        api.validate("/account-access-consents", "post", "400", &e);
        assert_eq!(e["Errors"][0]["ErrorCode"], code, "{body}");
    }
    let r = post("{not json".into(), "application/json").await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["Errors"][0]["ErrorCode"],
        "UK.OBIE.Resource.InvalidFormat"
    );
    // COMMON-20: 415 for another media type.
    assert_eq!(post("{}".into(), "text/plain").await.status(), 415);
    s.stop().await;
}

#[tokio::test]
async fn paging_through_thousands_sees_each_transaction_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.sandbox.transactions = 3000;
    let s = start_with(dir, cfg).await;
    let c = s.client_with("pager", json!({})).await;
    let (_, token, chosen) = authorised(&s, &c, json!({"Permissions": ["ReadAccountsBasic", "ReadTransactionsBasic", "ReadTransactionsCredits", "ReadTransactionsDebits"]}), &[0, 1, 2]).await;
    let bulk = aspen_sandbox_account(&s).await;
    assert!(chosen.contains(&bulk));
    let first: Value = read(&s, &c, &token, &format!("{P}/accounts/{bulk}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let pages = first["Meta"]["TotalPages"].as_i64().unwrap();
    assert!(pages >= 30, "{pages}");
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut body = first.clone();
    let mut count_pages = 1;
    loop {
        for t in body["Data"]["Transaction"].as_array().unwrap() {
            seen.push((
                t["BookingDateTime"].as_str().unwrap().to_string(),
                t["TransactionId"].as_str().unwrap().to_string(),
            ));
        }
        let Some(next) = body["Links"]["Next"].as_str() else {
            break;
        };
        body = read(
            &s,
            &c,
            &token,
            next.trim_start_matches(&s.server.public_url),
        )
        .await
        .json()
        .await
        .unwrap();
        count_pages += 1;
    }
    assert_eq!(count_pages, pages);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup_by(|a, b| a.1 == b.1);
    assert_eq!(seen.len(), sorted.len(), "no duplicates");
    assert_eq!(seen, sorted, "in booking order");
    let total = s
        .server
        .store
        .count_transactions(&bulk, &aspen_store::TxFilter::all())
        .await
        .unwrap();
    assert_eq!(seen.len() as i64, total);
    // Prev from the second page is the first page; Last is the tail.
    let second: Value = read(
        &s,
        &c,
        &token,
        first["Links"]["Next"]
            .as_str()
            .unwrap()
            .trim_start_matches(&s.server.public_url),
    )
    .await
    .json()
    .await
    .unwrap();
    let back: Value = read(
        &s,
        &c,
        &token,
        second["Links"]["Prev"]
            .as_str()
            .unwrap()
            .trim_start_matches(&s.server.public_url),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(back["Data"], first["Data"]);
    let last: Value = read(
        &s,
        &c,
        &token,
        first["Links"]["Last"]
            .as_str()
            .unwrap()
            .trim_start_matches(&s.server.public_url),
    )
    .await
    .json()
    .await
    .unwrap();
    let tail: Vec<String> = last["Data"]["Transaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["TransactionId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tail.last(), seen.last().map(|x| &x.1));
    // The bulk endpoint walks every account of the consent, each once.
    let mut bulk_seen = std::collections::HashSet::new();
    let mut body: Value = read(&s, &c, &token, &format!("{P}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    loop {
        for t in body["Data"]["Transaction"].as_array().unwrap() {
            assert!(
                bulk_seen.insert(t["TransactionId"].as_str().unwrap().to_string()),
                "duplicate in bulk walk"
            );
        }
        let Some(next) = body["Links"]["Next"].as_str() else {
            break;
        };
        body = read(
            &s,
            &c,
            &token,
            next.trim_start_matches(&s.server.public_url),
        )
        .await
        .json()
        .await
        .unwrap();
    }
    let mut all_total = 0;
    for a in &chosen {
        all_total += s
            .server
            .store
            .count_transactions(a, &aspen_store::TxFilter::all())
            .await
            .unwrap();
    }
    assert_eq!(bulk_seen.len() as i64, all_total);
    // A tampered link is refused.
    let next = first["Links"]["Next"]
        .as_str()
        .unwrap()
        .trim_start_matches(&s.server.public_url)
        .to_string();
    let tampered = format!("{}x", next);
    assert_eq!(read(&s, &c, &token, &tampered).await.status(), 400);
    s.stop().await;
}

async fn aspen_sandbox_account(s: &TestServer) -> String {
    let rora = s
        .server
        .store
        .psu_by_username("rora")
        .await
        .unwrap()
        .unwrap();
    s.server
        .store
        .accounts_for_psu(&rora.id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.description == "Financial Account")
        .unwrap()
        .account_id
}

#[tokio::test]
async fn every_sandbox_psu_has_data_on_every_endpoint() {
    // Issue 10: a full-permission consent of any sandbox PSU reads records
    // from every AIS endpoint.
    let s = start_sandbox().await;
    let c = s
        .client_with("everywhere", json!({"aspen_headless": true}))
        .await;
    for psu in ["rora", "mits", "ivsa"] {
        let consent = s
            .ais_consent(&c, json!({ "Permissions": ALL_PERMISSIONS }))
            .await;
        let mut claims = request_claims(&s, &c, &consent, "openid accounts");
        claims["login_hint"] = json!(psu);
        let r = s
            .client()
            .get(authorize_url(
                &s,
                &c,
                &c.tpp.sign(&claims),
                "openid accounts",
            ))
            .send()
            .await
            .unwrap();
        let code = fragment(&location(&r))["code"].clone();
        let t: Value = s.tokens(&c, &code, &c.redirect).await;
        let token = t["access_token"].as_str().unwrap();
        for (path, key) in [
            ("accounts", "Account"),
            ("balances", "Balance"),
            ("transactions", "Transaction"),
            ("beneficiaries", "Beneficiary"),
            ("direct-debits", "DirectDebit"),
            ("standing-orders", "StandingOrder"),
            ("scheduled-payments", "ScheduledPayment"),
            ("statements", "Statement"),
            ("products", "Product"),
            ("offers", "Offer"),
        ] {
            let v: Value = s
                .kit_client(&c.tpp.dir)
                .get(s.url(&format!("{P}/{path}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                v["Data"][key].as_array().is_some_and(|a| !a.is_empty()),
                "{psu}: {path} is empty: {v:#}"
            );
        }
        let v: Value = s
            .kit_client(&c.tpp.dir)
            .get(s.url(&format!("{P}/party")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v["Data"]["Party"].is_object(), "{psu}: {v:#}");
    }
    s.stop().await;
}
