//! Issue 3: discovery, JWKS, DCR v3.2, the token endpoint and bound tokens,
//! driven over mTLS the way a TPP would.

mod common;

use common::*;
use serde_json::{Value, json};

fn b64(b: &[u8]) -> String {
    aspen_jose::b64(b)
}

/// Re-signs the kit's SSA claims (optionally changed) with `key`.
fn mint_ssa(tpp: &Tpp, key: &aspen_jose::SigningKey, change: impl FnOnce(&mut Value)) -> String {
    let (_, mut claims) = aspen_jose::decode_unverified(&tpp.ssa).unwrap();
    change(&mut claims);
    aspen_jose::sign_jwt(key, Some("JWT"), &claims).unwrap()
}

fn directory_key(s: &TestServer) -> aspen_jose::SigningKey {
    let pem = std::fs::read_to_string(s.data_dir().join("directory/signing-key.pem")).unwrap();
    aspen_jose::SigningKey::from_pkcs8_pem(&pem, None).unwrap()
}

async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn discovery_and_jwks() {
    let s = start_sandbox().await;
    // The bank's org id is OB-shaped, stable per data directory, and in
    // every kit.
    let org = &s.server.aspsp_org_id;
    assert!(
        org.len() == 18 && org.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{org}"
    );
    let kit: Value = serde_json::from_str(
        &std::fs::read_to_string(
            s.make_kit("orgid", "https://tpp.example.com/cb")
                .join("kit.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(&kit["aspsp_org_id"], org);
    let c = s.client();
    let doc: Value = c
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // AUTH-6: issuer byte for byte.
    assert_eq!(doc["issuer"], s.server.public_url);
    // OIDC Discovery 1.0 §3 REQUIRED fields.
    for f in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ] {
        assert!(!doc[f].is_null(), "missing {f}");
    }
    assert_eq!(doc["registration_endpoint"], s.url("/register"));
    assert_eq!(doc["authorization_endpoint"], s.url("/authorize"));
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "client_credentials", "refresh_token"])
    );
    assert_eq!(doc["request_uri_parameter_supported"], false);
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        doc["acr_values_supported"],
        json!(["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"])
    );
    // AUTH-8 [choice]: the standard fields list what an ordinary
    // registration gets (DCR tools copy them); the sandbox's permissive
    // extras are advertised apart.
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["tls_client_auth", "private_key_jwt"])
    );
    assert_eq!(doc["response_types_supported"], json!(["code id_token"]));
    assert_eq!(
        doc["aspen_permissive_token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        doc["aspen_permissive_response_types_supported"],
        json!(["code"])
    );

    let jwks: Value = c
        .get(s.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        // The bank's keys carry their certificate chain (OB clients verify
        // response signatures against it): x5c, and x5t#S256 of the leaf.
        let x5c = k["x5c"].as_array().expect("x5c");
        assert!(x5c.len() >= 2, "leaf and CA");
        use base64::Engine;
        let leaf = base64::engine::general_purpose::STANDARD
            .decode(x5c[0].as_str().unwrap())
            .unwrap();
        assert_eq!(k["x5t#S256"], aspen_jose::sha256_b64url(&leaf));
        // AUTH-9: public parts only, kid/kty/use/alg present.
        assert_eq!(k["kty"], "RSA");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["alg"], "PS256");
        assert!(k["kid"].is_string());
        assert!(k.get("d").is_none() && k.get("p").is_none());
    }
    s.stop().await;
}

async fn published_kids(s: &TestServer) -> Vec<String> {
    let jwks: Value = s
        .client()
        .get(s.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn key_rotation_keeps_previous_key_published() {
    // AUTH-10: `aspen keys rotate` adds a current key and keeps the old
    // one published until it is retired.
    let s = start_sandbox().await;
    let old_kid = published_kids(&s).await[0].clone();
    let dir = s.stop().await;
    let data = aspen::datadir::DataDir::open(&dir.path().join("data")).unwrap();
    let new_kid = data.keyring().unwrap().rotate().unwrap().kid().to_string();
    let cfg = sandbox_config(dir.path());
    let s = start_with(dir, cfg).await;
    let kids = published_kids(&s).await;
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );
    // New ID tokens are signed with the new key.
    let c = s
        .client_with("rotated", json!({"aspen_headless": true}))
        .await;
    let consent = s
        .ais_consent(&c, json!({"Permissions": ["ReadAccountsBasic"]}))
        .await;
    let url = authorize_url(
        &s,
        &c,
        &c.tpp
            .sign(&request_claims(&s, &c, &consent, "openid accounts")),
        "openid accounts",
    );
    let r = s.client().get(&url).send().await.unwrap();
    let f = fragment(r.headers()["location"].to_str().unwrap());
    let (header, _) = aspen_jose::decode_unverified(&f["id_token"]).unwrap();
    assert_eq!(header["kid"], new_kid);
    let dir = s.stop().await;
    let data = aspen::datadir::DataDir::open(&dir.path().join("data")).unwrap();
    data.keyring().unwrap().retire(&old_kid).unwrap();
    let cfg = sandbox_config(dir.path());
    let s = start_with(dir, cfg).await;
    assert_eq!(published_kids(&s).await, vec![new_kid]);
    s.stop().await;
}

#[tokio::test]
async fn dcr_create_read_update_delete() {
    let s = start_sandbox().await;
    let tpp = Tpp::load(&s.make_kit("crud", "https://tpp.example.com/cb"));
    let r = s
        .register(&tpp, &tpp.registration_claims(&s.server.public_url))
        .await;
    // DCR-28: 201 on create.
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("x-fapi-interaction-id"));
    let created: Value = r.json().await.unwrap();
    let client_id = created["client_id"].as_str().unwrap().to_string();
    // DCR-25: metadata echoed with the SSA claims.
    assert!(created["client_id_issued_at"].is_i64());
    assert_eq!(created["software_id"], tpp.software_id);
    assert_eq!(created["org_id"], tpp.org_id);
    assert_eq!(
        created["redirect_uris"],
        json!(["https://tpp.example.com/cb"])
    );
    assert!(created.get("client_secret").is_none());
    assert!(created.get("jti").is_none() && created.get("exp").is_none());

    let token = s.cc_token(&tpp, &client_id, "accounts").await;
    let c = s.kit_client(&tpp.dir);
    let r = c
        .get(s.url(&format!("/register/{client_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["client_id"], client_id);

    // DCR-31: PUT with a full, fresh request; scope narrowed.
    let mut claims = tpp.registration_claims(&s.server.public_url);
    claims["scope"] = json!("openid accounts");
    let r = c
        .put(s.url(&format!("/register/{client_id}")))
        .bearer_auth(&token)
        .header("content-type", "application/jose")
        .body(tpp.sign(&claims))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["scope"], "openid accounts");
    assert_eq!(updated["client_id"], client_id);

    // DCR-32: 204, then the client and its tokens are gone.
    let r = c
        .delete(s.url(&format!("/register/{client_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(s.url(&format!("/register/{client_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a deleted client's token is refused");
    let r = c
        .post(s.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                &tpp.assertion(&client_id, &s.url("/token")),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    s.stop().await;
}

#[tokio::test]
async fn dcr_management_needs_the_clients_own_token() {
    let s = start_sandbox().await;
    let a = Tpp::load(&s.make_kit("alpha", "https://a.example.com/cb"));
    let b = Tpp::load(&s.make_kit("beta", "https://b.example.com/cb"));
    let a_id = s.register_ok(&a).await;
    let b_id = s.register_ok(&b).await;
    let b_token = s.cc_token(&b, &b_id, "accounts").await;
    let cb = s.kit_client(&b.dir);
    // DCR-33: another client's id → 401 and the presented token is revoked.
    let r = cb
        .get(s.url(&format!("/register/{a_id}")))
        .bearer_auth(&b_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = cb
        .get(s.url(&format!("/register/{b_id}")))
        .bearer_auth(&b_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "token was revoked after the probe");
    // Unknown token → 401.
    let r = cb
        .get(s.url(&format!("/register/{b_id}")))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn token_is_bound_to_the_certificate() {
    let s = start_sandbox().await;
    let a = Tpp::load(&s.make_kit("bound", "https://a.example.com/cb"));
    let other = Tpp::load(&s.make_kit("other", "https://o.example.com/cb"));
    let id = s.register_ok(&a).await;
    let token = s.cc_token(&a, &id, "accounts").await;
    let path = s.url(&format!("/register/{id}"));
    // AUTH-60: same token, another trusted certificate → 401.
    let r = s
        .kit_client(&other.dir)
        .get(&path)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // …and no certificate at all → 401.
    let r = s
        .client()
        .get(&path)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .kit_client(&a.dir)
        .get(&path)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn dcr_rejections() {
    let s = start_sandbox().await;
    let tpp = Tpp::load(&s.make_kit("neg", "https://tpp.example.com/cb"));
    let aud = s.server.public_url.clone();
    let base = tpp.registration_claims(&aud);

    // DCR-14: SSA signed by a key the directory does not publish.
    let rogue = aspen_jose::SigningKey::generate(None).unwrap();
    let mut c = base.clone();
    c["software_statement"] = json!(mint_ssa(&tpp, &rogue, |_| {}));
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "unapproved_software_statement".into())
    );

    // DCR-14: expired SSA (signed by the real directory).
    let dk = directory_key(&s);
    let mut c = base.clone();
    c["software_statement"] = json!(mint_ssa(&tpp, &dk, |v| {
        v["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    }));
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_software_statement".into())
    );

    // DCR-15: organisation not Active.
    let mut c = base.clone();
    c["software_statement"] = json!(mint_ssa(&tpp, &dk, |v| v["org_status"] = json!("Revoked")));
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "unapproved_software_statement".into())
    );

    // DCR-7: request JWT signed by a key that is not in the SSA.
    let r = s
        .kit_client(&tpp.dir)
        .post(s.url("/register"))
        .header("content-type", "application/jwt")
        .body(aspen_jose::sign_jwt(&rogue, None, &base).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "invalid_client_metadata".into()));

    // AUTH-4: alg none.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(base.to_string().as_bytes())
    );
    let r = s
        .kit_client(&tpp.dir)
        .post(s.url("/register"))
        .header("content-type", "application/jwt")
        .body(none)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "invalid_client_metadata".into()));

    // AUTH-4: RS256 with the right key is still refused.
    let pem = std::fs::read_to_string(tpp.dir.join("signing-key.pem")).unwrap();
    let b64url = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .replace('+', "-")
        .replace('/', "_");
    let der = aspen_jose::b64_decode(b64url.trim_end_matches('=')).unwrap();
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
    let h = b64(json!({"alg":"RS256","kid": tpp.key.kid()})
        .to_string()
        .as_bytes());
    let p = b64(base.to_string().as_bytes());
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        format!("{h}.{p}").as_bytes(),
        &mut sig,
    )
    .unwrap();
    let r = s
        .kit_client(&tpp.dir)
        .post(s.url("/register"))
        .header("content-type", "application/jwt")
        .body(format!("{h}.{p}.{}", b64(&sig)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "invalid_client_metadata".into()));

    // DCR-22: redirect URI outside the SSA.
    let mut c = base.clone();
    c["redirect_uris"] = json!(["https://evil.example.com/cb"]);
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_redirect_uri".into())
    );

    // DCR-19: subject DN that is not the transport certificate's.
    let mut c = base.clone();
    c["token_endpoint_auth_method"] = json!("tls_client_auth");
    c["tls_client_auth_subject_dn"] = json!("CN=someone,OU=else,O=Other Ltd,C=GB");
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_client_metadata".into())
    );

    // DCR-9: expired request JWT.
    let mut c = base.clone();
    c["iat"] = json!(chrono::Utc::now().timestamp() - 1000);
    c["exp"] = json!(chrono::Utc::now().timestamp() - 600);
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_client_metadata".into())
    );

    // DCR-12: iss that is not the SSA's software_id.
    let mut c = base.clone();
    c["iss"] = json!("someoneelse");
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_software_statement".into())
    );

    // DCR-23: unsupported response_types.
    let mut c = base.clone();
    c["response_types"] = json!(["token"]);
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_client_metadata".into())
    );

    // DCR-10: wrong aud.
    let c = tpp.registration_claims("https://other-bank.example.com");
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_client_metadata".into())
    );

    // DCR-17: scope beyond the roles.
    let mut c = base.clone();
    c["scope"] = json!("openid accounts admin");
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_client_metadata".into())
    );

    // DCR-11: the same request JWT twice.
    let jwt = tpp.sign(&tpp.registration_claims(&aud));
    let send = || {
        s.kit_client(&tpp.dir)
            .post(s.url("/register"))
            .header("content-type", "application/jwt")
            .body(jwt.clone())
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 201);
    assert_eq!(
        error_of(send().await.unwrap()).await,
        (400, "invalid_client_metadata".into())
    );

    // DCR-6: wrong content type.
    let r = s
        .kit_client(&tpp.dir)
        .post(s.url("/register"))
        .header("content-type", "application/json")
        .body(tpp.sign(&tpp.registration_claims(&aud)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // DCR-3: no client certificate.
    let r = s
        .client()
        .post(s.url("/register"))
        .header("content-type", "application/jwt")
        .body(tpp.sign(&tpp.registration_claims(&aud)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));

    // DCR-20: another organisation's certificate with this SSA.
    let other = Tpp::load(&s.make_kit("impostor", "https://tpp.example.com/cb"));
    let r = s
        .kit_client(&other.dir)
        .post(s.url("/register"))
        .header("content-type", "application/jwt")
        .body(tpp.sign(&tpp.registration_claims(&aud)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (400, "invalid_client_metadata".into()));
    s.stop().await;
}

#[tokio::test]
async fn redirect_uris_on_any_https_host_are_never_dereferenced() {
    let s = start_sandbox().await;
    let uri = "https://nonexistent.invalid:4443/oauth/callback?x=1";
    let tpp = Tpp::load(&s.make_kit("anyhost", uri));
    let mut c = tpp.registration_claims(&s.server.public_url);
    c["redirect_uris"] = json!([uri]);
    let r = s.register(&tpp, &c).await;
    assert_eq!(r.status(), 201);
    s.stop().await;
}

async fn token_request(s: &TestServer, tpp: &Tpp, form: &[(&str, &str)]) -> reqwest::Response {
    s.kit_client(&tpp.dir)
        .post(s.url("/token"))
        .form(form)
        .send()
        .await
        .unwrap()
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[tokio::test]
async fn private_key_jwt_rules() {
    let s = start_sandbox().await;
    let tpp = Tpp::load(&s.make_kit("pkj", "https://tpp.example.com/cb"));
    let id = s.register_ok(&tpp).await;
    let te = s.url("/token");

    let r = token_request(
        &s,
        &tpp,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "accounts payments"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &tpp.assertion(&id, &te)),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    // AUTH-45: never cached.
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "accounts payments");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());

    // AUTH-47: replayed jti.
    let a = tpp.assertion(&id, &te);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    assert_eq!(token_request(&s, &tpp, &form).await.status(), 200);
    assert_eq!(
        error_of(token_request(&s, &tpp, &form).await).await,
        (401, "invalid_client".into())
    );

    // AUTH-47: wrong aud.
    let a = tpp.assertion(&id, "https://elsewhere.example.com/token");
    let r = token_request(
        &s,
        &tpp,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &a),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));

    // AUTH-47: expired assertion.
    let now = chrono::Utc::now().timestamp();
    let a = tpp.sign(&json!({"iss": id, "sub": id, "aud": te, "iat": now - 900, "exp": now - 600, "jti": uuid::Uuid::new_v4().to_string()}));
    let r = token_request(
        &s,
        &tpp,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &a),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));

    // Signed by a key the client did not register.
    let rogue = aspen_jose::SigningKey::generate(Some(tpp.key.kid().to_string())).unwrap();
    let a = aspen_jose::sign_jwt(
        &rogue,
        None,
        &json!({"iss": id, "sub": id, "aud": te, "exp": now + 60, "jti": "r1"}),
    )
    .unwrap();
    let r = token_request(
        &s,
        &tpp,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &a),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));

    // Unknown client.
    let a = tpp.assertion("no-such-client", &te);
    let r = token_request(
        &s,
        &tpp,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &a),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));

    // AUTH-14: scope outside the registration; openid never on CC.
    for scope in ["fundsconfirmations", "openid"] {
        let r = token_request(
            &s,
            &tpp,
            &[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &tpp.assertion(&id, &te)),
            ],
        )
        .await;
        assert_eq!(error_of(r).await, (400, "invalid_scope".into()), "{scope}");
    }
    // Unsupported grant type.
    let r = token_request(
        &s,
        &tpp,
        &[
            ("grant_type", "password"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &tpp.assertion(&id, &te)),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, (400, "unsupported_grant_type".into()));
    // RFC 6749 §3.2: a parameter sent twice is refused, among a handful of
    // others or among many (the check's two ways); unknown ones are
    // ignored, and one sent empty counts as not sent.
    let a = tpp.assertion(&id, &te);
    let base = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    let names: Vec<String> = (0..40).map(|i| format!("x{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    for (label, extra) in [
        ("few", vec![("scope", "accounts"), ("scope", "accounts")]),
        ("many", [&many[..], &[("x3", "2")]].concat()),
        (
            "many, the assertion twice",
            [&many[..], &[("client_assertion", "x")]].concat(),
        ),
    ] {
        let form = [&base[..], &extra[..]].concat();
        let r = token_request(&s, &tpp, &form).await;
        assert_eq!(
            error_of(r).await,
            (400, "invalid_request".into()),
            "{label}"
        );
    }
    let form = [
        &base[..],
        &many[..],
        &[("scope", ""), ("scope", "accounts")],
    ]
    .concat();
    let r = token_request(&s, &tpp, &form).await;
    assert_eq!(
        r.status(),
        200,
        "distinct unknown parameters and an empty one"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["scope"], "accounts");
    // AUTH-46: a method other than the registered one.
    let r = token_request(
        &s,
        &tpp,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    // Without a client certificate nothing is issued.
    let r = s
        .client()
        .post(&te)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &tpp.assertion(&id, &te)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    s.stop().await;
}

/// AUTH-47 with the token written in the jti's transaction (issue 15):
/// one assertion sent many times at once buys exactly one token, and a
/// refused request spends its assertion too.
#[tokio::test]
async fn a_client_assertion_sent_in_parallel_buys_one_token() {
    let s = start_sandbox().await;
    let tpp = Tpp::load(&s.make_kit("pkjpar", "https://tpp.example.com/cb"));
    let id = s.register_ok(&tpp).await;
    let te = s.url("/token");
    let a = tpp.assertion(&id, &te);
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "accounts"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    let results = futures_util::future::join_all(
        (0..12).map(|_| async { error_of(token_request(&s, &tpp, &form).await).await }),
    )
    .await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.0 == 200 || *r == (401, "invalid_client".to_string())),
        "{results:?}"
    );

    // An assertion refused for its scope is spent all the same.
    let a = tpp.assertion(&id, &te);
    let bad_scope = [
        ("grant_type", "client_credentials"),
        ("scope", "nothing-registered"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    assert_eq!(
        error_of(token_request(&s, &tpp, &bad_scope).await).await,
        (400, "invalid_scope".into())
    );
    let retry = [
        ("grant_type", "client_credentials"),
        ("scope", "accounts"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    assert_eq!(
        error_of(token_request(&s, &tpp, &retry).await).await,
        (401, "invalid_client".into())
    );
    s.stop().await;
}

#[tokio::test]
async fn tls_client_auth_and_sandbox_secrets() {
    let s = start_sandbox().await;
    let tpp = Tpp::load(&s.make_kit("mtls", "https://tpp.example.com/cb"));
    let dn: Value = s
        .kit_client(&tpp.dir)
        .get(s.url("/sandbox/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut c = tpp.registration_claims(&s.server.public_url);
    c["token_endpoint_auth_method"] = json!("tls_client_auth");
    c.as_object_mut()
        .unwrap()
        .remove("token_endpoint_auth_signing_alg");
    // DCR-19: DN written in another order and spacing still matches.
    let parts: Vec<&str> = dn["subject_dn"].as_str().unwrap().split(',').collect();
    c["tls_client_auth_subject_dn"] =
        json!(parts.iter().rev().cloned().collect::<Vec<_>>().join(", "));
    let r = s.register(&tpp, &c).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = token_request(
        &s,
        &tpp,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
    )
    .await;
    assert_eq!(r.status(), 200);
    // AUTH-48: the right DN but another certificate's subject → refused.
    let other = Tpp::load(&s.make_kit("mtls2", "https://tpp.example.com/cb"));
    let r = token_request(
        &s,
        &other,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));

    // Secrets: strict registration refused, permissive accepted (sandbox).
    let mut c = tpp.registration_claims(&s.server.public_url);
    c["token_endpoint_auth_method"] = json!("client_secret_basic");
    c.as_object_mut()
        .unwrap()
        .remove("token_endpoint_auth_signing_alg");
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_client_metadata".into())
    );
    c["jti"] = json!(uuid::Uuid::new_v4().to_string());
    c["aspen_profile"] = json!("permissive");
    let r = s.register(&tpp, &c).await;
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    let id = reg["client_id"].as_str().unwrap().to_string();
    let secret = reg["client_secret"].as_str().unwrap().to_string();
    assert_eq!(reg["client_secret_expires_at"], 0);
    let r = s
        .kit_client(&tpp.dir)
        .post(s.url("/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .kit_client(&tpp.dir)
        .post(s.url("/token"))
        .basic_auth(&id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    // client_secret_post is a different method from the one registered.
    let r = token_request(
        &s,
        &tpp,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, (401, "invalid_client".into()));
    s.stop().await;
}

#[tokio::test]
async fn production_profile_refuses_permissive_clients() {
    // A sandbox provides a CA and a directory, which the production server
    // then trusts explicitly, as an operator lists the real ones.
    let sandbox = start_sandbox().await;
    let kit = sandbox.make_kit("prod", "https://tpp.example.com/cb");
    let data = sandbox.data_dir();
    let _keep = sandbox.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = production_config(dir.path(), &data);
    // The test clients read the CA from the data directory.
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(data.join("ca.pem"), dir.path().join("data/ca.pem")).unwrap();
    let s = start_with(dir, cfg).await;
    let tpp = Tpp::load(&kit);
    let doc: Value = s
        .client()
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_secret_basic"))
    );
    let mut c = tpp.registration_claims(&s.server.public_url);
    c["aspen_profile"] = json!("permissive");
    assert_eq!(
        error_of(s.register(&tpp, &c).await).await,
        (400, "invalid_client_metadata".into())
    );
    assert_eq!(
        s.register(&tpp, &tpp.registration_claims(&s.server.public_url))
            .await
            .status(),
        201
    );
    s.stop().await;
}

#[tokio::test]
async fn software_jwks_endpoint_served_from_the_offline_map() {
    // DCR-7 / DESIGN.md "Offline key sets": an SSA with only
    // software_jwks_endpoint, whose URL the configuration maps to a file.
    let sandbox = start_sandbox().await;
    let tpp = Tpp::load(&sandbox.make_kit("offline", "https://tpp.example.com/cb"));
    let dk = directory_key(&sandbox);
    let url = "https://keystore.example.com/offline/software.jwks";
    let ssa = mint_ssa(&tpp, &dk, |v| {
        v.as_object_mut().unwrap().remove("software_jwks");
        v["software_jwks_endpoint"] = json!(url);
    });
    let dir = sandbox.stop().await;
    let mut cfg = sandbox_config(dir.path());
    cfg.trust
        .jwks_url_map
        .insert(url.into(), tpp.dir.join("signing-jwks.json"));
    let s = start_with(dir, cfg).await;
    let mut claims = tpp.registration_claims(&s.server.public_url);
    claims["software_statement"] = json!(ssa);
    let r = s.register(&tpp, &claims).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The same mapped keys verify its client assertions.
    s.cc_token(&tpp, &id, "accounts").await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.limits.max_body_bytes = 4096;
    let s = start_with(dir, cfg).await;
    let tpp = Tpp::load(&s.make_kit("big", "https://tpp.example.com/cb"));
    let r = s
        .kit_client(&tpp.dir)
        .post(s.url("/register"))
        .header("content-type", "application/jwt")
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers().contains_key("x-fapi-interaction-id"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // Over HTTP/1.1 the refusal says the connection closes; a refusal
    // made before a handler reads the body (no token: 401) reads it
    // first, so the connection stays usable.
    let h1 = client_builder(&s.ca_pem()).http1_only().build().unwrap();
    let r = h1
        .post(s.url("/register"))
        .header("content-type", "application/jwt")
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["connection"], "close");
    for _ in 0..3 {
        let r = h1
            .post(s.url("/open-banking/v3.1/aisp/account-access-consents"))
            .header("content-type", "application/json")
            .body(vec![b' '; 3000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("connection").is_none());
        assert_eq!(h1.get(s.url("/health")).send().await.unwrap().status(), 200);
    }
    s.stop().await;
}
