//! Micro benchmark, ignored by default:
//! `cargo test -p aspen-jose --release --test bench -- --ignored --nocapture`.
//! Prints signs/s and verifies/s of the detached JWS path (cached key pair)
//! next to the machine's `openssl speed rsa2048` when openssl is installed.

use std::time::{Duration, Instant};

use aspen_jose::{DetachedExpectations, Jwks, SigningKey, sign_detached, verify_detached};

fn rate(mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore]
fn detached_sign_verify_throughput() {
    let key = SigningKey::generate(None).expect("keygen");
    let jwks = Jwks::from_keys(vec![key.jwk().clone()]);
    let body = br#"{"Data":{"ConsentId":"c-1","Initiation":{"InstructedAmount":{"Amount":"10.00","Currency":"GBP"}}},"Risk":{}}"#;
    let tans = vec!["openbanking.org.uk".to_string()];
    let sig =
        sign_detached(&key, body, "org/soft", "openbanking.org.uk", 1000, None).expect("sign");
    let exp = DetachedExpectations {
        iss: "org/soft",
        tans: &tans,
        now: 1000,
        max_future_skew: 30,
        max_age: 3600,
    };
    let signs = rate(|| {
        sign_detached(&key, body, "org/soft", "openbanking.org.uk", 1000, None).expect("sign");
    });
    let verifies = rate(|| {
        verify_detached(Some(&sig), body, &jwks, &exp).expect("verify");
    });
    // The same operations without the JOSE framing, for the overhead.
    let (h, s) = sig.split_once("..").expect("detached");
    let mut input = h.as_bytes().to_vec();
    input.push(b'.');
    input.extend_from_slice(body);
    let raw_sig = aspen_jose::b64_decode(s).expect("b64");
    let jwk = key.jwk();
    let n = aspen_jose::b64_decode(jwk.n.as_deref().expect("n")).expect("n");
    let e = aspen_jose::b64_decode(jwk.e.as_deref().expect("e")).expect("e");
    let parsed = aws_lc_rs::rsa::PublicKeyComponents {
        n: n.as_slice(),
        e: e.as_slice(),
    }
    .to_parsed_public_key(&aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256)
    .expect("parse");
    let raw_signs = rate(|| {
        key.sign_ps256(&input).expect("sign");
    });
    let raw_verifies = rate(|| {
        parsed.verify_sig(&input, &raw_sig).expect("verify");
    });
    println!("aws-lc-rs raw PSS:         {raw_signs:.0} signs/s, {raw_verifies:.0} verifies/s");
    println!("aspen-jose detached PS256: {signs:.0} signs/s, {verifies:.0} verifies/s (one core)");

    match std::process::Command::new("openssl")
        .args(["speed", "-seconds", "2", "rsa2048"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = text.lines().find(|l| l.starts_with("rsa 2048")) {
                println!("openssl speed (sign/s, verify/s are the last two columns): {line}");
            }
        }
        _ => println!("openssl speed not available; skipped the comparison"),
    }
}
