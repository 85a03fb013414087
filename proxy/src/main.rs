//! The `shoal` binary: parses flags and environment, then calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shoal_proxy::cli::commands::{Manage, ServerArgs};
use shoal_proxy::cli::{print_cluster, Client};
use shoal_proxy::config::{Cluster, Config, LogFormat, RemoteOrigin};

#[derive(Parser)]
#[command(
    name = "shoal",
    version = shoal_proxy::VERSION,
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
    ///
    /// On a new cluster's first start the admin user gets the password in
    /// SHOAL_ADMIN_PASSWORD, else a generated one that is printed once.
    Serve {
        /// A TOML file of settings: each key a flag's long name (listen = "0.0.0.0:5000").
        /// Flags and SHOAL_* variables take precedence over it.
        #[arg(long, env = "SHOAL_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "SHOAL_LISTEN", default_value = "127.0.0.1:5000", value_parser = valid_listen)]
        listen: String,
        /// Data directory (metadata and the embedded origin's blobs).
        #[arg(long, env = "SHOAL_DATA", default_value = "./shoal-data")]
        data: PathBuf,
        /// This node's Raft id, unique in the region.
        #[arg(long, env = "SHOAL_NODE_ID", default_value_t = 1)]
        node_id: u64,
        /// Logs on stderr as text or as JSON lines.
        #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Worker threads of the HTTP front end.
        #[arg(long, env = "SHOAL_THREADS", default_value_t = 2)]
        threads: usize,
        /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
        #[arg(long, env = "SHOAL_SHUTDOWN_TIMEOUT", default_value_t = 10)]
        shutdown_timeout: u64,
        /// URL of a separate `shoal-origin` service, or several separated by commas (processes
        /// sharing one S3 bucket, failed over between); without it the origin is embedded.
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
        /// A StatefulSet pod's index (the `apps.kubernetes.io/pod-index` label): the node is
        /// --node-id N+1; pod 0 bootstraps the region, the others --join it.
        #[arg(long, env = "SHOAL_NODE_ORDINAL", requires = "cluster_listen", conflicts_with_all = ["node_id", "bootstrap"])]
        node_ordinal: Option<u64>,
        /// Voters the region should have; further nodes stay learners.
        #[arg(long, env = "SHOAL_VOTERS", default_value_t = 3)]
        voters: usize,
        /// The leader replaces a voter it has not heard from for this long with a caught-up
        /// learner (the silent one stays a learner), e.g. 30s, or off. A region short of
        /// voters promotes a learner at once either way.
        #[arg(long, env = "SHOAL_REPLACE_DEAD_VOTER_AFTER", default_value = "30s", value_parser = valid_interval)]
        replace_dead_voter_after: String,
        /// Build a metadata snapshot (and purge the Raft log behind it) every N entries, or
        /// every (snapshot size / 4 KiB) entries once the catalogue is larger.
        #[arg(long, env = "SHOAL_SNAPSHOT_EVERY", default_value_t = 5000)]
        snapshot_every: u64,
        /// Memory the metadata store may use as its page cache, e.g. 64MiB; the catalogue
        /// itself stays on disk.
        #[arg(long, env = "SHOAL_METADATA_CACHE", default_value = "64MiB", value_parser = parse_size)]
        metadata_cache: u64,
        /// Directory of the blob cache (used with --origin; default: <data>/cache).
        #[arg(long, env = "SHOAL_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Most bytes the blob cache keeps, e.g. 50GiB.
        #[arg(long, env = "SHOAL_CACHE_MAX_BYTES", default_value = "10GiB", value_parser = parse_size)]
        cache_max_bytes: u64,
        /// Requests per client IP without credentials, e.g. 500/10m, or off.
        #[arg(long, env = "SHOAL_ANONYMOUS_RATE_LIMIT", default_value = "500/10m", value_parser = valid_rate)]
        anonymous_rate_limit: String,
        /// Failed sign-ins per client IP and login before further attempts get 429, or off.
        #[arg(long, env = "SHOAL_FAILED_LOGIN_LIMIT", default_value = "30/1m", value_parser = valid_rate)]
        failed_login_limit: String,
        /// Browser origin allowed to call the node (repeatable; `*` for any). Off by default.
        #[arg(
            long = "cors-origin",
            env = "SHOAL_CORS_ORIGINS",
            value_delimiter = ','
        )]
        cors_origins: Vec<String>,
        /// Load balancer or reverse proxy (CIDR or address, repeatable) whose
        /// X-Forwarded-For names the client for rate limits and the access log. Off by default.
        #[arg(
            long = "trusted-proxy",
            env = "SHOAL_TRUSTED_PROXIES",
            value_delimiter = ',',
            value_parser = valid_proxy
        )]
        trusted_proxies: Vec<String>,
        /// PEM certificate chain: serve HTTPS on --listen (with --tls-key).
        #[arg(long, env = "SHOAL_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, env = "SHOAL_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The region this cluster serves, e.g. nl-01 (recorded on every namespace).
        #[arg(long, env = "SHOAL_REGION", default_value = "local")]
        region: String,
        /// How often usage counts (pulls, pushes, bytes) are recorded, e.g. 10s.
        #[arg(long, env = "SHOAL_USAGE_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
        usage_interval: std::time::Duration,
        /// How long a web console session lasts after signing in, e.g. 8h (1 minute to 30
        /// days; checked by the server; signing out ends it sooner).
        #[arg(long, env = "SHOAL_CONSOLE_SESSION", default_value = "8h", value_parser = humantime::parse_duration)]
        console_session: std::time::Duration,
        /// The URL clients reach the registry at (e.g. https://registry.example.com): token
        /// realms and pull secrets name it. Default: --advertise-url, else the bound address.
        #[arg(long, env = "SHOAL_PUBLIC_URL")]
        public_url: Option<String>,
        /// Require credentials on /metrics (any role on the home organisation may read them).
        #[arg(long, env = "SHOAL_METRICS_AUTH")]
        metrics_auth: bool,
        /// How long a connection may take to send a request head before it is closed.
        #[arg(long, env = "SHOAL_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
        header_timeout: std::time::Duration,
        /// Open connections per client address (trusted proxies excepted), or off.
        #[arg(long, env = "SHOAL_MAX_CONNECTIONS_PER_IP", default_value = "512", value_parser = valid_limit)]
        max_connections_per_ip: String,
        /// Upload sessions one principal (user or service account, all its credentials
        /// together) may hold open at once; past that, opening one answers 429.
        #[arg(long, env = "SHOAL_MAX_OPEN_UPLOADS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        max_open_uploads: u32,
        /// How often the leader collects garbage (e.g. 1h), or off (only `shoal gc run`).
        #[arg(long, env = "SHOAL_GC_INTERVAL", default_value = "1h", value_parser = valid_interval)]
        gc_interval: String,
        /// Nothing written or used by a pusher within this time is collected, e.g. 1h.
        #[arg(long, env = "SHOAL_GC_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
        gc_grace: std::time::Duration,
        /// Pause between two batches the collector commits.
        #[arg(long, env = "SHOAL_GC_PAUSE", default_value = "20ms", value_parser = humantime::parse_duration)]
        gc_pause: std::time::Duration,
        /// How often the leader runs the retention policies (e.g. 1h), or off.
        #[arg(long, env = "SHOAL_RETENTION_INTERVAL", default_value = "1h", value_parser = valid_interval)]
        retention_interval: String,
        /// Upload sessions nobody wrote to for this long are removed, e.g. 24h.
        #[arg(long, env = "SHOAL_UPLOAD_MAX_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
        upload_max_age: std::time::Duration,
        /// How long an upstream registry a namespace mirrors may take to answer before a
        /// pull is served stale or fails with 503.
        #[arg(long, env = "SHOAL_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
        upstream_timeout: std::time::Duration,
        /// Where this node's own audit events go (failed sign-ins, tokens issued, pulls
        /// with --audit-pulls): a file (appended to) or `stdout`. Metadata changes are in the
        /// replicated trail (`shoal audit list`) either way.
        #[arg(long, env = "SHOAL_AUDIT_LOG")]
        audit_log: Option<String>,
        /// Also record every manifest pull in --audit-log.
        #[arg(long, env = "SHOAL_AUDIT_PULLS", requires = "audit_log")]
        audit_pulls: bool,
        /// How long the replicated audit trail keeps events (e.g. 90d), or off (forever).
        #[arg(long, env = "SHOAL_AUDIT_RETENTION", default_value = "90d", value_parser = valid_interval)]
        audit_retention: String,
        /// Export OpenTelemetry traces over OTLP (HTTP/protobuf) to this URL, e.g.
        /// http://collector:4318 (spans go to /v1/traces); unset: no traces.
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
        otel_exporter_otlp_endpoint: Option<String>,
        /// The service name spans carry (default: shoal).
        #[arg(long, env = "OTEL_SERVICE_NAME")]
        otel_service_name: Option<String>,
        /// Which traces are kept: e.g. parentbased_traceidratio (with
        /// --otel-traces-sampler-arg 0.01 for 1 %), always_on (the default), always_off.
        #[arg(long, env = "OTEL_TRACES_SAMPLER")]
        otel_traces_sampler: Option<String>,
        /// The sampler's argument (the ratio of traceidratio samplers).
        #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG")]
        otel_traces_sampler_arg: Option<String>,
        /// Attributes every span's resource carries: key=value,key=value.
        #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES")]
        otel_resource_attributes: Option<String>,
    },
    /// The settings file of `serve --config`: check one, or show the effective settings.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Region membership and the cluster CA.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    #[command(flatten)]
    Manage(Manage),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check FILE without starting: every key a setting, every value valid (errors name
    /// the key and its line).
    Check { file: PathBuf },
    /// Print the settings `serve` would run with (flags aside): SHOAL_* environment, then
    /// the file, then defaults; secrets masked.
    Show {
        #[arg(long, env = "SHOAL_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// `shoal config check|show`.
fn config_cmd(cmd: ConfigCmd) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let root = Cli::command();
    let serve = root.find_subcommand("serve").expect("a serve command");
    match cmd {
        ConfigCmd::Check { file } => match shoal_proxy::config_file::load(serve, &file) {
            Ok(entries) => {
                println!("{}: {} settings, all valid", file.display(), entries.len());
                Ok(())
            }
            Err(errors) => anyhow::bail!("{}", errors.join("\n")),
        },
        ConfigCmd::Show { config } => {
            let mut argv: Vec<std::ffi::OsString> = vec!["shoal".into(), "serve".into()];
            if let Some(c) = config {
                argv.push("--config".into());
                argv.push(c.into());
            }
            let layered = shoal_proxy::config_file::layered(&root, argv)
                .map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
            let matches = root.clone().try_get_matches_from(&layered.argv)?;
            let m = matches.subcommand_matches("serve").expect("serve matches");
            print!(
                "{}",
                shoal_proxy::config_file::show(serve, m, &layered.from_file)
            );
            Ok(())
        }
    }
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

// Validators of settings kept as text and parsed again when the node starts: a bad value
// is refused where flags, environment and the config file are read, naming the setting.
fn valid_listen(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.into()),
        _ => Err(format!("{s:?} is not HOST:PORT")),
    }
}

fn valid_rate(s: &str) -> Result<String, String> {
    shoal_proxy::edge::parse_rate(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn valid_proxy(s: &str) -> Result<String, String> {
    shoal_proxy::forwarded::TrustedProxies::parse(&[s.to_string()])
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn valid_limit(s: &str) -> Result<String, String> {
    parse_limit(s).map(|_| s.to_string())
}

fn valid_interval(s: &str) -> Result<String, String> {
    parse_interval(s).map(|_| s.to_string())
}

/// A duration such as `1h`, or `off` for none.
fn parse_interval(s: &str) -> Result<Option<std::time::Duration>, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match humantime::parse_duration(s.trim()) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(format!("{s:?} is not a duration like 1h (or off)")),
    }
}

/// A positive count, or `off` for none.
fn parse_limit(s: &str) -> Result<Option<usize>, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!("{s:?} is not a positive number (or off)")),
    }
}

/// A byte size such as `50GiB`, `512MB` or `1048576`.
fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size like 50GiB: {e}"))
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Configures the allocator before anything allocates (`malloc::configure`): the options
/// decide how the first arena is committed, and Rust allocates before `main`. Runs after
/// mimalloc's own constructor (priority 101), as ELF constructors without a priority do.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static CONFIGURE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn configure() {
        shoal_proxy::malloc::configure();
    }
    configure
};

fn main() -> ExitCode {
    let argv = {
        use clap::CommandFactory;
        match shoal_proxy::config_file::layered(&Cli::command(), std::env::args_os().collect()) {
            Ok(l) => l.argv,
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return ExitCode::from(2);
            }
        }
    };
    let cli = Cli::parse_from(argv);
    let result = match cli.command {
        Cmd::Serve {
            config: _,
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
            node_ordinal,
            voters,
            replace_dead_voter_after,
            snapshot_every,
            metadata_cache,
            cache_dir,
            cache_max_bytes,
            anonymous_rate_limit,
            failed_login_limit,
            cors_origins,
            trusted_proxies,
            tls_cert,
            tls_key,
            region,
            usage_interval,
            console_session,
            public_url,
            metrics_auth,
            header_timeout,
            max_connections_per_ip,
            max_open_uploads,
            gc_interval,
            gc_grace,
            gc_pause,
            retention_interval,
            upload_max_age,
            upstream_timeout,
            audit_log,
            audit_pulls,
            audit_retention,
            otel_exporter_otlp_endpoint,
            otel_service_name,
            otel_traces_sampler,
            otel_traces_sampler_arg,
            otel_resource_attributes,
        } => {
            if let Err(e) = shoal_proxy::names::Slug::parse("region", &region) {
                eprintln!("error: --region: {e}");
                return ExitCode::FAILURE;
            }
            let (node_id, bootstrap, join) = match node_ordinal {
                None => (node_id, bootstrap, join),
                Some(0) => (1, true, None),
                Some(n) if join.is_some() => (n + 1, false, join),
                Some(n) => {
                    eprintln!("error: --node-ordinal {n}: pods after the first need --join (the first pod's API URL)");
                    return ExitCode::FAILURE;
                }
            };
            // OpenTelemetry's SDK reads its standard variables itself: what the flags or the
            // file set is handed to it that way, before any thread starts.
            for (var, value) in [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", otel_exporter_otlp_endpoint),
                ("OTEL_SERVICE_NAME", otel_service_name),
                ("OTEL_TRACES_SAMPLER", otel_traces_sampler),
                ("OTEL_TRACES_SAMPLER_ARG", otel_traces_sampler_arg),
                ("OTEL_RESOURCE_ATTRIBUTES", otel_resource_attributes),
            ] {
                if let Some(value) = value {
                    std::env::set_var(var, value);
                }
            }
            // Kept until `run` returns: dropping it flushes the last log lines and spans.
            let _log = shoal_proxy::logging::init(log_format, node_id);
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
            let replace_dead_voter_after = match parse_interval(&replace_dead_voter_after) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("error: --replace-dead-voter-after: {e}");
                    return ExitCode::FAILURE;
                }
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
                metadata_cache,
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
                    failed_login_rate: match shoal_proxy::edge::parse_rate(&failed_login_limit) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("error: --failed-login-limit: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                    cors_origins,
                    trusted_proxies: match shoal_proxy::forwarded::TrustedProxies::parse(
                        &trusted_proxies,
                    ) {
                        Ok(t) => t,
                        Err(e) => {
                            eprintln!("error: --trusted-proxy: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                    header_timeout,
                    connections_per_ip: match parse_limit(&max_connections_per_ip) {
                        Ok(n) => n,
                        Err(e) => {
                            eprintln!("error: --max-connections-per-ip: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                },
                public_url,
                metrics_auth,
                max_open_uploads,
                upstream_timeout,
                lifecycle: shoal_proxy::lifecycle::LifecycleConfig {
                    gc_interval: match parse_interval(&gc_interval) {
                        Ok(i) => i,
                        Err(e) => {
                            eprintln!("error: --gc-interval: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                    gc: shoal_proxy::lifecycle::gc::GcConfig {
                        grace: gc_grace.as_secs() as i64,
                        pause: gc_pause,
                    },
                    retention_interval: match parse_interval(&retention_interval) {
                        Ok(i) => i,
                        Err(e) => {
                            eprintln!("error: --retention-interval: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                    upload_max_age,
                    audit_retention: match parse_interval(&audit_retention) {
                        Ok(i) => i,
                        Err(e) => {
                            eprintln!("error: --audit-retention: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                },
                audit: shoal_proxy::audit::AuditConfig {
                    log: audit_log
                        .as_deref()
                        .map(shoal_proxy::audit::AuditSink::parse),
                    pulls: audit_pulls,
                },
                region,
                usage_interval,
                console_session,
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| shoal_proxy::http::TlsFiles { cert, key }),
                cluster: cluster_listen.map(|listen| Cluster {
                    listen,
                    advertise: cluster_advertise,
                    tls_dir: cluster_tls.unwrap_or_default(),
                    bootstrap,
                    join,
                    voters,
                    replace_dead_voter_after,
                }),
            };
            shoal_proxy::node::run(config, shoal_proxy::node::os_signals())
        }
        Cmd::Manage(cmd) => shoal_proxy::cli::commands::run(cmd),
        Cmd::Cluster { command, target } => cluster(command, &target.server, target.json),
        Cmd::Config { command } => config_cmd(command),
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

fn origin_secret(file: Option<PathBuf>) -> anyhow::Result<String> {
    let secret =
        shoal_origin::read_secret(file.as_deref()).context("reading --origin-secret-file")?;
    if secret.is_empty() {
        anyhow::bail!("--origin needs the origin's shared secret: --origin-secret-file FILE or SHOAL_ORIGIN_SECRET");
    }
    Ok(secret)
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
