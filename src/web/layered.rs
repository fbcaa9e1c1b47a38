//! Layered drawing of a directed graph, left to right in the direction of its edges (the
//! method of Sugiyama, Tagawa and Toda):
//!
//! 1. cycles are broken by reversing the edges a depth-first search finds pointing back
//!    (request-reply over queues makes cycles), starting from the nodes the caller
//!    ranks first (where flows enter);
//! 2. each node's layer is its longest path from a source;
//! 3. every edge gets a point per rank it spans; ranks alternate between nodes and edge
//!    labels, so a label is an item of its own rank and cannot overlap a node or
//!    another label;
//! 4. crossings are reduced by barycenter sweeps, keeping the best order seen;
//! 5. each rank is stacked vertically at the least squared distance from its
//!    neighbours' positions, keeping the order and the gaps (isotonic regression by
//!    pool-adjacent-violators), in alternating sweeps.
//!
//! Everything is deterministic: ties break by input order. The cost is
//! O(sweeps × segments²) for counting crossings, fine for the few hundred items a
//! readable map has; callers cap the graph's size.

/// Width and height of a box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub label: Size,
}

/// A box by its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

#[derive(Debug, Clone)]
pub struct EdgeRoute {
    /// From the source's side to the target's, through a point per rank crossed.
    pub points: Vec<(f64, f64)>,
    pub label: Rect,
}

#[derive(Debug, Clone)]
pub struct Drawing {
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<Rect>,
    pub edges: Vec<EdgeRoute>,
}

const MARGIN: f64 = 8.0;
/// Horizontal gap between a rank of nodes and a rank of labels.
const RANK_GAP: f64 = 28.0;
/// Vertical gap between boxes of one rank; bare edge points need less.
const BOX_GAP: f64 = 14.0;
const POINT_GAP: f64 = 6.0;
const ORDER_SWEEPS: usize = 24;
const PLACE_SWEEPS: usize = 12;

#[derive(Debug, Clone, Copy)]
enum Item {
    Node,
    /// A point of an edge; `label` on the first point after the source's rank.
    Point {
        label: bool,
    },
}

/// Lays out `nodes` (sizes) and `edges`. `priority` orders the nodes cycles are broken
/// from, lower first (for a flow map: the services flows start in).
pub fn layout(nodes: &[Size], edges: &[Edge], priority: &[i64]) -> Drawing {
    let n = nodes.len();
    let edges: Vec<&Edge> = edges.iter().collect();
    let reversed = back_edges(n, &edges, priority);
    // Each edge as the layering sees it: (upper, lower) in rank order.
    let dag: Vec<(usize, usize)> =
        edges.iter().zip(&reversed).map(|(e, r)| if *r { (e.to, e.from) } else { (e.from, e.to) }).collect();
    let layer = longest_path_layers(n, &dag);

    // Items per rank: node ranks are even, label ranks odd.
    let ranks = layer.iter().max().map_or(1, |l| 2 * l + 1);
    let mut items: Vec<(usize, Item, Size)> = Vec::new();
    let mut item_of_node = vec![0; n];
    let mut by_priority: Vec<usize> = (0..n).collect();
    by_priority.sort_by_key(|i| (priority.get(*i).copied().unwrap_or(0), *i));
    for &v in &by_priority {
        item_of_node[v] = items.len();
        items.push((2 * layer[v], Item::Node, nodes[v]));
    }
    // Segments between consecutive ranks, as item pairs, and each edge's items in order.
    let mut segments: Vec<(usize, usize)> = Vec::new();
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(dag.len());
    for (e, &(u, v)) in dag.iter().enumerate() {
        let mut chain = vec![item_of_node[u]];
        for rank in 2 * layer[u] + 1..2 * layer[v] {
            let label = rank == 2 * layer[u] + 1;
            let size = if label { edges[e].label } else { Size { w: 0.0, h: 0.0 } };
            chain.push(items.len());
            items.push((rank, Item::Point { label }, size));
        }
        chain.push(item_of_node[v]);
        segments.extend(chain.windows(2).map(|w| (w[0], w[1])));
        chains.push(chain);
    }

    let order = reduce_crossings(ranks, &items, &segments);
    let (x_of_rank, width) = rank_columns(ranks, &items);
    let y = place_vertically(&order, &items, &segments);

    let height = items.iter().zip(&y).map(|((_, _, s), y)| y + s.h / 2.0).fold(0.0, f64::max) + MARGIN;
    let centre_x = |i: usize| {
        let (rank, _, _) = items[i];
        x_of_rank[rank].0 + x_of_rank[rank].1 / 2.0
    };
    let rect = |i: usize| {
        let (_, _, s) = items[i];
        Rect { x: centre_x(i) - s.w / 2.0, y: y[i] - s.h / 2.0, w: s.w, h: s.h }
    };
    let node_rects: Vec<Rect> = (0..n).map(|v| rect(item_of_node[v])).collect();
    let routes = chains
        .iter()
        .enumerate()
        .map(|(e, chain)| {
            let (first, last) = (rect(chain[0]), rect(chain[chain.len() - 1]));
            let mut points = vec![(first.x + first.w, y[chain[0]])];
            points.extend(chain[1..chain.len() - 1].iter().map(|i| (centre_x(*i), y[*i])));
            points.push((last.x, y[chain[chain.len() - 1]]));
            if reversed[e] {
                points.reverse();
            }
            let label = chain
                .iter()
                .find(|i| matches!(items[**i].1, Item::Point { label: true }))
                .map(|i| rect(*i))
                .unwrap_or(Rect { x: points[0].0, y: points[0].1, w: 0.0, h: 0.0 });
            EdgeRoute { points, label }
        })
        .collect();
    Drawing { width, height, nodes: node_rects, edges: routes }
}

/// Which edges to reverse so the graph has no cycle: those a depth-first search, started
/// from nodes by priority, finds pointing at a node on its current path. (A self-loop,
/// which callers should not pass, is drawn from the node's right side to its left.)
fn back_edges(n: usize, edges: &[&Edge], priority: &[i64]) -> Vec<bool> {
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, edge) in edges.iter().enumerate() {
        out_edges[edge.from].push(e);
    }
    let mut starts: Vec<usize> = (0..n).collect();
    starts.sort_by_key(|i| (priority.get(*i).copied().unwrap_or(0), *i));
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnPath,
        Done,
    }
    let mut state = vec![State::New; n];
    let mut reversed = vec![false; edges.len()];
    for start in starts {
        if state[start] != State::New {
            continue;
        }
        // Explicit stack of (node, next out-edge to try): no recursion on input depth.
        let mut stack = vec![(start, 0usize)];
        state[start] = State::OnPath;
        while let Some((v, next)) = stack.last_mut() {
            let v = *v;
            if let Some(&e) = out_edges[v].get(*next) {
                *next += 1;
                let w = edges[e].to;
                match state[w] {
                    State::OnPath => reversed[e] = true,
                    State::New => {
                        state[w] = State::OnPath;
                        stack.push((w, 0));
                    }
                    State::Done => {}
                }
            } else {
                state[v] = State::Done;
                stack.pop();
            }
        }
    }
    reversed
}

/// Each node's layer: the longest path to it from a source of the (acyclic) edges.
fn longest_path_layers(n: usize, dag: &[(usize, usize)]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(u, v) in dag {
        if u != v {
            indegree[v] += 1;
            out[u].push(v);
        }
    }
    let mut layer = vec![0usize; n];
    let mut ready: std::collections::VecDeque<usize> = (0..n).filter(|v| indegree[*v] == 0).collect();
    while let Some(u) = ready.pop_front() {
        for &v in &out[u] {
            layer[v] = layer[v].max(layer[u] + 1);
            indegree[v] -= 1;
            if indegree[v] == 0 {
                ready.push_back(v);
            }
        }
    }
    layer
}

/// The order of items within each rank with the fewest crossings found.
fn reduce_crossings(ranks: usize, items: &[(usize, Item, Size)], segments: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); ranks];
    for (i, (rank, _, _)) in items.iter().enumerate() {
        order[*rank].push(i);
    }
    let mut left: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    let mut right: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    for &(a, b) in segments {
        right[a].push(b);
        left[b].push(a);
    }
    let mut position = vec![0.0; items.len()];
    let index = |order: &Vec<Vec<usize>>, position: &mut Vec<f64>| {
        for rank in order {
            for (k, i) in rank.iter().enumerate() {
                position[*i] = k as f64;
            }
        }
    };
    index(&order, &mut position);
    let mut best = order.clone();
    let mut best_crossings = crossings(segments, &position, items);
    for sweep in 0..ORDER_SWEEPS {
        if best_crossings == 0 {
            break;
        }
        let downward = sweep % 2 == 0;
        let ranks_in_turn: Vec<usize> =
            if downward { (1..ranks).collect() } else { (0..ranks.saturating_sub(1)).rev().collect() };
        for r in ranks_in_turn {
            let neighbours = if downward { &left } else { &right };
            let mut keyed: Vec<(f64, usize)> = order[r]
                .iter()
                .map(|i| {
                    let ns = &neighbours[*i];
                    let key = if ns.is_empty() {
                        position[*i]
                    } else {
                        ns.iter().map(|j| position[*j]).sum::<f64>() / ns.len() as f64
                    };
                    (key, *i)
                })
                .collect();
            // Stable: equal barycenters keep their current order.
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            order[r] = keyed.into_iter().map(|(_, i)| i).collect();
            for (k, i) in order[r].iter().enumerate() {
                position[*i] = k as f64;
            }
        }
        let c = crossings(segments, &position, items);
        if c < best_crossings {
            best_crossings = c;
            best = order.clone();
        }
    }
    best
}

/// How many pairs of segments between the same two ranks cross.
fn crossings(segments: &[(usize, usize)], position: &[f64], items: &[(usize, Item, Size)]) -> usize {
    let mut by_rank: std::collections::BTreeMap<usize, Vec<(f64, f64)>> = std::collections::BTreeMap::new();
    for &(a, b) in segments {
        by_rank.entry(items[a].0).or_default().push((position[a], position[b]));
    }
    let mut total = 0;
    for segs in by_rank.values() {
        for (k, s) in segs.iter().enumerate() {
            total += segs[k + 1..].iter().filter(|t| (s.0 - t.0) * (s.1 - t.1) < 0.0).count();
        }
    }
    total
}

/// Each rank's column: (left x, width); and the drawing's width.
fn rank_columns(ranks: usize, items: &[(usize, Item, Size)]) -> (Vec<(f64, f64)>, f64) {
    let mut widths = vec![0.0f64; ranks];
    for (rank, _, size) in items {
        widths[*rank] = widths[*rank].max(size.w);
    }
    let mut x = MARGIN;
    let columns = widths
        .iter()
        .map(|w| {
            let column = (x, *w);
            x += w + RANK_GAP;
            column
        })
        .collect();
    (columns, x - RANK_GAP + MARGIN)
}

/// Centre y of every item: sweeps pulling each rank toward its neighbours' mean while
/// keeping its order and gaps, then the whole drawing moved to the top margin.
fn place_vertically(order: &[Vec<usize>], items: &[(usize, Item, Size)], segments: &[(usize, usize)]) -> Vec<f64> {
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    for &(a, b) in segments {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    let gap = |a: usize, b: usize| {
        let bare = |i: usize| matches!(items[i].1, Item::Point { label: false });
        let space = if bare(a) || bare(b) { POINT_GAP } else { BOX_GAP };
        (items[a].2.h + items[b].2.h) / 2.0 + space
    };
    let mut y = vec![0.0; items.len()];
    for rank in order {
        let mut at = 0.0;
        for (k, i) in rank.iter().enumerate() {
            if k > 0 {
                at += gap(rank[k - 1], *i);
            }
            y[*i] = at;
        }
    }
    for sweep in 0..PLACE_SWEEPS {
        let ranks: Vec<&Vec<usize>> =
            if sweep % 2 == 0 { order.iter().collect() } else { order.iter().rev().collect() };
        for rank in ranks {
            let wanted: Vec<f64> = rank
                .iter()
                .map(|i| {
                    let ns = &neighbours[*i];
                    if ns.is_empty() {
                        y[*i]
                    } else {
                        ns.iter().map(|j| y[*j]).sum::<f64>() / ns.len() as f64
                    }
                })
                .collect();
            let gaps: Vec<f64> = rank.windows(2).map(|w| gap(w[0], w[1])).collect();
            for (i, placed) in rank.iter().zip(ordered_closest(&wanted, &gaps)) {
                y[*i] = placed;
            }
        }
    }
    let top = items.iter().zip(&y).map(|((_, _, s), y)| y - s.h / 2.0).fold(f64::INFINITY, f64::min);
    let shift = if top.is_finite() { MARGIN - top } else { 0.0 };
    y.iter().map(|v| v + shift).collect()
}

/// Positions as close as possible (least squares) to `wanted`, in the same order, with
/// at least `gaps[k]` between the k-th and the next: pool-adjacent-violators on the
/// positions less their cumulative gaps.
pub fn ordered_closest(wanted: &[f64], gaps: &[f64]) -> Vec<f64> {
    let mut offset = Vec::with_capacity(wanted.len());
    let mut sum = 0.0;
    for k in 0..wanted.len() {
        if k > 0 {
            sum += gaps[k - 1];
        }
        offset.push(sum);
    }
    // Blocks of (mean, count) of the shifted values, kept non-decreasing.
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for (w, o) in wanted.iter().zip(&offset) {
        blocks.push((w - o, 1));
        while blocks.len() >= 2 && blocks[blocks.len() - 2].0 > blocks[blocks.len() - 1].0 {
            let (m2, c2) = blocks.pop().expect("two blocks");
            let (m1, c1) = blocks.pop().expect("two blocks");
            blocks.push(((m1 * c1 as f64 + m2 * c2 as f64) / (c1 + c2) as f64, c1 + c2));
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (mean, count) in blocks {
        for _ in 0..count {
            out.push(mean + offset[out.len()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Size {
        Size { w: 100.0, h: 30.0 }
    }

    fn edge(from: usize, to: usize) -> Edge {
        Edge { from, to, label: Size { w: 60.0, h: 20.0 } }
    }

    fn no_overlaps(d: &Drawing) {
        let boxes: Vec<Rect> =
            d.nodes.iter().copied().chain(d.edges.iter().map(|e| e.label).filter(|r| r.w > 0.0)).collect();
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
            }
            assert!(a.x >= 0.0 && a.y >= 0.0 && a.x + a.w <= d.width && a.y + a.h <= d.height, "{a:?} outside");
        }
    }

    #[test]
    fn ordered_closest_keeps_order_and_gaps() {
        // (wanted, gaps, expected)
        let cases: [(&[f64], &[f64], &[f64]); 4] = [
            (&[0.0, 100.0], &[10.0], &[0.0, 100.0]),
            (&[50.0, 50.0], &[10.0], &[45.0, 55.0]),
            (&[30.0, 0.0, 0.0], &[10.0, 10.0], &[0.0, 10.0, 20.0]),
            (&[], &[], &[]),
        ];
        for (wanted, gaps, expected) in cases {
            assert_eq!(ordered_closest(wanted, gaps), expected, "{wanted:?}");
        }
    }

    #[test]
    fn flows_go_left_to_right_and_cycles_are_broken_at_the_entry() {
        // 0 calls 1, 1 publishes to 2, 2 is consumed by 3, 3 replies through 4 to 0.
        let sizes = vec![node(); 5];
        let edges = [edge(0, 1), edge(1, 2), edge(2, 3), edge(3, 4), edge(4, 0)];
        let d = layout(&sizes, &edges, &[0, 1, 1, 1, 1]);
        let xs: Vec<f64> = d.nodes.iter().map(|r| r.x).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "left to right from the entry: {xs:?}");
        // The reply edge goes back: drawn from 4's left side to 0's right side.
        let back = &d.edges[4].points;
        assert!(back.first().unwrap().0 > back.last().unwrap().0);
        no_overlaps(&d);
        // Deterministic.
        let again = layout(&sizes, &edges, &[0, 1, 1, 1, 1]);
        assert_eq!(format!("{:?}", again.nodes), format!("{:?}", d.nodes));
    }

    #[test]
    fn crossings_are_removed_where_possible() {
        // Two sources, each feeding its own target; listed so the first guess crosses.
        let sizes = vec![node(); 4];
        let edges = [edge(0, 3), edge(1, 2)];
        let d = layout(&sizes, &edges, &[0, 0, 1, 1]);
        let (y0, y1) = (d.nodes[0].y, d.nodes[1].y);
        let (y3, y2) = (d.nodes[3].y, d.nodes[2].y);
        assert_eq!(y0 < y1, y3 < y2, "0→3 and 1→2 do not cross");
        no_overlaps(&d);
    }

    #[test]
    fn forty_nodes_with_fan_out_and_long_edges_do_not_overlap() {
        let sizes: Vec<Size> = (0..40).map(|i| Size { w: 80.0 + (i % 7) as f64 * 10.0, h: 36.0 }).collect();
        let mut edges = Vec::new();
        for i in 1..40 {
            edges.push(edge(i / 3, i));
            if i % 5 == 0 {
                edges.push(edge(0, i));
            }
            if i % 11 == 0 {
                edges.push(edge(i, i / 4));
            }
        }
        let d = layout(&sizes, &edges, &vec![0; 40]);
        no_overlaps(&d);
        for (e, r) in edges.iter().zip(&d.edges) {
            let (from, to) = (d.nodes[e.from], d.nodes[e.to]);
            let (start, end) = (r.points[0], *r.points.last().unwrap());
            assert!(
                (start.0 - from.x).abs() < 1e-6 || (start.0 - (from.x + from.w)).abs() < 1e-6,
                "starts at its source"
            );
            assert!((end.0 - to.x).abs() < 1e-6 || (end.0 - (to.x + to.w)).abs() < 1e-6, "ends at its target");
        }
    }
}
