//! Everything a plan needs, found and started: the binaries (installing the peers when
//! missing), then the processes in the order they depend on each other (the proxy pings
//! its upstream when it starts), each named as the target ("subject") the suite measures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::peers::{self, Peer};
use super::plan::{Args, Needs, Plan};
use super::process::Fleet;
use super::shoal::{self, Binaries, Topology};
use super::{install, suite::Subject};

/// The binaries of a comparison.
pub struct Tools {
    pub distribution: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub shoal: Option<Binaries>,
}

impl Tools {
    /// Finds what `plan` needs, installing a missing peer unless `--no-install`.
    pub fn find(args: &Args, plan: &Plan) -> anyhow::Result<Tools> {
        let needs = plan.needs();
        let shoal = if needs.shoal || needs.shoal_region {
            let b = Binaries::find(args.shoal.as_deref(), args.shoal_origin.as_deref())?;
            if b.is_debug() && !plan.quick {
                eprintln!(
                    "compare: warning: {} looks like a debug build; figures need --release",
                    b.shoal.display()
                );
            }
            Some(b)
        } else {
            None
        };
        let mut wanted = Vec::new();
        if needs.distribution || needs.distribution_proxy || needs.https {
            wanted.push(&install::DISTRIBUTION);
        }
        if needs.nginx || needs.https {
            wanted.push(&install::NGINX);
        }
        let found = install::ensure(&wanted, !args.no_install)?;
        let path = |tool: &install::Tool| {
            wanted
                .iter()
                .zip(&found)
                .find(|(t, _)| t.binary == tool.binary)
                .map(|(_, p)| p.clone())
        };
        Ok(Tools {
            distribution: path(&install::DISTRIBUTION),
            nginx: path(&install::NGINX),
            shoal,
        })
    }

    /// Each binary's version line, for the record.
    pub fn versions(&self) -> BTreeMap<String, String> {
        let mut v = BTreeMap::new();
        if let Some(p) = &self.distribution {
            v.insert("distribution".into(), install::version(p, &["--version"]));
        }
        if let Some(p) = &self.nginx {
            v.insert("nginx".into(), install::version(p, &["-v"]));
        }
        if let Some(b) = &self.shoal {
            v.insert("shoal".into(), install::version(&b.shoal, &["--version"]));
        }
        v
    }
}

/// What was started.
#[derive(Default)]
pub struct Started {
    pub peers: BTreeMap<String, Peer>,
    pub shoal: BTreeMap<String, Topology>,
    pub subjects: Vec<Subject>,
}

impl Started {
    /// Adds what was started for scenario `scenario`, its keys prefixed with its name.
    pub fn absorb(&mut self, other: Started, scenario: &str) {
        for (k, v) in other.peers {
            self.peers.insert(format!("{scenario}/{k}"), v);
        }
        for (k, v) in other.shoal {
            self.shoal.insert(format!("{scenario}/{k}"), v);
        }
        self.subjects.extend(other.subjects);
    }
}

fn subject(name: &'static str, urls: Vec<String>, pids: &[u32]) -> Subject {
    Subject {
        name,
        urls,
        pids: pids.to_vec(),
        credentials: None,
        push_to: None,
        origin_log: None,
    }
}

/// Starts every process `needs` names into `fleet`, with their files under `work_dir`;
/// nginx serves `www`.
pub async fn start(
    fleet: &mut Fleet,
    tools: &Tools,
    needs: Needs,
    work_dir: &Path,
    www: &Path,
) -> anyhow::Result<Started> {
    let mut s = Started::default();
    // Tools are found for the whole plan; a scenario's fleet starts only what it measures.
    if let Some(bin) = tools.distribution.as_ref().filter(|_| needs.distribution) {
        let dist =
            peers::start_distribution(fleet, bin, &work_dir.join("distribution"), None, None)
                .await?;
        eprintln!("compare: distribution at {}", dist.url);
        s.subjects
            .push(subject("distribution", vec![dist.url.clone()], &dist.pids));
        if needs.distribution_proxy {
            let dir = work_dir.join("distribution-proxy");
            let proxy = peers::start_distribution(fleet, bin, &dir, Some(&dist.url), None).await?;
            eprintln!(
                "compare: distribution-proxy at {} (pulls through {})",
                proxy.url, dist.url
            );
            s.subjects.push(Subject {
                push_to: Some(dist.url.clone()),
                origin_log: Some(dist.log.clone()),
                ..subject("distribution-proxy", vec![proxy.url.clone()], &proxy.pids)
            });
            s.peers.insert("distribution-proxy".into(), proxy);
        }
        s.peers.insert("distribution".into(), dist);
    }
    if let Some(bin) = tools.nginx.as_ref().filter(|_| needs.nginx) {
        let nginx = peers::start_nginx(fleet, bin, &work_dir.join("nginx"), www, None).await?;
        eprintln!("compare: nginx at {} (pids {:?})", nginx.url, nginx.pids);
        s.subjects
            .push(subject("nginx", vec![nginx.url.clone()], &nginx.pids));
        s.peers.insert("nginx".into(), nginx);
    }
    // One self-signed certificate for every HTTPS peer, trusted by the clients.
    let cert = if needs.https {
        Some(crate::tls::loopback_cert(&work_dir.join("tls"))?)
    } else {
        None
    };
    if let Some(cert) = &cert {
        if let Some(bin) = &tools.distribution {
            let dir = work_dir.join("distribution-https");
            let dist = peers::start_distribution(fleet, bin, &dir, None, Some(cert)).await?;
            eprintln!("compare: distribution-https at {}", dist.url);
            s.subjects.push(subject(
                "distribution-https",
                vec![dist.url.clone()],
                &dist.pids,
            ));
            s.peers.insert("distribution-https".into(), dist);
        }
        if let Some(bin) = &tools.nginx {
            let dir = work_dir.join("nginx-https");
            let nginx = peers::start_nginx(fleet, bin, &dir, www, Some(cert)).await?;
            eprintln!("compare: nginx-https at {}", nginx.url);
            s.subjects
                .push(subject("nginx-https", vec![nginx.url.clone()], &nginx.pids));
            s.peers.insert("nginx-https".into(), nginx);
        }
    }
    let Some(bins) = &tools.shoal else {
        return Ok(s);
    };
    let secrets = shoal::Secrets::fresh();
    let admin = Some((shoal::ADMIN.to_string(), secrets.admin_password.clone()));
    let shoal_subject = |name, urls: &[String], pids: &[u32]| Subject {
        credentials: admin.clone(),
        ..subject(name, urls.to_vec(), pids)
    };
    if needs.shoal {
        let single =
            shoal::start_single(fleet, bins, &work_dir.join("shoal"), &secrets, None).await?;
        eprintln!("compare: shoal (single node) at {}", single.urls[0]);
        s.subjects
            .push(shoal_subject("shoal", &single.urls, &single.pids));
        s.shoal.insert("single".into(), single);
    }
    if let Some(cert) = &cert {
        let dir = work_dir.join("shoal-https");
        let node = shoal::start_single(fleet, bins, &dir, &secrets, Some(cert)).await?;
        eprintln!("compare: shoal-https (single node) at {}", node.urls[0]);
        s.subjects
            .push(shoal_subject("shoal-https", &node.urls, &node.pids));
        s.shoal.insert("https".into(), node);
    }
    if needs.shoal_region {
        let dir = work_dir.join("region");
        let region = shoal::start_region(fleet, bins, &dir, 3, &secrets).await?;
        eprintln!("compare: shoal region at {}", region.urls.join(", "));
        s.subjects.push(shoal_subject(
            "shoal-edge",
            &region.urls[..1],
            &region.pids[..1],
        ));
        s.subjects
            .push(shoal_subject("shoal-region", &region.urls, &region.pids));
        s.shoal.insert("region".into(), region);
    }
    Ok(s)
}
