//! The developer portal at `/developers` (issue 16): what a TPP engineer
//! needs, rendered from the running server's own configuration — its
//! issuer and endpoints, the discovery document's capability table, the
//! sandbox's test customers, the payment rules from the profile file the
//! validator loads, the error catalogue, and the OpenAPI files it serves.
//! Server-rendered HTML, no script, no external assets. Every page is
//! rendered once, on the first request to the portal (nothing on it
//! changes while the server runs): reading the OpenAPI files takes
//! ~150 ms even in a release build, which a node's start-up — and every
//! server a test starts — need not pay.

pub mod errors;
pub mod openapi;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use askama::Template;
use aspen_domain::payments::AspspProfile;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("{0} is not a readable OpenAPI file: {1}")]
    OpenApi(&'static str, String),
    #[error("a portal page cannot be rendered: {0}")]
    Render(#[from] askama::Error),
}

/// A sandbox customer as the portal lists it.
pub struct TestPsu {
    pub username: String,
    pub password: String,
    pub totp_secret: Option<String>,
}

/// What the portal is rendered from: the running server's configuration.
pub struct PortalInput {
    pub bank_name: String,
    pub colour: String,
    pub issuer: String,
    /// `sandbox` or `production`.
    pub profile: String,
    /// The discovery document exactly as `/.well-known/openid-configuration`
    /// serves it.
    pub discovery: Value,
    /// Empty in production.
    pub sandbox_psus: Vec<TestPsu>,
    pub headless_psu: String,
    pub rules: AspspProfile,
    /// Where the rules came from (a file path or the built-in profile).
    pub rules_source: String,
    /// The rules file as loaded, offered for download.
    pub rules_text: String,
    pub aspsp_org_id: String,
    pub directory_issuers: Vec<String>,
    /// Passkeys are offered (the public URL names a host).
    pub passkeys: bool,
}

struct Nav {
    href: &'static str,
    label: &'static str,
}

const NAV: &[Nav] = &[
    Nav {
        href: "/developers",
        label: "Overview",
    },
    Nav {
        href: "/developers/sandbox",
        label: "Sandbox",
    },
    Nav {
        href: "/developers/authorisation",
        label: "Authorisation",
    },
    Nav {
        href: "/developers/apis",
        label: "API reference",
    },
    Nav {
        href: "/developers/payment-rules",
        label: "Payment rules",
    },
    Nav {
        href: "/developers/errors",
        label: "Errors",
    },
    Nav {
        href: "/developers/onboarding",
        label: "Production onboarding",
    },
    Nav {
        href: "/developers/faq",
        label: "FAQ",
    },
    Nav {
        href: "/developers/changelog",
        label: "Change log",
    },
];

/// The shared frame of every page.
struct Frame<'a> {
    bank: &'a str,
    colour: &'a str,
    profile: &'a str,
    current: &'static str,
    nav: &'static [Nav],
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    f: Frame<'a>,
    i: &'a PortalInput,
    first_psu: Option<&'a TestPsu>,
}

#[derive(Template)]
#[template(path = "sandbox.html")]
struct SandboxPage<'a> {
    f: Frame<'a>,
    i: &'a PortalInput,
}

struct CapRow {
    name: String,
    values: Vec<String>,
}

#[derive(Template)]
#[template(path = "authorisation.html")]
struct AuthorisationPage<'a> {
    f: Frame<'a>,
    i: &'a PortalInput,
    caps: Vec<CapRow>,
}

#[derive(Template)]
#[template(path = "apis.html")]
struct ApisPage<'a> {
    f: Frame<'a>,
    specs: &'a [openapi::Spec],
}

#[derive(Template)]
#[template(path = "api.html")]
struct ApiPage<'a> {
    f: Frame<'a>,
    i: &'a PortalInput,
    spec: &'a openapi::Spec,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage<'a> {
    f: Frame<'a>,
    i: &'a PortalInput,
    r: &'a AspspProfile,
}

#[derive(Template)]
#[template(path = "errors.html")]
struct ErrorsPage<'a> {
    f: Frame<'a>,
    ob: Vec<errors::Entry>,
    forbidden: Vec<errors::Entry>,
    oauth: Vec<errors::Entry>,
}

#[derive(Template)]
#[template(path = "onboarding.html")]
struct OnboardingPage<'a> {
    f: Frame<'a>,
    i: &'a PortalInput,
}

#[derive(Template)]
#[template(path = "faq.html")]
struct FaqPage<'a> {
    f: Frame<'a>,
    i: &'a PortalInput,
}

#[derive(Template)]
#[template(path = "changelog.html")]
struct ChangelogPage<'a> {
    f: Frame<'a>,
}

type Pages = HashMap<String, (Bytes, &'static str)>;

/// The portal of one server: its input, and every page and download once
/// rendered.
pub struct Portal {
    input: PortalInput,
    pages: OnceLock<Result<Pages, String>>,
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string())
        })
        .collect()
}

const HTML: &str = "text/html; charset=utf-8";
const YAML: &str = "application/yaml; charset=utf-8";
const TOML: &str = "application/toml; charset=utf-8";

impl Portal {
    pub fn new(input: PortalInput) -> Portal {
        Portal {
            input,
            pages: OnceLock::new(),
        }
    }

    fn pages(&self) -> Result<&Pages, &str> {
        self.pages
            .get_or_init(|| render(&self.input).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Every page and download of the portal for `i`.
fn render(i: &PortalInput) -> Result<Pages, PortalError> {
    let frame = |current: &'static str| Frame {
        bank: &i.bank_name,
        colour: &i.colour,
        profile: &i.profile,
        current,
        nav: NAV,
    };
    let specs: Vec<openapi::Spec> = openapi::SPECS
        .iter()
        .map(openapi::Spec::parse)
        .collect::<Result<_, _>>()?;
    let mut pages = HashMap::new();
    let mut page = |path: String, body: String| {
        pages.insert(path, (Bytes::from(body), HTML));
    };
    page(
        "/developers".into(),
        IndexPage {
            f: frame("/developers"),
            i,
            first_psu: i.sandbox_psus.first(),
        }
        .render()?,
    );
    page(
        "/developers/sandbox".into(),
        SandboxPage {
            f: frame("/developers/sandbox"),
            i,
        }
        .render()?,
    );
    let caps = [
        "response_types_supported",
        "response_modes_supported",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "request_object_signing_alg_values_supported",
        "id_token_signing_alg_values_supported",
        "scopes_supported",
        "acr_values_supported",
        "claims_supported",
        "aspen_permissive_token_endpoint_auth_methods_supported",
        "aspen_permissive_response_types_supported",
    ]
    .iter()
    .filter(|k| i.discovery.get(**k).is_some())
    .map(|k| CapRow {
        name: k.to_string(),
        values: list(&i.discovery[*k]),
    })
    .collect();
    page(
        "/developers/authorisation".into(),
        AuthorisationPage {
            f: frame("/developers/authorisation"),
            i,
            caps,
        }
        .render()?,
    );
    page(
        "/developers/apis".into(),
        ApisPage {
            f: frame("/developers/apis"),
            specs: &specs,
        }
        .render()?,
    );
    for spec in &specs {
        page(
            format!("/developers/apis/{}", spec.slug),
            ApiPage {
                f: frame("/developers/apis"),
                i,
                spec,
            }
            .render()?,
        );
    }
    page(
        "/developers/payment-rules".into(),
        RulesPage {
            f: frame("/developers/payment-rules"),
            i,
            r: &i.rules,
        }
        .render()?,
    );
    page(
        "/developers/errors".into(),
        ErrorsPage {
            f: frame("/developers/errors"),
            ob: errors::ob_entries(),
            forbidden: errors::forbidden_entries(),
            oauth: errors::oauth_entries(),
        }
        .render()?,
    );
    page(
        "/developers/onboarding".into(),
        OnboardingPage {
            f: frame("/developers/onboarding"),
            i,
        }
        .render()?,
    );
    page(
        "/developers/faq".into(),
        FaqPage {
            f: frame("/developers/faq"),
            i,
        }
        .render()?,
    );
    page(
        "/developers/changelog".into(),
        ChangelogPage {
            f: frame("/developers/changelog"),
        }
        .render()?,
    );
    for spec in openapi::SPECS {
        pages.insert(
            format!("/developers/openapi/{}", spec.file),
            (Bytes::from_static(spec.yaml.as_bytes()), YAML),
        );
    }
    pages.insert(
        "/developers/payment-rules.toml".into(),
        (Bytes::from(i.rules_text.clone()), TOML),
    );
    Ok(pages)
}

impl Portal {
    pub fn router(self) -> Router {
        Router::new()
            .route("/developers", get(serve_root))
            .route("/developers/{*rest}", get(serve))
            .with_state(Arc::new(self))
    }

    fn answer(&self, path: &str) -> Response {
        let pages = match self.pages() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = e, "the developer portal cannot be rendered");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        match pages.get(path) {
            Some((body, kind)) => (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=300"),
                    ),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static(
                            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                        ),
                    ),
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                body.clone(),
            )
                .into_response(),
            None => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, HeaderValue::from_static(HTML))],
                "<!doctype html><html lang=\"en\"><title>Not found</title><main><h1>Not found</h1><p><a href=\"/developers\">The developer portal</a></p></main></html>",
            )
                .into_response(),
        }
    }
}

async fn serve_root(State(p): State<Arc<Portal>>) -> Response {
    p.answer("/developers")
}

async fn serve(State(p): State<Arc<Portal>>, Path(rest): Path<String>) -> Response {
    p.answer(&format!("/developers/{}", rest.trim_end_matches('/')))
}
