//! OTLP attribute handling shared by the three signals: rendering attribute lists as JSON
//! text for storage, and reading the messaging conventions (current AND legacy names) into
//! the extracted columns the flow stitcher joins on.

use std::fmt::Write;

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

use crate::semconv::MessagingOperation;

/// Writes `attrs` as one JSON object into `out` (`{"key": value, ...}`). Written by hand
/// rather than through `serde_json::Value` because this runs once per span on the ingest
/// path and building a `Value` tree costs an allocation per attribute.
/// Generic over the writer so the ingest path can write straight into an Arrow string
/// builder.
pub fn write_json_object<W: Write>(out: &mut W, attrs: &[KeyValue]) {
    let _ = out.write_char('{');
    for (i, kv) in attrs.iter().enumerate() {
        if i > 0 {
            let _ = out.write_char(',');
        }
        write_json_string(out, &kv.key);
        let _ = out.write_char(':');
        write_json_value(out, kv.value.as_ref());
    }
    let _ = out.write_char('}');
}

/// Same as [`write_json_object`], returning a new string.
pub fn json_object(attrs: &[KeyValue]) -> String {
    let mut out = String::with_capacity(32 * attrs.len() + 2);
    write_json_object(&mut out, attrs);
    out
}

pub fn write_json_value<W: Write>(out: &mut W, value: Option<&AnyValue>) {
    match value.and_then(|v| v.value.as_ref()) {
        None => {
            let _ = out.write_str("null");
        }
        Some(Value::StringValue(s)) => write_json_string(out, s),
        Some(Value::BoolValue(b)) => {
            let _ = out.write_str(if *b { "true" } else { "false" });
        }
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) => {
            if d.is_finite() {
                let _ = write!(out, "{d}");
            } else {
                // JSON has no NaN/Infinity; keep the information as a string.
                write_json_string(out, &d.to_string());
            }
        }
        Some(Value::BytesValue(b)) => write_json_string(out, &hex::encode(b)),
        Some(Value::ArrayValue(arr)) => {
            let _ = out.write_char('[');
            for (i, v) in arr.values.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_char(',');
                }
                write_json_value(out, Some(v));
            }
            let _ = out.write_char(']');
        }
        Some(Value::KvlistValue(kvs)) => write_json_object(out, &kvs.values),
        // An index into a profiles string table, meaningless outside profiles.
        Some(Value::StringValueStrindex(_)) => {
            let _ = out.write_str("null");
        }
    }
}

pub fn write_json_string<W: Write>(out: &mut W, s: &str) {
    let _ = out.write_char('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        let _ = out.write_str(&s[start..i]);
        match escape {
            Some(e) => {
                let _ = out.write_str(e);
            }
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    let _ = out.write_str(&s[start..]);
    let _ = out.write_char('"');
}

/// Looks up the first of `keys` present in `attrs`.
pub fn find<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a AnyValue> {
    keys.iter().find_map(|k| attrs.iter().find(|kv| kv.key == *k)).and_then(|kv| kv.value.as_ref())
}

/// Most bytes of a name or id copied into every row that refers to it (service, scope,
/// span, metric and destination names, units, message and correlation ids): one exporter's
/// 64 KiB `service.name` on a resource of 12,000 spans would otherwise be 800 MB of rows.
pub const MAX_NAME_BYTES: usize = 1024;

/// `text` cut to [`MAX_NAME_BYTES`] (see [`crate::text::cut`]); borrowed when it fits.
pub fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    crate::text::cut(text, MAX_NAME_BYTES)
}

/// The attribute as text: strings as they are, numbers and booleans printed, bounded like
/// every name (see [`bounded`]). Ids such as `messaging.message.id` arrive as either
/// (Kafka offsets, RabbitMQ delivery tags).
pub fn as_text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        Value::StringValue(s) if !s.is_empty() => Some(bounded(s).into_owned()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::BytesValue(b) if !b.is_empty() => Some(bounded(&hex::encode(b)).into_owned()),
        _ => None,
    }
}

/// The attribute as a whole number, accepting numeric strings (RabbitMQ headers recorded
/// as strings) and arrays (an `x-death` header recorded as a list of counts: the sum).
pub fn as_int(value: &AnyValue) -> Option<i64> {
    match value.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        Value::DoubleValue(d) => Some(*d as i64),
        Value::StringValue(s) => s.trim().parse().ok(),
        Value::ArrayValue(a) => a.values.iter().filter_map(as_int).reduce(|x, y| x + y),
        _ => None,
    }
}

pub fn text_of(attrs: &[KeyValue], keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| attrs.iter().find(|kv| kv.key == *k))
        .filter_map(|kv| kv.value.as_ref())
        .find_map(as_text)
}

pub fn int_of(attrs: &[KeyValue], keys: &[&str]) -> Option<i64> {
    find(attrs, keys).and_then(as_int)
}

/// Attribute names of the OpenTelemetry messaging conventions, current name first.
pub mod keys {
    pub const SERVICE_NAME: &[&str] = &["service.name"];
    pub const SYSTEM: &[&str] = &["messaging.system"];
    pub const OPERATION: &[&str] = &["messaging.operation.type", "messaging.operation"];
    pub const DESTINATION: &[&str] = &["messaging.destination.name", "messaging.destination"];
    pub const ROUTING_KEY: &[&str] = &["messaging.rabbitmq.destination.routing_key", "messaging.rabbitmq.routing_key"];
    pub const MESSAGE_ID: &[&str] = &["messaging.message.id", "messaging.message_id"];
    pub const CONSUMER_GROUP: &[&str] =
        &["messaging.consumer.group.name", "messaging.kafka.consumer_group", "messaging.kafka.consumer.group"];
    pub const BATCH_COUNT: &[&str] = &["messaging.batch.message_count"];
    pub const PARTITION: &[&str] = &["messaging.destination.partition.id", "messaging.kafka.partition"];
    /// Counters that already count the first delivery as 1.
    pub const DELIVERY_ATTEMPT: &[&str] = &[
        "messaging.servicebus.message.delivery_count",
        "messaging.gcp_pubsub.message.delivery_attempt",
        "retry_topic-attempts",
        "messaging.rabbitmq.message.delivery_count",
        // SQS's ApproximateReceiveCount, as the AWS instrumentations record it.
        "messaging.aws.sqs.approximate_receive_count",
        "aws.sqs.approximate_receive_count",
        "ApproximateReceiveCount",
    ];
    /// Counters of earlier attempts: the first delivery has 0.
    pub const RETRY_COUNT: &[&str] =
        &["x-delivery-count", "messaging.rabbitmq.x_delivery_count", "celery.retries", "http.request.resend_count"];
    pub const DEATH_COUNT: &[&str] = &[
        "x-death",
        "messaging.rabbitmq.x_death",
        "x-death.count",
        "rabbitmq.x_death.count",
        "messaging.rabbitmq.x_death.count",
    ];
    /// Why and from where RabbitMQ dead-lettered a message (its `x-death` header, as
    /// instrumentations or applications record it). Present only on dead letters.
    pub const DEATH_REASON: &[&str] = &[
        "rabbitmq.x_death.reason",
        "messaging.rabbitmq.x_death.reason",
        "x-death.reason",
        "x-first-death-reason",
        "rabbitmq.x_first_death_reason",
    ];
    pub const DEATH_QUEUE: &[&str] = &[
        "rabbitmq.x_death.queue",
        "messaging.rabbitmq.x_death.queue",
        "x-death.queue",
        "x-first-death-queue",
        "rabbitmq.x_first_death_queue",
    ];
    pub const DISPOSITION: &[&str] = &["messaging.servicebus.disposition_status"];
    /// The AWS SDK instrumentations' call names (`rpc.service` `SQS`, `rpc.method`
    /// `SendMessage`, ...), which say what an SQS client span does.
    pub const RPC_SERVICE: &[&str] = &["rpc.service"];
    pub const RPC_METHOD: &[&str] = &["rpc.method"];
    /// Where an SQS client span names its queue only by URL.
    pub const QUEUE_URL: &[&str] = &["aws.sqs.queue.url", "aws.sqs.queue_url", "aws.queue.url", "messaging.url"];
    /// Correlation keys accepted on every signal; users add their own (`app.order_id`).
    pub const DEFAULT_CORRELATION: &[&str] = &[
        "messaging.message.conversation_id",
        "messaging.conversation_id",
        "correlation_id",
        "correlation.id",
        "correlationId",
    ];
}

/// What the messaging conventions say about one span, under whichever names it used.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Messaging {
    pub system: Option<String>,
    /// The operation, in either vocabulary; None when absent or not one the conventions define.
    pub operation: Option<MessagingOperation>,
    pub destination: Option<String>,
    pub message_id: Option<String>,
    pub consumer_group: Option<String>,
    pub batch_count: Option<i64>,
    pub partition: Option<String>,
    /// Attempt number of this delivery or call: 1 for the first, 2 for the first retry.
    pub attempt: Option<i64>,
    pub dead_letter_evidence: bool,
    /// The queue the broker dead-lettered the message from.
    pub dead_letter_source: Option<String>,
}

pub fn messaging(attrs: &[KeyValue]) -> Messaging {
    let sqs_call = sqs_call(attrs);
    let system =
        text_of(attrs, keys::SYSTEM).map(|s| normalize_system(&s)).or_else(|| sqs_call.map(|_| SQS_SYSTEM.to_owned()));
    let sqs = system.as_deref() == Some(SQS_SYSTEM);
    let destination = text_of(attrs, keys::DESTINATION)
        .and_then(|d| normalize_destination(&d))
        .or_else(|| text_of(attrs, keys::ROUTING_KEY))
        .or_else(|| sqs.then(|| text_of(attrs, keys::QUEUE_URL).and_then(|u| queue_from_url(&u))).flatten());
    let attempt = int_of(attrs, keys::DELIVERY_ATTEMPT)
        .filter(|n| *n > 0)
        .or_else(|| int_of(attrs, keys::RETRY_COUNT).map(|n| n.max(0) + 1));
    let disposition_dead = text_of(attrs, keys::DISPOSITION)
        .is_some_and(|d| d.eq_ignore_ascii_case("dead_letter") || d.eq_ignore_ascii_case("deadletter"));
    let died = int_of(attrs, keys::DEATH_COUNT).is_some_and(|n| n > 0) || find(attrs, keys::DEATH_REASON).is_some();
    let dead_letter_source = text_of(attrs, keys::DEATH_QUEUE).and_then(|q| normalize_destination(&q));
    Messaging {
        system,
        operation: text_of(attrs, keys::OPERATION).and_then(|o| MessagingOperation::parse(&o)).or(sqs_call.flatten()),
        destination,
        message_id: text_of(attrs, keys::MESSAGE_ID),
        consumer_group: text_of(attrs, keys::CONSUMER_GROUP),
        batch_count: int_of(attrs, keys::BATCH_COUNT),
        partition: text_of(attrs, keys::PARTITION),
        attempt,
        dead_letter_evidence: disposition_dead || died,
        dead_letter_source,
    }
}

const SQS_SYSTEM: &str = "aws_sqs";

/// What an AWS SDK client span calling SQS does, by its `rpc.method`: sends publish,
/// receives deliver, deletes and visibility changes settle. None when the span is not an
/// SQS call; Some(None) for a call on queues rather than messages (`GetQueueUrl`).
fn sqs_call(attrs: &[KeyValue]) -> Option<Option<MessagingOperation>> {
    let service = text_of(attrs, keys::RPC_SERVICE)?;
    let service = service.to_ascii_lowercase();
    if service != "sqs" && service != "amazonsqs" {
        return None;
    }
    let method = text_of(attrs, keys::RPC_METHOD).unwrap_or_default();
    Some(match method.as_str() {
        "SendMessage" | "SendMessageBatch" => Some(MessagingOperation::Send),
        "ReceiveMessage" => Some(MessagingOperation::Receive),
        "DeleteMessage" | "DeleteMessageBatch" | "ChangeMessageVisibility" | "ChangeMessageVisibilityBatch" => {
            Some(MessagingOperation::Settle)
        }
        _ => None,
    })
}

/// The queue an SQS queue URL names: its last path segment
/// (`https://sqs.eu-west-1.amazonaws.com/123456789012/orders-queue`).
fn queue_from_url(url: &str) -> Option<String> {
    let name = url.trim_end_matches('/').rsplit('/').next()?;
    (!name.is_empty() && !name.contains(':')).then(|| name.to_owned())
}

/// RabbitMQ instrumentations that name only the exchange in attributes still name the
/// queue a consumer read in the span's name (`<queue> process`, `<queue> receive`). For
/// a consuming RabbitMQ span whose name says so, that queue is its destination.
pub fn queue_from_span_name(messaging: &Messaging, kind_is_consumer: bool, span_name: &str) -> Option<String> {
    if messaging.system.as_deref() != Some("rabbitmq") {
        return None;
    }
    let consuming = messaging.operation.map_or(kind_is_consumer, MessagingOperation::consumes);
    if !consuming {
        return None;
    }
    let (queue, verb) = span_name.trim().rsplit_once(' ')?;
    let queue = queue.trim();
    let named = matches!(verb, "receive" | "process" | "consume" | "deliver");
    let anonymous = queue.is_empty() || queue.contains(' ') || queue.starts_with('(') || queue == "<default>";
    (named && !anonymous && messaging.destination.as_deref() != Some(queue))
        .then(|| normalize_destination(queue))
        .flatten()
}

/// Legacy `aws.sqs` became `aws_sqs`.
pub fn normalize_system(system: &str) -> String {
    system.replace('.', "_").to_ascii_lowercase()
}

/// RabbitMQ instrumentations name send destinations `{exchange},{routing_key}`; with the
/// default (empty) exchange the routing key is the queue name, which is what consumers
/// report, so `,pricing.requests` and `pricing.requests` must name the same destination.
pub fn normalize_destination(dest: &str) -> Option<String> {
    let d = dest.strip_prefix(',').unwrap_or(dest).trim();
    (!d.is_empty()).then(|| d.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::CUT_MARKER;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn s(k: &str, v: &str) -> KeyValue {
        kv(k, Value::StringValue(v.into()))
    }
    fn i(k: &str, v: i64) -> KeyValue {
        kv(k, Value::IntValue(v))
    }
    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    #[test]
    fn json_object_renders_every_value_kind_and_escapes() {
        let attrs = vec![
            s("s", "a\"b\\c\n\u{1}"),
            i("i", -3),
            kv("d", Value::DoubleValue(1.5)),
            kv("nan", Value::DoubleValue(f64::NAN)),
            kv("b", Value::BoolValue(true)),
            kv("bytes", Value::BytesValue(vec![0xab, 0x01])),
            kv("arr", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::IntValue(1)) }] })),
            kv("kv", Value::KvlistValue(KeyValueList { values: vec![s("x", "y")] })),
            KeyValue { key: "none".into(), value: None, ..Default::default() },
        ];
        let json = json_object(&attrs);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect(&json);
        assert_eq!(parsed["s"], "a\"b\\c\n\u{1}");
        assert_eq!(parsed["i"], -3);
        assert_eq!(parsed["d"], 1.5);
        assert_eq!(parsed["nan"], "NaN");
        assert_eq!(parsed["b"], true);
        assert_eq!(parsed["bytes"], "ab01");
        assert_eq!(parsed["arr"][0], 1);
        assert_eq!(parsed["kv"]["x"], "y");
        assert!(parsed["none"].is_null());
    }

    #[test]
    fn names_are_cut_at_the_bound_on_a_character_boundary_with_a_marker() {
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        let accents = "é".repeat(MAX_NAME_BYTES); // two bytes each
                                                  // (text, kept whole)
        for (text, whole) in
            [("orders", true), (&"a".repeat(MAX_NAME_BYTES)[..], true), (&long[..], false), (&accents[..], false)]
        {
            let cut = bounded(text);
            assert!(cut.len() <= MAX_NAME_BYTES, "{} bytes", cut.len());
            assert_eq!(cut == text, whole);
            if !whole {
                assert!(cut.ends_with(CUT_MARKER) && text.starts_with(cut.trim_end_matches(CUT_MARKER)));
            }
        }
        let value = AnyValue { value: Some(Value::StringValue(long.clone())) };
        assert_eq!(as_text(&value).unwrap().len(), MAX_NAME_BYTES - CUT_MARKER.len() + CUT_MARKER.len());
    }

    #[test]
    fn aws_sdk_sqs_calls_are_messaging_operations() {
        let call = |service: &str, method: &str, extra: Vec<KeyValue>| {
            let mut attrs = vec![s("rpc.system", "aws-api"), s("rpc.service", service), s("rpc.method", method)];
            attrs.extend(extra);
            messaging(&attrs)
        };
        let url = || s("aws.sqs.queue_url", "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-queue");
        // (span, operation, system, destination)
        let cases = [
            (
                call("SQS", "SendMessage", vec![url()]),
                Some(MessagingOperation::Send),
                Some("aws_sqs"),
                Some("orders-queue"),
            ),
            (call("SQS", "SendMessageBatch", vec![]), Some(MessagingOperation::Send), Some("aws_sqs"), None),
            (call("AmazonSQS", "ReceiveMessage", vec![]), Some(MessagingOperation::Receive), Some("aws_sqs"), None),
            (call("Sqs", "DeleteMessage", vec![]), Some(MessagingOperation::Settle), Some("aws_sqs"), None),
            (call("SQS", "GetQueueUrl", vec![]), None, Some("aws_sqs"), None),
            // botocore's own names: the legacy system and destination win
            (
                call(
                    "SQS",
                    "ReceiveMessage",
                    vec![s("messaging.system", "aws.sqs"), s("messaging.destination", "orders-dlq")],
                ),
                Some(MessagingOperation::Receive),
                Some("aws_sqs"),
                Some("orders-dlq"),
            ),
            // an instrumentation's own operation wins over the call's
            (
                call("SQS", "ReceiveMessage", vec![s("messaging.operation", "process")]),
                Some(MessagingOperation::Process),
                Some("aws_sqs"),
                None,
            ),
            (call("DynamoDB", "PutItem", vec![]), None, None, None),
            // a bootstrap list in messaging.url is no queue
            (
                messaging(&[s("messaging.system", "kafka"), s("messaging.url", "localhost:9092")]),
                None,
                Some("kafka"),
                None,
            ),
        ];
        for (n, (m, op, system, destination)) in cases.into_iter().enumerate() {
            assert_eq!(m.operation, op, "case {n}");
            assert_eq!(m.system.as_deref(), system, "case {n}");
            assert_eq!(m.destination.as_deref(), destination, "case {n}");
        }
    }

    #[test]
    fn messaging_reads_current_and_legacy_names() {
        struct Case {
            attrs: Vec<KeyValue>,
            want: Messaging,
        }
        let cases = vec![
            Case {
                attrs: vec![
                    s("messaging.system", "kafka"),
                    s("messaging.operation.type", "send"),
                    s("messaging.destination.name", "orders"),
                    s("messaging.message.id", "m1"),
                    s("messaging.consumer.group.name", "g"),
                    s("messaging.destination.partition.id", "3"),
                ],
                want: Messaging {
                    system: Some("kafka".into()),
                    operation: Some(MessagingOperation::Send),
                    destination: Some("orders".into()),
                    message_id: Some("m1".into()),
                    consumer_group: Some("g".into()),
                    partition: Some("3".into()),
                    ..Default::default()
                },
            },
            Case {
                attrs: vec![
                    s("messaging.system", "aws.sqs"),
                    s("messaging.operation", "publish"),
                    s("messaging.destination", "q"),
                    i("messaging.message_id", 42),
                    s("messaging.kafka.consumer_group", "legacy-g"),
                    i("messaging.kafka.partition", 7),
                ],
                want: Messaging {
                    system: Some("aws_sqs".into()),
                    operation: Some(MessagingOperation::Send),
                    destination: Some("q".into()),
                    message_id: Some("42".into()),
                    consumer_group: Some("legacy-g".into()),
                    partition: Some("7".into()),
                    ..Default::default()
                },
            },
            Case {
                // aio-pika: default exchange, destination is ",queue".
                attrs: vec![s("messaging.destination", ",pricing.requests"), s("messaging.operation", "receive")],
                want: Messaging {
                    destination: Some("pricing.requests".into()),
                    operation: Some(MessagingOperation::Receive),
                    ..Default::default()
                },
            },
            Case {
                attrs: vec![s("messaging.rabbitmq.destination.routing_key", "rk")],
                want: Messaging { destination: Some("rk".into()), ..Default::default() },
            },
            Case {
                attrs: vec![i("messaging.servicebus.message.delivery_count", 3)],
                want: Messaging { attempt: Some(3), ..Default::default() },
            },
            Case { attrs: vec![i("celery.retries", 2)], want: Messaging { attempt: Some(3), ..Default::default() } },
            Case {
                attrs: vec![s("x-delivery-count", "1")],
                want: Messaging { attempt: Some(2), ..Default::default() },
            },
            Case {
                attrs: vec![i("http.request.resend_count", 0)],
                want: Messaging { attempt: Some(1), ..Default::default() },
            },
            Case {
                attrs: vec![s("messaging.servicebus.disposition_status", "dead_letter")],
                want: Messaging { dead_letter_evidence: true, ..Default::default() },
            },
            Case { attrs: vec![i("x-death", 1)], want: Messaging { dead_letter_evidence: true, ..Default::default() } },
        ];
        for (n, c) in cases.into_iter().enumerate() {
            assert_eq!(messaging(&c.attrs), c.want, "case {n}");
        }
    }

    #[test]
    fn rabbitmq_consumers_take_the_queue_from_the_span_name_and_x_death_names_the_source() {
        let rabbit = |op: &str, dest: &str| Messaging {
            system: Some("rabbitmq".into()),
            operation: MessagingOperation::parse(op),
            destination: Some(dest.into()),
            ..Default::default()
        };
        let cases = [
            // (messaging, consumer kind, span name, queue)
            (rabbit("process", "orders"), true, "payments.q process", Some("payments.q")),
            (rabbit("receive", "orders"), true, "payments.q receive", Some("payments.q")),
            // pika: the span name repeats the exchange: nothing to learn.
            (rabbit("receive", "orders"), true, "orders receive", None),
            // A publish is not a consumer.
            (rabbit("send", "orders"), false, "payments.q send", None),
            // Anonymous or unnamed.
            (rabbit("process", "orders"), true, "(anonymous) process", None),
            (rabbit("process", "orders"), true, "process", None),
            // Kafka names topics everywhere.
            (Messaging { system: Some("kafka".into()), ..rabbit("process", "orders") }, true, "other process", None),
        ];
        for (m, consumer, name, want) in cases {
            assert_eq!(queue_from_span_name(&m, consumer, name).as_deref(), want, "{name}");
        }
        let m = messaging(&[
            s("messaging.destination", "orders.dead-letter"),
            s("rabbitmq.x_death.reason", "rejected"),
            s("rabbitmq.x_death.queue", "payments.q"),
        ]);
        assert!(m.dead_letter_evidence);
        assert_eq!(m.dead_letter_source.as_deref(), Some("payments.q"));
        let sqs = messaging(&[s("messaging.system", "aws_sqs"), i("messaging.aws.sqs.approximate_receive_count", 3)]);
        assert_eq!(sqs.attempt, Some(3));
    }
}
