//! Spans into `spans` and `span_links` rows, with the messaging conventions extracted into
//! their own columns so the flow stitcher never has to parse JSON.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::Event, Span};

use super::attributes::{self, write_json_object, write_json_string};
use super::{append_hex, check_id, nanos, CorrelationKeys, Flattened, RequestResources, ResourceContext};
use crate::semconv::{MessagingOperation, SpanKind, SpanStatus};
use crate::store::tables::{LinkRows, SpanRows};

pub(crate) fn flatten(req: &ExportTraceServiceRequest, correlation: &CorrelationKeys) -> Flattened {
    let mut out = Flattened::default();
    let mut spans = SpanRows::new();
    let mut links = LinkRows::new();
    let mut resources = RequestResources::default();
    for rs in &req.resource_spans {
        let resource = ResourceContext::new(rs.resource.as_ref());
        let accepted_before = out.accepted;
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| attributes::bounded(&s.name)).filter(|s| !s.is_empty());
            for span in &ss.spans {
                match validate(span) {
                    Ok((start, end)) => {
                        push_span(&mut spans, &resource, scope.as_deref(), span, start, end, correlation);
                        push_links(&mut links, span, start);
                        out.accepted += 1;
                    }
                    Err(why) => out.reject(|| format!("span {:?}: {why}", attributes::bounded(&span.name))),
                }
            }
        }
        // Stored only when a row of this request refers to it.
        if out.accepted > accepted_before {
            resources.add(&resource);
        }
    }
    out.batches.extend(spans.finish());
    out.batches.extend(links.finish());
    out.batches.extend(resources.finish());
    out
}

fn validate(span: &Span) -> Result<(i64, i64), String> {
    check_id("trace_id", &span.trace_id, 16, true)?;
    check_id("span_id", &span.span_id, 8, true)?;
    check_id("parent_span_id", &span.parent_span_id, 8, false)?;
    for link in &span.links {
        check_id("link trace_id", &link.trace_id, 16, true)?;
        check_id("link span_id", &link.span_id, 8, true)?;
    }
    let start = nanos(span.start_time_unix_nano).ok_or("start_time_unix_nano is out of range")?;
    let end = nanos(span.end_time_unix_nano).ok_or("end_time_unix_nano is out of range")?;
    Ok((start, end))
}

/// OTLP's SPAN_KIND_CONSUMER.
const CONSUMER_KIND: i32 = 5;

pub(crate) fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => SpanKind::Internal,
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Unspecified,
    }
    .as_str()
}

fn status_name(code: i32) -> &'static str {
    match code {
        1 => SpanStatus::Ok,
        2 => SpanStatus::Error,
        _ => SpanStatus::Unset,
    }
    .as_str()
}

/// A span event that records a message being dead-lettered (`dead_letter`, `dead-lettered`,
/// `DeadLetter`, ...).
fn is_dead_letter_event(event: &Event) -> bool {
    let name: String = event.name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    name.to_ascii_lowercase().contains("deadletter")
}

fn push_span(
    rows: &mut SpanRows,
    resource: &ResourceContext<'_>,
    scope: Option<&str>,
    span: &Span,
    start: i64,
    end: i64,
    correlation: &CorrelationKeys,
) {
    let mut messaging = attributes::messaging(&span.attributes);
    if let Some(queue) =
        attributes::queue_from_span_name(&messaging, span.kind == CONSUMER_KIND, &attributes::bounded(&span.name))
    {
        messaging.destination = Some(queue);
    }
    append_hex(&mut rows.trace_id, &span.trace_id);
    append_hex(&mut rows.span_id, &span.span_id);
    append_hex(&mut rows.parent_span_id, &span.parent_span_id);
    rows.trace_state.append_option((!span.trace_state.is_empty()).then_some(&span.trace_state));
    rows.service_name.append_value(&resource.service_name);
    rows.scope_name.append_option(scope);
    rows.name.append_value(attributes::bounded(&span.name));
    rows.kind.append_value(kind_name(span.kind));
    rows.start_unix_nano.append_value(start);
    rows.end_unix_nano.append_value(end);
    let status = span.status.as_ref();
    rows.status_code.append_value(status_name(status.map_or(0, |s| s.code)));
    rows.status_message.append_option(status.map(|s| s.message.as_str()).filter(|m| !m.is_empty()));
    write_json_object(&mut rows.attributes, &span.attributes);
    rows.attributes.append_value("");
    rows.resource_id.append_value(resource.id);
    if span.events.is_empty() {
        rows.events.append_null();
    } else {
        write_events(&mut rows.events, &span.events);
        rows.events.append_value("");
    }
    rows.link_count.append_value(span.links.len() as i32);
    rows.messaging_system.append_option(messaging.system);
    rows.messaging_operation.append_option(messaging.operation.map(MessagingOperation::as_str));
    rows.destination.append_option(messaging.destination);
    rows.message_id.append_option(messaging.message_id);
    let correlation_id =
        correlation.find(&span.attributes).or_else(|| span.events.iter().find_map(|e| correlation.find(&e.attributes)));
    rows.correlation_id.append_option(correlation_id);
    rows.consumer_group.append_option(messaging.consumer_group);
    rows.partition_id.append_option(messaging.partition);
    rows.batch_message_count.append_option(messaging.batch_count);
    rows.attempt.append_option(messaging.attempt.map(|a| a.clamp(0, i32::MAX as i64) as i32));
    rows.dead_letter_evidence
        .append_value(messaging.dead_letter_evidence || span.events.iter().any(is_dead_letter_event));
    rows.dead_letter_source.append_option(messaging.dead_letter_source);
}

fn write_events<W: std::fmt::Write>(out: &mut W, events: &[Event]) {
    let _ = out.write_char('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            let _ = out.write_char(',');
        }
        let _ = write!(out, "{{\"time_unix_nano\":{},\"name\":", e.time_unix_nano);
        write_json_string(out, &e.name);
        let _ = out.write_str(",\"attributes\":");
        write_json_object(out, &e.attributes);
        let _ = out.write_char('}');
    }
    let _ = out.write_char(']');
}

fn push_links(rows: &mut LinkRows, span: &Span, start: i64) {
    for link in &span.links {
        append_hex(&mut rows.trace_id, &span.trace_id);
        append_hex(&mut rows.span_id, &span.span_id);
        append_hex(&mut rows.linked_trace_id, &link.trace_id);
        append_hex(&mut rows.linked_span_id, &link.span_id);
        write_json_object(&mut rows.attributes, &link.attributes);
        rows.attributes.append_value("");
        // Batch consumers put each message's id on its link.
        rows.message_id.append_option(attributes::text_of(&link.attributes, attributes::keys::MESSAGE_ID));
        rows.span_start_unix_nano.append_value(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::{Array, AsArray};
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{span::Link, ResourceSpans, ScopeSpans};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn span(trace: Vec<u8>, id: Vec<u8>) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            name: "s".into(),
            kind: 4,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn invalid_spans_are_rejected_and_the_rest_kept() {
        let table: Vec<(Span, Option<&str>)> = vec![
            (span(vec![1; 16], vec![2; 8]), None),
            (span(vec![1; 15], vec![2; 8]), Some("trace_id must be 16 bytes, got 15")),
            (span(vec![], vec![2; 8]), Some("trace_id is missing")),
            (span(vec![1; 16], vec![0; 8]), Some("span_id is all zeros")),
            (
                Span { parent_span_id: vec![3; 4], ..span(vec![1; 16], vec![2; 8]) },
                Some("parent_span_id must be 8 bytes, got 4"),
            ),
            (
                Span {
                    links: vec![Link { trace_id: vec![1; 16], span_id: vec![9; 3], ..Default::default() }],
                    ..span(vec![1; 16], vec![2; 8])
                },
                Some("link span_id must be 8 bytes, got 3"),
            ),
            (
                Span { start_time_unix_nano: u64::MAX, ..span(vec![1; 16], vec![2; 8]) },
                Some("start_time_unix_nano is out of range"),
            ),
        ];
        for (s, want) in table {
            let flat = flatten(&request(vec![s]), &CorrelationKeys::default());
            match want {
                None => assert_eq!((flat.accepted, flat.rejected), (1, 0)),
                Some(why) => {
                    assert_eq!((flat.accepted, flat.rejected), (0, 1));
                    assert!(flat.reason.as_deref().unwrap().ends_with(why), "{:?} vs {why}", flat.reason);
                    assert!(flat.batches.is_empty());
                }
            }
        }
    }

    #[test]
    fn extracts_messaging_correlation_and_links() {
        let mut s = span(vec![0xab; 16], vec![0xcd; 8]);
        s.attributes = vec![kv("messaging.destination", ",orders"), kv("messaging.operation", "publish")];
        s.events = vec![Event {
            name: "message.dead_lettered".into(),
            attributes: vec![kv("app.order_id", "o-1")],
            ..Default::default()
        }];
        s.links = vec![Link {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            attributes: vec![kv("messaging.message.id", "m-9")],
            ..Default::default()
        }];
        let flat = flatten(&request(vec![s]), &CorrelationKeys::with_extra(&["app.order_id".into()]));
        let spans = &flat.batches[0].batch;
        let col = |name: &str| spans.column_by_name(name).unwrap().as_string::<i32>().value(0).to_owned();
        assert_eq!(col("trace_id"), "ab".repeat(16));
        assert_eq!(col("destination"), "orders");
        assert_eq!(col("messaging_operation"), "send");
        assert_eq!(col("correlation_id"), "o-1");
        assert_eq!(col("kind"), "PRODUCER");
        assert!(spans.column_by_name("parent_span_id").unwrap().is_null(0));
        let events: serde_json::Value = serde_json::from_str(&col("events")).unwrap();
        assert_eq!(events[0]["attributes"]["app.order_id"], "o-1");
        assert!(spans.column_by_name("dead_letter_evidence").unwrap().as_boolean().value(0));
        let links = &flat.batches[1];
        assert_eq!(links.table, "span_links");
        assert_eq!(links.batch.column_by_name("message_id").unwrap().as_string::<i32>().value(0), "m-9");
        assert_eq!(links.batch.column_by_name("linked_span_id").unwrap().as_string::<i32>().value(0), "08".repeat(8));
    }
}
