//! `aspen tpp …`: a TPP's command line over `aspen-tpp`, one step per
//! subcommand, chained through `tpp-state.json` in the kit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aspen_tpp::{CallRequest, ConsentKind, TokenChoice, Tpp};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Debug)]
#[command(
    about = "A TPP's command line for the sandbox and any OB v3.1.x bank, driven by a kit",
    long_about = "A TPP's command line for the sandbox and any OB v3.1.x bank, driven by a kit \
(`aspen sandbox init --out tpp-kit`). Each step keeps what the next needs (client id, tokens, \
the authorisation in flight) in KIT/tpp-state.json (mode 0600):\n\n\
  aspen tpp register --headless\n\
  aspen tpp consent create ais\n\
  aspen tpp authorize --headless --psu rora\n\
  aspen tpp call GET aisp/accounts\n\
  aspen tpp pay --amount 10.00 --creditor-id 08080021325698 --creditor-name 'ACME Inc'"
)]
pub struct TppArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: TppCommand,
}

#[derive(Args, Debug)]
pub struct Common {
    /// The kit directory.
    #[arg(long, global = true, default_value = "tpp-kit", env = "ASPEN_TPP_KIT")]
    pub kit: PathBuf,
    /// The bank's base URL, when it is not the kit's `server`.
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// Print every HTTP request and response (tokens shortened) on stderr.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Machine-readable output: one JSON object on one line.
    #[arg(long, global = true)]
    pub json: bool,
    /// Total time allowed for each HTTP exchange, in seconds.
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout_secs: u64,
}

#[derive(Subcommand, Debug)]
pub enum TppCommand {
    /// Register the kit's software with the bank (DCR v3.2), or adopt a
    /// client the operator registered (`--client-id`).
    Register(RegisterArgs),
    /// A client-credentials token.
    Token {
        #[arg(long, default_value = "accounts")]
        scope: String,
        /// Print the access token alone (for shell variables, Postman).
        #[arg(long)]
        print: bool,
    },
    /// Consents.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Start the PSU's authorisation of a consent: print the URL to open,
    /// or (`--headless`, sandbox) complete it and exchange the code.
    Authorize(AuthorizeArgs),
    /// Exchange the code for tokens, checking the ID token (signature,
    /// issuer, audience, nonce, c_hash, s_hash, consent).
    Exchange {
        /// The code, or the whole URL the bank redirected to (fragment
        /// included: then the state and the redirect's ID token are
        /// checked too).
        #[arg(long)]
        code: String,
        /// Print the access token alone.
        #[arg(long)]
        print: bool,
    },
    /// Call any resource over mTLS with a token; POST bodies to /pisp,
    /// event-subscriptions and callback-urls are signed.
    Call(CallArgs),
    /// Print a detached `x-jws-signature` for the body in FILE (`-`:
    /// stdin), over its exact bytes.
    Sign { file: PathBuf },
    /// A domestic payment start to end: consent, authorisation, order,
    /// and the status until it is final.
    Pay(PayArgs),
    /// Write a Postman v2.1 collection and environment for the kit.
    Postman {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// `private_key_jwt` or `tls_client_auth`.
    #[arg(long, default_value = "private_key_jwt")]
    pub auth_method: String,
    /// Ask for headless authorisation (sandbox only).
    #[arg(long)]
    pub headless: bool,
    /// One of the SSA's redirect URIs (default: all of them).
    #[arg(long)]
    pub redirect_uri: Option<String>,
    /// The transport certificate's subject for `tls_client_auth` (default:
    /// built from the kit).
    #[arg(long)]
    pub subject_dn: Option<String>,
    /// Use this already registered client instead of registering.
    #[arg(long)]
    pub client_id: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ConsentCommand {
    /// Create a consent with a client-credentials token.
    #[command(subcommand)]
    Create(CreateConsent),
}

#[derive(Subcommand, Debug)]
pub enum CreateConsent {
    /// An account-access consent.
    Ais {
        /// Permissions, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "ReadAccountsDetail,ReadBalances,ReadTransactionsCredits,ReadTransactionsDebits,ReadTransactionsDetail"
        )]
        permissions: Vec<String>,
        /// `ExpirationDateTime` (ISO 8601).
        #[arg(long)]
        expiration: Option<String>,
        #[arg(long)]
        transactions_from: Option<String>,
        #[arg(long)]
        transactions_to: Option<String>,
        /// Send this JSON file as the body instead.
        #[arg(long)]
        body: Option<PathBuf>,
    },
    /// A domestic payment consent (signed, with an idempotency key).
    Payment(PaymentArgs),
    /// A funds-confirmation consent for one debtor account.
    Funds {
        /// The account's identification (sort code and number for
        /// UK.OBIE.SortCodeAccountNumber).
        #[arg(long, required_unless_present = "body")]
        debtor_account: Option<String>,
        #[arg(long, default_value = "UK.OBIE.SortCodeAccountNumber")]
        debtor_scheme: String,
        #[arg(long)]
        debtor_name: Option<String>,
        #[arg(long)]
        expiration: Option<String>,
        #[arg(long)]
        body: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct PaymentArgs {
    /// Amount, e.g. 10.00.
    #[arg(long, required_unless_present = "body")]
    pub amount: Option<String>,
    #[arg(long, default_value = "GBP")]
    pub currency: String,
    #[arg(long, default_value = "UK.OBIE.SortCodeAccountNumber")]
    pub creditor_scheme: String,
    /// The creditor account's identification (14 digits for a sort code
    /// and account number).
    #[arg(long, required_unless_present = "body")]
    pub creditor_id: Option<String>,
    #[arg(long, required_unless_present = "body")]
    pub creditor_name: Option<String>,
    /// `RemittanceInformation.Reference`.
    #[arg(long)]
    pub reference: Option<String>,
    /// `SupplementaryData` as JSON (for a bank whose rules ask for it).
    #[arg(long)]
    pub supplementary: Option<String>,
    /// Send this JSON file (`{"Data":{"Initiation":…},"Risk":…}`) instead.
    #[arg(long)]
    pub body: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    /// The consent (default: the last one created).
    #[arg(long)]
    pub consent: Option<String>,
    /// Scope (default: `openid` and the consent's kind).
    #[arg(long)]
    pub scope: Option<String>,
    /// Follow the URL as the sandbox's headless authorisation answers it.
    #[arg(long)]
    pub headless: bool,
    /// The sandbox customer who consents (`login_hint`).
    #[arg(long)]
    pub psu: Option<String>,
    /// With --headless: print the redirect URL instead of exchanging its
    /// code.
    #[arg(long)]
    pub no_exchange: bool,
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// GET, POST, PUT, DELETE.
    pub method: String,
    /// `/open-banking/v3.1/aisp/accounts`, `aisp/accounts` or a full URL.
    pub path: String,
    /// JSON body, or `@FILE`.
    #[arg(long)]
    pub data: Option<String>,
    /// Use a client-credentials token (scope from the path, or --scope).
    #[arg(long)]
    pub cc: bool,
    #[arg(long)]
    pub scope: Option<String>,
    /// Use the token of this consent.
    #[arg(long)]
    pub consent: Option<String>,
    /// Use this access token.
    #[arg(long)]
    pub token: Option<String>,
    /// Send no token.
    #[arg(long)]
    pub no_token: bool,
    /// Extra header `name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Sign the body even where OB does not ask for it.
    #[arg(long, conflicts_with = "no_sign")]
    pub sign: bool,
    #[arg(long)]
    pub no_sign: bool,
}

#[derive(Args, Debug)]
pub struct PayArgs {
    #[command(flatten)]
    pub payment: PaymentArgs,
    /// Authorise headlessly (sandbox); otherwise print the URL and read the
    /// redirect URL from stdin.
    #[arg(long)]
    pub headless: bool,
    #[arg(long)]
    pub psu: Option<String>,
    /// How long to wait for the final status.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
}

struct Out {
    json: bool,
}

impl Out {
    /// Pretty JSON for people, one line for machines.
    fn value(&self, v: &Value) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(v)?);
        } else {
            println!("{}", serde_json::to_string_pretty(v)?);
        }
        Ok(())
    }

    /// A bare value (a URL, a token) for people, an object for machines.
    fn text(&self, key: &str, text: &str) -> Result<()> {
        if self.json {
            println!("{}", json!({ key: text }));
        } else {
            println!("{text}");
        }
        Ok(())
    }

    /// Progress, on stderr, so stdout stays the result.
    fn note(&self, msg: &str) {
        if !self.json {
            eprintln!("{msg}");
        }
    }
}

fn read_body(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("cannot read stdin")?;
        Ok(b)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_slice(&read_body(path)?)
        .with_context(|| format!("{} is not JSON", path.display()))
}

fn payment_body(a: &PaymentArgs) -> Result<Value> {
    if let Some(p) = &a.body {
        return read_json(p);
    }
    let (Some(amount), Some(id), Some(name)) = (&a.amount, &a.creditor_id, &a.creditor_name) else {
        bail!("--amount, --creditor-id and --creditor-name are required without --body");
    };
    let instruction = uuid::Uuid::new_v4().simple().to_string();
    let mut initiation = json!({
        "InstructionIdentification": instruction,
        "EndToEndIdentification": instruction,
        "InstructedAmount": { "Amount": amount, "Currency": a.currency },
        "CreditorAccount": { "SchemeName": a.creditor_scheme, "Identification": id, "Name": name },
    });
    if let Some(r) = &a.reference {
        initiation["RemittanceInformation"] = json!({ "Reference": r });
    }
    if let Some(s) = &a.supplementary {
        initiation["SupplementaryData"] =
            serde_json::from_str(s).context("--supplementary is not JSON")?;
    }
    Ok(json!({
        "Data": { "Initiation": initiation },
        "Risk": { "PaymentContextCode": "PartyToParty" },
    }))
}

fn consent_body(c: &CreateConsent) -> Result<(ConsentKind, Value)> {
    Ok(match c {
        CreateConsent::Ais {
            permissions,
            expiration,
            transactions_from,
            transactions_to,
            body,
        } => {
            if let Some(p) = body {
                return Ok((ConsentKind::Ais, read_json(p)?));
            }
            let mut data = json!({ "Permissions": permissions });
            for (k, v) in [
                ("ExpirationDateTime", expiration),
                ("TransactionFromDateTime", transactions_from),
                ("TransactionToDateTime", transactions_to),
            ] {
                if let Some(v) = v {
                    data[k] = json!(v);
                }
            }
            (ConsentKind::Ais, json!({ "Data": data, "Risk": {} }))
        }
        CreateConsent::Payment(p) => (ConsentKind::Payment, payment_body(p)?),
        CreateConsent::Funds {
            debtor_account,
            debtor_scheme,
            debtor_name,
            expiration,
            body,
        } => {
            if let Some(p) = body {
                return Ok((ConsentKind::Funds, read_json(p)?));
            }
            let mut account = json!({
                "SchemeName": debtor_scheme,
                "Identification": debtor_account.clone().unwrap_or_default(),
            });
            if let Some(n) = debtor_name {
                account["Name"] = json!(n);
            }
            let mut data = json!({ "DebtorAccount": account });
            if let Some(e) = expiration {
                data["ExpirationDateTime"] = json!(e);
            }
            (ConsentKind::Funds, json!({ "Data": data }))
        }
    })
}

/// What an exchange prints: the token response with the verified ID
/// token's claims beside it.
fn exchange_summary(x: &aspen_tpp::Exchange) -> Value {
    let mut v = x.token.clone();
    v["consent_id"] = json!(x.consent_id);
    if let Some(c) = &x.id_token {
        v["id_token_claims"] = c.clone();
    } else if let Some(c) = &x.redirect_id_token {
        v["id_token_claims"] = c.clone();
    }
    v
}

async fn read_redirect_from_stdin() -> Result<String> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the redirect URL from stdin")?;
        Ok::<_, anyhow::Error>(line.trim().to_string())
    })
    .await?
}

pub async fn run(args: TppArgs) -> Result<()> {
    let c = &args.common;
    let out = Out { json: c.json };
    match args.command {
        // Signing is offline: no client, no state.
        TppCommand::Sign { file } => {
            let kit = aspen_tpp::Kit::load(&c.kit, c.server.as_deref())?;
            let sig = kit.sign_detached(&read_body(&file)?)?;
            out.text("x-jws-signature", &sig)
        }
        command => online(c, &out, command).await,
    }
}

async fn online(c: &Common, out: &Out, command: TppCommand) -> Result<()> {
    let observer: Option<aspen_tpp::Observer> = c.verbose.then(|| {
        std::sync::Arc::new(|t: &aspen_tpp::Traffic<'_>| eprintln!("{t}")) as aspen_tpp::Observer
    });
    let kit = aspen_tpp::Kit::load(&c.kit, c.server.as_deref())?;
    let mut tpp = Tpp::new(
        kit,
        Duration::from_secs(c.timeout_secs.clamp(1, 10)),
        Duration::from_secs(c.timeout_secs.max(1)),
        observer,
    )?;
    match command {
        TppCommand::Sign { file } => {
            let sig = tpp.kit.sign_detached(&read_body(&file)?)?;
            out.text("x-jws-signature", &sig)
        }
        TppCommand::Register(r) => {
            if let Some(id) = &r.client_id {
                tpp.adopt(id, &r.auth_method)?;
                return out.value(
                    &json!({ "client_id": id, "token_endpoint_auth_method": r.auth_method }),
                );
            }
            let mut extra = serde_json::Map::new();
            if r.headless {
                extra.insert("aspen_headless".into(), json!(true));
            }
            if let Some(dn) = &r.subject_dn {
                extra.insert("tls_client_auth_subject_dn".into(), json!(dn));
            }
            let claims = tpp
                .registration_claims(&r.auth_method, r.redirect_uri.as_deref(), &extra)
                .await?;
            let body = tpp.register(&claims).await?;
            out.note(&format!(
                "registered: client_id {} (saved in {})",
                body["client_id"].as_str().unwrap_or_default(),
                aspen_tpp::State::path(&tpp.kit.dir).display()
            ));
            out.value(&body)
        }
        TppCommand::Token { scope, print } => {
            let v = tpp.client_credentials(&scope).await?;
            if print {
                out.text(
                    "access_token",
                    v["access_token"].as_str().unwrap_or_default(),
                )
            } else {
                out.value(&v)
            }
        }
        TppCommand::Consent(ConsentCommand::Create(create)) => {
            let (kind, body) = consent_body(&create)?;
            let v = tpp.create_consent(kind, body).await?;
            out.note(&format!(
                "consent {} created; next: aspen tpp authorize --consent {}",
                v["Data"]["ConsentId"].as_str().unwrap_or_default(),
                v["Data"]["ConsentId"].as_str().unwrap_or_default(),
            ));
            out.value(&v)
        }
        TppCommand::Authorize(a) => {
            let consent = tpp.consent_or_last(a.consent.as_deref())?;
            let url = tpp
                .authorize_url(&consent, a.scope.as_deref(), a.psu.as_deref())
                .await?;
            if !a.headless {
                out.note(
                    "open this URL in a browser; after the customer consents, run \
                     `aspen tpp exchange --code '<the URL the browser was sent to>'`",
                );
                return out.text("url", &url);
            }
            let redirect = tpp.authorize_headless(&url).await?;
            if a.no_exchange {
                return out.text("redirect", &redirect);
            }
            let x = tpp.exchange(&redirect).await?;
            out.value(&exchange_summary(&x))
        }
        TppCommand::Exchange { code, print } => {
            let x = tpp.exchange(&code).await?;
            if print {
                out.text(
                    "access_token",
                    x.token["access_token"].as_str().unwrap_or_default(),
                )
            } else {
                out.value(&exchange_summary(&x))
            }
        }
        TppCommand::Call(a) => {
            let method = reqwest::Method::from_bytes(a.method.to_ascii_uppercase().as_bytes())
                .with_context(|| format!("{} is not an HTTP method", a.method))?;
            let body = match &a.data {
                Some(d) => Some(match d.strip_prefix('@') {
                    Some(f) => read_body(Path::new(f))?,
                    None => d.clone().into_bytes(),
                }),
                None => None,
            };
            let token = if a.no_token {
                TokenChoice::None
            } else if let Some(t) = a.token {
                TokenChoice::Raw(t)
            } else if let Some(id) = a.consent {
                TokenChoice::Consent(id)
            } else if a.cc || a.scope.is_some() {
                TokenChoice::ClientCredentials(a.scope)
            } else {
                TokenChoice::Auto
            };
            let headers = a
                .headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .with_context(|| format!("header {h:?} is not `name: value`"))
                })
                .collect::<Result<Vec<_>>>()?;
            let sign = if a.sign {
                Some(true)
            } else if a.no_sign {
                Some(false)
            } else {
                None
            };
            let reply = tpp
                .call(CallRequest {
                    method,
                    path: a.path,
                    body,
                    token,
                    headers,
                    sign,
                })
                .await?;
            let body = reply
                .json()
                .unwrap_or_else(|| json!(String::from_utf8_lossy(&reply.body)));
            if out.json {
                out.value(&json!({
                    "status": reply.status,
                    "signature_verified": reply.signature_verified,
                    "body": body,
                }))
            } else {
                if reply.signature_verified == Some(true) {
                    eprintln!("(the bank's x-jws-signature verified)");
                }
                match &body {
                    Value::String(s) => {
                        println!("{s}");
                        Ok(())
                    }
                    v => out.value(v),
                }
            }
        }
        TppCommand::Pay(p) => pay(&mut tpp, out, p).await,
        TppCommand::Postman { out: dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let collection = dir.join("aspen-tpp.postman_collection.json");
            let environment = dir.join("aspen-tpp.postman_environment.json");
            std::fs::write(
                &collection,
                serde_json::to_vec_pretty(&aspen_tpp::postman::collection(&tpp.kit))?,
            )?;
            std::fs::write(
                &environment,
                serde_json::to_vec_pretty(&aspen_tpp::postman::environment(&tpp.kit, &tpp.state))?,
            )?;
            out.value(&json!({
                "collection": collection.display().to_string(),
                "environment": environment.display().to_string(),
            }))
        }
    }
}

async fn pay(tpp: &mut Tpp, out: &Out, p: PayArgs) -> Result<()> {
    let body = payment_body(&p.payment)?;
    let consent = tpp.create_consent(ConsentKind::Payment, body).await?;
    let id = consent["Data"]["ConsentId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    out.note(&format!("payment consent {id} created"));
    let url = tpp.authorize_url(&id, None, p.psu.as_deref()).await?;
    let redirect = if p.headless {
        tpp.authorize_headless(&url).await?
    } else {
        eprintln!(
            "open this URL in a browser, approve the payment, then paste the URL the browser \
             was sent to:\n{url}"
        );
        read_redirect_from_stdin().await?
    };
    tpp.exchange(&redirect).await?;
    out.note(&format!("consent {id} authorised"));
    let order = tpp.order_domestic_payment(&id).await?;
    let payment_id = order["Data"]["DomesticPaymentId"]
        .as_str()
        .context("the payment response has no Data.DomesticPaymentId")?
        .to_string();
    out.note(&format!(
        "payment {payment_id} {}; waiting for the final status",
        order["Data"]["Status"].as_str().unwrap_or_default()
    ));
    let last = tpp
        .wait_for_payment(
            &payment_id,
            Duration::from_secs(p.wait_secs),
            Duration::from_millis(p.poll_ms.max(50)),
        )
        .await?;
    let status = last["Data"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    out.value(&last)?;
    if status == "Rejected" {
        bail!("payment {payment_id} was rejected");
    }
    out.note(&format!("payment {payment_id} {status}"));
    Ok(())
}
