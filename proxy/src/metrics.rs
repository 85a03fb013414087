//! Prometheus metrics: the names in one place, the recorder, and the `/metrics` text.
//!
//! Code records through the `metrics` macros with these names; `install` sets the
//! process-wide recorder once and `render` produces the exposition text.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const CACHE_HITS: &str = "shoal_cache_hits_total";
pub const CACHE_MISSES: &str = "shoal_cache_misses_total";
pub const EVICTIONS: &str = "shoal_cache_evictions_total";
pub const DIGEST_MISMATCHES: &str = "shoal_cache_digest_mismatches_total";
pub const FILLS_IN_FLIGHT: &str = "shoal_cache_fills_in_flight";
pub const CACHE_BYTES: &str = "shoal_cache_bytes";
pub const CACHE_ENTRIES: &str = "shoal_cache_entries";
/// Blob bytes by where they came from: `source` = `cache`, `peer` or `origin`.
pub const BLOB_BYTES: &str = "shoal_blob_bytes_total";
pub const ORIGIN_FETCHES: &str = "shoal_origin_fetches_total";
pub const ORIGIN_FETCH_SECONDS: &str = "shoal_origin_fetch_seconds";
/// Origin reads that failed or timed out (a blob it does not hold is not counted).
pub const ORIGIN_ERRORS: &str = "shoal_origin_fetch_errors_total";
pub const PEER_FETCHES: &str = "shoal_peer_fetches_total";
pub const PEER_FETCH_FAILURES: &str = "shoal_peer_fetch_failures_total";
pub const PEER_FETCH_SECONDS: &str = "shoal_peer_fetch_seconds";
pub const PEER_SERVES: &str = "shoal_peer_serves_total";
/// Cold fills this node, as the blob's home, lent to the peer that asked (`cache::leases`).
pub const FILL_LEASES: &str = "shoal_fill_leases_total";
/// Replies to a fill's readers that sent their rest from the fill's file once it was whole
/// and verified (`sendfile`), instead of copying it through user space.
pub const FILL_HANDOVERS: &str = "shoal_cache_fill_handovers_total";
/// HTTP requests by `method` and `status`.
pub const HTTP_REQUESTS: &str = "shoal_http_requests_total";
/// Time from a request's head to its reply's last byte, by `method`.
pub const HTTP_SECONDS: &str = "shoal_http_request_duration_seconds";
/// Connections closed at once: `reason` = `per_ip` (too many from one address) or
/// `header_timeout` (no request head in time).
pub const REFUSED_CONNECTIONS: &str = "shoal_refused_connections_total";
/// argon2 password checks run (a login that does not exist is checked against a dummy
/// hash and counts too, so the count reveals nothing about which logins exist).
pub const PASSWORD_CHECKS: &str = "shoal_password_checks_total";
/// Password checks refused by the sign-in limit before they ran.
pub const SIGN_IN_LIMITED: &str = "shoal_sign_in_limited_total";
/// Garbage collection: runs by `result`, their duration, and what they reclaimed.
pub const GC_RUNS: &str = "shoal_gc_runs_total";
pub const GC_SECONDS: &str = "shoal_gc_run_seconds";
pub const GC_MANIFESTS: &str = "shoal_gc_manifests_collected_total";
pub const GC_BLOB_LINKS: &str = "shoal_gc_blob_links_collected_total";
pub const GC_BLOBS: &str = "shoal_gc_blobs_deleted_total";
pub const GC_BYTES: &str = "shoal_gc_bytes_reclaimed_total";
pub const GC_PROTECTED: &str = "shoal_gc_protected_by_grace_total";
/// Upload sessions purged as abandoned, and tags deleted by retention.
pub const UPLOADS_PURGED: &str = "shoal_uploads_purged_total";
pub const RETENTION_TAGS: &str = "shoal_retention_tags_deleted_total";
/// Mirrors: requests to upstream registries by `upstream`, `kind` (manifest, blob, token)
/// and `status` (the HTTP status, or `error` when none came back).
pub const UPSTREAM_REQUESTS: &str = "shoal_upstream_requests_total";
pub const UPSTREAM_BYTES: &str = "shoal_upstream_bytes_total";
/// Cached tags and manifests served because the upstream could not be asked.
pub const UPSTREAM_STALE: &str = "shoal_upstream_stale_serves_total";
/// Tags revalidated with a `HEAD`, by `result` (`same`, `changed`).
pub const UPSTREAM_REVALIDATIONS: &str = "shoal_upstream_revalidations_total";
pub const UPSTREAM_RATE_LIMITED: &str = "shoal_upstream_rate_limited_total";
pub const UPSTREAM_TOKENS: &str = "shoal_upstream_tokens_fetched_total";
pub const RAFT_TERM: &str = "shoal_raft_term";
pub const RAFT_LAST_APPLIED: &str = "shoal_raft_last_applied";
pub const RAFT_IS_LEADER: &str = "shoal_raft_is_leader";
/// 1 while this replica knows a leader.
pub const RAFT_HAS_LEADER: &str = "shoal_raft_has_leader";
/// Members and voters of the region as this replica sees them, and the voters wanted
/// (`--voters`).
pub const RAFT_MEMBERS: &str = "shoal_raft_members";
pub const RAFT_VOTERS: &str = "shoal_raft_voters";
pub const RAFT_VOTERS_WANTED: &str = "shoal_raft_voters_wanted";
/// On the leader: how many log entries the member furthest behind lacks (0 elsewhere).
pub const RAFT_LAG: &str = "shoal_raft_replication_lag_entries";
/// The file system of a node's `dir` (`data`, `cache`): its size and what is free.
pub const DISK_SIZE: &str = "shoal_disk_size_bytes";
pub const DISK_FREE: &str = "shoal_disk_free_bytes";
/// The metadata on disk (database and snapshot files), its current snapshot (the
/// catalogue's bytes uncompressed, and its compressed file), and how long writing the last
/// snapshot out took (applying goes on meanwhile).
pub const METADATA_DISK: &str = "shoal_metadata_disk_bytes";
pub const METADATA_SNAPSHOT: &str = "shoal_metadata_snapshot_bytes";
pub const METADATA_SNAPSHOT_FILE: &str = "shoal_metadata_snapshot_file_bytes";
pub const METADATA_SNAPSHOT_SECONDS: &str = "shoal_metadata_snapshot_build_seconds";
/// Node-local audit events written to `--audit-log`, and dropped because its queue was full.
pub const AUDIT_WRITTEN: &str = "shoal_audit_events_written_total";
pub const AUDIT_DROPPED: &str = "shoal_audit_events_dropped_total";

/// What a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric with its kind, each registered at zero when the recorder is installed, so
/// dashboards and alerts find every series from the first scrape (`deploy/grafana`,
/// `deploy/prometheus`; a test holds them to what `/metrics` declares).
pub const ALL: &[(&str, Kind)] = &[
    (CACHE_HITS, Kind::Counter),
    (CACHE_MISSES, Kind::Counter),
    (EVICTIONS, Kind::Counter),
    (DIGEST_MISMATCHES, Kind::Counter),
    (FILLS_IN_FLIGHT, Kind::Gauge),
    (CACHE_BYTES, Kind::Gauge),
    (CACHE_ENTRIES, Kind::Gauge),
    (BLOB_BYTES, Kind::Counter),
    (ORIGIN_FETCHES, Kind::Counter),
    (ORIGIN_FETCH_SECONDS, Kind::Histogram),
    (ORIGIN_ERRORS, Kind::Counter),
    (PEER_FETCHES, Kind::Counter),
    (PEER_FETCH_FAILURES, Kind::Counter),
    (PEER_FETCH_SECONDS, Kind::Histogram),
    (PEER_SERVES, Kind::Counter),
    (FILL_LEASES, Kind::Counter),
    (FILL_HANDOVERS, Kind::Counter),
    (HTTP_REQUESTS, Kind::Counter),
    (HTTP_SECONDS, Kind::Histogram),
    (REFUSED_CONNECTIONS, Kind::Counter),
    (PASSWORD_CHECKS, Kind::Counter),
    (SIGN_IN_LIMITED, Kind::Counter),
    (GC_RUNS, Kind::Counter),
    (GC_SECONDS, Kind::Histogram),
    (GC_MANIFESTS, Kind::Counter),
    (GC_BLOB_LINKS, Kind::Counter),
    (GC_BLOBS, Kind::Counter),
    (GC_BYTES, Kind::Counter),
    (GC_PROTECTED, Kind::Counter),
    (UPLOADS_PURGED, Kind::Counter),
    (RETENTION_TAGS, Kind::Counter),
    (UPSTREAM_REQUESTS, Kind::Counter),
    (UPSTREAM_BYTES, Kind::Counter),
    (UPSTREAM_STALE, Kind::Counter),
    (UPSTREAM_REVALIDATIONS, Kind::Counter),
    (UPSTREAM_RATE_LIMITED, Kind::Counter),
    (UPSTREAM_TOKENS, Kind::Counter),
    (RAFT_TERM, Kind::Gauge),
    (RAFT_LAST_APPLIED, Kind::Gauge),
    (RAFT_IS_LEADER, Kind::Gauge),
    (RAFT_HAS_LEADER, Kind::Gauge),
    (RAFT_MEMBERS, Kind::Gauge),
    (RAFT_VOTERS, Kind::Gauge),
    (RAFT_VOTERS_WANTED, Kind::Gauge),
    (RAFT_LAG, Kind::Gauge),
    (DISK_SIZE, Kind::Gauge),
    (DISK_FREE, Kind::Gauge),
    (AUDIT_WRITTEN, Kind::Counter),
    (AUDIT_DROPPED, Kind::Counter),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (the first call wins).
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the metrics recorder is installed once");
        describe();
        register_all();
        handle
    });
}

/// Registers every metric at zero (with the label values known up front), so a series
/// exists before its first event.
fn register_all() {
    for &(name, kind) in ALL {
        match (name, kind) {
            (BLOB_BYTES, _) => {
                for source in ["cache", "peer", "origin"] {
                    metrics::counter!(BLOB_BYTES, "source" => source).increment(0);
                }
            }
            // Labelled by directory; set before the node serves (`node::run`).
            (DISK_SIZE | DISK_FREE, _) => {}
            (n, Kind::Histogram) => {
                let _ = metrics::histogram!(n);
            }
            (n, Kind::Gauge) => metrics::gauge!(n).increment(0.0),
            (n, Kind::Counter) => metrics::counter!(n).increment(0),
        }
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        CACHE_HITS,
        "Blob reads answered from this node's disk cache"
    );
    describe_counter!(
        REFUSED_CONNECTIONS,
        "Connections closed by the per-address bound or the request-head timeout"
    );
    describe_counter!(GC_RUNS, "Garbage collection runs, by result");
    describe_histogram!(
        GC_SECONDS,
        Unit::Seconds,
        "Duration of garbage collection runs"
    );
    describe_counter!(GC_MANIFESTS, "Untagged manifests the collector removed");
    describe_counter!(GC_BLOB_LINKS, "Blob links the collector removed");
    describe_counter!(GC_BLOBS, "Blobs the collector deleted from the origin");
    describe_counter!(
        GC_BYTES,
        Unit::Bytes,
        "Origin bytes the collector reclaimed"
    );
    describe_counter!(
        GC_PROTECTED,
        "Collectable items left alone because they were written or touched within the grace period"
    );
    describe_counter!(
        UPSTREAM_REQUESTS,
        "Requests to upstream registries, by upstream, kind and status"
    );
    describe_counter!(
        UPSTREAM_BYTES,
        Unit::Bytes,
        "Blob bytes fetched from upstream registries"
    );
    describe_counter!(
        UPSTREAM_STALE,
        "Mirrored tags or manifests served from the catalogue while the upstream failed"
    );
    describe_counter!(
        UPSTREAM_REVALIDATIONS,
        "Mirrored tags revalidated upstream with a HEAD, by result"
    );
    describe_counter!(
        UPSTREAM_RATE_LIMITED,
        "Upstream answers of 429, and requests held back while an upstream's Retry-After runs"
    );
    describe_counter!(
        UPSTREAM_TOKENS,
        "Bearer tokens fetched from upstream registries"
    );
    describe_counter!(UPLOADS_PURGED, "Abandoned upload sessions removed");
    describe_counter!(RETENTION_TAGS, "Tags deleted by retention policies");
    describe_counter!(
        PASSWORD_CHECKS,
        "argon2 password checks run, dummy ones for unknown logins included"
    );
    describe_counter!(
        SIGN_IN_LIMITED,
        "Password checks refused by the failed sign-in limit before they ran"
    );
    describe_counter!(
        CACHE_MISSES,
        "Blob reads that needed a fill (joined or started)"
    );
    describe_counter!(
        EVICTIONS,
        "Blobs evicted from the cache to stay within its budget"
    );
    describe_counter!(
        DIGEST_MISMATCHES,
        "Fills whose bytes did not match the digest"
    );
    describe_gauge!(FILLS_IN_FLIGHT, "Fills running now");
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes of complete blobs in the cache"
    );
    describe_gauge!(CACHE_ENTRIES, "Complete blobs in the cache");
    describe_counter!(
        BLOB_BYTES,
        Unit::Bytes,
        "Blob bytes read, by source (cache, peer, origin)"
    );
    describe_counter!(
        ORIGIN_FETCHES,
        "Fills (or resumptions) started from the origin"
    );
    describe_histogram!(
        ORIGIN_FETCH_SECONDS,
        Unit::Seconds,
        "Time until the origin answered a fetch"
    );
    describe_counter!(
        PEER_FETCHES,
        "Fills streamed from a peer: the blob's home node, or the peer it lent the fill"
    );
    describe_counter!(
        PEER_FETCH_FAILURES,
        "Peer fetches that failed (the origin took over)"
    );
    describe_histogram!(
        PEER_FETCH_SECONDS,
        Unit::Seconds,
        "Time until the home node answered a fetch"
    );
    describe_counter!(
        PEER_SERVES,
        "Blobs this node streamed to peers as their home node"
    );
    describe_counter!(
        FILL_LEASES,
        "Cold fills this node, as a blob's home, let the asking peer read from the origin"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method and status"
    );
    describe_gauge!(RAFT_TERM, "Current Raft term");
    describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "Time from a request's head to its reply's last byte, by method"
    );
    describe_counter!(
        ORIGIN_ERRORS,
        "Origin reads that failed or timed out (not a missing blob)"
    );
    describe_gauge!(RAFT_HAS_LEADER, "1 while this replica knows a leader");
    describe_gauge!(RAFT_MEMBERS, "Members of the region (voters and learners)");
    describe_gauge!(RAFT_VOTERS, "Voters of the region");
    describe_gauge!(
        RAFT_VOTERS_WANTED,
        "Voters the region is configured to keep (--voters)"
    );
    describe_gauge!(
        RAFT_LAG,
        "On the leader: log entries the member furthest behind lacks"
    );
    describe_gauge!(
        DISK_SIZE,
        Unit::Bytes,
        "Size of the file system of a node directory"
    );
    describe_gauge!(
        DISK_FREE,
        Unit::Bytes,
        "Free bytes on the file system of a node directory"
    );
    describe_gauge!(RAFT_LAST_APPLIED, "Last log index applied to this replica");
    describe_gauge!(
        METADATA_DISK,
        Unit::Bytes,
        "Bytes the metadata takes on disk: database and snapshot files"
    );
    describe_gauge!(
        METADATA_SNAPSHOT,
        Unit::Bytes,
        "The current metadata snapshot uncompressed: the catalogue's own bytes plus 8 per pair"
    );
    describe_gauge!(
        METADATA_SNAPSHOT_FILE,
        Unit::Bytes,
        "Size of the current metadata snapshot's file on disk (zstd-compressed)"
    );
    describe_gauge!(
        METADATA_SNAPSHOT_SECONDS,
        Unit::Seconds,
        "How long writing the last metadata snapshot out took (applying goes on meanwhile)"
    );
    describe_gauge!(RAFT_IS_LEADER, "1 if this node leads the region");
}

/// The exposition text (empty before `install`).
pub fn render() -> String {
    HANDLE.get().map(|h| h.render()).unwrap_or_default()
}

/// Records the replica's Raft state as gauges (called when metrics are scraped).
pub fn publish_raft(status: &shoal_raft::ClusterStatus) {
    metrics::gauge!(RAFT_TERM).set(status.term as f64);
    let applied = status.last_applied.unwrap_or(0);
    metrics::gauge!(RAFT_LAST_APPLIED).set(applied as f64);
    let leads = status.leader == Some(status.node_id);
    metrics::gauge!(RAFT_IS_LEADER).set(if leads { 1.0 } else { 0.0 });
    metrics::gauge!(RAFT_HAS_LEADER).set(if status.leader.is_some() { 1.0 } else { 0.0 });
    metrics::gauge!(RAFT_MEMBERS).set(status.members.len() as f64);
    let voters = status.members.iter().filter(|m| m.voter).count();
    metrics::gauge!(RAFT_VOTERS).set(voters as f64);
    let lag = status
        .members
        .iter()
        .filter_map(|m| m.matched)
        .map(|matched| applied.saturating_sub(matched))
        .max()
        .unwrap_or(0);
    metrics::gauge!(RAFT_LAG).set(if leads { lag as f64 } else { 0.0 });
}

/// Records what the metadata takes on disk (called when metrics are scraped).
pub fn publish_storage(stats: &shoal_raft::StorageStats) {
    metrics::gauge!(METADATA_DISK).set(stats.disk_bytes as f64);
    metrics::gauge!(METADATA_SNAPSHOT).set(stats.snapshot_bytes as f64);
    metrics::gauge!(METADATA_SNAPSHOT_FILE).set(stats.snapshot_file_bytes as f64);
    metrics::gauge!(METADATA_SNAPSHOT_SECONDS).set(stats.snapshot_build_seconds);
}

/// Records the size and free space of the file system holding `path` as `dir`.
pub fn publish_disk(dir: &'static str, path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` is written by the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return;
    }
    let block = stat.f_frsize as f64;
    metrics::gauge!(DISK_SIZE, "dir" => dir).set(stat.f_blocks as f64 * block);
    metrics::gauge!(DISK_FREE, "dir" => dir).set(stat.f_bavail as f64 * block);
}

/// Counts a connection closed by the edge's connection limits.
pub fn count_refused_connection(reason: &'static str) {
    metrics::counter!(REFUSED_CONNECTIONS, "reason" => reason).increment(1);
}

/// Counts a garbage collection run and its duration.
pub fn gc_finished(took: std::time::Duration, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(GC_RUNS, "result" => result).increment(1);
    metrics::histogram!(GC_SECONDS).record(took.as_secs_f64());
}

/// Counts one answered request and its duration; unusual methods share one label value.
pub fn count_request(method: &http::Method, status: u16, took: std::time::Duration) {
    use http::Method;
    let method = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    metrics::counter!(HTTP_REQUESTS, "method" => method, "status" => status.to_string())
        .increment(1);
    request_seconds(method).record(took.as_secs_f64());
}

/// The duration histogram of `method`, looked up once per method (every request records
/// one; a manifest GET takes tens of microseconds).
fn request_seconds(method: &'static str) -> &'static metrics::Histogram {
    const METHODS: [&str; 8] = [
        "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "other",
    ];
    static HANDLES: OnceLock<Vec<metrics::Histogram>> = OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        METHODS
            .iter()
            .map(|m| metrics::histogram!(HTTP_SECONDS, "method" => *m))
            .collect()
    });
    let i = METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1);
    &handles[i]
}

/// The sum of every sample of `name` in the exposition `text` whose labels include `label`
/// (`source="peer"`), or of all its samples; 0 when there is none. (The console's region
/// page reads the node's own counters this way.)
pub fn sum_of(text: &str, name: &str, label: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted =
                metric == name && label.is_none_or(|want| labels.split(',').any(|l| l == want));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod sum_tests {
    #[test]
    fn samples_add_up_by_name_and_label() {
        let text = "# HELP x\nshoal_blob_bytes_total{source=\"peer\"} 10\nshoal_blob_bytes_total{source=\"cache\"} 5\nshoal_cache_hits_total 3\nshoal_cache_hits_total_other 9\n";
        assert_eq!(super::sum_of(text, "shoal_blob_bytes_total", None), 15.0);
        assert_eq!(
            super::sum_of(text, "shoal_blob_bytes_total", Some("source=\"peer\"")),
            10.0
        );
        assert_eq!(super::sum_of(text, "shoal_cache_hits_total", None), 3.0);
        assert_eq!(super::sum_of(text, "nothing", None), 0.0);
    }
}
