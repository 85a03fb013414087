//! Logins saved by `shoal login`: one username and password per server URL, in
//! `$SHOAL_CONFIG_DIR/logins.json` (default `$XDG_CONFIG_HOME/shoal`, else
//! `~/.config/shoal`), created with mode 0600 the way `docker login` keeps its
//! `config.json`. `SHOAL_USERNAME`/`SHOAL_PASSWORD` take precedence, so CI never needs the
//! file.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Login {
    pub username: String,
    pub password: String,
}

fn dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("SHOAL_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(d).join("shoal"));
    }
    let home = std::env::var_os("HOME").context("neither SHOAL_CONFIG_DIR nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config").join("shoal"))
}

fn file() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("logins.json"))
}

fn read_all() -> anyhow::Result<BTreeMap<String, Login>> {
    let path = file()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a logins file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces the file whole (written beside it, then renamed), mode 0600 from the start.
fn write_all(all: &BTreeMap<String, Login>) -> anyhow::Result<PathBuf> {
    let path = file()?;
    let dir = dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".logins.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(all)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The saved login for `server`, if any (an unreadable file counts as none).
pub fn saved(server: &str) -> Option<Login> {
    read_all().ok()?.get(server).cloned()
}

/// Saves `login` for `server`; returns the file's path.
pub fn save(server: &str, login: Login) -> anyhow::Result<PathBuf> {
    let mut all = read_all()?;
    all.insert(server.to_string(), login);
    write_all(&all)
}

/// Forgets the login for `server`; whether there was one.
pub fn forget(server: &str) -> anyhow::Result<bool> {
    let mut all = read_all()?;
    let had = all.remove(server).is_some();
    if had {
        write_all(&all)?;
    }
    Ok(had)
}
