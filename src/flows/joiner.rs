//! Which traces belong to the same flow: a union-find over trace ids.
//!
//! Traces are the nodes (every span of a trace is in the trace's flow). Edges come from
//! span links (trace to trace) and from join keys: a message id or correlation id seen in
//! several traces ties all of them together. Components are kept with their member lists
//! (union by size), so a merge costs O(smaller side) and everything stays linear overall.
//!
//! Giant-component guard: a key value shared by more than `key_trace_limit` traces (a
//! constant "correlation id" such as `none`, a test fixture id) is not an identifier of one
//! operation. When a key crosses the limit it is ignored from then on, recorded for the
//! diagnostics page, and the component it had built is split again by recomputing it from
//! its remaining edges. Links are guarded by flow size instead: a link that would make a
//! flow of more than ten times `key_trace_limit` traces is ignored (and counted).

use super::ids::TraceId;
use super::{HashMap, HashSet};

/// A join key: the kind of evidence and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JoinKey {
    MessageId(String),
    Correlation(String),
}

/// The 64-bit hash under which a join is stored (migration 015): FNV-1a over a kind tag
/// and the value. Stable across versions and platforms, as stored data requires; not
/// exposed to collisions crafted by senders in any way that matters, since a collision
/// only makes the stitcher read a flow it then does not join (joins compare the values).
pub fn join_hash(tag: u8, value: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(tag).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// The join hash of a trace id.
pub fn trace_hash(trace: &str) -> i64 {
    join_hash(b't', trace)
}

impl JoinKey {
    /// The join hash of this key.
    pub fn hash(&self) -> i64 {
        match self {
            JoinKey::MessageId(v) => join_hash(b'm', v),
            JoinKey::Correlation(v) => join_hash(b'c', v),
        }
    }

    /// A key from its stored kind and value.
    pub fn from_stored(kind: &str, value: String) -> Option<JoinKey> {
        match kind {
            "message_id" => Some(JoinKey::MessageId(value)),
            "correlation_id" => Some(JoinKey::Correlation(value)),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JoinKey::MessageId(_) => "message_id",
            JoinKey::Correlation(_) => "correlation_id",
        }
    }
    pub fn value(&self) -> &str {
        match self {
            JoinKey::MessageId(v) | JoinKey::Correlation(v) => v,
        }
    }
}

#[derive(Debug)]
enum KeyState {
    Traces(Vec<usize>),
    Ignored { traces: usize },
}

/// A key that was ignored for joining because too many traces share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    pub key: JoinKey,
    pub traces: usize,
}

/// What a key crossing the limit did: the key, and every trace of the component it had
/// built, whose flows must be recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub ignored: IgnoredKey,
    pub traces: Vec<TraceId>,
}

#[derive(Debug)]
pub struct Joiner {
    key_trace_limit: usize,
    ids: HashMap<TraceId, usize>,
    /// Trace of each id; a slot freed by [`Joiner::forget`] is listed in `free`.
    names: Vec<TraceId>,
    free: Vec<usize>,
    parent: Vec<usize>,
    /// Members of each component, kept at its root.
    members: HashMap<usize, Vec<usize>>,
    links: HashMap<usize, Vec<usize>>,
    keys_of: HashMap<usize, Vec<JoinKey>>,
    keys: HashMap<JoinKey, KeyState>,
    ignored: Vec<IgnoredKey>,
    ignored_links: u64,
}

impl Joiner {
    pub fn new(key_trace_limit: usize) -> Self {
        Joiner {
            key_trace_limit: key_trace_limit.max(2),
            ids: HashMap::default(),
            names: Vec::new(),
            free: Vec::new(),
            parent: Vec::new(),
            members: HashMap::default(),
            links: HashMap::default(),
            keys_of: HashMap::default(),
            keys: HashMap::default(),
            ignored: Vec::new(),
            ignored_links: 0,
        }
    }

    fn id(&mut self, trace: TraceId) -> usize {
        if let Some(id) = self.ids.get(&trace) {
            return *id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id] = trace;
                self.parent[id] = id;
                id
            }
            None => {
                self.names.push(trace);
                self.parent.push(self.names.len() - 1);
                self.names.len() - 1
            }
        };
        self.members.insert(id, vec![id]);
        self.ids.insert(trace, id);
        id
    }

    fn name(&self, id: usize) -> TraceId {
        self.names[id]
    }

    fn root(&self, mut id: usize) -> usize {
        while self.parent[id] != id {
            id = self.parent[id];
        }
        id
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra == rb {
            return;
        }
        let (big, small) = if self.members[&ra].len() >= self.members[&rb].len() { (ra, rb) } else { (rb, ra) };
        let moved = self.members.remove(&small).unwrap_or_default();
        for m in &moved {
            self.parent[*m] = big;
        }
        self.members.get_mut(&big).expect("root has members").extend(moved);
    }

    /// Registers a trace (idempotent).
    pub fn add_trace(&mut self, trace: TraceId) {
        self.id(trace);
    }

    /// Most traces one flow may gather through links: ten times the key limit (a batch
    /// consumer linking to a thousand messages is one flow; a chain of traces each linking
    /// to the one before, without end, is an exporter's bug or an attack).
    fn max_linked_traces(&self) -> usize {
        self.key_trace_limit.saturating_mul(10)
    }

    /// A span link between two traces. Returns false when the link was ignored because the
    /// flow it would make has more than ten times the key limit of traces.
    pub fn link(&mut self, a: TraceId, b: TraceId) -> bool {
        let (ia, ib) = (self.id(a), self.id(b));
        if ia == ib {
            return true;
        }
        let (ra, rb) = (self.root(ia), self.root(ib));
        if ra != rb && self.members[&ra].len() + self.members[&rb].len() > self.max_linked_traces() {
            self.ignored_links += 1;
            return false;
        }
        self.links.entry(ia).or_default().push(ib);
        self.links.entry(ib).or_default().push(ia);
        self.union(ia, ib);
        true
    }

    /// Links ignored by the giant-component guard so far.
    pub fn ignored_links(&self) -> u64 {
        self.ignored_links
    }

    /// A join key seen in a trace. Returns the split if this call made it cross the limit.
    pub fn key(&mut self, trace: TraceId, key: JoinKey) -> Option<Split> {
        let id = self.id(trace);
        let limit = self.key_trace_limit;
        // Cloned only when new: most keys are seen again in the flow's other spans.
        if !self.keys.contains_key(&key) {
            self.keys.insert(key.clone(), KeyState::Traces(Vec::new()));
        }
        let state = self.keys.get_mut(&key).expect("inserted above");
        let partner = match state {
            KeyState::Ignored { traces } => {
                *traces += 1;
                return None;
            }
            KeyState::Traces(list) if list.contains(&id) => return None,
            KeyState::Traces(list) if list.len() >= limit => {
                let first = list[0];
                let count = list.len() + 1;
                *state = KeyState::Ignored { traces: count };
                let ignored = IgnoredKey { key, traces: count };
                self.ignored.push(ignored.clone());
                let mut traces: Vec<TraceId> = self.split(first).into_iter().map(|m| self.name(m)).collect();
                traces.push(self.name(id));
                traces.sort();
                return Some(Split { ignored, traces });
            }
            KeyState::Traces(list) => {
                list.push(id);
                list.first().copied().filter(|f| *f != id)
            }
        };
        self.keys_of.entry(id).or_default().push(key);
        if let Some(p) = partner {
            self.union(id, p);
        }
        None
    }

    /// Recomputes the component containing `any` from its links and non-ignored keys;
    /// returns its former members.
    fn split(&mut self, any: usize) -> Vec<usize> {
        let root = self.root(any);
        let members = self.members.remove(&root).unwrap_or_default();
        for m in &members {
            self.parent[*m] = *m;
            self.members.insert(*m, vec![*m]);
        }
        for m in &members {
            for other in self.links.get(m).cloned().unwrap_or_default() {
                self.union(*m, other);
            }
            for key in self.keys_of.get(m).cloned().unwrap_or_default() {
                if let Some(KeyState::Traces(list)) = self.keys.get(&key) {
                    if let Some(first) = list.first().copied() {
                        self.union(*m, first);
                    }
                }
            }
        }
        members
    }

    /// The traces of the flow `trace` belongs to (just itself when unknown).
    pub fn flow_of(&self, trace: TraceId) -> Vec<TraceId> {
        match self.ids.get(&trace) {
            None => vec![trace],
            Some(id) => {
                let mut traces: Vec<TraceId> = self.members[&self.root(*id)].iter().map(|m| self.name(*m)).collect();
                traces.sort();
                traces
            }
        }
    }

    /// The distinct flows (as sorted member lists) that the given traces belong to now.
    pub fn flows_of(&self, traces: impl IntoIterator<Item = TraceId>) -> Vec<Vec<TraceId>> {
        let mut seen = HashSet::default();
        let mut flows = Vec::new();
        for t in traces {
            let root = self.ids.get(&t).map(|id| self.root(*id));
            if root.is_none_or(|r| seen.insert(r)) {
                flows.push(self.flow_of(t));
            }
        }
        flows
    }

    pub fn ignored_keys(&self) -> &[IgnoredKey] {
        &self.ignored
    }

    /// Marks a key as ignored without a split (a key the file already shows to be shared by
    /// too many traces).
    pub fn ignore_key(&mut self, key: JoinKey, traces: usize) {
        if !matches!(self.keys.get(&key), Some(KeyState::Ignored { .. })) {
            self.ignored.push(IgnoredKey { key: key.clone(), traces });
        }
        self.keys.insert(key, KeyState::Ignored { traces });
    }

    /// Whether a trace is known (has spans, keys or links here).
    pub fn knows_trace(&self, trace: TraceId) -> bool {
        self.ids.contains_key(&trace)
    }

    /// Whether a key has been seen (in a trace here, or as ignored).
    pub fn knows_key(&self, key: &JoinKey) -> bool {
        self.keys.contains_key(key)
    }

    /// Traces known.
    pub fn traces(&self) -> usize {
        self.names.len() - self.free.len()
    }

    /// Every flow known, as its traces (in no particular order).
    pub fn flows(&self) -> impl Iterator<Item = Vec<TraceId>> + '_ {
        self.members.values().map(|members| members.iter().map(|m| self.name(*m)).collect())
    }

    /// What joins a trace to others: the traces it links to, and its keys still used for
    /// joining. This is what the stitcher persists so that the trace can be joined again
    /// after it has left memory.
    pub fn joins_of(&self, trace: TraceId) -> (Vec<TraceId>, Vec<&JoinKey>) {
        let Some(id) = self.ids.get(&trace) else { return (Vec::new(), Vec::new()) };
        let mut links: Vec<TraceId> = self.links.get(id).into_iter().flatten().map(|m| self.name(*m)).collect();
        links.sort_unstable();
        links.dedup();
        let keys = self
            .keys_of
            .get(id)
            .into_iter()
            .flatten()
            .filter(|k| matches!(self.keys.get(*k), Some(KeyState::Traces(_))))
            .collect();
        (links, keys)
    }

    /// Forgets the flows of `traces` whole: their traces, links and keys (ignored keys stay
    /// ignored). In place, so that forgetting costs what is forgotten, not what is kept
    /// (rebuilding the joiner from what was kept, once a second, was a sixth of the
    /// stitcher's time under full-speed ingest); freed slots are reused, and the maps
    /// shrink when they have become mostly empty.
    pub fn forget(&mut self, traces: impl IntoIterator<Item = TraceId>) {
        for trace in traces {
            let Some(id) = self.ids.get(&trace).copied() else { continue };
            let root = self.root(id);
            // Each member is in one component, removed here once: its name is still its own.
            for m in self.members.remove(&root).unwrap_or_default() {
                self.ids.remove(&self.names[m]);
                self.links.remove(&m);
                // Every trace holding a key is in the key's flow, so the key goes with it.
                for key in self.keys_of.remove(&m).unwrap_or_default() {
                    if matches!(self.keys.get(&key), Some(KeyState::Traces(_))) {
                        self.keys.remove(&key);
                    }
                }
                self.parent[m] = m;
                self.free.push(m);
            }
        }
        if self.ids.capacity() > 4 * self.ids.len() + 1024 {
            self.ids.shrink_to_fit();
            self.members.shrink_to_fit();
            self.links.shrink_to_fit();
            self.keys_of.shrink_to_fit();
            self.keys.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let gone: Vec<String> =
                (0..rng.random_range(0..10)).map(|_| format!("t{}", rng.random_range(0..40))).collect();
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
}
