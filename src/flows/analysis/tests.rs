use super::*;

const MS: i64 = 1_000_000;

/// A span builder: `sp("t1", "a", None, "svc", "name", Server, 0, 10)` in milliseconds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sp(
    trace: &str,
    id: &str,
    parent: Option<&str>,
    service: &str,
    name: &str,
    kind: SpanKind,
    start_ms: i64,
    end_ms: i64,
) -> SpanFacts {
    SpanFacts {
        trace_id: TraceId::named(trace),
        span_id: SpanId::named(id),
        parent_span_id: parent.map(SpanId::named),
        service: service.into(),
        name: name.into(),
        kind,
        start: start_ms * MS,
        end: end_ms * MS,
        error: false,
        status_message: None,
        system: None,
        operation: None,
        destination: None,
        message_id: None,
        correlation_id: None,
        attempt: None,
        dead_letter_evidence: false,
        dead_letter_source: None,
        commit_seq: 0,
        links: vec![],
    }
}

pub(crate) fn msg(mut s: SpanFacts, op: &str, dest: &str) -> SpanFacts {
    s.system = Some("kafka".into());
    s.operation = MessagingOperation::parse(op);
    s.destination = Some(dest.into());
    s
}

pub(crate) fn with(mut s: SpanFacts, f: impl FnOnce(&mut SpanFacts)) -> SpanFacts {
    f(&mut s);
    s
}

fn link(trace: &str, span: &str) -> LinkFacts {
    LinkFacts { trace_id: TraceId::named(trace), span_id: SpanId::named(span), message_id: None }
}

use SpanKind::*;

struct Want {
    chain: &'static str,
    hops: Vec<(&'static str, Option<&'static str>, Vec<&'static str>, i64)>, // destination, producer, consumers, wait ms (-1: unknown)
    retries: Vec<(&'static str, i32, i64)>,                                  // span, attempt, delay ms
    dead_letters: Vec<(&'static str, Option<&'static str>, Option<&'static str>)>, // destination, source, error
}

fn check(name: &str, spans: Vec<SpanFacts>, want: Want) -> FlowAnalysis {
    let a = analyze(&spans.iter().collect::<Vec<_>>(), &DestinationPatterns::default());
    assert_eq!(a.chain, want.chain, "{name}: chain");
    let hops: Vec<(String, Option<String>, Vec<String>, i64)> = a
        .hops
        .iter()
        .map(|h| {
            (
                h.destination.clone().unwrap_or_default(),
                h.producer.map(|p| spans[p].span_id.name()),
                h.consumers.iter().map(|c| spans[*c].span_id.name()).collect(),
                h.queue_wait_ns.map_or(-1, |w| w / MS),
            )
        })
        .collect();
    let want_hops: Vec<(String, Option<String>, Vec<String>, i64)> = want
        .hops
        .iter()
        .map(|(d, p, c, w)| (d.to_string(), p.map(Into::into), c.iter().map(|s| s.to_string()).collect(), *w))
        .collect();
    assert_eq!(hops, want_hops, "{name}: hops");
    let retries: Vec<(String, i32, i64)> =
        a.retries.iter().map(|r| (spans[r.span].span_id.name(), r.attempt, r.delay_ns / MS)).collect();
    let want_retries: Vec<(String, i32, i64)> = want.retries.iter().map(|(s, n, d)| (s.to_string(), *n, *d)).collect();
    assert_eq!(retries, want_retries, "{name}: retries");
    let dls: Vec<(String, Option<String>, Option<String>)> =
        a.dead_letters.iter().map(|d| (d.destination.clone(), d.source_destination.clone(), d.error.clone())).collect();
    let want_dls: Vec<(String, Option<String>, Option<String>)> =
        want.dead_letters.iter().map(|(d, s, e)| (d.to_string(), s.map(Into::into), e.map(Into::into))).collect();
    assert_eq!(dls, want_dls, "{name}: dead letters");
    a
}

#[test]
fn hops_for_every_way_context_crosses_a_queue() {
    // Links (the OpenTelemetry default): consumer in its own trace links to the producer.
    check(
        "link",
        vec![
            sp("A", "root", None, "checkout", "POST /orders", Server, 0, 20),
            msg(sp("A", "send", Some("root"), "checkout", "orders send", Producer, 5, 10), "send", "orders"),
            with(msg(sp("B", "proc", None, "billing", "orders process", Consumer, 25, 40), "process", "orders"), |s| {
                s.links = vec![link("A", "send")]
            }),
        ],
        Want {
            chain: "checkout POST /orders",
            hops: vec![("orders", Some("send"), vec!["proc"], 15)],
            retries: vec![],
            dead_letters: vec![],
        },
    );
    // Parent-child across the queue, with receive and process spans.
    check(
        "parent",
        vec![
            sp("A", "root", None, "api", "GET /x", Server, 0, 10),
            msg(sp("A", "send", Some("root"), "api", "jobs publish", Producer, 1, 2), "send", "jobs"),
            msg(sp("A", "recv", Some("send"), "worker", "jobs receive", Client, 7, 8), "receive", "jobs"),
            msg(sp("A", "proc", Some("recv"), "worker", "jobs process", Consumer, 8, 30), "process", "jobs"),
        ],
        Want {
            chain: "api GET /x",
            hops: vec![("jobs", Some("send"), vec!["recv", "proc"], 5)],
            retries: vec![],
            dead_letters: vec![],
        },
    );
    // Message id only (legacy instrumentation propagating nothing else).
    check(
        "message id",
        vec![
            with(msg(sp("A", "send", None, "api", "publish", Producer, 0, 1), "send", "q"), |s| {
                s.message_id = Some("m1".into())
            }),
            with(msg(sp("B", "proc", None, "worker", "process", Consumer, 4, 6), "process", "q"), |s| {
                s.message_id = Some("m1".into())
            }),
        ],
        Want {
            chain: "api publish",
            hops: vec![("q", Some("send"), vec!["proc"], 3)],
            retries: vec![],
            dead_letters: vec![],
        },
    );
    // Correlation id only (aio-pika request-reply): pairs by correlation + destination.
    check(
        "correlation",
        vec![
            sp("A", "root", None, "quote-api", "GET /quote", Server, 0, 50),
            with(
                msg(sp("A", "req", Some("root"), "quote-api", "send", Producer, 1, 2), "send", "pricing.requests"),
                |s| s.correlation_id = Some("c1".into()),
            ),
            with(
                msg(sp("B", "rcv", None, "pricing", "receive", Consumer, 3, 20), "receive", "pricing.requests"),
                |s| s.correlation_id = Some("c1".into()),
            ),
            with(msg(sp("C", "reply", None, "pricing", "send", Producer, 21, 22), "send", "amq.gen-1"), |s| {
                s.correlation_id = Some("c1".into())
            }),
            with(
                msg(sp("A", "rr", Some("root"), "quote-api", "receive", Consumer, 30, 31), "receive", "amq.gen-1"),
                |s| s.correlation_id = Some("c1".into()),
            ),
        ],
        Want {
            chain: "quote-api GET /quote",
            hops: vec![("pricing.requests", Some("req"), vec!["rcv"], 1), ("amq.gen-1", Some("reply"), vec!["rr"], 8)],
            retries: vec![],
            dead_letters: vec![],
        },
    );
    // Batch receive: one span linking to two messages.
    check(
        "batch",
        vec![
            msg(sp("A", "p1", None, "api", "send", Producer, 0, 1), "send", "events"),
            msg(sp("B", "p2", None, "api", "send", Producer, 2, 3), "send", "events"),
            with(msg(sp("C", "batch", None, "sink", "receive", Consumer, 10, 12), "receive", "events"), |s| {
                s.links = vec![link("A", "p1"), link("B", "p2")]
            }),
        ],
        Want {
            chain: "api send",
            hops: vec![("events", Some("p1"), vec!["batch"], 9), ("events", Some("p2"), vec!["batch"], 7)],
            retries: vec![],
            dead_letters: vec![],
        },
    );
    // A consumer whose producer is outside the flow.
    check(
        "orphan consumer",
        vec![msg(sp("A", "c", None, "worker", "process", Consumer, 0, 1), "process", "q")],
        Want { chain: "worker process", hops: vec![("q", None, vec!["c"], -1)], retries: vec![], dead_letters: vec![] },
    );
}

#[test]
fn clock_skew_clamps_queue_wait_and_is_flagged() {
    let spans = vec![
        msg(sp("A", "send", None, "api", "send", Producer, 0, 10), "send", "q"),
        msg(sp("A", "proc", Some("send"), "worker", "process", Consumer, 8, 12), "process", "q"),
    ];
    let a = analyze(&spans.iter().collect::<Vec<_>>(), &DestinationPatterns::default());
    assert_eq!(a.hops[0].queue_wait_ns, Some(0));
    assert!(a.hops[0].clock_skew);
}

#[test]
fn retries_redelivery_counters_and_http_resends() {
    let redelivered = |id: &str, start, end, error| {
        with(msg(sp("B", id, None, "worker", "process", Consumer, start, end), "process", "orders"), |s| {
            s.links = vec![link("A", "send")];
            s.error = error;
            s.status_message = error.then(|| "boom".to_string());
        })
    };
    let a = check(
        "redelivery",
        vec![
            msg(sp("A", "send", None, "api", "send", Producer, 0, 1), "send", "orders"),
            redelivered("d1", 2, 3, true),
            redelivered("d2", 10, 11, true),
            redelivered("d3", 30, 31, false),
        ],
        Want {
            chain: "api send",
            hops: vec![("orders", Some("send"), vec!["d1", "d2", "d3"], 1)],
            retries: vec![("d2", 2, 7), ("d3", 3, 19)],
            dead_letters: vec![],
        },
    );
    assert_eq!(a.queue_wait_ns, MS);
    assert_eq!(a.retry_delay_ns, 26 * MS);
    assert_eq!(a.service_ns, 31 * MS - 27 * MS);

    check(
        "celery counter",
        vec![
            sp("A", "t1", None, "worker", "run/charge", Consumer, 0, 2),
            with(sp("B", "t2", None, "worker", "run/charge", Consumer, 5, 6), |s| s.attempt = Some(2)),
        ],
        Want {
            chain: "worker run/charge",
            // Consumer spans naming neither a destination nor a message are no hops.
            hops: vec![],
            retries: vec![("t2", 2, 3)],
            dead_letters: vec![],
        },
    );

    check(
        "http retry after error",
        vec![
            sp("A", "root", None, "checkout", "POST /pay", Server, 0, 100),
            with(sp("A", "c1", Some("root"), "checkout", "POST", Client, 1, 11), |s| s.error = true),
            sp("A", "c2", Some("root"), "checkout", "POST", Client, 20, 30),
            sp("A", "other", Some("root"), "checkout", "GET", Client, 40, 41),
            sp("A", "again", Some("root"), "checkout", "GET", Client, 50, 51),
        ],
        Want { chain: "checkout POST /pay", hops: vec![], retries: vec![("c2", 2, 9)], dead_letters: vec![] },
    );
}

#[test]
fn dead_letters_by_destination_and_by_evidence() {
    check(
        "poison message to a DLT",
        vec![
            msg(sp("A", "send", None, "api", "send", Producer, 0, 1), "send", "orders"),
            with(msg(sp("B", "proc", None, "billing", "process", Consumer, 2, 5), "process", "orders"), |s| {
                s.links = vec![link("A", "send")];
                s.error = true;
                s.status_message = Some("invalid amount".into());
            }),
            msg(sp("B", "dlq", Some("proc"), "billing", "send", Producer, 4, 5), "send", "orders.DLT"),
        ],
        Want {
            chain: "api send",
            hops: vec![("orders", Some("send"), vec!["proc"], 1), ("orders.DLT", Some("dlq"), vec![], -1)],
            retries: vec![],
            dead_letters: vec![("orders.DLT", Some("orders"), Some("invalid amount"))],
        },
    );
    // Before the original publish has arrived, the consumer of `orders` finds the
    // dead-letter republish by its message id: no alias `orders.DLT` -> `orders` may be
    // learnt from that (aliases are stored and never unlearnt).
    let partial = [
        with(msg(sp("B", "proc", None, "billing", "process", Consumer, 2, 5), "process", "orders"), |s| {
            s.message_id = Some("m1".into());
        }),
        with(msg(sp("B", "dlq", Some("proc"), "billing", "send", Producer, 4, 5), "send", "orders.DLT"), |s| {
            s.message_id = Some("m1".into());
        }),
    ];
    let a = analyze(&partial.iter().collect::<Vec<_>>(), &DestinationPatterns::default());
    assert_eq!(a.queue_aliases, vec![], "a dead-letter destination is nobody's alias");
    check(
        "servicebus disposition",
        vec![with(msg(sp("A", "settle", None, "worker", "settle", Client, 0, 1), "settle", "payments"), |s| {
            s.dead_letter_evidence = true;
            s.status_message = Some("max deliveries".into());
        })],
        Want {
            chain: "worker settle",
            hops: vec![],
            retries: vec![],
            dead_letters: vec![("payments", Some("payments"), Some("max deliveries"))],
        },
    );
}

#[test]
fn critical_path_follows_the_last_finishing_branch() {
    let spans = vec![
        sp("A", "root", None, "api", "GET", Server, 0, 100),
        sp("A", "a", Some("root"), "api", "db", Client, 0, 30),
        sp("A", "b", Some("root"), "api", "cache", Client, 5, 10),
        sp("A", "c", Some("root"), "api", "rpc", Client, 40, 90),
        msg(sp("A", "send", Some("c"), "api", "send", Producer, 50, 60), "send", "q"),
        with(msg(sp("B", "late", None, "worker", "process", Consumer, 200, 300), "process", "q"), |s| {
            s.links = vec![link("A", "send")]
        }),
    ];
    let a = analyze(&spans.iter().collect::<Vec<_>>(), &DestinationPatterns::default());
    let critical: Vec<String> =
        spans.iter().zip(&a.critical).filter(|(_, c)| **c).map(|(s, _)| s.span_id.name()).collect();
    assert_eq!(critical, vec!["root", "a", "c", "send", "late"]);
    assert_eq!(a.end - a.start, 300 * MS);
    assert_eq!(a.path, vec!["api", "q", "worker"]);
}

#[test]
fn root_is_the_earliest_parentless_span() {
    let table = vec![
        (
            vec![
                sp("A", "x", Some("gone"), "svc", "inner", Internal, 0, 1),
                sp("A", "y", Some("gone"), "svc", "GET /", Server, 1, 2),
            ],
            "svc GET /",
        ),
        (
            vec![
                sp("A", "x", None, "late", "GET /b", Server, 5, 6),
                sp("B", "y", None, "early", "GET /a", Server, 1, 2),
            ],
            "early GET /a",
        ),
        (vec![sp("A", "x", Some("gone"), "svc", "inner", Internal, 3, 4)], "svc inner"),
    ];
    for (spans, want) in table {
        assert_eq!(analyze(&spans.iter().collect::<Vec<_>>(), &DestinationPatterns::default()).chain, want);
    }
}

#[test]
fn dead_letter_and_retry_destinations_by_name() {
    let p = DestinationPatterns::default();
    for (d, want) in [
        ("orders.DLT", true),
        ("orders.dlt", true),
        ("orders-dlt", true),
        ("payments.dlq", true),
        ("payments_dlq", true),
        ("orders.dead-letter", true),
        ("DeadLetterQueue", true),
        ("jobs.dead", true),
        ("orders.dlx", true),
        ("orders-dlx", true),
        ("orders_dlx", true),
        ("payments.DLQ", true),
        ("orders", false),
        ("dltx", false),
    ] {
        assert_eq!(p.is_dead_letter(Some(d)), want, "{d}");
    }
    // (destination, retry)
    for (d, want) in [
        ("orders.retry", true),
        ("orders-retry", true),
        ("orders-retry-0", true),
        ("orders-retry-5000", true),
        ("orders_retry", true),
        ("Orders.RETRY", true),
        ("orders.retry.DLT", false), // a dead-letter destination first
        ("orders", false),
        ("retryable-orders", false),
    ] {
        assert_eq!(p.is_retry(Some(d)), want, "{d}");
    }
}

#[test]
fn covered_merges_overlaps() {
    for (intervals, want) in [
        (vec![], 0),
        (vec![(0, 10), (5, 15)], 15),
        (vec![(0, 1), (2, 3)], 2),
        (vec![(5, 3)], 0),
        (vec![(0, 10), (2, 3)], 10),
    ] {
        assert_eq!(covered(&intervals), want);
    }
}

/// RabbitMQ as pika records it: CONSUMER-kind `receive` spans are the deliveries.
fn rabbit(mut s: SpanFacts, op: &str, dest: &str, message: &str) -> SpanFacts {
    s.system = Some("rabbitmq".into());
    s.operation = MessagingOperation::parse(op);
    s.destination = Some(dest.into());
    s.message_id = Some(message.into());
    s
}

fn failed(mut s: SpanFacts, why: &str) -> SpanFacts {
    s.error = true;
    s.status_message = Some(why.into());
    s
}

#[test]
fn broker_side_dead_letters_and_redeliveries_in_every_shape() {
    let publish = || {
        vec![
            sp("A", "root", None, "web", "POST /orders", Server, 0, 10),
            rabbit(sp("A", "send", Some("root"), "web", "orders send", Producer, 5, 6), "send", "orders", "m1"),
        ]
    };
    let rejected = |parent: Option<&str>| {
        failed(
            rabbit(sp("A", "d1", parent, "payments", "orders receive", Consumer, 8, 12), "receive", "orders", "m1"),
            "card declined",
        )
    };
    let auditor = |trace: &str, parent: Option<&str>| {
        rabbit(
            sp(trace, "dl", parent, "auditor", "orders.dead-letter receive", Consumer, 20, 21),
            "receive",
            "orders.dead-letter",
            "m1",
        )
    };
    // Every way the dead-letter consumer is joined gives the same flow.
    let dead_lettered = || Want {
        chain: "web POST /orders",
        hops: vec![("orders", Some("send"), vec!["d1"], 2), ("orders.dead-letter", Some("send"), vec!["dl"], 8)],
        retries: vec![],
        dead_letters: vec![("orders.dead-letter", Some("orders"), Some("card declined"))],
    };

    // Headers survive dead-lettering: the dead-letter consumer is a child of the publish.
    let a = check(
        "dead-letter consumer as child of the producer",
        [publish(), vec![rejected(Some("send")), auditor("A", Some("send"))]].concat(),
        dead_lettered(),
    );
    assert_eq!(a.hops[1].source_destination.as_deref(), Some("orders"));
    assert!(a.hops[1].dead_letter && !a.hops[0].dead_letter);
    assert_eq!(a.queue_wait_ns, 2 * MS + 8 * MS, "the dead-letter wait starts at the rejection");
    assert_eq!(a.path, vec!["web", "orders", "payments", "orders.dead-letter", "auditor"]);

    // No context survives: a root span in a trace of its own, joined by message id.
    check(
        "dead-letter consumer as a root joined by message id",
        [publish(), vec![rejected(Some("send")), auditor("B", None)]].concat(),
        dead_lettered(),
    );

    // Linked to the original publish (the OpenTelemetry default for consumers).
    check(
        "dead-letter consumer linked",
        [
            publish(),
            vec![
                rejected(Some("send")),
                with(auditor("B", None), |s| {
                    s.message_id = None;
                    s.links = vec![link("A", "send")];
                }),
            ],
        ]
        .concat(),
        dead_lettered(),
    );

    // Only a correlation id joins it: the message last rejected is the one dead-lettered.
    let corr = |s: SpanFacts| with(s, |s| s.correlation_id = Some("ord-1".into()));
    check(
        "dead-letter consumer joined by correlation id only",
        [
            publish(),
            vec![
                rejected(Some("send")),
                corr(with(auditor("B", None), |s| s.message_id = Some("broker-generated".into()))),
            ],
        ]
        .concat(),
        dead_lettered(),
    );

    // The DLX named `*.dlx`, the broker's x-death record naming the queue the publish
    // reached through exchange `orders`: the source is the queue, and an alias is learnt.
    let a = check(
        "dead-letter exchange *.dlx with the queue from x-death",
        [
            publish(),
            vec![
                rejected(Some("send")),
                with(auditor("A", Some("send")), |s| {
                    s.destination = Some("payments.dlx".into());
                    s.dead_letter_source = Some("payments.q".into());
                }),
            ],
        ]
        .concat(),
        Want {
            chain: "web POST /orders",
            hops: vec![("orders", Some("send"), vec!["d1"], 2), ("payments.dlx", Some("send"), vec!["dl"], 8)],
            retries: vec![],
            dead_letters: vec![("payments.dlx", Some("payments.q"), Some("card declined"))],
        },
    );
    assert_eq!(
        a.queue_aliases,
        vec![QueueAlias { system: "rabbitmq".into(), alias: "orders".into(), queue: "payments.q".into() }]
    );

    // Rejected with requeue twice, then processed: attempts 2 and 3, nothing dead.
    let delivery = |id: &str, start, end| {
        rabbit(sp("A", id, Some("send"), "payments", "orders receive", Consumer, start, end), "receive", "orders", "m1")
    };
    let a = check(
        "redelivered twice then succeeded",
        [
            publish(),
            vec![
                failed(delivery("d1", 8, 12), "timeout"),
                failed(delivery("d2", 15, 16), "timeout"),
                delivery("d3", 30, 31),
            ],
        ]
        .concat(),
        Want {
            chain: "web POST /orders",
            hops: vec![("orders", Some("send"), vec!["d1", "d2", "d3"], 2)],
            retries: vec![("d2", 2, 3), ("d3", 3, 14)],
            dead_letters: vec![],
        },
    );
    // Spans: root, send, d1, d2, d3: each retry points at the attempt before it.
    assert_eq!(a.retries.iter().map(|r| r.previous).collect::<Vec<_>>(), vec![Some(2), Some(3)]);
    assert_eq!(a.retry_delay_ns, 17 * MS);

    // Redelivered once, then rejected for good: one retry, then a dead letter (the
    // dead-letter consumption itself is not a retry).
    check(
        "redelivered then dead-lettered",
        [
            publish(),
            vec![
                failed(delivery("d1", 8, 12), "timeout"),
                failed(delivery("d2", 15, 16), "still failing"),
                auditor("A", Some("send")),
            ],
        ]
        .concat(),
        Want {
            chain: "web POST /orders",
            hops: vec![
                ("orders", Some("send"), vec!["d1", "d2"], 2),
                ("orders.dead-letter", Some("send"), vec!["dl"], 4),
            ],
            retries: vec![("d2", 2, 3)],
            dead_letters: vec![("orders.dead-letter", Some("orders"), Some("still failing"))],
        },
    );

    // Two services reading the same message (a fan-out, two consumer groups) is not a
    // retry: a hop each, each with its own wait.
    check(
        "fan-out",
        [publish(), vec![delivery("d1", 8, 12), with(delivery("d2", 11, 13), |s| s.service = "search".into())]]
            .concat(),
        Want {
            chain: "web POST /orders",
            hops: vec![("orders", Some("send"), vec!["d1"], 2), ("orders", Some("send"), vec!["d2"], 5)],
            retries: vec![],
            dead_letters: vec![],
        },
    );
}

#[test]
fn sqs_redrive_after_max_receive_count() {
    let sqs = |s: SpanFacts, op: &str, dest: &str| {
        with(s, |s| {
            s.system = Some("aws_sqs".into());
            s.operation = MessagingOperation::parse(op);
            s.destination = Some(dest.into());
            s.message_id = Some("sqs-1".into());
        })
    };
    // No context crosses SQS here: every span is a root joined by the message id. Two
    // receives time out (visibility expired, no error recorded), then SQS redrives the
    // message to the dead-letter queue.
    let receive = |id: &str, trace: &str, start, end, count| {
        with(sqs(sp(trace, id, None, "worker", "orders receive", Client, start, end), "receive", "orders"), |s| {
            s.attempt = Some(count)
        })
    };
    check(
        "sqs redrive",
        vec![
            sqs(sp("A", "send", None, "api", "orders send", Producer, 0, 1), "send", "orders"),
            receive("r1", "B", 2, 3, 1),
            receive("r2", "C", 33, 34, 2),
            sqs(sp("D", "dl", None, "janitor", "orders-dlq receive", Client, 70, 71), "receive", "orders-dlq"),
        ],
        Want {
            chain: "api orders send",
            hops: vec![("orders", Some("send"), vec!["r1", "r2"], 1), ("orders-dlq", Some("send"), vec!["dl"], 36)],
            retries: vec![("r2", 2, 30)],
            dead_letters: vec![("orders-dlq", Some("orders"), None)],
        },
    );
    // Without the producer's span the receives still share one hop, so the second is a retry.
    check(
        "sqs redelivery without the producer",
        vec![receive("r1", "B", 2, 3, 1), receive("r2", "C", 33, 34, 2)],
        Want {
            chain: "worker orders receive",
            hops: vec![("orders", None, vec!["r1", "r2"], -1)],
            retries: vec![("r2", 2, 30)],
            dead_letters: vec![],
        },
    );
}

#[test]
fn parent_cycles_terminate_and_keep_every_span() {
    let mut dead = msg(sp("A", "x", Some("x"), "svc", "send", Producer, 0, 1), "send", "orders.DLT");
    dead.error = true;
    let table = vec![
        vec![dead.clone()],
        vec![
            sp("A", "a", Some("b"), "svc", "a", Internal, 0, 1),
            sp("A", "b", Some("a"), "svc", "b", Internal, 1, 2),
            dead,
        ],
        vec![
            sp("A", "a", Some("c"), "svc", "a", Internal, 0, 5),
            sp("A", "b", Some("a"), "svc", "b", Internal, 1, 2),
            sp("A", "c", Some("b"), "svc", "c", Consumer, 2, 3),
        ],
    ];
    for spans in table {
        let a = analyze(&spans.iter().collect::<Vec<_>>(), &DestinationPatterns::default());
        assert_eq!(a.critical.len(), spans.len());
        assert!(a.critical.iter().any(|c| *c), "the root is on the critical path");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A random span graph: parents anywhere (itself, cycles, missing), duplicate span ids,
    /// links to unknown traces, shared message ids, skewed clocks.
    fn span_graph() -> impl Strategy<Value = Vec<SpanFacts>> {
        let one = (
            0u8..3,
            0u8..12,
            prop::option::of(0u8..14),
            0u8..6,
            0i64..1000,
            -50i64..300,
            0u8..4,
            any::<bool>(),
            prop::option::of(0u8..4),
            prop::option::of((0u8..4, 0u8..14)),
        );
        prop::collection::vec(one, 1..40).prop_map(|specs| {
            specs
                .into_iter()
                .map(|(trace, id, parent, role, start, len, dest, error, message, link)| {
                    let kind = [Server, Client, Producer, Consumer, Internal, Consumer][role as usize];
                    let mut s = sp(
                        &format!("t{trace}"),
                        &format!("s{id}"),
                        parent.map(|p| format!("s{p}")).as_deref(),
                        &format!("svc{}", role % 3),
                        "op",
                        kind,
                        start,
                        start + len,
                    );
                    s.error = error;
                    if matches!(kind, Producer | Consumer) {
                        s.system = Some("rabbitmq".into());
                        s.operation = MessagingOperation::parse(if kind == Producer {
                            "send"
                        } else {
                            ["receive", "process"][id as usize % 2]
                        });
                        s.destination =
                            Some(["orders", "orders.dlq", "payments", "x.dead-letter"][dest as usize].into());
                        s.message_id = message.map(|m| format!("m{m}"));
                    }
                    if let Some((t, sid)) = link {
                        s.links = vec![link_to(&format!("t{t}"), &format!("s{sid}"))];
                    }
                    s
                })
                .collect()
        })
    }

    /// What `glob` means, said the slow way: a star takes any run of characters.
    fn glob_reference(p: &[u8], t: &[u8]) -> bool {
        match (p.split_first(), t.split_first()) {
            (None, _) => t.is_empty(),
            (Some((b'*', rest)), _) => glob_reference(rest, t) || (!t.is_empty() && glob_reference(p, &t[1..])),
            (Some((c, rest)), Some((d, more))) => c.eq_ignore_ascii_case(d) && glob_reference(rest, more),
            (Some(_), None) => false,
        }
    }

    #[test]
    fn glob_matches_what_stars_mean() {
        let mut runner = crate::test_support::seeded_runner(2_000, 11);
        runner
            .run(&("[ab*A.]{0,8}", "[abAB.]{0,10}"), |(pattern, text)| {
                prop_assert_eq!(
                    glob(pattern.as_bytes(), text.as_bytes()),
                    glob_reference(pattern.as_bytes(), text.as_bytes()),
                    "{} ~ {}",
                    pattern,
                    text
                );
                Ok(())
            })
            .unwrap();
    }

    fn link_to(trace: &str, span: &str) -> LinkFacts {
        LinkFacts { trace_id: TraceId::named(trace), span_id: SpanId::named(span), message_id: None }
    }

    /// What must not depend on the order spans arrive in.
    fn summary(a: &FlowAnalysis) -> (String, usize, usize, usize, i64, i64, i64) {
        (a.chain.clone(), a.hops.len(), a.retries.len(), a.dead_letters.len(), a.queue_wait_ns, a.start, a.end)
    }

    #[test]
    fn analysis_terminates_never_waits_negative_and_ignores_arrival_order() {
        let mut runner = crate::test_support::seeded_runner(300, 7);
        runner
            .run(&(span_graph(), any::<u64>()), |(spans, seed)| {
                let patterns = DestinationPatterns::default();
                let a = analyze(&spans.iter().collect::<Vec<_>>(), &patterns);
                prop_assert!(a.hops.iter().all(|h| h.queue_wait_ns.is_none_or(|w| w >= 0)));
                prop_assert!(a.queue_wait_ns >= 0 && a.retry_delay_ns >= 0 && a.service_ns >= 0);
                prop_assert!(a.queue_wait_ns + a.retry_delay_ns <= a.end - a.start);
                prop_assert_eq!(a.critical.len(), spans.len());
                prop_assert!(a
                    .hops
                    .iter()
                    .flat_map(|h| h.producer.iter().chain(&h.consumers))
                    .all(|i| *i < spans.len()));
                // The same spans in another order: the same flow, unless duplicate span
                // ids make "which of the two" order-dependent.
                let mut ids: Vec<(TraceId, SpanId)> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
                ids.sort();
                ids.dedup();
                if ids.len() == spans.len() {
                    let mut shuffled: Vec<&SpanFacts> = spans.iter().collect();
                    let n = shuffled.len();
                    for i in 0..n {
                        shuffled.swap(i, (seed as usize).wrapping_mul(i + 7) % n);
                    }
                    let b = analyze(&shuffled, &patterns);
                    prop_assert_eq!(summary(&a), summary(&b));
                }
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn glob_stars_and_case() {
    for (pattern, text, matches) in [
        ("*.dlq", "orders.dlq", true),
        ("*.dlq", "orders.DLQ", true),
        ("*.DLT", "payments.dlt", true),
        ("*.dlq", "orders.dlq.retry", false),
        ("*.dlq", ".dlq", true),
        ("*.dlq", "dlq", false),
        ("orders.*", "orders.", true),
        ("orders.*", "order", false),
        ("*dead*letter*", "x.dead-letter", true),
        ("*dead*letter*", "x.letter-dead", false),
        ("a*b*a", "aba", true),
        ("a*b*a", "ab", false),
        ("a**b", "ab", true),
        ("*", "", true),
        ("", "", true),
        ("", "x", false),
        ("orders", "ORDERS", true),
        ("orders", "orders2", false),
    ] {
        assert_eq!(glob(pattern.as_bytes(), text.as_bytes()), matches, "{pattern} ~ {text}");
    }
}

#[test]
fn steps_split_a_flow_into_service_time_queue_waits_retries_and_calls() {
    let spans = [
        sp("A", "root", None, "checkout", "POST /orders", Server, 0, 100),
        sp("A", "call", Some("root"), "checkout", "POST", Client, 10, 40),
        sp("A", "srv", Some("call"), "billing", "POST /charge", Server, 12, 38),
        msg(sp("A", "send", Some("root"), "checkout", "orders send", Producer, 50, 52), "send", "orders"),
        with(msg(sp("B", "p1", None, "worker", "orders process", Consumer, 60, 70), "process", "orders"), |s| {
            s.links = vec![link("A", "send")];
            s.error = true;
        }),
        with(msg(sp("B", "p2", None, "worker", "orders process", Consumer, 90, 95), "process", "orders"), |s| {
            s.links = vec![link("A", "send")]
        }),
    ];
    let a = analyze(&spans.iter().collect::<Vec<_>>(), &DestinationPatterns::default());
    let got: Vec<(&str, &str, i64)> = a.steps.iter().map(|s| (s.kind.as_str(), s.name.as_str(), s.ns / MS)).collect();
    assert_eq!(
        got,
        vec![
            // checkout: root 100 - call 30 - send 2 = 68, call's own 30 - 26 = 4, send 2
            ("service", "billing", 26),
            ("service", "checkout", 74),
            ("service", "worker", 15),
            ("queue_wait", "orders", 8),
            ("retry_delay", "orders", 20),
            ("call", "checkout → billing", 30),
        ]
    );
}
