use super::*;

#[test]
fn never_misses_a_key_and_rarely_claims_one() {
    let mut f = JoinFilter::sized(100_000, usize::MAX);
    let key = |i: i64| crate::flows::ids::trace_hash(&format!("{i:032x}"));
    for i in 0..100_000 {
        f.insert(key(i));
    }
    assert!((0..100_000).all(|i| f.may_contain(key(i))), "no false negative");
    let claimed = (100_000..200_000).filter(|i| f.may_contain(key(*i))).count();
    assert!(claimed < 200, "about 0.05% false positives, got {claimed} of 100,000");
    assert!(!f.overfull());
    assert_eq!(f.keys(), 100_000);
}

#[test]
fn a_capped_filter_stays_within_its_bytes_and_still_misses_nothing() {
    let mut f = JoinFilter::sized(10_000_000, 1 << 16);
    assert_eq!(f.bytes(), 1 << 16);
    for i in 0..300_000 {
        f.insert(i * 7919);
    }
    assert!((0..300_000).all(|i| f.may_contain(i * 7919)));
    assert!(!f.overfull(), "sized for more than it holds");
    let mut small = JoinFilter::sized(0, usize::MAX);
    assert_eq!(small.bytes(), MIN_BITS / 8);
    for i in 0..(MIN_BITS / BITS_PER_KEY * 2 + 1) as i64 {
        small.insert(i);
    }
    assert!(small.overfull());
}

/// The two tables a build reads (through the `join_hashes` view), holding what
/// `inserts` writes.
fn written(inserts: &str) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE flow_traces (trace_key BIGINT, updated_unix_nano BIGINT);
         CREATE TABLE flow_join_keys (key BIGINT, updated_unix_nano BIGINT);",
    )
    .unwrap();
    conn.execute_batch(include_str!("../../../../queries/migrations/021_join_hashes.sql")).unwrap();
    conn.execute_batch(inserts).unwrap();
    conn
}

/// Waits (bounded) until the build running has finished.
fn await_build(filters: &JoinFilters) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !filters.building.as_ref().is_none_or(Build::finished) {
        assert!(std::time::Instant::now() < deadline, "the build did not finish within a minute");
        std::thread::yield_now();
    }
}

#[test]
fn a_build_runs_beside_the_stitcher_and_misses_nothing_written_meanwhile() {
    // 1.2 M hashes written at 1,000 s, one at 1,500 s, one before the window.
    let conn = written(
        "INSERT INTO flow_traces SELECT range, 1000000000000 + range * 1000 FROM range(1200000);
         INSERT INTO flow_join_keys VALUES (-7, 1500000000000), (-8, 10000000000);",
    );
    let (now, window) = (2200 * 1_000_000_000i64, 2000 * 1_000_000_000i64);
    let mut filters = JoinFilters::default();
    filters.advance(&conn, now, window, usize::MAX).unwrap();
    assert!(filters.building.is_some() && filters.current.is_none());
    assert!(filters.may_contain(-99), "no filter yet: every lookup goes to the file");
    assert_eq!(filters.last_build_seconds(), 0.0);
    // Written while the build reads the file: kept for it.
    filters.insert(-1000);
    filters.insert(-1001);
    await_build(&filters);
    filters.insert(-1002);
    filters.advance(&conn, now + 1, window, usize::MAX).unwrap();
    assert!(filters.current.is_some() && filters.building.is_none());
    assert!(filters.last_build_seconds() > 0.0, "how long the build took is reported");
    assert!((0..1_200_000).all(|h| filters.may_contain(h)) && filters.may_contain(-7));
    assert!((-1002..=-1000).all(|h| filters.may_contain(h)), "hashes written during the build");
    let claimed = (2_000_000..2_100_000).filter(|h| filters.may_contain(*h)).count();
    assert!(claimed < 2_000, "{claimed} of 100,000 never written");
    // In use, it stays until the window has moved by half; then it is rebuilt from
    // what the window still holds, and the one in use answers until then.
    filters.advance(&conn, now + window / 4, window, usize::MAX).unwrap();
    assert!(filters.building.is_none() && filters.started == now);
    filters.advance(&conn, now + window, window, usize::MAX).unwrap();
    assert!(filters.building.is_some() && filters.started == now + window);
    assert!(filters.may_contain(5), "the filter in use still answers");
    await_build(&filters);
    filters.advance(&conn, now + window + 1, window, usize::MAX).unwrap();
    assert!(filters.building.is_none());
    let kept = (0..100_000).filter(|h| filters.may_contain(*h)).count();
    assert!(kept < 2_000, "hashes that left the window are dropped: {kept} of 100,000 kept");
}

#[test]
fn a_build_dropped_unfinished_is_stopped_and_its_thread_gone() {
    let conn = written("INSERT INTO flow_traces SELECT range, 1000 + range FROM range(3000000);");
    let mut filters = JoinFilters::default();
    filters.advance(&conn, 1 << 40, 1 << 40, usize::MAX).unwrap();
    let cancel = Arc::clone(&filters.building.as_ref().expect("a build started").cancel);
    drop(filters);
    assert!(cancel.load(Ordering::Relaxed), "told to stop");
    // The thread's own handle (and its connection) went with it: the drop joined it.
    assert_eq!(Arc::strong_count(&cancel), 1);
}

#[test]
fn a_build_left_behind_by_writes_is_dropped_and_started_again() {
    let conn = written("INSERT INTO flow_traces SELECT range, 1000 + range FROM range(3000000);");
    let mut filters = JoinFilters::default();
    // 64 bytes: a build keeps at most 8 hashes written meanwhile.
    filters.advance(&conn, 1 << 40, 1 << 40, 64).unwrap();
    let cancel = Arc::clone(&filters.building.as_ref().expect("a build started").cancel);
    for key in 0..8 {
        filters.insert(-key);
    }
    assert!(filters.building.is_some(), "within its bound");
    filters.insert(-8);
    assert!(filters.building.is_none() && cancel.load(Ordering::Relaxed), "dropped and stopped");
    assert!(filters.may_contain(12_345), "no filter yet: every lookup goes to the file");
    filters.advance(&conn, (1 << 40) + 1, 1 << 40, 64).unwrap();
    assert!(filters.building.is_some(), "the next round starts another");
}

#[test]
fn a_saved_filter_is_taken_back_whole_and_only_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.duckdb.join-filter");
    assert!(!JoinFilters::default().save(&path, 7).unwrap(), "no filter in use: nothing saved");
    assert!(!path.exists());
    let mut filter = JoinFilter::sized(50_000, usize::MAX);
    filter.covers_from = 1000;
    let mut filters = JoinFilters { current: Some(filter), started: 1234, ..Default::default() };
    for key in 0..50_000 {
        filters.insert(key * 31);
    }
    assert!(filters.save(&path, 7).unwrap());
    let back = JoinFilters::load(&path, 7, usize::MAX, 1000).unwrap();
    assert_eq!(back.started, 1234);
    assert!(back.building.is_none());
    let (a, b) = (filters.current.as_ref().unwrap(), back.current.as_ref().unwrap());
    assert_eq!(
        (a.words.as_slice(), a.mask, a.planned, a.inserted, a.covers_from),
        (b.words.as_slice(), b.mask, b.planned, b.inserted, b.covers_from)
    );
    assert!(back.restored() && !filters.restored());
    // A window that grew since: hashes written before 1000 were never put in.
    assert!(matches!(
        JoinFilters::load(&path, 7, usize::MAX, 999),
        Err(SavedFilterError::Window { covers_from: 1000, needed_from: 999 })
    ));
    assert!((0..50_000).all(|key| back.may_contain(key * 31)));
    // Another run's file, a filter over the budget, a truncated or foreign file.
    assert!(matches!(
        JoinFilters::load(&path, 8, usize::MAX, 1000),
        Err(SavedFilterError::Token { found: 7, expected: 8 })
    ));
    assert!(matches!(JoinFilters::load(&path, 7, 1 << 16, 1000), Err(SavedFilterError::Size { .. })));
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
    assert!(matches!(JoinFilters::load(&path, 7, usize::MAX, 1000), Err(SavedFilterError::Size { .. })));
    let mut huge = whole[..56].to_vec();
    huge[48..56].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&path, &huge).unwrap();
    assert!(
        matches!(JoinFilters::load(&path, 7, usize::MAX, 1000), Err(SavedFilterError::Size { .. })),
        "no allocation from a header"
    );
    std::fs::write(&path, b"not a filter at all, but long enough").unwrap();
    assert!(matches!(JoinFilters::load(&path, 7, usize::MAX, 1000), Err(SavedFilterError::Format)));
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(JoinFilters::load(&path, 7, usize::MAX, 1000), Err(SavedFilterError::Io(_))));
}

#[test]
fn sizes() {
    // Sixteen bits a key, rounded up to a power of two.
    assert_eq!(JoinFilter::sized(1_000_000, usize::MAX).bytes(), (1 << 24) / 8);
    assert_eq!(JoinFilter::sized(1_100_000, usize::MAX).bytes(), (1 << 25) / 8);
    assert_eq!(JoinFilter::sized(usize::MAX, 1 << 20).bytes(), 1 << 20);
}
