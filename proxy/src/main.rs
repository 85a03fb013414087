//! The `shoal` binary: parses flags and environment, then calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shoal_proxy::cli::{print_namespaces, Client};
use shoal_proxy::config::{Config, LogFormat, RemoteOrigin};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Shoal: an edge-cached pull-through OCI registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node (single node with the embedded origin by default).
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "SHOAL_LISTEN", default_value = "127.0.0.1:5000")]
        listen: String,
        /// Data directory (metadata and the embedded origin's blobs).
        #[arg(long, env = "SHOAL_DATA", default_value = "./shoal-data")]
        data: PathBuf,
        #[arg(long, env = "SHOAL_NODE_ID", default_value_t = 1)]
        node_id: u64,
        #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Worker threads of the HTTP front end.
        #[arg(long, env = "SHOAL_THREADS", default_value_t = 2)]
        threads: usize,
        /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
        #[arg(long, env = "SHOAL_SHUTDOWN_TIMEOUT", default_value_t = 10)]
        shutdown_timeout: u64,
        /// URL of a separate `shoal-origin` service; without it the origin is embedded.
        #[arg(long, env = "SHOAL_ORIGIN")]
        origin: Option<String>,
        /// File holding the origin's shared secret (or set SHOAL_ORIGIN_SECRET).
        #[arg(long, env = "SHOAL_ORIGIN_SECRET_FILE", requires = "origin")]
        origin_secret_file: Option<PathBuf>,
    },
    /// Manage namespaces (the first path segment of every repository).
    Namespace {
        #[command(subcommand)]
        command: NamespaceCmd,
        #[arg(
            long,
            env = "SHOAL_SERVER",
            default_value = "http://127.0.0.1:5000",
            global = true
        )]
        server: String,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NamespaceCmd {
    /// Create a namespace: lowercase ASCII, no spaces, at most 255 characters; cannot be renamed.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List namespaces.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve {
            listen,
            data,
            node_id,
            log_format,
            threads,
            shutdown_timeout,
            origin,
            origin_secret_file,
        } => {
            shoal_proxy::logging::init(log_format);
            let origin = match origin {
                None => None,
                Some(url) => match origin_secret(origin_secret_file) {
                    Ok(secret) => Some(RemoteOrigin { url, secret }),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let config = Config {
                listen,
                data,
                node_id,
                threads,
                shutdown_timeout_secs: shutdown_timeout,
                origin,
            };
            shoal_proxy::node::run(config, shoal_proxy::node::os_signals())
        }
        Cmd::Namespace {
            command,
            server,
            json,
        } => namespace(command, &server, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn origin_secret(file: Option<PathBuf>) -> anyhow::Result<String> {
    let secret = match file {
        Some(f) => {
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
        }
        None => std::env::var("SHOAL_ORIGIN_SECRET").unwrap_or_default(),
    };
    let secret = secret.trim().to_string();
    if secret.is_empty() {
        anyhow::bail!("--origin needs the origin's shared secret: --origin-secret-file FILE or SHOAL_ORIGIN_SECRET");
    }
    Ok(secret)
}

fn namespace(cmd: NamespaceCmd, server: &str, json: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::new(server)?;
    rt.block_on(async {
        match cmd {
            NamespaceCmd::Create { name, description } => {
                let ns = client
                    .namespace_create(&name, description.as_deref())
                    .await?;
                if json {
                    println!("{ns}");
                } else {
                    println!("created namespace {}", ns["name"].as_str().unwrap_or(&name));
                }
            }
            NamespaceCmd::List => {
                let list = client.namespace_list().await?;
                if json {
                    println!("{list}");
                } else {
                    print_namespaces(&list);
                }
            }
        }
        Ok(())
    })
}
