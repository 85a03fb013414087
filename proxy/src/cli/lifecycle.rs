//! `shoal gc` and `shoal retention`: keeping storage in check from the command line.
//!
//! `gc run` asks the region's leader for a collection and waits for it to finish (printing
//! what it reclaimed); `gc run --dry-run` prints what a run would reclaim, changing nothing.
//! `retention set` takes a policy document (`--file`, the JSON the API takes) or shorthands
//! that each add one keep rule; `preview` lists what `run` would delete, per repository.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::commands::ServerArgs;
use super::Client;

#[derive(Subcommand)]
pub enum GcCmd {
    /// Collect garbage now (on the leader) and wait for the result; --dry-run only reports.
    Run {
        #[arg(long)]
        dry_run: bool,
        /// Do not wait for the run to finish.
        #[arg(long, conflicts_with = "dry_run")]
        no_wait: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The last run, the one under way, and a pending request.
    Status,
}

#[derive(Subcommand)]
pub enum RetentionCmd {
    /// Set a namespace's policy: a JSON document, or shorthands that each add a keep rule.
    Set {
        namespace: String,
        /// The policy document (see `shoal retention show` and the README).
        #[arg(long, conflicts_with_all = ["keep_latest", "keep_tags", "keep_pulled_within", "keep_untagged_for"])]
        file: Option<std::path::PathBuf>,
        /// Keep the N most recently pushed tags of each repository.
        #[arg(long)]
        keep_latest: Option<u32>,
        /// Keep tags matching this pattern (repeatable), e.g. 'v*'.
        #[arg(long)]
        keep_tags: Vec<String>,
        /// Keep tags pulled within this time, e.g. 30d.
        #[arg(long)]
        keep_pulled_within: Option<String>,
        /// Keep untagged manifests pushed within this time, e.g. 2d.
        #[arg(long)]
        keep_untagged_for: Option<String>,
        /// Repositories the policy covers (repeatable), e.g. 'team/*'; default: all.
        #[arg(long)]
        repositories: Vec<String>,
    },
    /// Show a namespace's policy.
    Show { namespace: String },
    /// List what the policy would delete now, per repository, and the bytes it would free.
    Preview { namespace: String },
    /// Delete what the policy does not keep, now.
    Run { namespace: String },
    /// Remove the policy: the namespace keeps every tag again.
    Delete { namespace: String },
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn print_run(label: &str, r: &Value) {
    if r.is_null() {
        println!("{label}: none");
        return;
    }
    println!(
        "{label}: {} (started {}, finished {}): {} manifests, {} blob links, {} blobs, {} bytes reclaimed, {} protected by grace{}",
        r["phase"].as_str().unwrap_or(""),
        r["started_at"].as_str().unwrap_or("-"),
        r["finished_at"].as_str().unwrap_or("-"),
        num(&r["manifests"]),
        num(&r["blob_links"]),
        num(&r["blobs_deleted"]),
        num(&r["bytes_reclaimed"]),
        num(&r["protected"]),
        r["error"].as_str().map(|e| format!("; error: {e}")).unwrap_or_default(),
    );
}

fn print_status(s: &Value) {
    println!(
        "interval: {}, grace: {}",
        s["interval"].as_str().unwrap_or("off"),
        s["grace"].as_str().unwrap_or("")
    );
    if let Some(at) = s["requested_at"].as_str() {
        println!("requested at {at}");
    }
    print_run("running", &s["running"]);
    print_run("last run", &s["last"]);
}

fn print_report(r: &Value) {
    for (what, key) in [
        ("manifest", "manifests"),
        ("blob link", "blob_links"),
        ("blob", "blobs"),
    ] {
        for item in r[key].as_array().into_iter().flatten() {
            println!(
                "{what:<10} {:<40} {} {} bytes",
                item["repository"].as_str().unwrap_or("(origin)"),
                item["digest"].as_str().unwrap_or(""),
                num(&item["bytes"])
            );
        }
    }
    println!(
        "would reclaim {} manifests, {} blob links, {} blobs, {} bytes ({} protected by grace){}",
        num(&r["manifests_total"]),
        num(&r["blob_links_total"]),
        num(&r["blobs_total"]),
        num(&r["bytes_total"]),
        num(&r["protected"]),
        if r["truncated"] == true {
            "; the lists are cut short"
        } else {
            ""
        },
    );
}

fn print_plan(verb: &str, p: &Value) {
    for repo in p["repositories"].as_array().into_iter().flatten() {
        let tags: Vec<&str> = repo["delete"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["tag"].as_str())
            .collect();
        println!(
            "{}: {verb} {} ({} kept, {} bytes freed)",
            repo["repository"].as_str().unwrap_or(""),
            tags.join(", "),
            num(&repo["kept"]),
            num(&repo["bytes_freed"])
        );
    }
    println!(
        "{}: {verb} {} tags, {} bytes freed once collected",
        p["namespace"].as_str().unwrap_or(""),
        num(&p["tags"]),
        num(&p["bytes_freed"])
    );
}

pub fn gc(cmd: GcCmd, target: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(&target.server)?;
    block_on(async {
        match cmd {
            GcCmd::Status => {
                let s = client.send(Method::GET, "gc", None).await?;
                if target.json {
                    println!("{s}");
                } else {
                    print_status(&s);
                }
            }
            GcCmd::Run { dry_run: true, .. } => {
                let r = client
                    .send(Method::POST, "gc", Some(json!({"dry_run": true})))
                    .await?;
                if target.json {
                    println!("{r}");
                } else {
                    print_report(&r);
                }
            }
            GcCmd::Run {
                no_wait, timeout, ..
            } => {
                let asked = client.send(Method::POST, "gc", Some(json!({}))).await?;
                if no_wait {
                    if target.json {
                        println!("{asked}");
                    } else {
                        println!("asked the leader for a garbage collection");
                    }
                    return Ok(());
                }
                let deadline = Instant::now() + timeout;
                loop {
                    let s = client.send(Method::GET, "gc", None).await?;
                    if s["requested_at"].is_null() && s["running"].is_null() {
                        if target.json {
                            println!("{}", s["last"]);
                        } else {
                            print_run("finished", &s["last"]);
                        }
                        if s["last"]["error"].is_string() {
                            bail!("the run failed");
                        }
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        bail!("the run did not finish within {timeout:?}; see `shoal gc status`");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Ok(())
    })
}

/// The policy document the shorthands of `retention set` make.
fn shorthand_policy(
    keep_latest: Option<u32>,
    keep_tags: Vec<String>,
    keep_pulled_within: Option<String>,
    keep_untagged_for: Option<String>,
    repositories: Vec<String>,
) -> anyhow::Result<Value> {
    let mut rules = Vec::new();
    if let Some(n) = keep_latest {
        rules.push(json!({"newest_pushed": n}));
    }
    if !keep_tags.is_empty() {
        rules.push(json!({"tags": keep_tags}));
    }
    if let Some(d) = keep_pulled_within {
        rules.push(json!({"pulled_within": d}));
    }
    if let Some(d) = keep_untagged_for {
        rules.push(json!({"untagged": true, "pushed_within": d}));
    }
    if rules.is_empty() {
        bail!("give --file or at least one of --keep-latest, --keep-tags, --keep-pulled-within, --keep-untagged-for");
    }
    Ok(json!({"repositories": repositories, "rules": rules}))
}

pub fn retention(cmd: RetentionCmd, target: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(&target.server)?;
    let path = |ns: &str, rest: &str| format!("namespaces/{ns}/retention{rest}");
    block_on(async {
        let (out, print): (Value, fn(&Value)) = match cmd {
            RetentionCmd::Set {
                namespace,
                file,
                keep_latest,
                keep_tags,
                keep_pulled_within,
                keep_untagged_for,
                repositories,
            } => {
                let body = match file {
                    Some(f) => {
                        let text = std::fs::read_to_string(&f)
                            .with_context(|| format!("reading {}", f.display()))?;
                        serde_json::from_str(&text)
                            .with_context(|| format!("{} is not JSON", f.display()))?
                    }
                    None => shorthand_policy(
                        keep_latest,
                        keep_tags,
                        keep_pulled_within,
                        keep_untagged_for,
                        repositories,
                    )?,
                };
                let out = client
                    .send(Method::PUT, &path(&namespace, ""), Some(body))
                    .await?;
                (out, |v| {
                    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default())
                })
            }
            RetentionCmd::Show { namespace } => (
                client
                    .send(Method::GET, &path(&namespace, ""), None)
                    .await?,
                |v| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
            ),
            RetentionCmd::Preview { namespace } => (
                client
                    .send(Method::POST, &path(&namespace, "/preview"), None)
                    .await?,
                |v| print_plan("would delete", v),
            ),
            RetentionCmd::Run { namespace } => (
                client
                    .send(Method::POST, &path(&namespace, "/run"), None)
                    .await?,
                |v| print_plan("deleted", v),
            ),
            RetentionCmd::Delete { namespace } => {
                client
                    .send(Method::DELETE, &path(&namespace, ""), None)
                    .await?;
                (Value::Null, |_| println!("removed the retention policy"))
            }
        };
        if target.json {
            if !out.is_null() {
                println!("{out}");
            }
        } else {
            print(&out);
        }
        Ok(())
    })
}
