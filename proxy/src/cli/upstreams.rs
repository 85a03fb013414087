//! `shoal upstream`: namespaces that mirror upstream registries.
//!
//! `create` makes the namespace first when it does not exist (private unless `--public`),
//! then binds it; the upstream password is read from stdin (`--password-stdin`), never
//! from the command line, where other users of the machine could read it.

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::commands::ServerArgs;
use super::Client;

#[derive(Subcommand)]
pub enum UpstreamCmd {
    /// Mirror an upstream registry into a namespace (created if missing; read-only after).
    Create {
        name: String,
        /// The registry's base URL, e.g. https://registry-1.docker.io
        #[arg(long)]
        url: String,
        /// The namespace it is served under: HOST/NAMESPACE/path:tag
        #[arg(long)]
        namespace: String,
        /// The registry host containerd names in ?ns= (default: the URL's host[:port];
        /// docker.io for Docker Hub).
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        username: Option<String>,
        /// Read the upstream password from the first line of stdin.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// How long a tag is served before a HEAD revalidates it upstream, e.g. 5m.
        #[arg(long)]
        tag_ttl: Option<String>,
        /// Concurrent connections per node to the upstream.
        #[arg(long)]
        max_connections: Option<u32>,
        /// Put library/ in front of one-segment paths (default: on for Docker Hub).
        #[arg(long)]
        library_prefix: Option<bool>,
        /// Do not give the namespace the mirror's default retention policy.
        #[arg(long)]
        no_default_retention: bool,
        /// Make a namespace created here public (anonymous nodes may pull).
        #[arg(long)]
        public: bool,
    },
    List,
    Show {
        name: String,
    },
    /// Stop mirroring; the namespace keeps what was mirrored.
    Delete {
        name: String,
    },
}

fn print_one(u: &Value) {
    let s = |k: &str| u[k].as_str().unwrap_or("-").to_string();
    println!(
        "{}  {} → {}  host {}  ttl {}  connections {}{}{}",
        s("name"),
        s("namespace"),
        s("url"),
        s("host"),
        s("tag_ttl"),
        u["max_connections"],
        if u["library_prefix"] == true {
            "  library/"
        } else {
            ""
        },
        match u["username"].as_str() {
            Some(user) => format!("  as {user}"),
            None => String::new(),
        }
    );
}

pub fn upstream(cmd: UpstreamCmd, target: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(&target.server)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let out = match cmd {
            UpstreamCmd::Create {
                name,
                url,
                namespace,
                host,
                username,
                password_stdin,
                tag_ttl,
                max_connections,
                library_prefix,
                no_default_retention,
                public,
            } => {
                let password = if password_stdin {
                    Some(super::access::stdin_line("the upstream password")?)
                } else {
                    None
                };
                let exists = client
                    .send(Method::GET, &format!("namespaces/{namespace}"), None)
                    .await
                    .is_ok();
                if !exists {
                    client
                        .namespace_create(&namespace, Some("mirror"), public)
                        .await
                        .with_context(|| format!("creating namespace {namespace}"))?;
                }
                let mut body = json!({
                    "name": name,
                    "url": url,
                    "namespace": namespace,
                    "default_retention": !no_default_retention,
                });
                let fields = [
                    ("host", host.map(Value::from)),
                    ("username", username.map(Value::from)),
                    ("password", password.map(Value::from)),
                    ("tag_ttl", tag_ttl.map(Value::from)),
                    ("max_connections", max_connections.map(Value::from)),
                    ("library_prefix", library_prefix.map(Value::from)),
                ];
                for (k, v) in fields {
                    if let Some(v) = v {
                        body[k] = v;
                    }
                }
                client.send(Method::POST, "upstreams", Some(body)).await?
            }
            UpstreamCmd::List => client.send(Method::GET, "upstreams", None).await?,
            UpstreamCmd::Show { name } => {
                client
                    .send(Method::GET, &format!("upstreams/{name}"), None)
                    .await?
            }
            UpstreamCmd::Delete { name } => {
                client
                    .send(Method::DELETE, &format!("upstreams/{name}"), None)
                    .await?;
                if !target.json {
                    println!("stopped mirroring {name}");
                }
                return Ok(());
            }
        };
        if target.json {
            println!("{out}");
        } else if let Some(list) = out["upstreams"].as_array() {
            list.iter().for_each(print_one);
        } else {
            print_one(&out);
        }
        Ok(())
    })
}
