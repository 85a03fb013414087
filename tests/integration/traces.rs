//! OpenTelemetry traces, received by a tiny OTLP collector (`shoal_tests::otlp`): a client's
//! `traceparent` is honoured, a write through a follower is one trace across both nodes
//! (forwarded over the cluster plane), a cold blob pull is one trace down to
//! `shoal-origin` (over HTTP), and log lines carry the trace id.

use shoal_tests::otlp::{Collector, Span};
use shoal_tests::region::{Region, SECRET};
use shoal_tests::{basic, sha256, tempdir, Origin, Registry, ADMIN_PASSWORD};

/// A client's own trace context: a fresh trace id and the client's span id.
fn client_context(n: u8) -> (String, String, String) {
    let trace_id = format!("{:02x}{}", n, "5a".repeat(15));
    let span_id = format!("{:02x}{}", n, "c1".repeat(7));
    let header = format!("00-{trace_id}-{span_id}-01");
    (trace_id, span_id, header)
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// Every span's parent is the client's span or another span of the same trace.
fn linked(spans: &[Span], client_span: &str) {
    for s in spans {
        assert!(
            s.parent_span_id == client_span || spans.iter().any(|p| p.span_id == s.parent_span_id),
            "span {} ({}) has a parent outside the trace: {spans:#?}",
            s.name,
            s.instance
        );
    }
}

#[test]
fn one_push_through_a_follower_and_one_cold_pull_are_one_trace_each_across_processes() {
    let collector = Collector::start();
    let dir = tempdir();
    let endpoint = collector.endpoint.as_str();
    let mut region = Region::prepare(
        dir.path(),
        2,
        2,
        &[
            "--otel-exporter-otlp-endpoint",
            endpoint,
            "--log-format",
            "json",
        ],
    );
    region.origin = Origin::start_args(
        &["--root", dir.path().join("traced-origin").to_str().unwrap()],
        &dir.path().join("traced-origin.log"),
        SECRET,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    region.start_node(1);
    region.wait_for(|s| s["leader"] == 1, "node 1 leads");
    region.start_node(2);
    region.wait_members(2);
    let one = Registry::with_auth(&region.node(1).url, Some(&basic("admin", ADMIN_PASSWORD)));
    one.create_namespace("team");
    let two = Registry::with_auth(&region.node(2).url, Some(&basic("admin", ADMIN_PASSWORD)));
    let layer = b"a traced layer".repeat(1000);
    let config = b"{}".to_vec();
    let layer_digest = two.push_blob("team/app", &layer);
    let config_digest = two.push_blob("team/app", &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();

    // A manifest pushed through node 2, a follower: node 2 forwards the write to node 1.
    let (push_trace, push_client, header) = client_context(1);
    let r = two
        .http
        .put(two.url("/v2/team/app/manifests/v1"))
        .header("traceparent", &header)
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let spans = collector.wait_for(&push_trace, |s| {
        !named(s, "forwarded write").is_empty() && !named(s, "forward to leader").is_empty()
    });
    let request = named(&spans, "PUT /v2/{name}/manifests/{reference}");
    assert_eq!(request.len(), 1, "{spans:#?}");
    assert_eq!(
        request[0].parent_span_id, push_client,
        "the client's span is the parent"
    );
    assert_eq!(request[0].instance, "node-2");
    assert_eq!(
        request[0].attribute("http.response.status_code"),
        Some("201")
    );
    let forward = named(&spans, "forward to leader")[0];
    let forwarded = named(&spans, "forwarded write")[0];
    assert_eq!(forward.instance, "node-2");
    assert_eq!(
        forwarded.instance, "node-1",
        "the leader's commit joins the trace"
    );
    assert_eq!(forwarded.parent_span_id, forward.span_id);
    assert!(!named(&spans, "authorize").is_empty());
    linked(&spans, &push_client);

    // A client that says its trace is not sampled gets none recorded, on any node.
    let (quiet_trace, _, header) = client_context(3);
    let quiet = header.replace("-01", "-00");
    let r = two
        .http
        .get(two.url("/v2/team/app/manifests/v1"))
        .header("traceparent", &quiet)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // A cold pull of the layer through node 2: cache miss, a fill from the origin (perhaps
    // through node 1, the layer's home), and the origin's own span.
    let (pull_trace, pull_client, header) = client_context(2);
    let r = two
        .http
        .get(two.url(&format!("/v2/team/app/blobs/{layer_digest}")))
        .header("traceparent", &header)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().unwrap()), layer_digest);
    let spans = collector.wait_for(&pull_trace, |s| {
        s.iter().any(|s| s.service == "shoal-origin") && !named(s, "cache fill").is_empty()
    });
    let origin: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == "shoal-origin")
        .collect();
    assert!(
        origin.iter().any(|s| s.name == "GET /v1/blobs/{digest}"),
        "{origin:#?}"
    );
    let reads = named(&spans, "cache read");
    assert!(
        reads.iter().any(|r| r.attribute("hit") == Some("false")),
        "{reads:#?}"
    );
    assert!(!named(&spans, "origin fetch").is_empty(), "{spans:#?}");
    linked(&spans, &pull_client);
    // Exported after the unsampled request, so that one would have arrived by now.
    assert!(
        collector.trace(&quiet_trace).is_empty(),
        "an unsampled trace was exported"
    );

    // The log lines written while serving carry the trace id.
    let log = region.node(2).log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(&push_trace) && l.contains("\"request\"")),
        "no log line of node 2 names trace {push_trace}"
    );
}
