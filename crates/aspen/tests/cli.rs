//! The `aspen` binary as an operator and a TPP developer use it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn aspen(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aspen"))
        .args(args)
        .env("ASPEN_DATA_DIR", data)
        .env("ASPEN_LOG", "warn")
        .output()
        .expect("aspen runs")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let o = aspen(&["--help"], dir.path());
    assert!(o.status.success());
    let t = text(&o);
    for cmd in ["serve", "migrate", "sandbox", "keys", "clients"] {
        assert!(t.contains(cmd), "{cmd} in {t}");
    }
    let o = aspen(&["--version"], dir.path());
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
    let o = aspen(&["sandbox", "init", "--help"], dir.path());
    assert!(text(&o).contains("--redirect-uri"));
}

#[test]
fn invalid_configuration_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_aspen"))
        .args(["serve"])
        .env("ASPEN_LISTEN", "not-an-address")
        .env("ASPEN_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("`listen`"), "{}", text(&o));
    let cfg = dir.path().join("aspen.toml");
    std::fs::write(&cfg, "[limits]\nmax_body_bytes = \"big\"\n").unwrap();
    let o = aspen(&["--config", cfg.to_str().unwrap(), "migrate"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("limits.max_body_bytes"), "{}", text(&o));
}

#[test]
fn kits_keys_clients_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kit1 = dir.path().join("kit1");
    let kit2 = dir.path().join("kit2");
    let o = aspen(&["migrate"], &data);
    assert!(o.status.success(), "{}", text(&o));
    assert!(data.join("aspen.db").exists());
    for (kit, org) in [(&kit1, "Org One"), (&kit2, "Org Two")] {
        let o = aspen(
            &[
                "sandbox",
                "init",
                "--out",
                kit.to_str().unwrap(),
                "--redirect-uri",
                "https://tpp.example.com/cb",
                "--org-name",
                org,
            ],
            &data,
        );
        assert!(o.status.success(), "{}", text(&o));
        for f in [
            "transport.pem",
            "transport-key.pem",
            "signing-key.pem",
            "signing-jwks.json",
            "ssa.jwt",
            "ca.pem",
            "kit.json",
            "README.md",
        ] {
            assert!(kit.join(f).exists(), "{f}");
        }
    }
    let k1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kit1.join("kit.json")).unwrap()).unwrap();
    let k2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kit2.join("kit.json")).unwrap()).unwrap();
    assert_ne!(k1["org_id"], k2["org_id"], "different organisations");
    // The SSA carries the OB Directory claims and verifies with the
    // directory JWKS the server trusts.
    let ssa = std::fs::read_to_string(kit1.join("ssa.jwt")).unwrap();
    let dir_jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("directory/jwks.json")).unwrap())
            .unwrap();
    let v = aspen_jose::verify_jwt(
        ssa.trim(),
        &aspen_jose::Jwks::from_value(&dir_jwks).unwrap(),
        &[aspen_jose::Alg::PS256],
    )
    .unwrap();
    for c in [
        "software_id",
        "software_client_name",
        "software_roles",
        "software_redirect_uris",
        "software_jwks",
        "software_jwks_endpoint",
        "org_id",
        "org_name",
        "org_status",
        "iss",
        "iat",
        "jti",
    ] {
        assert!(!v.claims[c].is_null(), "{c}");
    }
    assert_eq!(
        v.claims["software_roles"],
        serde_json::json!(["AISP", "PISP", "CBPII"])
    );

    let o = aspen(&["keys", "rotate"], &data);
    assert!(o.status.success(), "{}", text(&o));
    let o = aspen(&["keys", "list"], &data);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        2,
        "{}",
        text(&o)
    );
    // The rotated key got its certificate with it (x5c in /jwks).
    let certs = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".crt.pem")
        })
        .count();
    assert_eq!(certs, 2, "every published key has a certificate");

    let o = aspen(&["clients", "add", "--kit", kit1.to_str().unwrap()], &data);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let client_id = out
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("client_id: ")
        .to_string();
    let o = aspen(
        &[
            "clients",
            "add",
            "--kit",
            kit2.to_str().unwrap(),
            "--auth-method",
            "tls_client_auth",
        ],
        &data,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = aspen(
        &[
            "clients",
            "add",
            "--kit",
            kit2.to_str().unwrap(),
            "--auth-method",
            "client_secret_basic",
        ],
        &data,
    );
    assert!(text(&o).contains("client_secret: "), "{}", text(&o));
    // Response and grant types from flags; `code` alone needs permissive.
    let o = aspen(
        &[
            "clients",
            "add",
            "--kit",
            kit2.to_str().unwrap(),
            "--grant-type",
            "client_credentials",
            "--response-type",
            "code id_token",
        ],
        &data,
    );
    assert!(
        text(&o).contains("\"grant_types\": [\n    \"client_credentials\"\n  ]"),
        "{}",
        text(&o)
    );
    let o = aspen(
        &[
            "clients",
            "add",
            "--kit",
            kit2.to_str().unwrap(),
            "--response-type",
            "code",
        ],
        &data,
    );
    assert!(!o.status.success(), "{}", text(&o));
    let o = aspen(&["clients", "list"], &data);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 4);
    let o = aspen(&["clients", "remove", &client_id], &data);
    assert!(o.status.success());
    let o = aspen(&["clients", "list"], &data);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
    // Redirect URIs outside the SSA are refused here too.
    let o = aspen(
        &[
            "clients",
            "add",
            "--kit",
            kit1.to_str().unwrap(),
            "--redirect-uri",
            "https://evil.example.com/cb",
        ],
        &data,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("invalid_redirect_uri"), "{}", text(&o));
}

#[test]
fn serve_answers_health_over_tls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aspen"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ASPEN_DATA_DIR", &data)
        .env("ASPEN_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(rest) = line.strip_prefix("aspen: serving on ") {
            break rest.split(' ').next().unwrap().to_string();
        }
    };
    let ca = std::fs::read(data.join("ca.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap()
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    // Graceful stop on SIGTERM.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let code = child.wait().unwrap();
    assert!(code.success(), "{code:?}");
}

/// `aspen serve` at `info` with its log to a pipe, killed if a test fails
/// before it stops the server.
struct Logging {
    process: common::ChildLines,
    url: String,
}

impl Logging {
    fn start(data: &Path, env: &[(&str, &str)]) -> Logging {
        let process = common::ChildLines::spawn(
            Command::new(env!("CARGO_BIN_EXE_aspen"))
                .args(["serve", "--listen", "127.0.0.1:0"])
                .env("ASPEN_DATA_DIR", data)
                .env("ASPEN_LOG", "info")
                .envs(env.iter().copied())
                .stderr(Stdio::piped()),
        );
        let url = loop {
            let line = process
                .next(std::time::Duration::from_secs(60))
                .expect("server output");
            if let Some(rest) = line.strip_prefix("aspen: serving on ") {
                break rest.split(' ').next().unwrap().to_string();
            }
        };
        Logging { process, url }
    }

    fn next(&self, within: std::time::Duration) -> Option<String> {
        self.process.next(within)
    }
}

/// COMMON-18's `x-fapi-interaction-id` is the client's own text, logged
/// with the request: it cannot close the request's span or add a field of
/// its own (a `status=500` an operator would count) to the line.
#[test]
fn a_client_cannot_forge_fields_in_the_log_line() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Logging::start(&data, &[("ASPEN_LOG__FLUSH_MS", "0")]);
    let ca = std::fs::read(data.join("ca.pem")).unwrap();
    let forged = "a}: aspen::edge: response status=500 forged=yes";
    let echoed = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let resp = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap()
            .get(format!("{}/health", server.url))
            .header("x-fapi-interaction-id", forged)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["x-fapi-interaction-id"]
            .to_str()
            .unwrap()
            .to_string()
    });
    // Echoed verbatim all the same (COMMON-18).
    assert_eq!(echoed, forged);
    let line = std::iter::from_fn(|| server.next(Duration::from_secs(10)))
        .find(|l| l.contains("path=/health"))
        .expect("the request's line");
    assert!(
        line.contains(&format!(
            " INFO request{{interaction_id={forged:?} method=GET path=/health}}: "
        )),
        "{line}"
    );
    // Outside the quoted id, one status: the response's own.
    let outside = line.replace(&format!("{forged:?}"), "");
    assert_eq!(outside.matches("status=").count(), 1, "{line}");
    assert!(outside.ends_with("response status=200"), "{line}");
    assert!(!outside.contains("forged"), "{line}");
}

/// `[log] flush_ms` (issue 15, twenty-fourth pass): lines to a pipe wait
/// to be written together, but a warning goes out at once after every line
/// logged before it, and nothing held is lost when the server stops.
#[test]
fn held_log_lines_go_out_in_order_on_a_warning_and_at_exit() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Logging::start(
        &data,
        &[
            ("ASPEN_LOG__FLUSH_MS", "10000"),
            ("ASPEN_LIMITS__MAX_CONNECTIONS", "1"),
            ("ASPEN_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ],
    );
    let url = server.url.clone();
    let ca = std::fs::read(data.join("ca.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let health = || {
        rt.block_on(async {
            client
                .get(format!("{url}/health"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // The response's line is held (ten seconds), and so is anything the
    // start logged at `INFO`.
    assert_eq!(health(), 200);
    let mut early = Vec::new();
    while let Some(l) = server.next(Duration::from_millis(500)) {
        early.push(l);
    }
    assert!(
        !early.iter().any(|l| l.contains("path=/health")),
        "written before a flush: {early:?}"
    );
    // The one connection allowed is the client's, kept alive: a second one
    // is refused with a warning, which brings the held line out before it.
    let addr = url.trim_start_matches("https://");
    let _refused = std::net::TcpStream::connect(addr).unwrap();
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.contains("max_connections reached"))
    {
        lines.push(
            server
                .next(Duration::from_secs(5))
                .expect("the warning, at once"),
        );
    }
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let response = at("path=/health").expect("the held line");
    assert!(lines[response].contains("response status=200"), "{lines:?}");
    assert!(
        response < at("max_connections reached").unwrap(),
        "{lines:?}"
    );
    // Held again, then written when the server stops.
    assert_eq!(health(), 200);
    assert!(server.next(Duration::from_millis(300)).is_none());
    Command::new("kill")
        .args(["-TERM", &server.process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(server.process.child.wait().unwrap().success());
    let rest: Vec<String> = std::iter::from_fn(|| server.next(Duration::from_secs(5))).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("path=/health") && l.contains("status=200")),
        "{rest:?}"
    );
}
