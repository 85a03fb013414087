//! A tiny OTLP receiver (HTTP/protobuf, `POST /v1/traces`), standing in for an
//! OpenTelemetry collector: it decodes every exported span with `opentelemetry-proto` and
//! keeps what the trace tests check (names, ids, parent links, the resource's service).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use prost::Message;

#[derive(Clone, Debug)]
pub struct Span {
    pub service: String,
    /// The resource's `service.instance.id` (`node-<id>` for nodes).
    pub instance: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Collector {
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

fn text(kvs: &[KeyValue], key: &str) -> String {
    kvs.iter()
        .find(|kv| kv.key == key)
        .map(value)
        .unwrap_or_default()
}

fn value(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

impl Collector {
    pub fn start() -> Collector {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
                    Ok(export) if req.url() == "/v1/traces" => {
                        let mut kept = kept.lock().unwrap();
                        for rs in export.resource_spans {
                            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
                            let service = text(&attrs, "service.name");
                            let instance = text(&attrs, "service.instance.id");
                            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                                kept.push(Span {
                                    service: service.clone(),
                                    instance: instance.clone(),
                                    name: span.name,
                                    trace_id: hex::encode(&span.trace_id),
                                    span_id: hex::encode(&span.span_id),
                                    parent_span_id: hex::encode(&span.parent_span_id),
                                    attributes: span
                                        .attributes
                                        .iter()
                                        .map(|kv| (kv.key.clone(), value(kv)))
                                        .collect(),
                                });
                            }
                        }
                        200
                    }
                    _ => 400,
                };
                let _ = req.respond(tiny_http::Response::empty(status));
            }
        });
        Collector {
            endpoint: format!("http://127.0.0.1:{port}"),
            spans,
        }
    }

    /// The spans of trace `trace_id` received so far.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Waits (at most 30 s: exporters send in batches) until trace `trace_id` holds spans
    /// that satisfy `done`; returns them.
    pub fn wait_for(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} never became complete; it holds {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
