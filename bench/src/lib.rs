//! shoal-bench as a library: load scenarios against any OCI registry, each a function that
//! returns a [`report::Report`] instead of printing, so the `shoal-bench` binary and a
//! side-by-side comparison run exactly the same code and differ only in what they do with
//! the figures.
//!
//! Layout:
//! - `args.rs`: the flags every scenario shares (targets, credentials, outputs) and size
//!   parsing;
//! - `target.rs`: the registry client, one connection pool per simulated client, with Basic
//!   and Docker token authentication;
//! - `image.rs`: generated blobs and images (seeded PRNG, 1 MiB chunks, digests computed
//!   before the clock starts, never a whole blob in memory);
//! - `oci.rs`: the Distribution API calls the scenarios are made of (manifest and blob GETs,
//!   the three upload forms, manifest PUT);
//! - `stats.rs`: latency samples per phase, errors, and the throughput timeline;
//! - `shoal_metrics.rs`: `/metrics` deltas when a target is Shoal;
//! - `host.rs`: the machine (cores, memory) and a server process's peak RSS and CPU time;
//! - `lean.rs`: a bare HTTP/1.1 connection for request-rate scenarios (less client CPU);
//! - `tls.rs`: the certificates HTTPS targets are trusted by, and a loopback certificate;
//! - `report.rs`: the result of a run, its table and its JSON; `plot.rs`: its picture;
//! - `scenarios/`: one file per scenario, and the `Scenario` command enum;
//! - `compare/`: `shoal-bench compare`, which starts Distribution, nginx and Shoal on this
//!   machine and runs the scenarios against each in alternating rounds.

pub mod args;
pub mod compare;
pub mod host;
pub mod image;
pub mod lean;
pub mod oci;
pub mod plot;
pub mod report;
pub mod scenarios;
pub mod shoal_metrics;
pub mod stats;
pub mod target;
pub mod tls;
