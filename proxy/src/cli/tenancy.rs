//! The tenancy subcommands' flags: organisations, projects, namespaces, repositories and
//! tags, and the call a namespace command makes.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::commands::Call;

#[derive(Subcommand)]
pub enum OrganisationCmd {
    /// Create an organisation (cluster admins); its owner becomes its Owner.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// The user bound as Owner (default: you).
        #[arg(long)]
        owner: Option<String>,
    },
    List,
    Show {
        name: String,
    },
    /// Delete an organisation that holds no projects or namespaces (cluster admins); its
    /// users and service accounts go with it.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ProjectCmd {
    Create {
        name: String,
        #[arg(long)]
        organisation: String,
        #[arg(long)]
        description: Option<String>,
    },
    List {
        #[arg(long)]
        organisation: String,
    },
    /// Delete an empty project (and the role bindings on it).
    Delete {
        name: String,
        #[arg(long)]
        organisation: String,
    },
}

#[derive(Subcommand)]
pub enum NamespaceCmd {
    /// Create a namespace: lowercase ASCII, no spaces, at most 255 characters; cannot be renamed.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Allow anonymous pulls (default: private).
        #[arg(long)]
        public: bool,
        /// Organisation it belongs to (default: yours).
        #[arg(long)]
        organisation: Option<String>,
        /// Make it a project-level namespace of this project.
        #[arg(long)]
        project: Option<String>,
        /// Region (must be the cluster's; checked by the server).
        #[arg(long)]
        region: Option<String>,
    },
    /// Change a namespace's configuration.
    Set {
        name: String,
        #[arg(long, value_parser = ["public", "private"])]
        visibility: Option<String>,
        /// Tags matching this pattern (repeatable, e.g. 'v*') can never be moved or deleted;
        /// give '' alone to turn immutability off.
        #[arg(long)]
        immutable_tags: Vec<String>,
        /// Tags matching this pattern (repeatable, e.g. '*-rc*') are not immutable.
        #[arg(long)]
        immutable_exclude: Vec<String>,
        /// A new description ('' removes it).
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a namespace with all its repositories, tags and role bindings.
    Delete {
        name: String,
    },
    /// List namespaces.
    List {
        #[arg(long)]
        organisation: Option<String>,
        #[arg(long)]
        project: Option<String>,
    },
    Show {
        name: String,
    },
    /// Stored bytes, pulls, pushes and bytes served.
    Usage {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum RepositoryCmd {
    /// Repositories of a namespace with tag counts, sizes and last push.
    List { namespace: String },
    /// Tags, manifests, digests and sizes of one repository.
    Show { repository: String },
    /// Override the namespace's visibility for one repository (inherit: follow it again).
    Set {
        repository: String,
        #[arg(long, value_parser = ["public", "private", "inherit"])]
        visibility: String,
    },
    /// Delete a repository with its tags and manifests.
    Delete { repository: String },
}

#[derive(Subcommand)]
pub enum TagCmd {
    List {
        repository: String,
    },
    /// Remove a tag (the manifest stays, by digest).
    Delete {
        repository: String,
        tag: String,
    },
}

pub(super) fn namespace(cmd: NamespaceCmd) -> Call {
    match cmd {
        NamespaceCmd::Create {
            name,
            description,
            public,
            organisation,
            project,
            region,
        } => {
            let visibility = if public { "public" } else { "private" };
            Call::new(Method::POST, "namespaces")
                .body(json!({
                    "name": name, "description": description, "visibility": visibility,
                    "organisation": organisation, "project": project, "region": region,
                }))
                .done(format!("created namespace {name}"))
        }
        NamespaceCmd::Set {
            name,
            visibility,
            immutable_tags,
            immutable_exclude,
            description,
        } => {
            let mut body = json!({});
            if let Some(v) = visibility {
                body["visibility"] = json!(v);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let list = |l: Vec<String>| -> Vec<String> {
                l.into_iter().filter(|p| !p.is_empty()).collect()
            };
            if !immutable_tags.is_empty() {
                body["immutable_tags"] = json!(list(immutable_tags));
            }
            if !immutable_exclude.is_empty() {
                body["immutable_exclude"] = json!(list(immutable_exclude));
            }
            Call::new(Method::PATCH, format!("namespaces/{name}")).body(body)
        }
        NamespaceCmd::Delete { name } => Call::new(Method::DELETE, format!("namespaces/{name}"))
            .done(format!("deleted namespace {name}")),
        NamespaceCmd::List {
            organisation,
            project,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(o) = &organisation {
                q.append_pair("organisation", o);
            }
            if let Some(p) = &project {
                q.append_pair("project", p);
            }
            let q = q.finish();
            let path = if q.is_empty() {
                "namespaces".to_string()
            } else {
                format!("namespaces?{q}")
            };
            Call::get_list(path, "namespaces")
        }
        NamespaceCmd::Show { name } => Call::new(Method::GET, format!("namespaces/{name}")),
        NamespaceCmd::Usage { name } => Call::new(Method::GET, format!("namespaces/{name}/usage")),
    }
}
