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

use crate::flows::ids::{join_hash, TraceId};
use crate::flows::{HashMap, HashSet};

/// A join key: the kind of evidence and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JoinKey {
    MessageId(String),
    Correlation(String),
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
mod tests;
