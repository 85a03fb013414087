//! The `shoal-origin` binary: runs a region's origin blob store as a service for the nodes.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use shoal_origin::{BlobStore, FsStore};

#[derive(Parser)]
#[command(
    name = "shoal-origin",
    version,
    about = "Shoal's origin blob store, served to the nodes of a region"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a filesystem directory (`--root`) or an S3-compatible bucket (`--s3-bucket`).
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "SHOAL_ORIGIN_LISTEN", default_value = "127.0.0.1:5100")]
        listen: String,
        /// Directory of the filesystem backend.
        #[arg(long, env = "SHOAL_ORIGIN_ROOT", conflicts_with = "s3_bucket")]
        root: Option<PathBuf>,
        /// S3-compatible endpoint (AWS when omitted); credentials come from AWS_* variables.
        #[arg(long, env = "SHOAL_ORIGIN_S3_ENDPOINT")]
        s3_endpoint: Option<String>,
        #[arg(long, env = "SHOAL_ORIGIN_S3_BUCKET")]
        s3_bucket: Option<String>,
        #[arg(long, env = "SHOAL_ORIGIN_S3_REGION")]
        s3_region: Option<String>,
        /// File holding the shared secret nodes present (or set SHOAL_ORIGIN_SECRET).
        #[arg(long, env = "SHOAL_ORIGIN_SECRET_FILE")]
        secret_file: Option<PathBuf>,
    },
}

fn secret(file: Option<PathBuf>) -> anyhow::Result<String> {
    let secret = shoal_origin::read_secret(file.as_deref()).context("reading --secret-file")?;
    if secret.len() < 16 {
        bail!("the origin needs a shared secret of at least 16 characters: --secret-file FILE or SHOAL_ORIGIN_SECRET");
    }
    Ok(secret)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (exporter, tracer) = shoal_origin::telemetry::exporter("shoal-origin", None)
        .map_err(anyhow::Error::msg)?
        .unzip();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        tracing_subscriber::registry()
            .with(logs)
            .with(tracer.map(shoal_origin::telemetry::layer))
            .init();
    }
    // Kept until the end: dropping it flushes the last spans.
    let _exporter = exporter;
    let Cmd::Serve {
        listen,
        root,
        s3_endpoint,
        s3_bucket,
        s3_region,
        secret_file,
    } = Cli::parse().command;
    let secret = secret(secret_file)?;
    let store: Arc<dyn BlobStore> = match (root, s3_bucket) {
        (Some(root), None) => Arc::new(FsStore::open(&root).await.context("opening --root")?),
        (None, Some(bucket)) => {
            let allow_http = s3_endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
            Arc::new(shoal_origin::S3Store::open(&shoal_origin::S3Config {
                endpoint: s3_endpoint,
                bucket,
                region: s3_region,
                allow_http,
            })?)
        }
        _ => bail!("give exactly one backend: --root DIR or --s3-bucket NAME"),
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    shoal_origin::server::serve(listener, store, secret, async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}
