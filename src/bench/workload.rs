//! Benchmark payloads: demo-like flows (sync chains, queues, batches, retries, dead
//! letters) with extra attributes so spans carry 10-20 of them, pre-encoded as OTLP
//! protobuf. Each send gets a fresh copy with its trace ids and message/correlation ids
//! rewritten in place, so the server sees new flows (not one giant flow of duplicates)
//! while the client spends almost nothing per request.

use std::collections::HashSet;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::demo::scenarios::{self, Builder, Pending, MS};
use crate::demo::to_requests;

/// One encoded request and where its ids sit in the bytes.
pub struct Template {
    pub bytes: Vec<u8>,
    pub spans: usize,
    trace_offsets: Vec<usize>,
    id_offsets: Vec<usize>,
    /// Where the span and event timestamps (fixed64, little-endian) sit.
    time_offsets: Vec<usize>,
}

/// Every position where one of the `needles` (all `N` bytes long) starts, in one pass.
fn positions<const N: usize>(haystack: &[u8], needles: &HashSet<[u8; N]>) -> Vec<usize> {
    if haystack.len() < N {
        return Vec::new();
    }
    (0..=haystack.len() - N)
        .filter(|i| needles.contains(<&[u8; N]>::try_from(&haystack[*i..*i + N]).expect("N bytes")))
        .collect()
}

fn filler(n: usize) -> Vec<KeyValue> {
    let kv =
        |k: &str, v: Value| KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() };
    let all = [
        kv("thread.id", Value::IntValue(17)),
        kv("thread.name", Value::StringValue("worker-3".into())),
        kv("code.namespace", Value::StringValue("com.example.orders".into())),
        kv("code.function", Value::StringValue("handle".into())),
        kv("net.host.name", Value::StringValue("orders-7d9f8b6c4-x2k9p".into())),
        kv("user_agent.original", Value::StringValue("okhttp/4.12.0".into())),
        kv("app.tenant", Value::StringValue("acme".into())),
        kv("app.region", Value::StringValue("eu-west-1".into())),
        kv("app.feature_flag.new_pricing", Value::BoolValue(true)),
        kv("app.items", Value::IntValue(3)),
        kv("app.amount", Value::DoubleValue(42.5)),
        kv("app.build", Value::StringValue("2026.11.3-1f2e3d".into())),
    ];
    all.into_iter().take(n).collect()
}

impl Template {
    /// About `target_spans` spans of demo flows starting at `t0`.
    pub fn build(seed: u64, t0: i64, target_spans: usize) -> Template {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut b = Builder::new(&mut rng);
        let mut pending = Pending::new();
        let mut n = 0i64;
        while b.out.spans.len() < target_spans {
            let t = t0 + n * 50 * MS;
            scenarios::checkout(&mut b, t, n % 25 == 7);
            scenarios::quote(&mut b, t + 5 * MS);
            if n % 3 == 0 {
                scenarios::shipping(&mut b, t + 7 * MS);
            }
            if n % 5 == 0 {
                scenarios::analytics_batch(&mut b, t + 9 * MS, 4);
            }
            scenarios::emails_tick(&mut b, t, 40 * MS, 2, 2, &mut pending);
            n += 1;
        }
        // 10-20 attributes a span: pad each with fillers up to a count that varies.
        for (i, (_, span)) in b.out.spans.iter_mut().enumerate() {
            let want = 10 + (i % 11);
            if span.attributes.len() < want {
                span.attributes.extend(filler(want - span.attributes.len()));
            }
        }
        let times: HashSet<[u8; 8]> = b
            .out
            .spans
            .iter()
            .flat_map(|(_, s)| {
                [s.start_time_unix_nano, s.end_time_unix_nano]
                    .into_iter()
                    .chain(s.events.iter().map(|e| e.time_unix_nano))
            })
            .map(u64::to_le_bytes)
            .collect();
        let traces = std::mem::take(&mut b.traces);
        let prefixes = std::mem::take(&mut b.id_prefixes);
        let spans = b.out.spans.len();
        let (request, _) = to_requests(std::mem::take(&mut b.out));
        let bytes = request.encode_to_vec();
        let trace_offsets = positions(&bytes, &traces.into_iter().collect());
        let prefix_set: HashSet<[u8; 8]> =
            prefixes.iter().filter_map(|p| <[u8; 8]>::try_from(p.as_bytes()).ok()).collect();
        let id_offsets = positions(&bytes, &prefix_set);
        let time_offsets = positions(&bytes, &times);
        Template { bytes, spans, trace_offsets, id_offsets, time_offsets }
    }

    /// A copy whose ids are unique to `nonce` (consistently within the copy, so links,
    /// message ids and correlation ids still join what they joined).
    pub fn instance(&self, nonce: u32) -> Vec<u8> {
        self.instance_at(nonce, 0)
    }

    /// [`Template::instance`] with every span and event time moved `shift_ns` later, so
    /// copies can be spread over time as real traffic is.
    pub fn instance_at(&self, nonce: u32, shift_ns: i64) -> Vec<u8> {
        let mut out = self.bytes.clone();
        if shift_ns != 0 {
            for &o in &self.time_offsets {
                let field: &mut [u8] = &mut out[o..o + 8];
                let time = u64::from_le_bytes(<[u8; 8]>::try_from(&*field).expect("8 bytes"));
                field.copy_from_slice(&time.wrapping_add_signed(shift_ns).to_le_bytes());
            }
        }
        for &o in &self.trace_offsets {
            out[o + 4..o + 8].copy_from_slice(&nonce.to_le_bytes());
        }
        // The first 8 digits of every message and correlation id become the nonce: ids of
        // different copies differ there, ids of one copy in their other (random) digits.
        // (Mixing the nonce into the original digits instead lets copies collide by chance:
        // with millions of ids, 32 bits have birthday collisions, which join unrelated flows.)
        let hex = format!("{nonce:08x}");
        for &o in &self.id_offsets {
            out[o..o + 8].copy_from_slice(hex.as_bytes());
        }
        out
    }
}

/// Decodes a payload; for the decode-limit measurement.
pub fn decode(bytes: &[u8]) -> usize {
    let req = ExportTraceServiceRequest::decode(bytes).expect("the template decodes");
    req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_have_fresh_ids_and_realistic_spans() {
        let t = Template::build(1, 1_700_000_000_000_000_000, 300);
        assert!(t.spans >= 300);
        let a = ExportTraceServiceRequest::decode(&t.instance(1)[..]).unwrap();
        let b = ExportTraceServiceRequest::decode(&t.instance(2)[..]).unwrap();
        let traces = |r: &ExportTraceServiceRequest| -> HashSet<Vec<u8>> {
            r.resource_spans
                .iter()
                .flat_map(|x| &x.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.trace_id.clone())
                .collect()
        };
        assert!(traces(&a).is_disjoint(&traces(&b)), "copies share no trace id");
        let ids = |r: &ExportTraceServiceRequest, key: &str| -> HashSet<String> {
            r.resource_spans
                .iter()
                .flat_map(|x| &x.scope_spans)
                .flat_map(|s| &s.spans)
                .flat_map(|s| &s.attributes)
                .filter(|kv| kv.key == key)
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(v) => Some(v.clone()),
                    _ => None,
                })
                .collect()
        };
        let original = ExportTraceServiceRequest::decode(&t.bytes[..]).unwrap();
        let checkouts = ids(&original, "app.order_id").len();
        assert!(checkouts > 1, "a template holds several checkouts");
        for key in ["messaging.message.id", "app.order_id"] {
            assert!(!ids(&a, key).is_empty());
            assert_eq!(ids(&a, key).len(), ids(&original, key).len(), "{key}s within a copy stay distinct");
            assert!(ids(&a, key).is_disjoint(&ids(&b, key)), "copies share no {key}");
        }
        // Every checkout of a copy has its own order id, as a shop's orders do (an id made
        // of the rewritten digits alone made one 64-trace flow of each copy's checkouts).
        assert_eq!(ids(&a, "app.order_id").len(), checkouts);
        let other_template = Template::build(2, 1_700_000_000_000_000_000, 300);
        let c = ExportTraceServiceRequest::decode(&other_template.instance(1)[..]).unwrap();
        assert!(ids(&a, "app.order_id").is_disjoint(&ids(&c, "app.order_id")), "same copy number, other template");
        let spans: Vec<_> = a.resource_spans.iter().flat_map(|x| &x.scope_spans).flat_map(|s| &s.spans).collect();
        assert!(spans.iter().all(|s| (10..=20).contains(&s.attributes.len())));
        let messaging = spans.iter().filter(|s| s.attributes.iter().any(|a| a.key.starts_with("messaging."))).count();
        assert!(messaging * 4 >= spans.len(), "a good share of spans are messaging spans: {messaging}/{}", spans.len());
        assert!(spans.iter().any(|s| !s.links.is_empty()));
        assert_eq!(decode(&t.bytes), t.spans);

        let shifted = ExportTraceServiceRequest::decode(&t.instance_at(1, 5_000)[..]).unwrap();
        let shifted: Vec<_> =
            shifted.resource_spans.iter().flat_map(|x| &x.scope_spans).flat_map(|s| &s.spans).collect();
        for (a, b) in spans.iter().zip(&shifted) {
            assert_eq!(b.start_time_unix_nano, a.start_time_unix_nano + 5_000);
            assert_eq!(b.end_time_unix_nano, a.end_time_unix_nano + 5_000);
            assert_eq!(a.trace_id, b.trace_id, "same nonce, same ids");
        }
    }
}
