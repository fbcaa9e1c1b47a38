//! Fan-in: a span that links to messages of several traces (a batch receive or process,
//! a Kafka consumer handling ten records at once) belongs to each of the flows those
//! messages came from, and never joins them into one.
//!
//! The trace holding such a span is a *batch trace*; its links are fan-in edges, not
//! joins. The batch trace's flow component (itself and whatever joins it one to one:
//! its children's traces, messages it sends on) is *shared*: it is not a flow of its own,
//! it is attached whole to every flow its messages came from, and is analysed, shown and
//! counted in each. A changed shared component makes every flow it is attached to
//! change; an attached component is evicted together with the flows it is attached to.

use crate::flows::ids::{SpanId, TraceId};
use crate::flows::{HashMap, HashSet};

use super::intake::LinkRow;
use super::joiner::Joiner;

/// Most traces whose messages one batch trace carries; links beyond it are ignored.
const MAX_TARGETS: usize = 1_000;

/// Most traces attached to one flow (batches of batches included).
const MAX_ATTACHED: usize = 10_000;

/// The spans whose links reach more than one other trace: batches.
pub fn batch_spans(links: &[LinkRow]) -> HashSet<(TraceId, SpanId)> {
    let mut targets: HashMap<(TraceId, SpanId), Vec<TraceId>> = HashMap::default();
    for l in links.iter().filter(|l| l.link.trace_id != l.trace) {
        let seen = targets.entry((l.trace, l.span)).or_default();
        if !seen.contains(&l.link.trace_id) {
            seen.push(l.link.trace_id);
        }
    }
    targets.into_iter().filter(|(_, t)| t.len() > 1).map(|(span, _)| span).collect()
}

/// A flow to write: its own traces, and the traces of shared components attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMembers {
    pub own: Vec<TraceId>,
    pub attached: Vec<TraceId>,
}

impl FlowMembers {
    pub fn all(&self) -> impl Iterator<Item = &TraceId> {
        self.own.iter().chain(&self.attached)
    }
}

#[derive(Debug, Default)]
pub struct FanIn {
    /// Batch trace -> the traces its messages came from.
    targets: HashMap<TraceId, Vec<TraceId>>,
    /// Trace -> the batch traces carrying its messages.
    sources: HashMap<TraceId, Vec<TraceId>>,
    ignored: u64,
}

impl FanIn {
    /// Records that `batch` carries a message from `target`. Returns false when the edge
    /// was ignored because the batch already carries messages of too many traces.
    pub fn add(&mut self, batch: TraceId, target: TraceId) -> bool {
        if batch == target {
            return true;
        }
        let targets = self.targets.entry(batch).or_default();
        if targets.contains(&target) {
            return true;
        }
        if targets.len() >= MAX_TARGETS {
            self.ignored += 1;
            return false;
        }
        targets.push(target);
        self.sources.entry(target).or_default().push(batch);
        true
    }

    /// Fan-in edges ignored so far.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The traces whose messages a batch trace carries (none for other traces).
    pub fn targets_of(&self, trace: &TraceId) -> &[TraceId] {
        self.targets.get(trace).map_or(&[], Vec::as_slice)
    }

    /// The flows to write after `changed` traces changed: the components they belong
    /// to, except shared ones, whose change reaches every flow they are attached to
    /// instead. Each with what is attached to it. A batch is attached only to flows with
    /// spans (`has_spans`); one whose messages' flows have none yet is written as a flow of
    /// its own, so that it is stored, and found again when they arrive.
    pub fn flows_to_write(
        &self,
        joiner: &Joiner,
        changed: impl IntoIterator<Item = TraceId>,
        has_spans: impl Fn(&[TraceId]) -> bool,
    ) -> Vec<FlowMembers> {
        let mut queue: Vec<Vec<TraceId>> = joiner.flows_of(changed);
        let mut seen: HashSet<TraceId> = queue.iter().map(|c| c[0]).collect();
        let mut out = Vec::new();
        while let Some(component) = queue.pop() {
            let targets: Vec<Vec<TraceId>> = component
                .iter()
                .flat_map(|t| self.targets_of(t))
                .map(|t| joiner.flow_of(*t))
                .filter(|c| has_spans(c))
                .collect();
            if targets.is_empty() {
                let attached = self.attached_to(joiner, &component);
                out.push(FlowMembers { own: component, attached });
                continue;
            }
            for reached in targets {
                if seen.insert(reached[0]) {
                    queue.push(reached);
                }
            }
        }
        out.sort_by(|a, b| a.own.cmp(&b.own));
        out
    }

    /// The shared components attached to a flow, through batches of batches: every
    /// component holding a batch trace that carries a message of a trace already in.
    fn attached_to(&self, joiner: &Joiner, own: &[TraceId]) -> Vec<TraceId> {
        let mut inside: HashSet<TraceId> = own.iter().copied().collect();
        let mut attached: Vec<TraceId> = Vec::new();
        let mut frontier: Vec<TraceId> = own.to_vec();
        while let Some(t) = frontier.pop() {
            for batch in self.sources.get(&t).into_iter().flatten() {
                if inside.contains(batch) || attached.len() >= MAX_ATTACHED {
                    continue;
                }
                for member in joiner.flow_of(*batch) {
                    if inside.insert(member) {
                        attached.push(member);
                        frontier.push(member);
                    }
                }
            }
        }
        attached.sort();
        attached
    }

    /// Components that must stay in memory or leave it together: flows with the shared
    /// components attached to them.
    pub fn eviction_groups(&self, components: Vec<Vec<TraceId>>) -> Vec<Vec<TraceId>> {
        if self.targets.is_empty() {
            return components;
        }
        let component_of: HashMap<TraceId, usize> =
            components.iter().enumerate().flat_map(|(i, c)| c.iter().map(move |t| (*t, i))).collect();
        let mut parent: Vec<usize> = (0..components.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (batch, targets) in &self.targets {
            let Some(b) = component_of.get(batch) else { continue };
            for t in targets {
                if let Some(c) = component_of.get(t) {
                    let (rb, rc) = (root(&mut parent, *b), root(&mut parent, *c));
                    parent[rb] = rc;
                }
            }
        }
        let mut groups: HashMap<usize, Vec<TraceId>> = HashMap::default();
        for (i, c) in components.into_iter().enumerate() {
            groups.entry(root(&mut parent, i)).or_default().extend(c);
        }
        groups.into_values().collect()
    }

    /// Forgets the edges of traces that left memory.
    pub fn forget(&mut self, traces: &[TraceId]) {
        if self.targets.is_empty() && self.sources.is_empty() {
            return;
        }
        for t in traces {
            for target in self.targets.remove(t).unwrap_or_default() {
                if let Some(s) = self.sources.get_mut(&target) {
                    s.retain(|b| b != t);
                    if s.is_empty() {
                        self.sources.remove(&target);
                    }
                }
            }
            for batch in self.sources.remove(t).unwrap_or_default() {
                if let Some(ts) = self.targets.get_mut(&batch) {
                    ts.retain(|x| x != t);
                    if ts.is_empty() {
                        self.targets.remove(&batch);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TraceId {
        TraceId::named(name)
    }

    fn names(traces: &[TraceId], all: &[&str]) -> Vec<String> {
        let mut out: Vec<String> =
            traces.iter().map(|x| all.iter().find(|n| t(n) == *x).expect("a named trace").to_string()).collect();
        out.sort();
        out
    }

    /// Orders a, b, c; a batch trace "batch" carrying messages of a and b; "bill" joined
    /// to the batch one to one; a second-level batch "audit" carrying a message of "bill".
    fn setup() -> (Joiner, FanIn, Vec<&'static str>) {
        let all = vec!["a", "a2", "b", "c", "batch", "bill", "audit"];
        let mut j = Joiner::new(10);
        for n in &all {
            j.add_trace(t(n));
        }
        j.link(t("a2"), t("a"));
        j.link(t("bill"), t("batch"));
        let mut f = FanIn::default();
        for (batch, target) in [("batch", "a2"), ("batch", "b"), ("audit", "bill")] {
            assert!(f.add(t(batch), t(target)));
        }
        (j, f, all)
    }

    #[test]
    fn a_batch_belongs_to_each_flow_it_carries_a_message_of_and_merges_none() {
        let (j, f, all) = setup();
        // (changed trace, flows written as (own, attached))
        let cases: Vec<(&str, Vec<(Vec<&str>, Vec<&str>)>)> = vec![
            ("a", vec![(vec!["a", "a2"], vec!["audit", "batch", "bill"])]),
            ("b", vec![(vec!["b"], vec!["audit", "batch", "bill"])]),
            ("c", vec![(vec!["c"], vec![])]),
            // a change in the shared part reaches every flow it is attached to
            (
                "bill",
                vec![(vec!["a", "a2"], vec!["audit", "batch", "bill"]), (vec!["b"], vec!["audit", "batch", "bill"])],
            ),
            (
                "audit",
                vec![(vec!["a", "a2"], vec!["audit", "batch", "bill"]), (vec!["b"], vec!["audit", "batch", "bill"])],
            ),
        ];
        for (changed, want) in cases {
            let got: Vec<(Vec<String>, Vec<String>)> = f
                .flows_to_write(&j, [t(changed)], |_| true)
                .iter()
                .map(|m| (names(&m.own, &all), names(&m.attached, &all)))
                .collect();
            let mut want: Vec<(Vec<String>, Vec<String>)> = want
                .into_iter()
                .map(|(o, a)| (o.into_iter().map(String::from).collect(), a.into_iter().map(String::from).collect()))
                .collect();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            want.sort();
            assert_eq!(got_sorted, want, "changed {changed}");
        }
        // A batch whose messages' flows have no spans yet is a flow of its own for now.
        let written = f.flows_to_write(&j, [t("bill")], |c| !c.contains(&t("a")) && !c.contains(&t("b")));
        assert_eq!(written.len(), 1, "{written:?}");
        assert_eq!(names(&written[0].own, &all), vec!["batch", "bill"]);
        // The joiner still holds every order apart.
        assert_eq!(j.flow_of(t("a")).len(), 2);
        assert_eq!(j.flow_of(t("b")).len(), 1);
    }

    #[test]
    fn eviction_keeps_a_batch_with_the_flows_it_is_attached_to() {
        let (j, f, all) = setup();
        let mut groups: Vec<Vec<String>> =
            f.eviction_groups(j.flows().collect()).iter().map(|g| names(g, &all)).collect();
        groups.sort();
        assert_eq!(groups, vec![vec!["a", "a2", "audit", "b", "batch", "bill"], vec!["c"]]);
    }

    #[test]
    fn forgotten_traces_leave_no_edges_and_the_cap_holds() {
        let (_, mut f, _) = setup();
        f.forget(&[t("batch"), t("bill"), t("audit")]);
        assert!(f.targets.is_empty() && f.sources.is_empty(), "{f:?}");
        for i in 0..MAX_TARGETS + 5 {
            f.add(t("big"), TraceId::named(&format!("m{i}")));
        }
        assert_eq!(f.targets_of(&t("big")).len(), MAX_TARGETS);
        assert_eq!(f.ignored(), 5);
    }
}
