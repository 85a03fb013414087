//! The access subcommands' flags (credentials, users and service accounts, role bindings,
//! federated identities, signing keys) and `shoal login`.

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;

use super::commands::{block_on, ServerArgs};
use super::{logins, Client};

#[derive(Subcommand)]
pub enum CredentialCmd {
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
    /// Your credentials (and those of the principals you manage).
    List,
}

#[derive(Subcommand)]
pub enum PrincipalCmd {
    /// Create one (a user's password comes from --password or SHOAL_NEW_PASSWORD).
    Create {
        name: String,
        #[arg(long, env = "SHOAL_NEW_PASSWORD")]
        password: Option<String>,
        /// Organisation it belongs to (default: yours).
        #[arg(long)]
        organisation: Option<String>,
    },
    List,
    /// Delete one with its credentials and role bindings (and, for a service account, the
    /// federated identities acting as it). An organisation's last Owner stays.
    Delete {
        name: String,
    },
}

/// Where a role is bound: an organisation (default: yours), one of its projects, or a namespace.
#[derive(Args)]
pub struct BindingScope {
    #[arg(long, conflicts_with = "namespace")]
    pub organisation: Option<String>,
    #[arg(long, conflicts_with = "namespace")]
    pub project: Option<String>,
    #[arg(long)]
    pub namespace: Option<String>,
}

#[derive(Subcommand)]
pub enum RoleCmd {
    /// Grant PRINCIPAL a role.
    Bind {
        principal: String,
        #[arg(long)]
        role: String,
        #[command(flatten)]
        scope: BindingScope,
    },
    /// Remove PRINCIPAL's role there.
    Unbind {
        principal: String,
        #[command(flatten)]
        scope: BindingScope,
    },
    List,
}

#[derive(Subcommand)]
pub enum FederationCmd {
    /// Trust an OIDC issuer's tokens that match the audience and every --condition.
    Create {
        name: String,
        /// Issuer URL, exactly as the tokens' `iss` (e.g. https://token.actions.githubusercontent.com).
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        audience: String,
        /// CLAIM=PATTERN, `*` matching anything (repeatable; at least one), e.g. repository=acme/*.
        #[arg(long = "condition", required = true, value_parser = parse_condition)]
        conditions: Vec<(String, String)>,
        /// The service account the CI job acts as.
        #[arg(long)]
        service_account: String,
        #[arg(long, default_value = "containerRegistry:pull")]
        scope: String,
        #[arg(long)]
        namespace: Option<String>,
    },
    List,
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum SigningKeyCmd {
    List,
    /// A new key signs from now on; tokens signed before keep working until they expire.
    Rotate,
}

fn parse_condition(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("a condition is CLAIM=PATTERN, got {s:?}"))
}

/// `shoal login`: checks the login against the node, then saves it.
pub(super) fn login(
    target: &ServerArgs,
    username: &str,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let password = if password_stdin {
        stdin_line("the password")?
    } else if let Ok(p) = std::env::var("SHOAL_PASSWORD") {
        p
    } else {
        rpassword::prompt_password(format!("password for {username}: "))
            .context("reading the password (use --password-stdin without a terminal)")?
    };
    let server = target.server.trim_end_matches('/');
    let client = Client::with_login(server, username, &password)?;
    let me = block_on(client.send(Method::GET, "me", None)).context("signing in")?;
    let path = logins::save(
        server,
        logins::Login {
            username: username.to_string(),
            password,
        },
    )?;
    if target.json {
        println!("{me}");
    } else {
        println!(
            "signed in to {server} as {}; login saved in {}",
            me["principal"].as_str().unwrap_or(username),
            path.display()
        );
    }
    Ok(())
}

/// The first line of stdin, without its line end (a password given with `--password-stdin`).
pub(super) fn stdin_line(what: &str) -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from stdin"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
