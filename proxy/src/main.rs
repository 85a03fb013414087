//! The `shoal` binary: parses flags and environment, then calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use reqwest::Method;
use shoal_proxy::cli::{print_cluster, print_namespaces, Client};
use shoal_proxy::config::{Cluster, Config, LogFormat, RemoteOrigin};

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

// Parsed once at start-up; the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// Public API URL other members and operators use (default: http:// + the bound address).
        #[arg(long, env = "SHOAL_ADVERTISE_URL")]
        advertise_url: Option<String>,
        /// UDP address of the QUIC cluster plane; enables multi-node mode. The nodes of a
        /// region share one origin service, so this needs --origin.
        #[arg(long, env = "SHOAL_CLUSTER_LISTEN", requires_all = ["cluster_tls", "origin"])]
        cluster_listen: Option<std::net::SocketAddr>,
        /// Cluster-plane address peers dial (default: the bound one).
        #[arg(long, env = "SHOAL_CLUSTER_ADVERTISE", requires = "cluster_listen")]
        cluster_advertise: Option<String>,
        /// This node's certificate directory from `shoal cluster cert`.
        #[arg(long, env = "SHOAL_CLUSTER_TLS", requires = "cluster_listen")]
        cluster_tls: Option<PathBuf>,
        /// Start a new region with this node as its first voter.
        #[arg(long, requires = "cluster_listen", conflicts_with = "join")]
        bootstrap: bool,
        /// API URL of any member of the region to join.
        #[arg(long, env = "SHOAL_JOIN", requires = "cluster_listen")]
        join: Option<String>,
        /// Voters the region should have; further nodes stay learners.
        #[arg(long, env = "SHOAL_VOTERS", default_value_t = 3)]
        voters: usize,
        /// Build a metadata snapshot (and purge the Raft log behind it) every N entries.
        #[arg(long, env = "SHOAL_SNAPSHOT_EVERY", default_value_t = 5000)]
        snapshot_every: u64,
        /// Directory of the blob cache (used with --origin; default: <data>/cache).
        #[arg(long, env = "SHOAL_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Most bytes the blob cache keeps, e.g. 50GiB.
        #[arg(long, env = "SHOAL_CACHE_MAX_BYTES", default_value = "10GiB", value_parser = parse_size)]
        cache_max_bytes: u64,
        /// Requests per client IP without credentials, e.g. 500/10m, or off.
        #[arg(long, env = "SHOAL_ANONYMOUS_RATE_LIMIT", default_value = "500/10m")]
        anonymous_rate_limit: String,
        /// Browser origin allowed to call the node (repeatable; `*` for any). Off by default.
        #[arg(
            long = "cors-origin",
            env = "SHOAL_CORS_ORIGINS",
            value_delimiter = ','
        )]
        cors_origins: Vec<String>,
    },
    /// Region membership and the cluster CA.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Manage namespaces (the first path segment of every repository).
    Namespace {
        #[command(subcommand)]
        command: NamespaceCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Access credentials: generated username + secret for docker login and CI.
    Credential {
        #[command(subcommand)]
        command: CredentialCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Print a Kubernetes imagePullSecret for a credential (gives it a fresh secret).
    PullSecret {
        #[arg(long)]
        credential: String,
        /// Kubernetes namespace of the Secret.
        #[arg(long)]
        namespace: String,
        /// Name of the Secret (default shoal-<credential name>).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Users (people who sign in with a password).
    User {
        #[command(subcommand)]
        command: PrincipalCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Service accounts (automation; they act through credentials).
    ServiceAccount {
        #[command(subcommand)]
        command: PrincipalCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Role bindings: owner, admin, developer or reader, on the organisation or a namespace.
    Role {
        #[command(subcommand)]
        command: RoleCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
}

#[derive(Subcommand)]
enum CredentialCmd {
    /// Create a credential; its password is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// containerRegistry (push and pull), containerRegistry:all, or containerRegistry:pull.
        #[arg(long, default_value = "containerRegistry:pull")]
        scope: String,
        /// Limit the credential to one namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Lifetime, e.g. 24h or 30d.
        #[arg(long)]
        expires: Option<String>,
        /// The user or service account it acts for (default: you).
        #[arg(long)]
        owner: Option<String>,
    },
    /// Revoke a credential by id; its tokens stop working too.
    Revoke { id: String },
    /// Your credentials (all of them for an admin).
    List,
}

#[derive(Subcommand)]
enum PrincipalCmd {
    /// Create one (a user's password comes from --password or SHOAL_NEW_PASSWORD).
    Create {
        name: String,
        #[arg(long, env = "SHOAL_NEW_PASSWORD")]
        password: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
enum RoleCmd {
    /// Grant PRINCIPAL a role on the organisation, or on --namespace.
    Bind {
        principal: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Remove PRINCIPAL's role on the organisation, or on --namespace.
    Unbind {
        principal: String,
        #[arg(long)]
        namespace: Option<String>,
    },
    List,
}

/// The node an operator command talks to, and how it prints.
#[derive(clap::Args)]
struct ServerArgs {
    /// API URL of the node to ask.
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
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Create the cluster CA in DIR (keep its ca-key.pem off the nodes).
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue node ID a certificate from the CA in DIR, into DIR/node-ID/ (its --cluster-tls).
    Cert {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node_id: u64,
        /// Extra DNS names or IP addresses the node is reached by (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Leader, term and members as the node at --server sees them.
    Status,
    /// Remove a member at runtime (removing the leader makes it step down; the rest elect).
    RemoveNode { id: u64 },
}

#[derive(Subcommand)]
enum NamespaceCmd {
    /// Create a namespace: lowercase ASCII, no spaces, at most 255 characters; cannot be renamed.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Allow anonymous pulls (default: private).
        #[arg(long)]
        public: bool,
    },
    /// Change a namespace's configuration.
    Set {
        name: String,
        #[arg(long, value_parser = ["public", "private"])]
        visibility: String,
    },
    /// Delete a namespace with all its repositories, tags and role bindings.
    Delete { name: String },
    /// List namespaces.
    List,
}

/// A byte size such as `50GiB`, `512MB` or `1048576`.
fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size like 50GiB: {e}"))
}

fn main() -> ExitCode {
    shoal_proxy::malloc::limit_arenas();
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
            advertise_url,
            cluster_listen,
            cluster_advertise,
            cluster_tls,
            bootstrap,
            join,
            voters,
            snapshot_every,
            cache_dir,
            cache_max_bytes,
            anonymous_rate_limit,
            cors_origins,
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
                advertise_url,
                snapshot_every,
                cache_dir,
                cache_max_bytes,
                edge: shoal_proxy::edge::EdgeConfig {
                    anonymous_rate: match shoal_proxy::edge::parse_rate(&anonymous_rate_limit) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("error: --anonymous-rate-limit: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                    cors_origins,
                },
                cluster: cluster_listen.map(|listen| Cluster {
                    listen,
                    advertise: cluster_advertise,
                    tls_dir: cluster_tls.unwrap_or_default(),
                    bootstrap,
                    join,
                    voters,
                }),
            };
            shoal_proxy::node::run(config, shoal_proxy::node::os_signals())
        }
        Cmd::Namespace { command, target } => namespace(command, &target.server, target.json),
        Cmd::Credential { command, target } => {
            let (method, path, body) = match command {
                CredentialCmd::Create {
                    name,
                    scope,
                    namespace,
                    expires,
                    owner,
                } => (
                    Method::POST,
                    "credentials".to_string(),
                    Some(
                        serde_json::json!({"name": name, "scope": scope, "namespace": namespace, "expires": expires, "owner": owner}),
                    ),
                ),
                CredentialCmd::Revoke { id } => (Method::DELETE, format!("credentials/{id}"), None),
                CredentialCmd::List => (Method::GET, "credentials".to_string(), None),
            };
            api_call(&target, method, &path, body, "credentials")
        }
        Cmd::PullSecret {
            credential,
            namespace,
            name,
            target,
        } => {
            let body = serde_json::json!({"namespace": namespace, "name": name});
            let path = format!("credentials/{credential}/pull-secret");
            let target = ServerArgs {
                json: true,
                ..target
            };
            api_call(&target, Method::POST, &path, Some(body), "")
        }
        Cmd::User { command, target } => principal(command, &target, "users"),
        Cmd::ServiceAccount { command, target } => principal(command, &target, "service-accounts"),
        Cmd::Role { command, target } => {
            let (method, body) = match command {
                RoleCmd::Bind {
                    principal,
                    role,
                    namespace,
                } => (
                    Method::POST,
                    Some(
                        serde_json::json!({"principal": principal, "role": role, "namespace": namespace}),
                    ),
                ),
                RoleCmd::Unbind {
                    principal,
                    namespace,
                } => (
                    Method::DELETE,
                    Some(serde_json::json!({"principal": principal, "namespace": namespace})),
                ),
                RoleCmd::List => (Method::GET, None),
            };
            api_call(&target, method, "role-bindings", body, "role_bindings")
        }
        Cmd::Cluster { command, target } => cluster(command, &target.server, target.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cluster(cmd: ClusterCmd, server: &str, json: bool) -> anyhow::Result<()> {
    use shoal_raft::plane::tls;
    match cmd {
        ClusterCmd::Init { dir } => {
            tls::init_ca(&dir)?;
            println!("created the cluster CA in {}", dir.display());
            Ok(())
        }
        ClusterCmd::Cert {
            dir,
            node_id,
            hosts,
        } => {
            let out = tls::issue_node_cert(&dir, node_id, &hosts)?;
            println!(
                "issued {} for node {node_id}: run it with --cluster-tls {}",
                tls::node_name(node_id),
                out.display()
            );
            Ok(())
        }
        ClusterCmd::Status => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let status = rt.block_on(Client::new(server)?.cluster_status())?;
            if json {
                println!("{status}");
            } else {
                print_cluster(&status);
            }
            Ok(())
        }
        ClusterCmd::RemoveNode { id } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(Client::new(server)?.remove_node(id))?;
            println!("removed node {id}");
            Ok(())
        }
    }
}

fn principal(cmd: PrincipalCmd, target: &ServerArgs, path: &str) -> anyhow::Result<()> {
    match cmd {
        PrincipalCmd::Create { name, password } => api_call(
            target,
            Method::POST,
            path,
            Some(serde_json::json!({"name": name, "password": password})),
            "principals",
        ),
        PrincipalCmd::List => api_call(target, Method::GET, "users", None, "principals"),
    }
}

/// One management call: JSON with --json, else a table of `list_key` (or of the one object).
fn api_call(
    target: &ServerArgs,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    list_key: &str,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(Client::new(&target.server)?.send(method, path, body))?;
    if target.json {
        println!("{out}");
    } else {
        shoal_proxy::cli::print_objects(&out, list_key);
    }
    Ok(())
}

fn origin_secret(file: Option<PathBuf>) -> anyhow::Result<String> {
    let secret =
        shoal_origin::read_secret(file.as_deref()).context("reading --origin-secret-file")?;
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
            NamespaceCmd::Set { name, visibility } => {
                let ns = client
                    .send(
                        Method::PATCH,
                        &format!("namespaces/{name}"),
                        Some(serde_json::json!({ "visibility": visibility })),
                    )
                    .await?;
                if json {
                    println!("{ns}");
                } else {
                    println!("namespace {name} is {visibility}");
                }
            }
            NamespaceCmd::Delete { name } => {
                client
                    .send(Method::DELETE, &format!("namespaces/{name}"), None)
                    .await?;
                if !json {
                    println!("deleted namespace {name}");
                }
            }
            NamespaceCmd::Create {
                name,
                description,
                public,
            } => {
                let ns = client
                    .namespace_create(&name, description.as_deref(), public)
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
