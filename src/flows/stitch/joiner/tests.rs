use super::*;
use crate::flows::ids::trace_hash;

fn m(v: &str) -> JoinKey {
    JoinKey::MessageId(v.into())
}
fn c(v: &str) -> JoinKey {
    JoinKey::Correlation(v.into())
}
fn t(name: &str) -> TraceId {
    TraceId::named(name)
}
fn ts(names: &[&str]) -> Vec<TraceId> {
    names.iter().map(|n| t(n)).collect()
}

enum Op {
    Trace(&'static str),
    Link(&'static str, &'static str),
    Key(&'static str, JoinKey),
}
use Op::*;

#[test]
fn a_chain_of_links_stops_growing_at_the_guard() {
    let mut j = Joiner::new(3); // 30 traces at most through links
    let names: Vec<String> = (0..100).map(|i| format!("t{i:03}")).collect();
    for w in names.windows(2) {
        j.link(t(&w[1]), t(&w[0]));
    }
    assert_eq!(j.flow_of(t("t000")).len(), 30);
    // Each 30 traces form a flow; the link that would join two of them is ignored.
    assert_eq!(j.ignored_links(), 3);
    assert!(names.iter().all(|n| j.flow_of(t(n)).len() <= 30));
}

#[test]
fn components_by_each_join_kind() {
    struct Case {
        name: &'static str,
        ops: Vec<Op>,
        limit: usize,
        /// Expected flows of the traces named, as sorted member lists.
        want: Vec<(&'static str, Vec<&'static str>)>,
    }
    let cases = vec![
        Case { name: "lonely trace", ops: vec![Trace("a")], limit: 10, want: vec![("a", vec!["a"])] },
        Case {
            name: "link joins",
            ops: vec![Link("a", "b"), Trace("c")],
            limit: 10,
            want: vec![("a", vec!["a", "b"]), ("c", vec!["c"])],
        },
        Case {
            name: "message id joins producer and consumer traces",
            ops: vec![Key("p", m("42")), Key("q", m("42")), Key("r", m("43"))],
            limit: 10,
            want: vec![("q", vec!["p", "q"]), ("r", vec!["r"])],
        },
        Case {
            name: "correlation id chains through several traces",
            ops: vec![Key("a", c("o1")), Key("b", c("o1")), Link("b", "c"), Key("d", m("x")), Key("c", m("x"))],
            limit: 10,
            want: vec![("a", vec!["a", "b", "c", "d"])],
        },
        Case {
            name: "late arrival merges two flows",
            ops: vec![Link("a", "b"), Link("c", "d"), Key("b", c("k")), Key("d", c("k"))],
            limit: 10,
            want: vec![("a", vec!["a", "b", "c", "d"])],
        },
        Case {
            name: "the same key twice in one trace changes nothing",
            ops: vec![Key("a", c("k")), Key("a", c("k")), Trace("b")],
            limit: 10,
            want: vec![("a", vec!["a"]), ("b", vec!["b"])],
        },
        Case {
            name: "giant key is ignored and its merges undone",
            ops: vec![
                Key("a", c("none")),
                Key("b", c("none")),
                Key("c", c("none")),
                Link("c", "d"),
                Key("e", c("none")),
            ],
            limit: 3,
            want: vec![("a", vec!["a"]), ("b", vec!["b"]), ("c", vec!["c", "d"]), ("e", vec!["e"])],
        },
        Case {
            name: "splitting keeps the other keys' joins",
            ops: vec![
                Key("a", c("none")),
                Key("b", c("none")),
                Key("a", m("1")),
                Key("b", m("1")),
                Key("c", c("none")),
            ],
            limit: 2,
            want: vec![("a", vec!["a", "b"]), ("c", vec!["c"])],
        },
    ];
    for case in cases {
        let mut j = Joiner::new(case.limit);
        for op in case.ops {
            match op {
                Trace(name) => j.add_trace(t(name)),
                Link(a, b) => {
                    j.link(t(a), t(b));
                }
                Key(name, k) => {
                    j.key(t(name), k);
                }
            }
        }
        for (trace, want) in case.want {
            assert_eq!(j.flow_of(t(trace)), ts(&want), "{}: flow of {trace}", case.name);
        }
    }
}

#[test]
fn join_hashes_are_stable_and_tell_kinds_apart() {
    // FNV-1a test vector: the empty input after the tag 'a' is the hash of "a".
    assert_eq!(join_hash(b'a', "") as u64, 0xaf63_dc4c_8601_ec8c);
    assert_ne!(trace_hash("42"), m("42").hash());
    assert_ne!(m("42").hash(), c("42").hash());
    assert_eq!(JoinKey::from_stored("correlation_id", "x".into()), Some(c("x")));
    assert_eq!(JoinKey::from_stored("link", "x".into()), None);
}

#[test]
fn forgetting_keeps_the_other_flows_and_their_joins() {
    let mut j = Joiner::new(3);
    j.link(t("a"), t("b"));
    j.key(t("b"), m("1"));
    j.key(t("c"), m("1"));
    j.key(t("d"), c("x"));
    j.link(t("d"), t("d2"));
    for name in ["e", "f", "g", "h"] {
        j.key(t(name), c("none"));
    }
    j.forget([t("d")]);
    assert_eq!(j.flow_of(t("a")), ts(&["a", "b", "c"]));
    assert!(!j.knows_trace(t("d")) && !j.knows_trace(t("d2")), "the whole flow goes");
    assert!(!j.knows_key(&c("x")), "the forgotten trace's key is forgotten");
    assert!(j.knows_key(&c("none")), "ignored keys stay ignored");
    assert_eq!(j.ignored_keys().len(), 1);
    assert_eq!(j.joins_of(t("b")), (ts(&["a"]), vec![&m("1")]));
    assert_eq!(j.joins_of(t("e")), (vec![], vec![]), "an ignored key is not a join");
    assert_eq!(j.traces(), 7);
    // Freed slots are reused by new traces, which join as before.
    j.key(t("z"), m("1"));
    j.key(t("y"), c("x"));
    assert_eq!(j.flow_of(t("z")), ts(&["a", "b", "c", "z"]));
    assert_eq!(j.flow_of(t("y")), ts(&["y"]));
    assert_eq!(j.traces(), 9);
    j.forget(ts(&["unknown", "a", "b"]));
    assert_eq!(j.traces(), 5);
    assert_eq!(j.flows().count(), 5);
}

/// Forgetting flows in place leaves what a joiner given only the kept flows' joins
/// has, before and after more joins arrive (random graphs, seeded).
#[test]
fn forgetting_equals_never_having_seen() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let op = |j: &mut Joiner, (a, b, k): (String, String, Option<JoinKey>)| match k {
        Some(k) => drop(j.key(t(&a), k)),
        None => drop(j.link(t(&a), t(&b))),
    };
    let mut rng = StdRng::seed_from_u64(12);
    for round in 0..200 {
        let random_op = |rng: &mut StdRng, base: usize| {
            let t = |rng: &mut StdRng| format!("t{}", base + rng.random_range(0..40));
            let (a, b) = (t(rng), t(rng));
            let k = match rng.random_range(0..3) {
                0 => None,
                1 => Some(m(&format!("{}", rng.random_range(0..30)))),
                _ => Some(c(&format!("{}", rng.random_range(0..30)))),
            };
            (a, b, k)
        };
        let ops: Vec<_> = (0..rng.random_range(0..60)).map(|_| random_op(&mut rng, 0)).collect();
        let mut j = Joiner::new(1_000);
        ops.iter().cloned().for_each(|o| op(&mut j, o));
        let gone: Vec<String> = (0..rng.random_range(0..10)).map(|_| format!("t{}", rng.random_range(0..40))).collect();
        let forgotten: HashSet<TraceId> = j.flows_of(gone.iter().map(|g| t(g))).into_iter().flatten().collect();
        j.forget(gone.iter().map(|g| t(g)));
        let mut fresh = Joiner::new(1_000);
        ops.iter().filter(|(a, _, _)| !forgotten.contains(&t(a))).cloned().for_each(|o| op(&mut fresh, o));
        let more: Vec<_> = (0..20).map(|_| random_op(&mut rng, 20)).collect();
        for stage in 0..2 {
            assert_eq!(j.traces(), fresh.traces(), "round {round} stage {stage}");
            for name in (0..60).map(|i| format!("t{i}")) {
                let tr = t(&name);
                assert_eq!(j.knows_trace(tr), fresh.knows_trace(tr), "round {round} {name}");
                assert_eq!(j.flow_of(tr), fresh.flow_of(tr), "round {round} stage {stage} {name}");
                assert_eq!(j.joins_of(tr), fresh.joins_of(tr), "round {round} stage {stage} {name}");
            }
            for o in &more {
                op(&mut j, o.clone());
                op(&mut fresh, o.clone());
            }
        }
    }
}

#[test]
fn giant_keys_are_reported_once() {
    let mut j = Joiner::new(2);
    assert_eq!(j.key(t("a"), c("x")), None);
    assert_eq!(j.key(t("b"), c("x")), None);
    let split = j.key(t("c"), c("x")).unwrap();
    assert_eq!(split.ignored, IgnoredKey { key: c("x"), traces: 3 });
    assert_eq!(split.traces, ts(&["a", "b", "c"]));
    assert_eq!(j.key(t("d"), c("x")), None);
    assert_eq!(j.ignored_keys().len(), 1);
    assert_eq!(j.flows_of(ts(&["a", "b", "c", "d"])).len(), 4);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Join {
        Link(u8, u8),
        Key(u8, bool, u8),
    }

    fn joins() -> impl Strategy<Value = Vec<Join>> {
        let one = prop_oneof![
            (0u8..40, 0u8..40).prop_map(|(a, b)| Join::Link(a, b)),
            (0u8..40, any::<bool>(), 0u8..8).prop_map(|(t, m, v)| Join::Key(t, m, v)),
        ];
        prop::collection::vec(one, 0..120)
    }

    /// The flows of traces t0..t39 as a sorted partition.
    fn partition(j: &Joiner) -> Vec<Vec<TraceId>> {
        let mut flows = j.flows_of((0..40).map(|i| t(&format!("t{i:02}"))));
        flows.sort();
        flows
    }

    fn apply(ops: &[Join]) -> Joiner {
        // Keys shared by more than 5 traces are ignored (splits happen); links may gather
        // 50 traces, more than there are, so the link guard (which by nature depends
        // on arrival order) never refuses one here.
        let mut j = Joiner::new(5);
        for i in 0..40 {
            j.add_trace(t(&format!("t{i:02}")));
        }
        for op in ops {
            match op {
                Join::Link(a, b) => {
                    j.link(t(&format!("t{a:02}")), t(&format!("t{b:02}")));
                }
                Join::Key(i, message, v) => {
                    let key = if *message {
                        JoinKey::MessageId(format!("m{v}"))
                    } else {
                        JoinKey::Correlation(format!("c{v}"))
                    };
                    j.key(t(&format!("t{i:02}")), key);
                }
            }
        }
        j
    }

    #[test]
    fn every_trace_is_in_one_flow_and_arrival_order_does_not_matter() {
        let mut runner = crate::test_support::seeded_runner(400, 5);
        runner
            .run(&(joins(), any::<u64>()), |(ops, seed)| {
                let flows = partition(&apply(&ops));
                let mut all: Vec<&TraceId> = flows.iter().flatten().collect();
                let n = all.len();
                all.sort();
                all.dedup();
                prop_assert_eq!(n, 40, "every trace once");
                prop_assert_eq!(all.len(), 40);
                let mut shuffled = ops.clone();
                let len = shuffled.len();
                for i in 0..len {
                    shuffled.swap(i, (seed as usize).wrapping_mul(i + 3) % len.max(1));
                }
                prop_assert_eq!(flows, partition(&apply(&shuffled)), "the same flows in another order");
                Ok(())
            })
            .unwrap();
    }
}
