//! Spreading a round's per-flow work over threads. Once the joiner has decided which
//! traces make each flow, flows are independent of each other: each is worked on by
//! whichever thread claims it next, and the results come back in the order the flows were
//! given, so a round's outcome is the same whatever the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Each thread gets at least this many items: starting one costs about a flow's analysis.
const MIN_PER_THREAD: usize = 2;

/// `f` of every item, on up to `threads` threads (the calling one among them), in the
/// items' order.
pub(super) fn map_in_order<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { return done };
            done.push((i, f(item)));
        }
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        for h in helpers {
            // A panic in `f` is the caller's to handle; it is re-raised here.
            all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        all
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_threads() {
        for (items, threads) in [(0usize, 4usize), (5, 4), (100, 1), (100, 3), (1000, 8)] {
            let input: Vec<usize> = (0..items).collect();
            let out = map_in_order(&input, threads, |x| x * 2);
            assert_eq!(out, input.iter().map(|x| x * 2).collect::<Vec<_>>(), "{items} items on {threads} threads");
        }
    }
}
