//! Command line: `aspen serve | migrate | sandbox init | keys …`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::{Config, Profile};
use crate::datadir::DataDir;

#[derive(Parser, Debug)]
#[command(
    name = "aspen",
    version,
    about = "aspen — an Open Banking UK ASPSP platform (OB Read/Write v3.1.2, DCR v3.2, FAPI)",
    long_about = "aspen runs the authorisation server, the PSU login and consent pages and the \
OB Read/Write API v3.1.2 resource server in one process.\n\n\
With no configuration, `aspen serve` starts the sandbox profile on https://127.0.0.1:8443 with \
a seeded bank and everything it needs under ./aspen-data.\n\n\
Configuration: --config FILE (TOML) plus ASPEN_* environment variables \
(ASPEN_LISTEN, ASPEN_DATABASE_URL, ASPEN_TRUST__CLIENT_CA_FILES, …; a double underscore \
descends into a table)."
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "ASPEN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the server (all roles in one process). Creates the data
    /// directory, runs migrations and, in the sandbox profile, seeds the
    /// sandbox bank on first start.
    Serve(ServeArgs),
    /// Apply database migrations and exit (they also run at start-up).
    Migrate(StoreArgs),
    /// Sandbox tooling.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Manage the server's signing keys (published in /jwks).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Operator-registered clients (for TPPs and tools that do not use DCR).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// The reference core-banking connector (`[core] kind = "http"`).
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// Consents, as the bank sees them.
    #[command(subcommand)]
    Consents(ConsentsCommand),
    /// The TPP's side: register, tokens, consents, authorisation, calls,
    /// payments, a Postman collection (with a kit).
    Tpp(crate::tpp::TppArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConsentsCommand {
    /// Revoke a consent on the bank's side (fraud, a closed relationship):
    /// it becomes `Revoked`, every token bound to it stops at once, and a
    /// TPP registered for events hears of it
    /// (consent-authorization-revoked).
    Revoke {
        consent_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectorCommand {
    /// Serve the connector API over aspen's own ledger, on a port of its
    /// own, behind mTLS with the data directory's connector CA.
    Serve(crate::connector::ConnectorArgs),
}

#[derive(Subcommand, Debug)]
pub enum ClientsCommand {
    /// Register a client from a kit, or an SSA plus metadata.
    Add(crate::clients::AddArgs),
    /// List the registered clients.
    List,
    /// Delete a client and revoke its tokens.
    Remove { client_id: String },
}

#[derive(Args, Debug, Default)]
pub struct StoreArgs {
    /// Database URL (`sqlite://path?mode=rwc` or `postgres://…`); default: the
    /// SQLite file in the data directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Data directory (keys, certificates, SQLite database).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// `sandbox` (default) or `production`.
    #[arg(long)]
    pub profile: Option<Profile>,
    /// Listen address, e.g. 127.0.0.1:8443.
    #[arg(long)]
    pub listen: Option<String>,
    /// Public base URL (issuer and links), when it differs from the listener.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Seed this many extra sandbox transactions (load tests).
    #[arg(long)]
    pub sandbox_transactions: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Write a ready TPP kit: transport certificate, signing key + JWKS, an
    /// SSA signed by the sandbox directory, the CA to trust, and a README.
    Init(InitArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Output directory for the kit.
    #[arg(long)]
    pub out: PathBuf,
    /// Redirect URI(s) to put in the SSA (https). Repeat for several.
    #[arg(long = "redirect-uri", required = true)]
    pub redirect_uris: Vec<String>,
    /// Organisation name (certificate O, SSA org_name).
    #[arg(long, default_value = "Sandbox TPP Ltd")]
    pub org_name: String,
    /// Directory org id (certificate OU); random when omitted.
    #[arg(long)]
    pub org_id: Option<String>,
    /// Software id (certificate CN); random when omitted.
    #[arg(long)]
    pub software_id: Option<String>,
    /// Client name shown to PSUs on the consent page.
    #[arg(long, default_value = "Sandbox TPP")]
    pub client_name: String,
    /// Software roles (AISP, PISP, CBPII).
    #[arg(long = "role", default_values_t = ["AISP".to_string(), "PISP".to_string(), "CBPII".to_string()])]
    pub roles: Vec<String>,
    /// Data directory holding the sandbox CA and directory key.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// An ECDSA P-256 transport key instead of the RSA-2048 one the OB
    /// Directory issues.
    #[arg(long)]
    pub ec_transport: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the published signing keys.
    List(DataDirArg),
    /// Add a new current signing key; previous keys stay published until
    /// retired. Running servers pick it up on restart.
    Rotate(DataDirArg),
    /// Stop publishing a previous key.
    Retire {
        kid: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Args, Debug)]
pub struct DataDirArg {
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aspen: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aspen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = rt.block_on(run(cli.command, config));
    // What the runtime's tasks log as it stops is written too.
    drop(rt);
    crate::logging::flush();
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aspen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ASPEN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal. Elsewhere (a file, a pipe, a journal)
    // the same line comes from our formatter, which skips the styling
    // machinery the default runs even with colours off (issue 15).
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Lines to a file, a pipe or a journal wait up to `log.flush_ms` to be
    // written together (`logging::Held`); on a terminal each goes at once.
    let held = (!terminal && config.log.flush_ms > 0)
        .then(|| crate::logging::Held::start(Duration::from_millis(config.log.flush_ms)).ok())
        .flatten();
    let writer = match held {
        Some(h) => BoxMakeWriter::new(h),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(writer);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else if terminal {
        builder.try_init()
    } else {
        builder
            .event_format(crate::logging::Line)
            .fmt_fields(crate::logging::Fields)
            .try_init()
    };
}

fn apply_store_args(config: &mut Config, args: &StoreArgs) {
    if let Some(u) = &args.database_url {
        config.database_url = Some(u.clone());
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
}

async fn run(command: Command, mut config: Config) -> Result<()> {
    match command {
        Command::Tpp(args) => crate::tpp::run(args).await,
        Command::Serve(args) => {
            apply_store_args(&mut config, &args.store);
            if let Some(p) = args.profile {
                config.profile = p;
            }
            if let Some(l) = args.listen {
                config.listen = l;
            }
            if let Some(u) = args.public_url {
                config.public_url = Some(u);
            }
            if let Some(n) = args.sandbox_transactions {
                config.sandbox.transactions = n;
            }
            config.validate()?;
            let started = std::time::Instant::now();
            let server = crate::server::start(config).await?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ready: {}",
                server.public_url
            );
            // The start's held lines first, so they come before this one.
            crate::logging::flush();
            eprintln!(
                "aspen: serving on {} (data in {}); aspsp_org_id {}",
                server.public_url,
                server.data_dir.display(),
                server.aspsp_org_id
            );
            let stop = server.shutdown_sender();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                let _ = stop.send(true);
            });
            server.wait().await;
            Ok(())
        }
        Command::Migrate(args) => {
            apply_store_args(&mut config, &args);
            DataDir::open(&config.data_dir)?;
            let url = config.database_url();
            let store = aspen_store::connect(&url)
                .await
                .context("cannot open the database")?;
            store.migrate().await.context("migration failed")?;
            println!("migrations applied ({})", store.backend_name());
            Ok(())
        }
        Command::Sandbox(SandboxCommand::Init(args)) => {
            if let Some(d) = &args.data_dir {
                config.data_dir = d.clone();
            }
            if config.profile == Profile::Production {
                anyhow::bail!("sandbox kits cannot be created under the production profile");
            }
            let data = DataDir::open(&config.data_dir)?;
            let server_url = config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("https://{}", config.listen));
            let kit = crate::kit::create(
                &data,
                &crate::kit::KitOptions {
                    out: args.out.clone(),
                    redirect_uris: args.redirect_uris,
                    org_name: args.org_name,
                    org_id: args.org_id,
                    software_id: args.software_id,
                    client_name: args.client_name,
                    roles: args.roles,
                    directory_issuer: config.sandbox.directory_issuer.clone(),
                    server_url,
                    aspsp_org_id: config.aspsp_org_id.clone(),
                    ec_transport: args.ec_transport,
                    sandbox_seed: config.sandbox.seed,
                },
            )?;
            println!(
                "TPP kit written to {} (org_id {}, software_id {}, signing kid {}; the bank's aspsp_org_id {}); see its README.md",
                args.out.display(),
                kit.org_id,
                kit.software_id,
                kit.kid,
                kit.aspsp_org_id
            );
            Ok(())
        }
        Command::Connector(ConnectorCommand::Serve(args)) => {
            apply_store_args(&mut config, &args.store);
            config.validate()?;
            let connector = crate::connector::start(config, &args).await?;
            eprintln!(
                "aspen connector: serving the core connector API on https://{}",
                connector.addr
            );
            let stop = connector.shutdown_sender();
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
            });
            connector.wait().await;
            Ok(())
        }
        Command::Consents(ConsentsCommand::Revoke { consent_id, store }) => {
            apply_store_args(&mut config, &store);
            DataDir::open(&config.data_dir)?;
            let db = aspen_store::connect(&config.database_url())
                .await
                .context("cannot open the database")?;
            db.migrate().await.context("migration failed")?;
            let c = db
                .consent(&consent_id)
                .await?
                .filter(|c| !c.deleted)
                .ok_or_else(|| anyhow::anyhow!("no consent {consent_id}"))?;
            if !matches!(c.status.as_str(), "Authorised" | "AwaitingAuthorisation") {
                anyhow::bail!(
                    "consent {consent_id} is {}; only a live consent can be revoked",
                    c.status
                );
            }
            let now = chrono::Utc::now().timestamp_millis();
            if db.end_consent(&consent_id, Some("Revoked"), now).await? {
                println!("consent {consent_id} revoked; its tokens no longer work");
            } else {
                println!("consent {consent_id} was revoked meanwhile");
            }
            Ok(())
        }
        Command::Clients(cmd) => match cmd {
            ClientsCommand::Add(args) => crate::clients::add(config, args).await,
            ClientsCommand::List => crate::clients::list(config).await,
            ClientsCommand::Remove { client_id } => {
                crate::clients::remove(config, &client_id).await
            }
        },
        Command::Keys(cmd) => {
            let dir = match &cmd {
                KeysCommand::List(d) | KeysCommand::Rotate(d) => d,
                KeysCommand::Retire { dir, .. } => dir,
            };
            if let Some(d) = &dir.data_dir {
                config.data_dir = d.clone();
            }
            let data = DataDir::open(&config.data_dir)?;
            let mut ring = data.keyring()?;
            match cmd {
                KeysCommand::List(_) => {}
                KeysCommand::Rotate(_) => {
                    let kid = ring.rotate()?.kid().to_string();
                    if config.profile == Profile::Sandbox {
                        // The sandbox CA certifies the new key at once, so
                        // /jwks publishes it with x5c.
                        let org_id = match &config.aspsp_org_id {
                            Some(id) => id.clone(),
                            None => data.aspsp_org_id()?,
                        };
                        ring.certify_missing(&data.sandbox_ca()?, &config.branding.name, &org_id)?;
                    } else {
                        println!(
                            "put the bank's certificate for {kid} in keys/{kid}.crt.pem (chain, leaf first) before restarting"
                        );
                    }
                    println!("new current signing key {kid}; restart the servers to use it");
                }
                KeysCommand::Retire { kid, .. } => {
                    ring.retire(&kid)?;
                    println!("key {kid} retired");
                }
            }
            for kid in &ring.state.published {
                let mark = if *kid == ring.state.current {
                    " (current)"
                } else {
                    ""
                };
                println!("{kid}{mark}");
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
