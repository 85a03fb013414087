//! The first start of a new cluster: organisation `default`, its Owner `admin`, and the
//! first token signing key, in one Raft command that only the first cluster start applies.
//!
//! The admin password is `SHOAL_ADMIN_PASSWORD` when set; otherwise it is generated, printed
//! once on stdout and written to `<data>/initial-admin-password` (mode 0600). Only the node
//! that initialises the group (single node, or `--bootstrap`) runs this; joining nodes
//! receive the records through Raft.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use shoal_raft::{Command, Metadata, OrgRecord, Outcome, Principal, PrincipalKind, Rejection};

use super::{secrets, token};

pub const DEFAULT_ORG: &str = "default";
pub const ADMIN: &str = "admin";
const PASSWORD_FILE: &str = "initial-admin-password";

pub async fn first_start(meta: &Metadata, data: &Path) -> anyhow::Result<()> {
    if !meta.catalog().organisations()?.is_empty() {
        return Ok(());
    }
    let given = std::env::var("SHOAL_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let password = given.clone().unwrap_or_else(|| secrets::generate(24));
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || secrets::hash(&p)).await?
    };
    let now = chrono::Utc::now().timestamp();
    let cmd = Command::Bootstrap {
        org: OrgRecord {
            name: DEFAULT_ORG.into(),
            description: Some("the organisation the cluster was started with".into()),
            home: true,
            created_at: now,
        },
        admin: Principal {
            name: ADMIN.into(),
            kind: PrincipalKind::User,
            organisation: DEFAULT_ORG.into(),
            password_hash: Some(hash),
            created_at: now,
            uid: secrets::new_uid(),
        },
        key: token::new_signing_key(now),
    };
    match meta
        .write(shoal_raft::Proposal::system("bootstrap", cmd))
        .await?
    {
        Outcome::Rejected(Rejection::AlreadyInitialised) => return Ok(()),
        Outcome::Rejected(r) => anyhow::bail!("initialising the registry: {r}"),
        Outcome::Done => {}
    }
    if given.is_some() {
        tracing::info!(
            user = ADMIN,
            "created the admin user with SHOAL_ADMIN_PASSWORD"
        );
        return Ok(());
    }
    let file = data.join(PASSWORD_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    writeln!(f, "{password}")?;
    println!(
        "created user {ADMIN} with password {password} (also in {}; shown once)",
        file.display()
    );
    std::io::stdout().flush()?;
    Ok(())
}
