//! Shoal's integration tests: one binary (ripgrep's `tests/tests.rs` shape) whose tests
//! start real `shoal` processes and drive them with HTTP and real clients.

mod access;
mod audit;
mod bad_input;
mod bench_smoke;
mod cache;
mod cluster;
mod conformance;
mod console;
mod containerd;
mod distribution;
mod docker;
mod docker_region;
mod edge;
mod federation;
mod formats;
mod gc;
mod gc_race;
mod kubernetes;
mod lifecycle;
mod linearizability;
mod management;
mod mirror;
mod monitoring;
mod openapi;
mod oras;
mod origin_failover;
mod origin_service;
mod partition;
mod retention;
mod skopeo;
mod tenancy;
mod tls;
mod traces;
mod zero_copy;
