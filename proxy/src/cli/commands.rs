//! The management subcommands of `shoal` (everything but `serve` and the cluster CA), each
//! one API call: its flags become a method, a path and a JSON body, and the answer is
//! printed as a table (or one object as `key: value` lines), or as JSON with `--json`.

use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use super::access::{
    login, BindingScope, CredentialCmd, FederationCmd, PrincipalCmd, RoleCmd, SigningKeyCmd,
};
use super::tenancy::{namespace, NamespaceCmd, OrganisationCmd, ProjectCmd, RepositoryCmd, TagCmd};
use super::{logins, print_namespaces, print_objects, Client};

/// The node a command talks to, and how it prints.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// API URL of the node to ask.
    #[arg(
        long,
        env = "SHOAL_SERVER",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    pub server: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Manage {
    /// Sign in to a node and save the login for later commands (SHOAL_USERNAME and
    /// SHOAL_PASSWORD still take precedence).
    Login {
        #[arg(long, short = 'u', env = "SHOAL_USERNAME")]
        username: String,
        /// Read the password from the first line of stdin (else SHOAL_PASSWORD, else a prompt).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Forget the saved login for a node.
    Logout {
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Who you are signed in as, and your roles.
    Whoami {
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Organisations: the top of the tree (organisation → projects → namespaces).
    Organisation {
        #[command(subcommand)]
        command: OrganisationCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Projects of an organisation; project-level namespaces live in them.
    Project {
        #[command(subcommand)]
        command: ProjectCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Manage namespaces (the first path segment of every repository).
    Namespace {
        #[command(subcommand)]
        command: NamespaceCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Repositories: list with tag counts and sizes, inspect, set visibility, delete.
    Repository {
        #[command(subcommand)]
        command: RepositoryCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Tags of a repository.
    Tag {
        #[command(subcommand)]
        command: TagCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Access credentials: generated username + secret for docker login and CI.
    Credential {
        #[command(subcommand)]
        command: CredentialCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Print a Kubernetes imagePullSecret for a credential (gives it a fresh secret).
    PullSecret {
        #[arg(long)]
        credential: String,
        /// Kubernetes namespace of the Secret.
        #[arg(long)]
        namespace: String,
        /// Name of the Secret (default shoal-<credential name>).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Users (people who sign in with a password).
    User {
        #[command(subcommand)]
        command: PrincipalCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Service accounts (automation; they act through credentials or federated identities).
    ServiceAccount {
        #[command(subcommand)]
        command: PrincipalCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Role bindings: owner, admin, developer or reader, on an organisation, project or namespace.
    Role {
        #[command(subcommand)]
        command: RoleCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Federated identities: CI jobs sign in with their platform's OIDC token.
    Federation {
        #[command(subcommand)]
        command: FederationCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Registry token signing keys.
    SigningKey {
        #[command(subcommand)]
        command: SigningKeyCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Garbage collection: run it now (or see what it would reclaim), and its status.
    Gc {
        #[command(subcommand)]
        command: super::lifecycle::GcCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Retention policies: which tags a namespace keeps; preview, run.
    Retention {
        #[command(subcommand)]
        command: super::lifecycle::RetentionCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// Pull-through mirrors: namespaces serving an upstream registry (docker.io, ghcr.io…).
    Upstream {
        #[command(subcommand)]
        command: super::upstreams::UpstreamCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
    /// The audit trail: who changed what, when and from where (organisation admins).
    Audit {
        #[command(subcommand)]
        command: super::audit::AuditCmd,
        #[command(flatten)]
        target: ServerArgs,
    },
}

/// A repository name as one path segment.
pub(super) fn segment(repo: &str) -> String {
    utf8_percent_encode(repo, NON_ALPHANUMERIC).to_string()
}

/// One management call and how to show its answer.
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) body: Option<Value>,
    /// The field holding the list to print as a table; otherwise one object is printed.
    list: &'static str,
    /// What to print instead of the answer (unless --json).
    done: Option<String>,
}

impl Call {
    pub(super) fn new(method: Method, path: impl Into<String>) -> Call {
        Call {
            method,
            path: path.into(),
            body: None,
            list: "",
            done: None,
        }
    }

    pub(super) fn get_list(path: impl Into<String>, list: &'static str) -> Call {
        Call {
            list,
            ..Call::new(Method::GET, path)
        }
    }

    pub(super) fn body(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    pub(super) fn done(mut self, msg: impl Into<String>) -> Call {
        self.done = Some(msg.into());
        self
    }
}

pub(super) fn block_on<T>(
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn execute(target: &ServerArgs, call: Call) -> anyhow::Result<()> {
    let client = Client::new(&target.server)?;
    let out = block_on(client.send(call.method, &call.path, call.body))?;
    if target.json {
        if !out.is_null() {
            println!("{out}");
        }
    } else if let Some(msg) = call.done {
        println!("{msg}");
    } else if call.list == "namespaces" {
        print_namespaces(&out);
    } else {
        print_objects(&out, call.list);
    }
    Ok(())
}

fn principal(cmd: PrincipalCmd, path: &'static str, list: &'static str) -> Call {
    match cmd {
        PrincipalCmd::Create {
            name,
            password,
            organisation,
        } => Call::new(Method::POST, path)
            .body(json!({"name": name, "password": password, "organisation": organisation})),
        PrincipalCmd::List => Call::get_list(path, list),
        PrincipalCmd::Delete { name } => {
            Call::new(Method::DELETE, format!("{path}/{}", segment(&name)))
        }
    }
}

fn binding_body(principal: String, role: Option<String>, s: BindingScope) -> Value {
    json!({
        "principal": principal,
        "role": role,
        "organisation": s.organisation,
        "project": s.project,
        "namespace": s.namespace,
    })
}

/// Runs one management command.
pub fn run(cmd: Manage) -> anyhow::Result<()> {
    let (target, call) = match cmd {
        Manage::Login {
            username,
            password_stdin,
            target,
        } => return login(&target, &username, password_stdin),
        Manage::Logout { target } => {
            let server = target.server.trim_end_matches('/');
            if logins::forget(server)? {
                println!("removed the saved login for {server}");
            } else {
                println!("no saved login for {server}");
            }
            return Ok(());
        }
        Manage::Whoami { target } => (target, Call::new(Method::GET, "me")),
        Manage::Organisation { command, target } => (
            target,
            match command {
                OrganisationCmd::Create {
                    name,
                    description,
                    owner,
                } => Call::new(Method::POST, "organisations")
                    .body(json!({"name": name, "description": description, "owner": owner})),
                OrganisationCmd::List => Call::get_list("organisations", "organisations"),
                OrganisationCmd::Show { name } => {
                    Call::new(Method::GET, format!("organisations/{}", segment(&name)))
                }
                OrganisationCmd::Delete { name } => {
                    Call::new(Method::DELETE, format!("organisations/{}", segment(&name)))
                }
            },
        ),
        Manage::Project { command, target } => (
            target,
            match command {
                ProjectCmd::Create {
                    name,
                    organisation,
                    description,
                } => Call::new(
                    Method::POST,
                    format!("organisations/{organisation}/projects"),
                )
                .body(json!({"name": name, "description": description})),
                ProjectCmd::List { organisation } => {
                    Call::get_list(format!("organisations/{organisation}/projects"), "projects")
                }
                ProjectCmd::Delete { name, organisation } => Call::new(
                    Method::DELETE,
                    format!("organisations/{organisation}/projects/{name}"),
                )
                .done(format!("deleted project {name}")),
            },
        ),
        Manage::Namespace { command, target } => (target, namespace(command)),
        Manage::Repository { command, target } => (
            target,
            match command {
                RepositoryCmd::List { namespace } => Call::get_list(
                    format!("namespaces/{namespace}/repositories"),
                    "repositories",
                ),
                RepositoryCmd::Show { repository } => Call::new(
                    Method::GET,
                    format!("repositories/{}", segment(&repository)),
                ),
                RepositoryCmd::Set {
                    repository,
                    visibility,
                } => Call::new(
                    Method::PATCH,
                    format!("repositories/{}", segment(&repository)),
                )
                .body(json!({ "visibility": visibility })),
                RepositoryCmd::Delete { repository } => Call::new(
                    Method::DELETE,
                    format!("repositories/{}", segment(&repository)),
                )
                .done(format!("deleted repository {repository}")),
            },
        ),
        Manage::Tag { command, target } => (
            target,
            match command {
                TagCmd::List { repository } => Call::get_list(
                    format!("repositories/{}/tags", segment(&repository)),
                    "tags",
                ),
                TagCmd::Delete { repository, tag } => Call::new(
                    Method::DELETE,
                    format!("repositories/{}/tags/{tag}", segment(&repository)),
                )
                .done(format!("deleted tag {repository}:{tag}")),
            },
        ),
        Manage::Credential { command, target } => (
            target,
            match command {
                CredentialCmd::Create {
                    name,
                    scope,
                    namespace,
                    expires,
                    owner,
                } => Call::new(Method::POST, "credentials").body(json!({
                    "name": name, "scope": scope, "namespace": namespace,
                    "expires": expires, "owner": owner,
                })),
                CredentialCmd::Revoke { id } => {
                    Call::new(Method::DELETE, format!("credentials/{id}"))
                }
                CredentialCmd::List => Call::get_list("credentials", "credentials"),
            },
        ),
        Manage::PullSecret {
            credential,
            namespace,
            name,
            target,
        } => {
            // The Secret is a Kubernetes object: always printed as JSON.
            let target = ServerArgs {
                json: true,
                ..target
            };
            let call = Call::new(
                Method::POST,
                format!("credentials/{credential}/pull-secret"),
            )
            .body(json!({"namespace": namespace, "name": name}));
            (target, call)
        }
        Manage::User { command, target } => (target, principal(command, "users", "users")),
        Manage::ServiceAccount { command, target } => (
            target,
            principal(command, "service-accounts", "service_accounts"),
        ),
        Manage::Role { command, target } => (
            target,
            match command {
                RoleCmd::Bind {
                    principal,
                    role,
                    scope,
                } => Call::new(Method::POST, "role-bindings").body(binding_body(
                    principal,
                    Some(role),
                    scope,
                )),
                RoleCmd::Unbind { principal, scope } => Call::new(Method::DELETE, "role-bindings")
                    .body(binding_body(principal.clone(), None, scope))
                    .done(format!("removed the role of {principal}")),
                RoleCmd::List => Call::get_list("role-bindings", "role_bindings"),
            },
        ),
        Manage::Federation { command, target } => (
            target,
            match command {
                FederationCmd::Create {
                    name,
                    issuer,
                    audience,
                    conditions,
                    service_account,
                    scope,
                    namespace,
                } => {
                    let conditions: serde_json::Map<String, Value> = conditions
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect();
                    Call::new(Method::POST, "federations").body(json!({
                        "name": name, "issuer": issuer, "audience": audience,
                        "conditions": conditions, "service_account": service_account,
                        "scope": scope, "namespace": namespace,
                    }))
                }
                FederationCmd::List => Call::get_list("federations", "federations"),
                FederationCmd::Delete { name } => {
                    Call::new(Method::DELETE, format!("federations/{name}"))
                        .done(format!("deleted federated identity {name}"))
                }
            },
        ),
        Manage::SigningKey { command, target } => (
            target,
            match command {
                SigningKeyCmd::List => Call::get_list("signing-keys", "signing_keys"),
                SigningKeyCmd::Rotate => Call::new(Method::POST, "signing-keys"),
            },
        ),
        Manage::Gc { command, target } => return super::lifecycle::gc(command, &target),
        Manage::Retention { command, target } => {
            return super::lifecycle::retention(command, &target)
        }
        Manage::Upstream { command, target } => {
            return super::upstreams::upstream(command, &target)
        }
        Manage::Audit { command, target } => return super::audit::audit(command, &target),
    };
    execute(&target, call)
}
