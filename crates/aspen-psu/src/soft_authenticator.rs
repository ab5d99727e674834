//! A software WebAuthn authenticator (P-256, `none` attestation) for tests
//! that talk to aspen as a browser with a passkey would: it answers the
//! options the pages hand out with the bytes a real authenticator sends.
//! Only built with the `soft-authenticator` feature.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ciborium::Value as Cbor;
use serde_json::{Value, json};

pub struct SoftAuthenticator {
    key: EcdsaKeyPair,
    pub credential_id: Vec<u8>,
    pub user_handle: Vec<u8>,
    /// The signature counter; `None` for an authenticator that keeps none
    /// (always 0, like most synced passkeys).
    pub counter: Option<u32>,
    /// Whether it verifies the user (PIN or biometric) when asked.
    pub verifies_user: bool,
    /// The origin it writes into `clientDataJSON` (a browser writes the
    /// page's).
    pub origin: String,
}

/// What the page's script posts after `navigator.credentials.get`.
pub struct AssertionFields {
    pub credential_id: String,
    pub client_data: String,
    pub authenticator_data: String,
    pub signature: String,
    pub user_handle: String,
}

impl AssertionFields {
    pub fn form<'a>(&'a self, csrf: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("csrf", csrf),
            ("credential_id", &self.credential_id),
            ("client_data", &self.client_data),
            ("authenticator_data", &self.authenticator_data),
            ("signature", &self.signature),
            ("user_handle", &self.user_handle),
        ]
    }
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap_or_default())
        .unwrap_or_default()
}

impl SoftAuthenticator {
    pub fn new(origin: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .expect("P-256 key");
        let mut credential_id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut credential_id).expect("random");
        Self {
            key,
            credential_id,
            user_handle: Vec::new(),
            counter: Some(0),
            verifies_user: true,
            origin: origin.to_string(),
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref();
        let int = |i: i64| Cbor::Integer(i.into());
        let map = Cbor::Map(vec![
            (int(1), int(2)),
            (int(3), int(-7)),
            (int(-1), int(1)),
            (int(-2), Cbor::Bytes(point[1..33].to_vec())),
            (int(-3), Cbor::Bytes(point[33..65].to_vec())),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&map, &mut out).expect("CBOR");
        out
    }

    fn auth_data(&mut self, rp_id: &str, attested: bool) -> Vec<u8> {
        let mut d = digest::digest(&digest::SHA256, rp_id.as_bytes())
            .as_ref()
            .to_vec();
        let mut flags = 0x01; // UP
        if self.verifies_user {
            flags |= 0x04;
        }
        if attested {
            flags |= 0x40;
        }
        d.push(flags);
        let count = match &mut self.counter {
            Some(c) => {
                *c += 1;
                *c
            }
            None => 0,
        };
        d.extend(count.to_be_bytes());
        if attested {
            d.extend([0u8; 16]);
            d.extend((self.credential_id.len() as u16).to_be_bytes());
            d.extend(&self.credential_id);
            d.extend(self.cose_key());
        }
        d
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .expect("JSON")
    }

    /// Answers `PublicKeyCredentialCreationOptions`: (credential id,
    /// clientDataJSON, attestationObject), base64url as the page posts them.
    pub fn create(&mut self, options: &Value) -> (String, String, String) {
        self.user_handle = b64(&options["user"]["id"]);
        let rp_id = options["rp"]["id"].as_str().unwrap_or_default().to_string();
        let client_data = self.client_data(
            "webauthn.create",
            options["challenge"].as_str().unwrap_or_default(),
        );
        let att = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (
                Cbor::Text("authData".into()),
                Cbor::Bytes(self.auth_data(&rp_id, true)),
            ),
        ]);
        let mut att_bytes = Vec::new();
        ciborium::ser::into_writer(&att, &mut att_bytes).expect("CBOR");
        (
            B64.encode(&self.credential_id),
            B64.encode(client_data),
            B64.encode(att_bytes),
        )
    }

    /// Answers `PublicKeyCredentialRequestOptions` with a signed assertion.
    pub fn get(&mut self, options: &Value) -> AssertionFields {
        let rp_id = options["rpId"].as_str().unwrap_or_default().to_string();
        let client_data = self.client_data(
            "webauthn.get",
            options["challenge"].as_str().unwrap_or_default(),
        );
        let auth_data = self.auth_data(&rp_id, false);
        let mut msg = auth_data.clone();
        msg.extend(digest::digest(&digest::SHA256, &client_data).as_ref());
        let sig = self
            .key
            .sign(&SystemRandom::new(), &msg)
            .expect("signature");
        AssertionFields {
            credential_id: B64.encode(&self.credential_id),
            client_data: B64.encode(client_data),
            authenticator_data: B64.encode(auth_data),
            signature: B64.encode(sig.as_ref()),
            user_handle: B64.encode(&self.user_handle),
        }
    }
}
