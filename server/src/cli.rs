//! The `switchyard` command line. Exit status 2 means bad configuration or input, named in the
//! message; 1 means something failed while running.

use crate::config::{CommonArgs, Config, LogFormat, ServeArgs};
use crate::store::{Actor, Store};
use clap::{Parser, Subcommand};
use model::Role;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "Switchyard: a customer-data integration hub in one binary")]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: tracking API, delivery, admin app.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Sources and destinations as code.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Privacy requests.
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// The integration catalog: list, lint manifests, run fixtures.
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
}

#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// Every integration: slug, version, name.
    List {
        /// Read integrations from this folder instead of the built-in ones.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Check every manifest (schema, logo, fixture coverage); exits non-zero on any problem.
    Lint {
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Run the fixtures of one integration or all; ends with "N passed, M failed".
    Test {
        slug: Option<String>,
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Delete every stored event and rejected message of a user; --suppress drops their future events.
    Delete {
        #[arg(long)]
        user_id: Option<String>,
        #[arg(long)]
        anonymous_id: Option<String>,
        #[arg(long)]
        suppress: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (the password is read from standard input with --password-stdin).
    Add {
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token and print it, alone, on standard output.
    Create {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create or update the sources and destinations of FILE (matched by name).
    Apply { file: PathBuf },
    /// Print the sources and destinations as a workspace file.
    Export,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Fails with exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serve_args = match &cli.command {
        Command::Serve(a) => a.clone(),
        _ => ServeArgs::default(),
    };
    let config = match Config::load(&cli.common, &serve_args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format, matches!(cli.command, Command::Serve(_)));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_usage(&e) => {
            eprintln!("switchyard: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Errors in what the user gave us (exit status 2), as opposed to failures while running.
fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Usage>().is_some()
        || e.downcast_ref::<crate::workspace::WorkspaceError>().is_some()
        || e.downcast_ref::<crate::workspace::InvalidWorkspace>().is_some()
        || matches!(e.downcast_ref::<crate::store::StoreError>(), Some(crate::store::StoreError::Taken { .. }))
}

fn init_logging(format: LogFormat, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},sqlx=warn,tower_sessions=warn")));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn open(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data dir {}: {e}", config.data_dir.display()))?;
    Store::open_with(&config.database_url, config.durability == crate::config::Durability::Fsync).await
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => serve(config).await,
        Command::Users(UsersCommand::Add { email, role, .. }) => {
            let email = model::account::parse_email(&email).map_err(|m| Usage(format!("email '{email}': {m}")))?;
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            model::account::check_password(&password).map_err(|m| Usage(format!("password: {m}")))?;
            let store = open(&config).await?;
            let hash = crate::password::hash(password).await?;
            let user = store.create_user(&Actor::Cli, &email, &hash, role).await?;
            eprintln!("added {} ({}) as {}", user.email, user.id, user.role);
            Ok(())
        }
        Command::Users(UsersCommand::List) => {
            let store = open(&config).await?;
            let (users, _) = store.users_page(1000, None).await?;
            for u in users {
                println!("{}\t{}\t{}", u.id, u.email, u.role);
            }
            Ok(())
        }
        Command::Tokens(TokensCommand::Create { name, role }) => {
            let store = open(&config).await?;
            let token = store.create_token(&Actor::Cli, &name, role).await?;
            eprintln!("created token {} ({}) with role {}; it is shown only now", token.row.name, token.row.id, role);
            println!("{}", token.secret);
            Ok(())
        }
        Command::Workspace(WorkspaceCommand::Apply { file }) => {
            let (ws, resolved) = crate::workspace::parse(&file)?;
            let integrations = crate::integrations::Integrations::load(&crate::keys::load(&config)?, &config)?;
            let store = open(&config).await?;
            let report = crate::workspace::apply(&store, &Actor::Cli, &ws, &resolved, &integrations).await?;
            eprintln!("{report}");
            Ok(())
        }
        Command::Privacy(PrivacyCommand::Delete { user_id, anonymous_id, suppress }) => {
            if user_id.is_none() && anonymous_id.is_none() {
                return Err(Usage("privacy delete: give --user-id, --anonymous-id or both".into()).into());
            }
            let store = open(&config).await?;
            let out = store.delete_user_data(&Actor::Cli, user_id.as_deref(), anonymous_id.as_deref(), suppress).await?;
            eprintln!(
                "deleted {} events and {} rejected messages{}",
                out.events_deleted,
                out.rejections_deleted,
                if suppress { "; further events from this user are dropped (servers pick this up within seconds)" } else { "" }
            );
            Ok(())
        }
        Command::Integrations(c) => crate::integrations::cli::run(c),
        Command::Workspace(WorkspaceCommand::Export) => {
            let integrations = crate::integrations::Integrations::load(&crate::keys::load(&config)?, &config)?;
            let store = open(&config).await?;
            let ws = crate::workspace::export(&store, &integrations).await?;
            print!("{}", crate::workspace::to_toml(&ws)?);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Everything that can be wrong with the input is checked before anything binds.
    let workspace = match &config.workspace {
        Some(path) => Some(crate::workspace::parse(path)?),
        None => None,
    };
    let keys = crate::keys::load(&config)?;
    let integrations = crate::integrations::Integrations::load(&keys, &config)?;
    let store = open(&config).await?;
    if let Some((ws, resolved)) = &workspace {
        let report = crate::workspace::apply(&store, &Actor::Cli, ws, resolved, &integrations)
            .await?;
        tracing::info!(%report, "applied the workspace file");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    crate::http::serve(config, store.clone(), keys, integrations, listener, shutdown_signal()).await?;
    store.close().await;
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are installed here, before the server listens: set
/// up on the future's first poll instead, a SIGTERM sent just after the server answered its
/// first request could still meet the default action and kill the process (seen once in the
/// graceful-shutdown test).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (term, int) = handlers;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    }
}
