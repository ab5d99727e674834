//! `aspen tpp` as a TPP engineer runs it: the real binary, a kit from the
//! sandbox, and the real server in this process on loopback. Every step
//! goes over mTLS as a client would; the bodies are checked against the
//! official OpenAPI and the money against AIS balances.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Runs `aspen tpp --kit KIT ARGS…` with a deadline. The child is async:
/// the server shares this test's runtime, and a blocking wait would starve
/// it.
async fn tpp(kit: &Path, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_aspen"));
    cmd.arg("tpp")
        .arg("--kit")
        .arg(kit)
        .args(args)
        .env("ASPEN_LOG", "warn")
        .env_remove("ASPEN_CONFIG")
        .env_remove("ASPEN_TPP_KIT")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("aspen tpp {args:?} did not finish in time"))
        .expect("aspen runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A successful run's stdout.
async fn ok(kit: &Path, args: &[&str]) -> String {
    let o = tpp(kit, args).await;
    assert!(
        o.status.success(),
        "aspen tpp {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A successful `--json` run's single object.
async fn ok_json(kit: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(kit, &all).await;
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A failed run's stderr (and the exit code is not 0).
async fn fails(kit: &Path, args: &[&str]) -> String {
    let o = tpp(kit, args).await;
    assert!(
        !o.status.success(),
        "aspen tpp {args:?} should fail:\n{}",
        stdout(&o)
    );
    stderr(&o)
}

fn new_kit(s: &TestServer, name: &str) -> std::path::PathBuf {
    s.make_kit(name, &format!("https://{name}.example.com/cb"))
}

/// The sum of the GBP `InterimBooked` balances the AIS token sees, in pence.
async fn booked_pence(kit: &Path, consent: &str) -> i64 {
    let v = ok_json(kit, &["call", "GET", "aisp/balances", "--consent", consent]).await;
    v["body"]["Data"]["Balance"]
        .as_array()
        .expect("balances")
        .iter()
        .filter(|b| b["Type"] == "InterimBooked" && b["Amount"]["Currency"] == "GBP")
        .map(|b| {
            let pence = aspen_domain::parse_minor(b["Amount"]["Amount"].as_str().unwrap()).unwrap();
            if b["CreditDebitIndicator"] == "Debit" {
                -pence
            } else {
                pence
            }
        })
        .sum()
}

#[tokio::test]
async fn registers_with_dcr_and_keeps_private_state() {
    let s = start_sandbox().await;
    let kit = new_kit(&s, "tppreg");
    // Nothing works before registration, and it says what to do.
    let e = fails(&kit, &["token", "--scope", "accounts"]).await;
    assert!(e.contains("aspen tpp register"), "{e}");

    let reg = ok_json(&kit, &["register"]).await;
    let client_id = reg["client_id"].as_str().expect("client_id").to_string();
    assert_eq!(reg["token_endpoint_auth_method"], "private_key_jwt");
    // (The DCR OpenAPI reuses the request schema for the response, with
    // iss/iat/exp/aud/jti required, so it cannot validate a response.)
    assert_eq!(
        reg["redirect_uris"],
        json!(["https://tppreg.example.com/cb"])
    );
    assert!(reg["client_id_issued_at"].is_i64());
    let stored = s.server.store.client(&client_id).await.unwrap();
    assert!(stored.is_some(), "the bank knows the client");

    let state_file = kit.join("tpp-state.json");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["client_id"], client_id.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the tokens are the owner's only");
    }

    // The token works against the bank, over the kit's certificate.
    let token = ok(&kit, &["token", "--scope", "accounts", "--print"]).await;
    let token = token.trim();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace));
    let r = s
        .kit_client(&kit)
        .post(s.url("/open-banking/v3.1/aisp/account-access-consents"))
        .bearer_auth(token)
        .json(&json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Bound to the transport certificate: another kit's certificate is refused.
    let other = new_kit(&s, "tppother");
    let r = s
        .kit_client(&other)
        .post(s.url("/open-banking/v3.1/aisp/account-access-consents"))
        .bearer_auth(token)
        .json(&json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // tls_client_auth: the subject DN comes from the kit and the token
    // request carries no assertion.
    let reg = ok_json(&other, &["register", "--auth-method", "tls_client_auth"]).await;
    assert_eq!(reg["token_endpoint_auth_method"], "tls_client_auth");
    let t = ok_json(&other, &["token", "--scope", "payments"]).await;
    assert_eq!(t["token_type"], "Bearer");
    let o = tpp(&other, &["-v", "token", "--scope", "payments"]).await;
    assert!(o.status.success());
    assert!(!stderr(&o).contains("client_assertion"), "{}", stderr(&o));

    // A registration the bank refuses shows the bank's error.
    let e = fails(
        &kit,
        &["register", "--redirect-uri", "https://elsewhere.example/cb"],
    )
    .await;
    assert!(e.contains("400") && e.contains("invalid_"), "{e}");

    // A kit whose CA did not issue the bank's certificate: a clear
    // message and no state damage.
    let stranger = s.dir.path().join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    for f in [
        "kit.json",
        "transport.pem",
        "transport-key.pem",
        "signing-key.pem",
        "ssa.jwt",
    ] {
        std::fs::copy(kit.join(f), stranger.join(f)).unwrap();
    }
    let ca = rcgen::generate_simple_self_signed(vec!["elsewhere.example".into()]).unwrap();
    std::fs::write(stranger.join("ca.pem"), ca.cert.pem()).unwrap();
    let e = fails(&stranger, &["register"]).await;
    assert!(e.contains("ca.pem") && e.contains("TLS"), "{e}");
    assert!(!stranger.join("tpp-state.json").exists());

    // No kit at all.
    let e = fails(&s.dir.path().join("nokit"), &["register"]).await;
    assert!(
        e.contains("kit.json is missing") && e.contains("sandbox init"),
        "{e}"
    );
    // A bank that is not there: refused at once, not hung.
    let e = fails(&kit, &["--server", "https://127.0.0.1:1", "token"]).await;
    assert!(e.contains("https://127.0.0.1:1"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn reads_accounts_and_confirms_funds() {
    let s = start_sandbox().await;
    let kit = new_kit(&s, "tppais");
    ok(&kit, &["register", "--headless"]).await;
    let cc = ok_json(&kit, &["token", "--scope", "accounts"]).await;
    assert!(cc["access_token"].is_string());
    let consent = ok_json(
        &kit,
        &[
            "consent",
            "create",
            "ais",
            "--permissions",
            "ReadAccountsDetail,ReadBalances,ReadTransactionsCredits,ReadTransactionsDebits,ReadTransactionsDetail",
        ],
    )
    .await;
    let api = OpenApi::load("account-info-openapi.yaml");
    api.validate("/account-access-consents", "post", "201", &consent);
    let consent_id = consent["Data"]["ConsentId"].as_str().unwrap().to_string();

    let redirect = ok(
        &kit,
        &["authorize", "--headless", "--psu", "rora", "--no-exchange"],
    )
    .await;
    let redirect = redirect.trim();
    assert!(
        redirect.starts_with("https://tppais.example.com/cb#"),
        "{redirect}"
    );
    let f = fragment(redirect);
    // The ID token's c_hash binds the code: a swapped code is caught
    // before it is sent anywhere, and so is a swapped state.
    let swapped = redirect.replace(&f["code"], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let e = fails(&kit, &["exchange", "--code", &swapped]).await;
    assert!(e.contains("c_hash"), "{e}");
    let swapped = redirect.replace(&f["state"], "forged-state");
    let e = fails(&kit, &["exchange", "--code", &swapped]).await;
    assert!(e.contains("state"), "{e}");

    let x = ok_json(&kit, &["exchange", "--code", redirect]).await;
    assert_eq!(x["consent_id"], consent_id.as_str());
    assert_eq!(
        x["id_token_claims"]["openbanking_intent_id"],
        consent_id.as_str()
    );
    assert!(x["refresh_token"].is_string());
    // The code was spent.
    let e = fails(&kit, &["exchange", "--code", redirect]).await;
    assert!(e.contains("no authorisation in flight"), "{e}");

    let accounts = ok_json(&kit, &["call", "GET", "/open-banking/v3.1/aisp/accounts"]).await;
    assert_eq!(accounts["status"], 200);
    api.validate("/accounts", "get", "200", &accounts["body"]);
    let list = accounts["body"]["Data"]["Account"].as_array().unwrap();
    assert!(!list.is_empty());
    let account = list[0]["AccountId"].as_str().unwrap().to_string();
    let tx = ok_json(
        &kit,
        &[
            "call",
            "GET",
            &format!("aisp/accounts/{account}/transactions"),
        ],
    )
    .await;
    api.validate(
        "/accounts/{AccountId}/transactions",
        "get",
        "200",
        &tx["body"],
    );
    assert!(
        !tx["body"]["Data"]["Transaction"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // --verbose shows the exchange with the token shortened.
    let o = tpp(&kit, &["-v", "call", "GET", "aisp/accounts"]).await;
    assert!(o.status.success());
    let token = x["access_token"].as_str().unwrap();
    let log = stderr(&o);
    assert!(
        log.contains("> GET https://") && log.contains("< 200 OK"),
        "{log}"
    );
    assert!(
        log.contains("authorization: Bearer ") && !log.contains(token),
        "{log}"
    );

    // An expired access token is refreshed with the refresh token, which
    // rotates.
    let state_file = kit.join("tpp-state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let saved = &mut state["consent_tokens"][&consent_id];
    let old_refresh = saved["refresh_token"].clone();
    saved["expires_at"] = json!(0);
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    ok_json(&kit, &["call", "GET", "aisp/accounts"]).await;
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let saved = &state["consent_tokens"][&consent_id];
    assert!(saved["expires_at"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    assert!(saved["refresh_token"].is_string());
    assert_ne!(saved["refresh_token"], old_refresh);

    // Funds confirmation for one of rora's sort-code accounts.
    let sort_code = list
        .iter()
        .flat_map(|a| a["Account"].as_array().cloned().unwrap_or_default())
        .find(|i| i["SchemeName"] == "UK.OBIE.SortCodeAccountNumber")
        .and_then(|i| i["Identification"].as_str().map(str::to_string))
        .expect("a sort-code account");
    let cof = OpenApi::load("confirmation-funds-openapi.yaml");
    let fc = ok_json(
        &kit,
        &["consent", "create", "funds", "--debtor-account", &sort_code],
    )
    .await;
    cof.validate("/funds-confirmation-consents", "post", "201", &fc);
    let fc_id = fc["Data"]["ConsentId"].as_str().unwrap().to_string();
    // Without --headless the URL is printed for the customer's browser;
    // this client is headless, so the "browser" lands on the redirect at
    // once, and the redirect URL is what the TPP's page would receive.
    let url = ok(&kit, &["authorize", "--psu", "rora"]).await;
    let url = url.trim();
    assert!(url.starts_with(&s.url("/authorize?")), "{url}");
    let r = s.client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let token = ok(&kit, &["exchange", "--code", &location(&r), "--print"]).await;
    assert!(!token.trim().is_empty() && !token.contains('{'), "{token}");
    let body = json!({"Data": {"ConsentId": fc_id, "Reference": "Purchase01",
        "InstructedAmount": {"Amount": "1.00", "Currency": "GBP"}}})
    .to_string();
    let conf = ok_json(
        &kit,
        &["call", "POST", "cbpii/funds-confirmations", "--data", &body],
    )
    .await;
    assert_eq!(conf["status"], 201);
    cof.validate("/funds-confirmations", "post", "201", &conf["body"]);
    assert_eq!(conf["body"]["Data"]["FundsAvailable"], true);
    // The AIS token is still the default for /aisp after the funds consent.
    ok_json(&kit, &["call", "GET", "aisp/accounts"]).await;
    s.stop().await;
}

#[tokio::test]
async fn pays_and_the_money_moves() {
    let s = start_sandbox().await;
    let kit = new_kit(&s, "tpppay");
    ok(&kit, &["register", "--headless"]).await;
    let ais = ok_json(&kit, &["consent", "create", "ais"]).await;
    let ais = ais["Data"]["ConsentId"].as_str().unwrap().to_string();
    ok(&kit, &["authorize", "--headless", "--psu", "rora"]).await;
    let before = booked_pence(&kit, &ais).await;

    let o = tpp(
        &kit,
        &[
            "pay",
            "--amount",
            "10.00",
            "--creditor-id",
            "08080021325698",
            "--creditor-name",
            "ACME Inc",
            "--reference",
            "INV-42",
            "--headless",
            "--psu",
            "rora",
        ],
    )
    .await;
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let paid: Value = serde_json::from_str(&stdout(&o)).expect("pretty JSON on stdout");
    OpenApi::load("payment-initiation-openapi.yaml").validate(
        "/domestic-payments/{DomesticPaymentId}",
        "get",
        "200",
        &paid,
    );
    assert_eq!(paid["Data"]["Status"], "AcceptedSettlementCompleted");
    assert_eq!(
        paid["Data"]["Initiation"]["InstructedAmount"]["Amount"],
        "10.00"
    );
    assert!(stderr(&o).contains("authorised"), "{}", stderr(&o));
    let after = booked_pence(&kit, &ais).await;
    assert_eq!(before - after, 1000, "rora's booked balance fell by 10.00");
    let payment_consent = paid["Data"]["ConsentId"].as_str().unwrap().to_string();
    let consent = ok_json(
        &kit,
        &[
            "call",
            "GET",
            &format!("pisp/domestic-payment-consents/{payment_consent}"),
        ],
    )
    .await;
    assert_eq!(consent["body"]["Data"]["Status"], "Consumed");
    assert_eq!(
        consent["signature_verified"], true,
        "PIS responses are signed"
    );

    // A token for another consent shows the bank's OB error body.
    let e = fails(
        &kit,
        &[
            "call",
            "GET",
            "aisp/accounts",
            "--consent",
            &payment_consent,
        ],
    )
    .await;
    assert!(
        e.contains("403 Forbidden") && e.contains("Aspen.Forbidden.Scope"),
        "{e}"
    );
    // A token the bank never issued (or one that expired): 401, bodiless
    // by design (COMMON-37), with its www-authenticate shown.
    let e = fails(
        &kit,
        &[
            "call",
            "GET",
            "aisp/accounts",
            "--token",
            "expired-or-foreign",
        ],
    )
    .await;
    assert!(
        e.contains("401 Unauthorized") && e.contains("invalid_token"),
        "{e}"
    );

    // SCA: a customer without a second factor cannot approve a payment,
    // and nothing is paid.
    let e = fails(
        &kit,
        &[
            "pay",
            "--amount",
            "1.00",
            "--creditor-id",
            "08080021325698",
            "--creditor-name",
            "ACME Inc",
            "--headless",
            "--psu",
            "oska",
        ],
    )
    .await;
    assert!(e.contains("access_denied"), "{e}");
    assert_eq!(booked_pence(&kit, &ais).await, after);

    // Without --headless, `pay` prints the URL for the customer's browser
    // and reads back the URL the browser was sent to.
    let (paid, log) = pay_through_browser(&s, &kit, "2.50").await;
    assert_eq!(
        paid["Data"]["Status"], "AcceptedSettlementCompleted",
        "{log}"
    );
    assert_eq!(booked_pence(&kit, &ais).await, after - 250);
    s.stop().await;
}

#[tokio::test]
async fn pay_waits_for_the_final_status_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    // Accepted after 1 s, settled only after a minute.
    cfg.payments.accept_after_ms = 1_000;
    cfg.payments.settle_after_ms = 60_000;
    cfg.payments.poll_interval_ms = 100;
    let s = start_with(dir, cfg).await;
    let kit = new_kit(&s, "tppslow");
    ok(&kit, &["register", "--headless"]).await;
    let pay = |wait: &'static str| {
        let kit = kit.clone();
        async move {
            tpp(
                &kit,
                &[
                    "pay",
                    "--amount",
                    "1.00",
                    "--creditor-id",
                    "08080021325698",
                    "--creditor-name",
                    "ACME Inc",
                    "--headless",
                    "--psu",
                    "rora",
                    "--wait-secs",
                    wait,
                    "--poll-ms",
                    "100",
                ],
            )
            .await
        }
    };
    let started = std::time::Instant::now();
    let o = pay("3").await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("is still AcceptedSettlementInProcess after 3 s"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    s.stop().await;
}

/// Runs `pay` without `--headless`, plays the browser (this client is
/// headless, so `/authorize` redirects at once) and pastes the redirect
/// URL into its stdin. The final payment and the progress log.
async fn pay_through_browser(s: &TestServer, kit: &Path, amount: &str) -> (Value, String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aspen"))
        .arg("tpp")
        .arg("--kit")
        .arg(kit)
        .args([
            "pay",
            "--amount",
            amount,
            "--creditor-id",
            "08080021325698",
            "--creditor-name",
            "ACME Inc",
        ])
        .env("ASPEN_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("aspen runs");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if line.starts_with("https://") {
                return line;
            }
        }
        panic!("no URL printed: {log}");
    })
    .await
    .expect("the URL is printed in time");
    assert!(url.starts_with(&s.url("/authorize?")), "{url}");
    let r = s.client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", location(&r)).as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        stdout.read_to_string(&mut out).await.unwrap();
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
        }
        child.wait().await.unwrap()
    })
    .await
    .expect("pay finishes in time");
    assert!(status.success(), "{out}{log}");
    (serde_json::from_str(&out).expect("the payment"), log)
}

#[tokio::test]
async fn signatures_the_bank_accepts_and_postman() {
    let s = start_sandbox().await;
    let kit = new_kit(&s, "tppsign");
    ok(&kit, &["register"]).await;
    let body = serde_json::to_vec(&domestic_consent_body(json!({
        "InstructionIdentification": "SIGN1",
        "EndToEndIdentification": "SIGN1",
        "InstructedAmount": { "Amount": "2.00", "Currency": "GBP" },
        "CreditorAccount": { "SchemeName": "UK.OBIE.SortCodeAccountNumber",
            "Identification": "08080021325698", "Name": "ACME Inc" },
    })))
    .unwrap();
    let file = s.dir.path().join("consent.json");
    std::fs::write(&file, &body).unwrap();
    let sig = ok(&kit, &["sign", file.to_str().unwrap()]).await;
    let sig = sig.trim();

    let kit_json: Value =
        serde_json::from_slice(&std::fs::read(kit.join("kit.json")).unwrap()).unwrap();
    let jwks = aspen_jose::Jwks::from_value(
        &serde_json::from_slice(&std::fs::read(kit.join("signing-jwks.json")).unwrap()).unwrap(),
    )
    .unwrap();
    let iss = format!(
        "{}/{}",
        kit_json["org_id"].as_str().unwrap(),
        kit_json["software_id"].as_str().unwrap()
    );
    let tans = vec![TAN.to_string()];
    let exp = aspen_jose::DetachedExpectations {
        iss: &iss,
        tans: &tans,
        now: chrono::Utc::now().timestamp(),
        max_future_skew: 30,
        max_age: 60,
    };
    let h = aspen_jose::verify_detached(Some(sig), &body, &jwks, &exp).expect("verifies");
    assert_eq!(h.raw["b64"], false);
    assert_eq!(h.kid, kit_json["signing_kid"].as_str().unwrap());
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        aspen_jose::verify_detached(Some(sig), &tampered, &jwks, &exp).unwrap_err(),
        aspen_jose::DetachedJwsError::Invalid
    );

    // The bank takes it as the request's signature; without one it refuses.
    let data = format!("@{}", file.display());
    let header = format!("x-jws-signature: {sig}");
    let r = ok_json(
        &kit,
        &[
            "call",
            "POST",
            "pisp/domestic-payment-consents",
            "--data",
            &data,
            "--no-sign",
            "-H",
            &header,
        ],
    )
    .await;
    assert_eq!(r["status"], 201);
    assert_eq!(r["body"]["Data"]["Status"], "AwaitingAuthorisation");
    let e = fails(
        &kit,
        &[
            "call",
            "POST",
            "pisp/domestic-payment-consents",
            "--data",
            &data,
            "--no-sign",
        ],
    )
    .await;
    assert!(e.contains("UK.OBIE.Signature.Missing"), "{e}");

    // The bank's response signatures are checked: a kit that expects
    // another signer refuses the answer.
    let consent_id = r["body"]["Data"]["ConsentId"].as_str().unwrap().to_string();
    let path = format!("pisp/domestic-payment-consents/{consent_id}");
    let good = ok_json(&kit, &["call", "GET", &path]).await;
    assert_eq!(good["signature_verified"], true);
    let kit_file = kit.join("kit.json");
    let original = std::fs::read(&kit_file).unwrap();
    let mut wrong = kit_json.clone();
    wrong["aspsp_org_id"] = json!("0015800001NotTheBank");
    std::fs::write(&kit_file, serde_json::to_vec(&wrong).unwrap()).unwrap();
    let e = fails(&kit, &["call", "GET", &path]).await;
    assert!(e.contains("response signature is refused"), "{e}");
    std::fs::write(&kit_file, original).unwrap();

    // This client was registered without --headless: the bank wants the
    // customer, and the CLI says so.
    let e = fails(
        &kit,
        &[
            "authorize",
            "--headless",
            "--consent",
            &consent_id,
            "--scope",
            "openid payments",
        ],
    )
    .await;
    assert!(e.contains("not registered for headless"), "{e}");

    // Postman: a v2.1 collection whose every request has a method and a
    // URL, and an environment with the kit's bank and client.
    let dir = s.dir.path().join("postman");
    let files = ok_json(&kit, &["postman", "--out", dir.to_str().unwrap()]).await;
    let collection: Value =
        serde_json::from_slice(&std::fs::read(files["collection"].as_str().unwrap()).unwrap())
            .unwrap();
    assert!(
        collection["info"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    assert_eq!(
        collection["info"]["schema"],
        "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    );
    let description = collection["info"]["description"].as_str().unwrap();
    assert!(
        description.contains("Client certificates")
            && description.contains("aspen tpp token --scope accounts --print")
    );
    fn requests(items: &Value, out: &mut Vec<Value>) {
        for it in items.as_array().expect("item is an array") {
            assert!(it["name"].is_string(), "{it}");
            match (it.get("request"), it.get("item")) {
                (Some(r), None) => out.push(r.clone()),
                (None, Some(sub)) => requests(sub, out),
                _ => panic!("neither a request nor a folder: {it}"),
            }
        }
    }
    let mut all = Vec::new();
    requests(&collection["item"], &mut all);
    assert!(all.len() >= 12, "{}", all.len());
    for r in &all {
        assert!(
            ["GET", "POST", "PUT", "DELETE"].contains(&r["method"].as_str().unwrap()),
            "{r}"
        );
        let raw = r["url"]["raw"].as_str().unwrap();
        assert!(raw.starts_with("{{server}}/"), "{raw}");
        if let Some(b) = r.get("body") {
            assert_eq!(b["mode"], "raw");
            serde_json::from_str::<Value>(b["raw"].as_str().unwrap()).expect("JSON body");
        }
    }
    for path in [
        "aisp/accounts",
        "pisp/domestic-payments",
        "cbpii/funds-confirmations",
    ] {
        assert!(
            all.iter()
                .any(|r| r["url"]["raw"].as_str().unwrap().ends_with(path)),
            "{path}"
        );
    }
    let env: Value =
        serde_json::from_slice(&std::fs::read(files["environment"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(env["_postman_variable_scope"], "environment");
    let var = |k: &str| {
        env["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["key"] == k)
            .map(|v| v["value"].clone())
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(var("server"), s.server.public_url.as_str());
    let state: Value =
        serde_json::from_slice(&std::fs::read(kit.join("tpp-state.json")).unwrap()).unwrap();
    assert_eq!(var("client_id"), state["client_id"]);
    s.stop().await;
}
