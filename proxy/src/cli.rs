//! Operator commands of the `shoal` binary that talk to a node's management API over HTTP
//! (`--server URL`). Output is a table by default and JSON with `--json`; server errors are
//! shown with their OCI code and message, and the process exits non-zero.

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub struct Client {
    server: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str) -> anyhow::Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Client {
            server: server.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder().build()?,
        })
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
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/namespaces", self.server);
        self.call(
            self.http
                .post(url)
                .json(&json!({"name": name, "description": description})),
        )
        .await
    }

    pub async fn cluster_status(&self) -> anyhow::Result<Value> {
        self.call(self.http.get(format!("{}/api/v1/cluster", self.server)))
            .await
    }

    pub async fn remove_node(&self, id: u64) -> anyhow::Result<()> {
        let url = format!("{}/api/v1/cluster/members/{id}", self.server);
        let resp = self.http.delete(url).send().await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let e = &body["errors"][0];
        bail!(
            "{}: {}",
            e["code"].as_str().unwrap_or("ERROR"),
            e["message"].as_str().unwrap_or("removal failed")
        )
    }

    pub async fn namespace_list(&self) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/namespaces", self.server);
        self.call(self.http.get(url)).await
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
