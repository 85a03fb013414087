//! `shoal audit list`: the replicated audit trail (`GET /api/v1/audit`), newest last, as a
//! table or JSON. It follows the API's pages until `--limit` events are shown or the trail
//! ends, so a filter that matches rarely still finds its events.

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::commands::ServerArgs;
use super::{print_table, Client};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Who changed what, when, from where: pushes, deletions, access and policy changes.
    List {
        /// From this time: RFC 3339, or a duration ago such as 24h.
        #[arg(long)]
        since: Option<String>,
        /// Until this time: RFC 3339, or a duration ago.
        #[arg(long)]
        until: Option<String>,
        /// Only this principal's changes (system:gc for a job's).
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        repository: Option<String>,
        /// Only this action (tag.delete), or a kind of action (tag).
        #[arg(long)]
        action: Option<String>,
        /// Show at most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `s` as the API takes it: RFC 3339 as given, a duration (`24h`) as that long ago.
fn instant(s: &str) -> anyhow::Result<String> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_string());
    }
    let ago = humantime::parse_duration(s).map_err(|_| {
        anyhow::anyhow!("{s:?} is neither an RFC 3339 time nor a duration like 24h")
    })?;
    let at = chrono::Utc::now() - chrono::Duration::from_std(ago)?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

pub fn audit(cmd: AuditCmd, target: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(&target.server)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let AuditCmd::List {
        since,
        until,
        actor,
        namespace,
        repository,
        action,
        limit,
    } = cmd;
    let query: Vec<(&str, String)> = [
        ("since", since.map(|s| instant(&s)).transpose()?),
        ("until", until.map(|s| instant(&s)).transpose()?),
        ("actor", actor),
        ("namespace", namespace),
        ("repository", repository),
        ("action", action),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let mut events: Vec<Value> = Vec::new();
    rt.block_on(async {
        let mut cursor: Option<String> = None;
        while events.len() < limit {
            let mut q = query.clone();
            q.push(("limit", (limit - events.len()).min(1000).to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let path = format!(
                "audit?{}",
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(q.iter().map(|(k, v)| (*k, v.as_str())))
                    .finish()
            );
            let page = client.send(Method::GET, &path, None).await?;
            events.extend(page["events"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        anyhow::Ok(())
    })?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&Value::from(events))?);
        return Ok(());
    }
    let text = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_string();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let what = [
                text(e, "repository"),
                text(e, "tag"),
                text(e, "digest"),
                text(e, "subject"),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
            let result = match e["reason"].as_str() {
                Some(r) => format!("refused: {r}"),
                None => text(e, "result"),
            };
            vec![
                text(e, "at"),
                text(e, "actor"),
                text(e, "from"),
                text(e, "action"),
                what,
                result,
            ]
        })
        .collect();
    print_table(&["AT", "ACTOR", "FROM", "ACTION", "WHAT", "RESULT"], &rows);
    Ok(())
}
