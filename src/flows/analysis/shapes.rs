//! One test per row of `docs/instrumentations.md`: each instrumentation's span shape for
//! one message, as its own test suite asserts it, and what the analysis must make of it.

use super::tests::{msg, sp, with};
use super::*;

/// A link to a span, as instrumentations record it (some put the message id on it).
fn link(trace: &str, span: &str, message_id: Option<&str>) -> LinkFacts {
    LinkFacts { trace_id: TraceId::named(trace), span_id: SpanId::named(span), message_id: message_id.map(Into::into) }
}

fn system(mut s: SpanFacts, system: &str) -> SpanFacts {
    s.system = Some(system.into());
    s
}

fn id(mut s: SpanFacts, message_id: &str) -> SpanFacts {
    s.message_id = Some(message_id.into());
    s
}

fn links(mut s: SpanFacts, links: Vec<LinkFacts>) -> SpanFacts {
    s.links = links;
    s
}

/// The request that sends the message: `app POST /orders` in trace "A".
fn request() -> SpanFacts {
    sp("A", "req", None, "app", "POST /orders", SpanKind::Server, 10, 100)
}

struct Shape {
    row: &'static str,
    spans: Vec<SpanFacts>,
    /// (destination, producer span, consumer spans)
    hops: Vec<(&'static str, Option<&'static str>, Vec<&'static str>)>,
    /// (span, attempt)
    retries: Vec<(&'static str, i32)>,
}

fn shapes() -> Vec<Shape> {
    use SpanKind::*;
    let publish =
        |name: &str, op: &str, dest: &str| msg(sp("A", "pub", Some("req"), "app", name, Producer, 20, 25), op, dest);
    vec![
        Shape {
            row: "Java agent, kafka-clients",
            spans: vec![
                request(),
                publish("orders publish", "publish", "orders"),
                msg(sp("B", "rcv", None, "billing", "orders receive", Consumer, 0, 40), "receive", "orders"),
                links(
                    msg(
                        sp("B", "proc", Some("rcv"), "billing", "orders process", Consumer, 40, 60),
                        "process",
                        "orders",
                    ),
                    vec![link("A", "pub", None)],
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["proc"])],
            retries: vec![],
        },
        Shape {
            row: "Java agent, kafka-clients batch receive (and Spring Kafka batch listener)",
            spans: vec![
                request(),
                publish("orders publish", "publish", "orders"),
                // Links to two other orders' sends, whose traces are other flows.
                links(
                    msg(sp("B", "batch", None, "billing", "orders receive", Consumer, 40, 60), "receive", "orders"),
                    vec![link("A", "pub", None), link("X", "pub", None), link("Y", "pub", None)],
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["batch"])],
            retries: vec![],
        },
        Shape {
            row: "Spring Kafka retry topics",
            spans: vec![
                request(),
                publish("orders publish", "publish", "orders"),
                with(
                    links(
                        msg(sp("B", "try1", None, "fulfil", "orders process", Consumer, 30, 50), "process", "orders"),
                        vec![link("A", "pub", None)],
                    ),
                    |s| s.error = true,
                ),
                msg(
                    sp("B", "again", Some("try1"), "fulfil", "orders-retry-0 publish", Producer, 45, 48),
                    "publish",
                    "orders-retry-0",
                ),
                links(
                    msg(
                        sp("C", "try2", None, "fulfil", "orders-retry-0 process", Consumer, 150, 170),
                        "process",
                        "orders-retry-0",
                    ),
                    vec![link("B", "again", None)],
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["try1"]), ("orders-retry-0", Some("again"), vec!["try2"])],
            retries: vec![("try2", 2)],
        },
        Shape {
            row: "Java agent, RabbitMQ",
            spans: vec![
                request(),
                system(publish("orders publish", "publish", "orders"), "rabbitmq"),
                system(
                    msg(
                        sp("A", "proc", Some("pub"), "payments", "payments.q process", Consumer, 30, 50),
                        "process",
                        "payments.q",
                    ),
                    "rabbitmq",
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["proc"])],
            retries: vec![],
        },
        Shape {
            row: "Java agent, JMS",
            spans: vec![
                request(),
                id(system(publish("queue1 publish", "publish", "queue1"), "jms"), "ID:1"),
                id(
                    system(
                        msg(
                            sp("A", "proc", Some("pub"), "worker", "queue1 process", Consumer, 30, 50),
                            "process",
                            "queue1",
                        ),
                        "jms",
                    ),
                    "ID:1",
                ),
            ],
            hops: vec![("queue1", Some("pub"), vec!["proc"])],
            retries: vec![],
        },
        Shape {
            row: "Java agent, AWS SDK 2 SQS",
            spans: vec![
                request(),
                id(
                    system(
                        msg(sp("A", "pub", Some("req"), "app", "Sqs.SendMessage", Client, 20, 25), "send", "orders"),
                        "aws_sqs",
                    ),
                    "m1",
                ),
                system(
                    msg(sp("B", "rcv", None, "worker", "orders receive", Consumer, 0, 40), "receive", "orders"),
                    "aws_sqs",
                ),
                links(
                    id(
                        system(
                            msg(
                                sp("B", "proc", Some("rcv"), "worker", "orders process", Consumer, 40, 60),
                                "process",
                                "orders",
                            ),
                            "aws_sqs",
                        ),
                        "m1",
                    ),
                    vec![link("A", "pub", None)],
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["proc"])],
            retries: vec![],
        },
        Shape {
            row: ".NET, Confluent.Kafka contrib",
            spans: vec![
                request(),
                publish("orders publish", "publish", "orders"),
                links(
                    msg(sp("B", "proc", None, "billing", "orders process", Consumer, 5, 60), "process", "orders"),
                    vec![link("A", "pub", None)],
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["proc"])],
            retries: vec![],
        },
        Shape {
            row: "Go, Sarama (otelsarama); JS amqplib; Python kafka-python, aiokafka, pika",
            spans: vec![
                request(),
                publish("orders send", "send", "orders"),
                // A child of the producer's context, no message id, no operation.
                with(sp("A", "rcv", Some("pub"), "billing", "orders receive", Consumer, 30, 50), |s| {
                    s.system = Some("kafka".into());
                    s.destination = Some("orders".into());
                }),
            ],
            hops: vec![("orders", Some("pub"), vec!["rcv"])],
            retries: vec![],
        },
        Shape {
            row: "JS, kafkajs eachBatch",
            spans: vec![
                request(),
                publish("orders send", "send", "orders"),
                msg(sp("B", "batch", None, "billing", "orders receive", Consumer, 30, 60), "receive", "orders"),
                links(
                    msg(
                        sp("B", "proc", Some("batch"), "billing", "orders process", Consumer, 35, 50),
                        "process",
                        "orders",
                    ),
                    vec![link("A", "pub", None)],
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["proc"])],
            retries: vec![],
        },
        Shape {
            row: "JS, AWS SDK v3 SQS",
            spans: vec![
                request(),
                id(
                    system(
                        msg(sp("A", "pub", Some("req"), "app", "SQS.SendMessage", Producer, 20, 25), "send", "orders"),
                        "aws_sqs",
                    ),
                    "m1",
                ),
                links(
                    system(
                        msg(
                            sp("B", "rcv", None, "worker", "SQS.ReceiveMessage", Consumer, 30, 35),
                            "receive",
                            "orders",
                        ),
                        "aws_sqs",
                    ),
                    vec![link("A", "pub", Some("m1")), link("X", "pub", Some("m2"))],
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["rcv"])],
            retries: vec![],
        },
        Shape {
            row: "Python, confluent-kafka poll()",
            spans: vec![
                request(),
                publish("orders send", "publish", "orders"),
                // The poll's attribute-less root starts before the order exists.
                sp("B", "recv", None, "fulfilment", "recv", Consumer, 0, 1),
                id(
                    links(
                        msg(
                            sp("B", "proc", Some("recv"), "fulfilment", "orders process", Consumer, 30, 60),
                            "process",
                            "orders",
                        ),
                        vec![link("A", "pub", None)],
                    ),
                    "orders.0.7",
                ),
            ],
            hops: vec![("orders", Some("pub"), vec!["proc"])],
            retries: vec![],
        },
        Shape {
            row: "Python, Celery",
            spans: vec![
                request(),
                id(publish("apply_async/tasks.charge", "send", "celery"), "task-1"),
                with(
                    id(
                        msg(
                            sp("A", "run1", Some("pub"), "worker", "run/tasks.charge", Consumer, 30, 40),
                            "process",
                            "celery",
                        ),
                        "task-1",
                    ),
                    |s| s.error = true,
                ),
                with(
                    id(
                        msg(
                            sp("A", "run2", Some("pub"), "worker", "run/tasks.charge", Consumer, 60, 70),
                            "process",
                            "celery",
                        ),
                        "task-1",
                    ),
                    |s| s.attempt = Some(2),
                ),
            ],
            hops: vec![("celery", Some("pub"), vec!["run1", "run2"])],
            retries: vec![("run2", 2)],
        },
        Shape {
            row: "Python, botocore + boto3sqs",
            spans: vec![
                request(),
                id(system(publish("orders-queue send", "send", "orders-queue"), "aws_sqs"), "m1"),
                id(
                    system(
                        msg(
                            sp("A", "sdk", Some("pub"), "app", "SQS.SendMessage", Client, 21, 24),
                            "send",
                            "orders-queue",
                        ),
                        "aws_sqs",
                    ),
                    "m1",
                ),
                // The worker's poll iteration starts before the order's request.
                sp("B", "poll", None, "worker", "worker.poll", Internal, 0, 80),
                system(
                    msg(
                        sp("B", "rcv", Some("poll"), "worker", "orders-queue receive", Consumer, 1, 30),
                        "receive",
                        "orders-queue",
                    ),
                    "aws_sqs",
                ),
                id(
                    system(
                        msg(
                            sp("B", "rm", Some("rcv"), "worker", "SQS.ReceiveMessage", Client, 2, 29),
                            "receive",
                            "orders-queue",
                        ),
                        "aws_sqs",
                    ),
                    "m1",
                ),
                links(
                    id(
                        system(
                            msg(
                                sp("B", "proc", Some("rcv"), "worker", "orders-queue process", Consumer, 30, 70),
                                "process",
                                "orders-queue",
                            ),
                            "aws_sqs",
                        ),
                        "m1",
                    ),
                    vec![link("A", "pub", None)],
                ),
            ],
            hops: vec![("orders-queue", Some("pub"), vec!["rm", "proc"])],
            retries: vec![],
        },
    ]
}

#[test]
fn instrumentation_shapes() {
    for shape in shapes() {
        let a = analyze(&shape.spans.iter().collect::<Vec<_>>(), &DestinationPatterns::default());
        let name = |i: usize| shape.spans[i].span_id.name();
        assert_eq!(a.chain, "app POST /orders", "{}: the request names the chain", shape.row);
        let hops: Vec<(String, Option<String>, Vec<String>)> = a
            .hops
            .iter()
            .map(|h| {
                let mut consumers: Vec<String> = h.consumers.iter().map(|c| name(*c)).collect();
                consumers.sort();
                (h.destination.clone().unwrap_or_default(), h.producer.map(name), consumers)
            })
            .collect();
        let want: Vec<(String, Option<String>, Vec<String>)> = shape
            .hops
            .iter()
            .map(|(d, p, c)| {
                let mut c: Vec<String> = c.iter().map(|s| s.to_string()).collect();
                c.sort();
                (d.to_string(), p.map(Into::into), c)
            })
            .collect();
        assert_eq!(hops, want, "{}: hops", shape.row);
        let retries: Vec<(String, i32)> = a.retries.iter().map(|r| (name(r.span), r.attempt)).collect();
        let want: Vec<(String, i32)> = shape.retries.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        assert_eq!(retries, want, "{}: retries", shape.row);
        for h in a.hops.iter().filter(|h| h.producer.is_some()) {
            assert!(h.queue_wait_ns.is_some(), "{}: a hop with its producer has a known wait", shape.row);
        }
    }
}
