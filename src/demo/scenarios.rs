//! The demo's business operations, built as OTLP with the timings they are meant to show.
//! Each scenario returns what it emitted and what a correct flowscope must make of it, so
//! the integration tests can check the stitching against the generator's own truth.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::{span::Link, status::StatusCode, Span, Status};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};

pub const MS: i64 = 1_000_000;

/// Spans and log records, each with the service that emitted it.
#[derive(Debug, Default, Clone)]
pub struct Emission {
    pub spans: Vec<(String, Span)>,
    pub logs: Vec<(String, LogRecord)>,
}

/// What a correct flowscope makes of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub chain: String,
    /// Destination and exact queue wait (ns) of every hop that has a producer and consumer.
    pub hops: Vec<(String, i64)>,
    pub retries: usize,
    pub dead_letters: usize,
    /// Whether any span failed.
    pub error: bool,
    /// The trace id of the entry span: the flow id.
    pub flow_id: String,
    pub correlation_id: Option<String>,
}

fn s(k: &str, v: impl Into<String>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn i(k: &str, v: i64) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::IntValue(v)) }), ..Default::default() }
}

/// Creates ids and spans for one scenario run.
pub struct Builder<'a> {
    pub rng: &'a mut StdRng,
    pub out: Emission,
    /// Every trace id made, so the benchmark can rewrite them into fresh copies.
    pub traces: Vec<[u8; 16]>,
    /// The first eight hex digits of every id string made (message and correlation ids
    /// are built from them).
    pub id_prefixes: Vec<String>,
}

#[derive(Clone, Copy)]
pub struct Ctx {
    pub trace: [u8; 16],
    pub span: [u8; 8],
}

impl<'a> Builder<'a> {
    pub fn new(rng: &'a mut StdRng) -> Self {
        Builder { rng, out: Emission::default(), traces: Vec::new(), id_prefixes: Vec::new() }
    }

    pub fn new_trace(&mut self) -> [u8; 16] {
        let mut t = [0u8; 16];
        self.rng.fill_bytes(&mut t);
        t[0] |= 1;
        self.traces.push(t);
        t
    }

    fn new_span_id(&mut self) -> [u8; 8] {
        let mut s = [0u8; 8];
        self.rng.fill_bytes(&mut s);
        s[0] |= 1;
        s
    }

    pub fn uuid(&mut self) -> String {
        let a: u128 = self.rng.random();
        let h = format!("{a:032x}");
        self.id_prefixes.push(h[0..8].to_string());
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }

    pub fn jitter(&mut self, base_ms: i64, spread_ms: i64) -> i64 {
        (base_ms + self.rng.random_range(0..=spread_ms.max(0))) * MS
    }

    /// Adds a span; `parent` None starts a new trace.
    #[allow(clippy::too_many_arguments)]
    pub fn span(
        &mut self,
        service: &str,
        name: &str,
        kind: i32,
        parent: Option<Ctx>,
        start: i64,
        end: i64,
        attributes: Vec<KeyValue>,
    ) -> Ctx {
        let trace = parent.map_or_else(|| self.new_trace(), |p| p.trace);
        let span = self.new_span_id();
        self.out.spans.push((
            service.into(),
            Span {
                trace_id: trace.to_vec(),
                span_id: span.to_vec(),
                parent_span_id: parent.map(|p| p.span.to_vec()).unwrap_or_default(),
                name: name.into(),
                kind,
                start_time_unix_nano: start as u64,
                end_time_unix_nano: end as u64,
                attributes,
                ..Default::default()
            },
        ));
        Ctx { trace, span }
    }

    fn last(&mut self) -> &mut Span {
        &mut self.out.spans.last_mut().expect("a span was added").1
    }

    pub fn fail(&mut self, message: &str) {
        self.last().status = Some(Status { code: StatusCode::Error as i32, message: message.into() });
    }

    pub fn link(&mut self, to: Ctx, attributes: Vec<KeyValue>) {
        self.last().links.push(Link {
            trace_id: to.trace.to_vec(),
            span_id: to.span.to_vec(),
            attributes,
            ..Default::default()
        });
    }

    pub fn log(&mut self, service: &str, ctx: Option<Ctx>, time: i64, body: &str, attributes: Vec<KeyValue>) {
        self.out.logs.push((
            service.into(),
            LogRecord {
                time_unix_nano: time as u64,
                observed_time_unix_nano: time as u64,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue { value: Some(Value::StringValue(body.into())) }),
                attributes,
                trace_id: ctx.map(|c| c.trace.to_vec()).unwrap_or_default(),
                span_id: ctx.map(|c| c.span.to_vec()).unwrap_or_default(),
                ..Default::default()
            },
        ));
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

fn hex(id: [u8; 16]) -> String {
    hex::encode(id)
}

/// HTTP -> gRPC -> Kafka topic `orders` (consumer links, current attribute names) ->
/// RabbitMQ queue `payments` (parent-child, legacy names) -> payment worker.
/// `poison` makes billing fail three deliveries and dead-letter the order to `orders.DLT`.
pub fn checkout(b: &mut Builder<'_>, t0: i64, poison: bool) -> Expected {
    // More than the uuid's first eight digits: the benchmarks rewrite those to the number
    // of each copy of a workload, and an id of them alone would be every order's in a copy.
    let order_id = format!("order-{}", &b.uuid()[..13]);
    let root_end = t0 + b.jitter(40, 20);
    let root = b.span(
        "checkout",
        "POST /orders",
        SERVER,
        None,
        t0,
        root_end,
        vec![
            s("http.request.method", "POST"),
            s("http.route", "/orders"),
            i("http.response.status_code", 202),
            s("app.order_id", order_id.clone()),
        ],
    );
    let rpc_start = t0 + 2 * MS;
    let rpc_end = rpc_start + b.jitter(8, 6);
    let rpc = b.span(
        "checkout",
        "inventory.Inventory/Reserve",
        CLIENT,
        Some(root),
        rpc_start,
        rpc_end,
        vec![
            s("rpc.system", "grpc"),
            s("rpc.service", "inventory.Inventory"),
            s("rpc.method", "Reserve"),
            s("server.address", "inventory"),
        ],
    );
    b.span(
        "inventory",
        "inventory.Inventory/Reserve",
        SERVER,
        Some(rpc),
        rpc_start + MS,
        rpc_end - MS,
        vec![s("rpc.system", "grpc"), s("rpc.service", "inventory.Inventory"), s("rpc.method", "Reserve")],
    );
    let message_id = b.uuid();
    let send_start = rpc_end + MS;
    let send_end = send_start + 2 * MS;
    let send = b.span(
        "checkout",
        "orders publish",
        PRODUCER,
        Some(root),
        send_start,
        send_end,
        vec![
            s("messaging.system", "kafka"),
            s("messaging.operation.type", "send"),
            s("messaging.destination.name", "orders"),
            s("messaging.message.id", message_id.clone()),
            s("messaging.message.conversation_id", order_id.clone()),
            i("messaging.destination.partition.id", 3),
        ],
    );
    b.log("checkout", Some(root), t0 + MS, "order accepted", vec![s("correlation_id", order_id.clone())]);

    let orders_wait = b.jitter(15, 60);
    let mut deliver_at = send_end + orders_wait;
    let attempts = if poison { 3 } else { 1 };
    let mut hops = vec![("orders".to_string(), orders_wait)];
    let mut last = None;
    for attempt in 1..=attempts {
        let end = deliver_at + b.jitter(12, 8);
        let process = b.span(
            "billing",
            "orders process",
            CONSUMER,
            None,
            deliver_at,
            end,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation.type", "process"),
                s("messaging.destination.name", "orders"),
                s("messaging.consumer.group.name", "billing"),
                s("messaging.message.id", message_id.clone()),
                i("messaging.kafka.offset", 1000),
            ],
        );
        b.link(send, vec![]);
        if poison {
            b.fail("invalid payment amount: -12.00");
        }
        last = Some((process, end));
        // Back-off doubles between redeliveries.
        deliver_at = end + (100 << attempt) * MS;
    }
    let (process, process_end) = last.expect("at least one delivery");
    if poison {
        b.span(
            "billing",
            "orders.DLT publish",
            PRODUCER,
            Some(process),
            process_end - 2 * MS,
            process_end - MS,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation.type", "send"),
                s("messaging.destination.name", "orders.DLT"),
                s("messaging.message.id", message_id.clone()),
                s("messaging.message.conversation_id", order_id.clone()),
            ],
        );
        return Expected {
            chain: "checkout POST /orders".into(),
            hops,
            retries: 2,
            dead_letters: 1,
            error: true,
            flow_id: hex(root.trace),
            correlation_id: Some(order_id),
        };
    }
    // billing -> RabbitMQ `payments`, legacy attribute names, parent-child across the queue.
    let pay_send_start = process_end - 4 * MS;
    let pay_send_end = pay_send_start + MS;
    let payment_message = b.uuid();
    let pay_send = b.span(
        "billing",
        "payments publish",
        PRODUCER,
        Some(process),
        pay_send_start,
        pay_send_end,
        vec![
            s("messaging.system", "rabbitmq"),
            s("messaging.operation", "publish"),
            s("messaging.destination", ",payments"),
            s("messaging.rabbitmq.routing_key", "payments"),
            s("messaging.message_id", payment_message),
            s("messaging.conversation_id", order_id.clone()),
        ],
    );
    let pay_wait = b.jitter(5, 40);
    let pay_start = pay_send_end + pay_wait;
    let pay_end = pay_start + b.jitter(20, 30);
    let pay = b.span(
        "payments-worker",
        "payments process",
        CONSUMER,
        Some(pay_send),
        pay_start,
        pay_end,
        vec![
            s("messaging.system", "rabbitmq"),
            s("messaging.operation", "process"),
            s("messaging.destination", "payments"),
        ],
    );
    // One in five times the payment provider times out once and the client resends.
    let flaky = b.rng.random_bool(0.2);
    let mut charge_at = pay_start + MS;
    let charge = |b: &mut Builder<'_>, at: i64, resend: i64| {
        let mut attrs = vec![
            s("http.request.method", "POST"),
            s("server.address", "psp.example"),
            s("url.full", "https://psp.example/charge"),
        ];
        if resend > 0 {
            attrs.push(i("http.request.resend_count", resend));
        }
        b.span("payments-worker", "POST", CLIENT, Some(pay), at, at + 8 * MS, attrs);
    };
    if flaky {
        charge(b, charge_at, 0);
        b.last().end_time_unix_nano = (charge_at + 30 * MS) as u64;
        b.fail("timeout");
        charge_at += 40 * MS;
    }
    charge(b, charge_at, flaky as i64);
    b.log("payments-worker", Some(pay), pay_end, "payment captured", vec![s("correlation_id", order_id.clone())]);
    hops.push(("payments".to_string(), pay_wait));
    Expected {
        chain: "checkout POST /orders".into(),
        hops,
        retries: flaky as usize,
        dead_letters: 0,
        error: flaky,
        flow_id: hex(root.trace),
        correlation_id: Some(order_id),
    }
}

/// Request-reply like aio-pika: request and reply travel in separate traces joined only by
/// the AMQP correlation id under its legacy name.
pub fn quote(b: &mut Builder<'_>, t0: i64) -> Expected {
    let corr = b.uuid();
    let root = b.span("quote-api", "GET /quote", SERVER, None, t0, t0 + 80 * MS, vec![s("http.route", "/quote")]);
    let req_end = t0 + 3 * MS;
    let request_message = b.uuid();
    b.span(
        "quote-api",
        ",pricing.requests send",
        PRODUCER,
        Some(root),
        t0 + 2 * MS,
        req_end,
        vec![
            s("messaging.system", "rabbitmq"),
            s("messaging.operation", "publish"),
            s("messaging.destination", ",pricing.requests"),
            s("messaging.conversation_id", corr.clone()),
            s("messaging.message_id", request_message),
        ],
    );
    let req_wait = b.jitter(2, 20);
    let rcv_start = req_end + req_wait;
    let rcv = b.span(
        "pricing",
        "pricing.requests receive",
        CONSUMER,
        None,
        rcv_start,
        rcv_start + 10 * MS,
        vec![
            s("messaging.system", "rabbitmq"),
            s("messaging.operation", "receive"),
            s("messaging.destination", "pricing.requests"),
            s("messaging.conversation_id", corr.clone()),
        ],
    );
    let reply_start = rcv_start + 11 * MS;
    b.span(
        "pricing",
        ",quote.replies send",
        PRODUCER,
        None,
        reply_start,
        reply_start + MS,
        vec![
            s("messaging.system", "rabbitmq"),
            s("messaging.operation", "publish"),
            s("messaging.destination", ",quote.replies"),
            s("messaging.conversation_id", corr.clone()),
        ],
    );
    let reply_wait = b.jitter(1, 10);
    let rr_start = reply_start + MS + reply_wait;
    b.span(
        "quote-api",
        "quote.replies receive",
        CONSUMER,
        Some(root),
        rr_start,
        rr_start + MS,
        vec![
            s("messaging.system", "rabbitmq"),
            s("messaging.operation", "receive"),
            s("messaging.destination", "quote.replies"),
            s("messaging.conversation_id", corr.clone()),
        ],
    );
    let _ = rcv;
    Expected {
        chain: "quote-api GET /quote".into(),
        hops: vec![("pricing.requests".into(), req_wait), ("quote.replies".into(), reply_wait)],
        retries: 0,
        dead_letters: 0,
        error: false,
        flow_id: hex(root.trace),
        correlation_id: Some(corr),
    }
}

/// What happens to a refund at the `refunds` consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Processed on the first delivery.
    Ok,
    /// Rejected with requeue this many times, then processed.
    Redelivered(usize),
    /// Rejected without requeue: the broker moves it to the dead-letter exchange.
    DeadLettered,
}

/// Refunds over RabbitMQ as pika records them (like `tests/fixtures/recorded/pika-dlx`):
/// legacy attribute names naming the exchange `refunds` on both sides (the queue
/// `refunds.q` appears only in depth metrics and in the broker's `x-death` record),
/// consumers as children of the publish, redeliveries marked by nothing but a second
/// receive of the same message id, and dead letters moved by the broker with no publish.
pub fn refund(b: &mut Builder<'_>, t0: i64, delivery: Delivery) -> Expected {
    let corr = format!("refund-{}", &b.uuid()[..13]);
    let message_id = b.uuid();
    let root =
        b.span("support", "POST /refunds", SERVER, None, t0, t0 + 12 * MS, vec![s("correlation_id", corr.clone())]);
    let rabbit = |op: &str, dest: &str| {
        let mut attrs = vec![
            s("messaging.system", "rabbitmq"),
            s("messaging.destination", dest),
            s("messaging.message.id", message_id.clone()),
            s("messaging.conversation_id", corr.clone()),
        ];
        if !op.is_empty() {
            attrs.push(s("messaging.operation", op));
        }
        attrs
    };
    let send_end = t0 + 8 * MS;
    let send = b.span("support", "refunds send", PRODUCER, Some(root), t0 + 7 * MS, send_end, rabbit("", "refunds"));
    let first_wait = b.jitter(2, 20);
    let mut at = send_end + first_wait;
    let failures = match delivery {
        Delivery::Ok => 0,
        Delivery::Redelivered(n) => n,
        Delivery::DeadLettered => 0,
    };
    let mut hops = vec![("refunds".to_string(), first_wait)];
    for attempt in 0..=failures {
        let end = at + 10 * MS;
        let mut attrs = rabbit("receive", "refunds");
        attrs.push(s("correlation_id", corr.clone()));
        b.span("refunds", "refunds receive", CONSUMER, Some(send), at, end, attrs);
        if attempt < failures {
            b.fail("refund ledger locked");
        }
        if attempt == failures && delivery == Delivery::DeadLettered {
            b.fail("refund exceeds the original payment");
            let wait = b.jitter(5, 30);
            let mut attrs = rabbit("receive", "refunds.dead-letter");
            attrs.extend([
                s("correlation_id", corr.clone()),
                s("rabbitmq.x_death.reason", "rejected"),
                s("rabbitmq.x_death.queue", "refunds.q"),
            ]);
            let dl_start = end + wait;
            b.span("auditor", "refunds.dead-letter receive", CONSUMER, Some(send), dl_start, dl_start + MS, attrs);
            hops.push(("refunds.dead-letter".to_string(), wait));
        }
        // The broker redelivers a requeued message after a short pause.
        at = end + b.jitter(20, 40);
    }
    Expected {
        chain: "support POST /refunds".into(),
        hops,
        retries: failures,
        dead_letters: usize::from(delivery == Delivery::DeadLettered),
        error: failures > 0 || delivery == Delivery::DeadLettered,
        flow_id: hex(root.trace),
        correlation_id: Some(corr),
    }
}

/// Fulfilment over Kafka the usual way: each poll starts a new trace (an attribute-less
/// `recv` root around the record's `process` span, which links to its producer). The
/// first attempt fails (the carrier answers 503) and re-produces the record to
/// `fulfilments.retry`, which the same service consumes again after a back-off and
/// completes: one flow, one retry, the back-off as retry delay.
pub fn fulfilment_retry(b: &mut Builder<'_>, t0: i64) -> Expected {
    let kafka = |op: &str, topic: &str| {
        vec![s("messaging.system", "kafka"), s("messaging.operation", op), s("messaging.destination", topic)]
    };
    let root = b.span("storefront", "POST /fulfilments", SERVER, None, t0, t0 + 12 * MS, vec![]);
    let send_end = t0 + 9 * MS;
    let sent = b.span(
        "storefront",
        "fulfilments send",
        PRODUCER,
        Some(root),
        t0 + 8 * MS,
        send_end,
        kafka("publish", "fulfilments"),
    );
    // Each attempt: the poll's `recv` root, then the record's `process`, linked to its send.
    let deliver = |b: &mut Builder<'_>, topic: &str, at: i64, took: i64, sent: Ctx| {
        let poll = b.span("fulfilment", "recv", CONSUMER, None, at - MS, at, vec![]);
        let mut attrs = kafka("process", topic);
        attrs.push(s("messaging.message.id", format!("{topic}.0.{}", &b.uuid()[..8])));
        let process = b.span("fulfilment", &format!("{topic} process"), CONSUMER, Some(poll), at, at + took, attrs);
        b.link(sent, vec![]);
        process
    };
    // Attempt 1: the call fails and the record is re-produced to the retry topic.
    let first = send_end + b.jitter(20, 40);
    let process = deliver(b, "fulfilments", first, 30 * MS, sent);
    b.span("fulfilment", "book carrier", CLIENT, Some(process), first + 2 * MS, first + 20 * MS, vec![]);
    b.fail("carrier answered 503");
    let failed_end = first + 30 * MS;
    let retry_sent = b.span(
        "fulfilment",
        "fulfilments.retry send",
        PRODUCER,
        Some(process),
        first + 22 * MS,
        first + 24 * MS,
        kafka("publish", "fulfilments.retry"),
    );
    // Attempt 2, after the back-off.
    let second = failed_end + b.jitter(400, 100);
    let process = deliver(b, "fulfilments.retry", second, 25 * MS, retry_sent);
    b.span("fulfilment", "book carrier", CLIENT, Some(process), second + 2 * MS, second + 18 * MS, vec![]);
    Expected {
        chain: "storefront POST /fulfilments".into(),
        hops: vec![("fulfilments".into(), first - send_end), ("fulfilments.retry".into(), second - (first + 24 * MS))],
        retries: 1,
        dead_letters: 0,
        error: true,
        flow_id: hex(root.trace),
        correlation_id: None,
    }
}

/// Shipping hears about an order without any propagated context: joined only by the
/// order's correlation id (the application's `correlation_id` key), on spans and logs.
pub fn shipping(b: &mut Builder<'_>, t0: i64) -> Expected {
    let corr = format!("ship-{}", &b.uuid()[..13]);
    let root =
        b.span("warehouse", "POST /dispatch", SERVER, None, t0, t0 + 20 * MS, vec![s("correlation_id", corr.clone())]);
    let send_end = t0 + 6 * MS;
    b.span(
        "warehouse",
        "shipments send",
        PRODUCER,
        Some(root),
        t0 + 5 * MS,
        send_end,
        vec![
            s("messaging.system", "aws.sqs"),
            s("messaging.operation", "publish"),
            s("messaging.destination", "shipments"),
            s("correlation_id", corr.clone()),
        ],
    );
    let wait = b.jitter(50, 200);
    let start = send_end + wait;
    let ctx = b.span(
        "shipping",
        "shipments process",
        CONSUMER,
        None,
        start,
        start + 15 * MS,
        vec![
            s("messaging.system", "aws_sqs"),
            s("messaging.operation.type", "process"),
            s("messaging.destination.name", "shipments"),
            s("correlation_id", corr.clone()),
        ],
    );
    b.log("shipping", Some(ctx), start + MS, "label printed", vec![s("correlation_id", corr.clone())]);
    Expected {
        chain: "warehouse POST /dispatch".into(),
        hops: vec![("shipments".into(), wait)],
        retries: 0,
        dead_letters: 0,
        error: false,
        flow_id: hex(root.trace),
        correlation_id: Some(corr),
    }
}

/// Several `events` messages, each sent by its own request, consumed by one batch receive
/// that links to each of them, with each message's id on its link. Every request is a
/// flow of its own; the batch belongs to each of them ("batch of 4, 1 from this flow")
/// and merges none.
pub fn analytics_batch(b: &mut Builder<'_>, t0: i64, messages: usize) -> Vec<Expected> {
    let mut producers = Vec::new();
    for n in 0..messages {
        let start = t0 + n as i64 * 7 * MS;
        let id = b.uuid();
        let root =
            b.span("clickstream", "POST /track", SERVER, None, start, start + 4 * MS, vec![s("http.route", "/track")]);
        let p = b.span(
            "clickstream",
            "events send",
            PRODUCER,
            Some(root),
            start + MS,
            start + 2 * MS,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation.type", "send"),
                s("messaging.destination.name", "events"),
                s("messaging.message.id", id.clone()),
            ],
        );
        producers.push((p, id, start + 2 * MS, root));
    }
    let receive_start = t0 + messages as i64 * 7 * MS + 30 * MS;
    b.span(
        "analytics",
        "events receive",
        CLIENT,
        None,
        receive_start,
        receive_start + 25 * MS,
        vec![
            s("messaging.system", "kafka"),
            s("messaging.operation.type", "receive"),
            s("messaging.destination.name", "events"),
            i("messaging.batch.message_count", messages as i64),
        ],
    );
    for (p, id, _, _) in &producers {
        b.link(*p, vec![s("messaging.message.id", id.clone())]);
    }
    producers
        .iter()
        .map(|(_, _, sent, root)| Expected {
            chain: "clickstream POST /track".into(),
            hops: vec![("events".to_string(), receive_start - sent)],
            retries: 0,
            dead_letters: 0,
            error: false,
            flow_id: hex(root.trace),
            correlation_id: None,
        })
        .collect()
}

/// A message waiting in the `emails` queue: its producer and when it was sent.
pub type Pending = std::collections::VecDeque<(Ctx, i64)>;

/// One tick of the `emails` queue: `sent` sign-ups publish a message, and the mailer
/// processes `consumed` of the oldest waiting ones (linking to them). A mailer slower than
/// the sign-ups makes the backlog grow; a faster one drains it.
pub fn emails_tick(b: &mut Builder<'_>, t0: i64, tick: i64, sent: usize, consumed: usize, pending: &mut Pending) {
    for n in 0..sent {
        let start = t0 + n as i64 * tick / sent.max(1) as i64;
        let root =
            b.span("accounts", "POST /signup", SERVER, None, start, start + 6 * MS, vec![s("http.route", "/signup")]);
        let p = b.span(
            "accounts",
            "emails publish",
            PRODUCER,
            Some(root),
            start + MS,
            start + 2 * MS,
            vec![
                s("messaging.system", "rabbitmq"),
                s("messaging.operation.type", "send"),
                s("messaging.destination.name", "emails"),
            ],
        );
        pending.push_back((p, start + 2 * MS));
    }
    for n in 0..consumed {
        let Some((producer, sent_at)) = pending.pop_front() else {
            break;
        };
        let start = (t0 + n as i64 * tick / consumed.max(1) as i64).max(sent_at + MS);
        b.span(
            "mailer",
            "emails process",
            CONSUMER,
            None,
            start,
            start + 40 * MS,
            vec![
                s("messaging.system", "rabbitmq"),
                s("messaging.operation.type", "process"),
                s("messaging.destination.name", "emails"),
            ],
        );
        b.link(producer, vec![]);
    }
}
