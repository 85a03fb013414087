//! Operator commands of the `shoal` binary that talk to a node's management API over HTTP
//! (`--server URL`). Output is a table by default and JSON with `--json`; server errors are
//! shown with their OCI code and message, and the process exits non-zero.
//!
//! - `commands`: the management subcommands and the API call each one makes;
//! - `lifecycle`: `gc` and `retention`, which wait, poll and print in their own way;
//! - `audit`: `audit list`, which follows the trail's pages;
//! - `logins`: the logins `shoal login` saves.
//!
//! Credentials come from `SHOAL_USERNAME`/`SHOAL_PASSWORD`, else from `shoal login`.

pub mod access;
pub mod audit;
pub mod commands;
pub mod lifecycle;
pub mod logins;
pub mod tenancy;
pub mod upstreams;

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub struct Client {
    server: String,
    http: reqwest::Client,
    /// Sent as Basic credentials when known.
    login: Option<(String, String)>,
}

impl Client {
    pub fn new(server: &str) -> anyhow::Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = server.trim_end_matches('/').to_string();
        let login = match (
            std::env::var("SHOAL_USERNAME"),
            std::env::var("SHOAL_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) if !u.is_empty() => Some((u, p)),
            _ => logins::saved(&server).map(|l| (l.username, l.password)),
        };
        Ok(Client {
            server,
            http: reqwest::Client::builder().build()?,
            login,
        })
    }

    /// A client signing in as `username`/`password`, whatever the environment says.
    pub fn with_login(server: &str, username: &str, password: &str) -> anyhow::Result<Client> {
        let mut c = Client::new(server)?;
        c.login = Some((username.to_string(), password.to_string()));
        Ok(c)
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.server));
        match &self.login {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// `METHOD /api/v1/PATH` with an optional JSON body; the answer's JSON (null if empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let r = self.req(method, path);
        self.call(match body {
            Some(b) => r.json(&b),
            None => r,
        })
        .await
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the Shoal node at {}", self.server))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let e = &body["errors"][0];
            match (e["code"].as_str(), e["message"].as_str()) {
                (Some(code), Some(msg)) => bail!("{code}: {msg}"),
                _ => bail!("the node answered {status}"),
            }
        }
        Ok(body)
    }

    pub async fn namespace_create(
        &self,
        name: &str,
        description: Option<&str>,
        public: bool,
    ) -> anyhow::Result<Value> {
        let visibility = if public { "public" } else { "private" };
        let body = json!({"name": name, "description": description, "visibility": visibility});
        self.send(reqwest::Method::POST, "namespaces", Some(body))
            .await
    }

    pub async fn cluster_status(&self) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, "cluster", None).await
    }

    pub async fn remove_node(&self, id: u64) -> anyhow::Result<()> {
        self.send(
            reqwest::Method::DELETE,
            &format!("cluster/members/{id}"),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn namespace_list(&self) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, "namespaces", None).await
    }
}

/// Prints rows as aligned columns under `headers`.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn print_namespaces(list: &Value) {
    let rows: Vec<Vec<String>> = list["namespaces"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|n| {
            vec![
                n["name"].as_str().unwrap_or("").to_string(),
                n["created_at"].as_str().unwrap_or("").to_string(),
                n["description"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    print_table(&["NAME", "CREATED", "DESCRIPTION"], &rows);
}

pub fn print_cluster(status: &Value) {
    let leader = status["leader"].as_u64();
    println!(
        "node {} ({}), leader {}, term {}, last applied {}",
        status["node_id"],
        status["state"].as_str().unwrap_or("?"),
        leader.map_or("unknown".to_string(), |l| l.to_string()),
        status["term"],
        status["last_applied"]
            .as_u64()
            .map_or("-".to_string(), |a| a.to_string()),
    );
    let rows: Vec<Vec<String>> = status["members"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let id = m["id"].as_u64().unwrap_or(0);
            let role = match (Some(id) == leader, m["voter"].as_bool() == Some(true)) {
                (true, _) => "leader",
                (false, true) => "voter",
                (false, false) => "learner",
            };
            vec![
                id.to_string(),
                role.to_string(),
                m["api"].as_str().unwrap_or("").to_string(),
                m["cluster"].as_str().unwrap_or("").to_string(),
                m["matched"]
                    .as_u64()
                    .map_or("-".to_string(), |x| x.to_string()),
            ]
        })
        .collect();
    print_table(&["ID", "ROLE", "API", "CLUSTER", "MATCHED"], &rows);
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints `out[list_key]` as a table (columns from the first object), or one object as
/// `key: value` lines, or `done` for an empty answer.
pub fn print_objects(out: &Value, list_key: &str) {
    if let Some(items) = out[list_key].as_array() {
        let Some(first) = items.first().and_then(Value::as_object) else {
            println!("(none)");
            return;
        };
        let headers: Vec<String> = first.keys().map(|k| k.to_uppercase()).collect();
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| first.keys().map(|k| cell(&i[k])).collect())
            .collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        print_table(&headers, &rows);
    } else if let Some(obj) = out.as_object() {
        for (k, v) in obj {
            println!("{k}: {}", cell(v));
        }
    } else {
        println!("done");
    }
}
