//! Nothing stored can stop stitching: the rounds attempted from one watermark are counted
//! in `stitch_state` before each is made, so a round that fails, and one that stops the
//! whole process, both count. After a few, rounds take one commit at a time; when one
//! commit still fails, it is set aside (`stitch_set_aside`, shown on `/api/stitching` and
//! `/metrics`) and stitching goes on past it. Its rows stay stored.

use duckdb::{params, Connection};

use crate::flows::HashMap;
use crate::store::{in_transaction, StoreError};
use crate::text::now_nanos;

/// Attempts from one watermark after which rounds take one commit.
const NARROW_AFTER: i64 = 2;
/// Attempts from one watermark after which its next commit is set aside.
const SET_ASIDE_AFTER: i64 = 4;

/// What to do with the commits after a watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Stitch up to this commit.
    Stitch(i64),
    /// Skip this commit: it failed alone too often.
    SetAside(i64),
}

/// Rounds attempted from one watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attempts {
    from: i64,
    count: i64,
}

impl Attempts {
    pub fn open(state: &HashMap<String, i64>) -> Attempts {
        Attempts {
            from: state.get("attempt_from").copied().unwrap_or(-1),
            count: state.get("attempts").copied().unwrap_or(0),
        }
    }

    /// The next round from `watermark`, which would stitch up to `upper`: one more attempt.
    pub fn next(&mut self, watermark: i64, upper: i64) -> Next {
        if self.from == watermark {
            self.count += 1;
        } else {
            *self = Attempts { from: watermark, count: 1 };
        }
        match self.count {
            n if n > SET_ASIDE_AFTER => Next::SetAside(watermark + 1),
            n if n > NARROW_AFTER => Next::Stitch(upper.min(watermark + 1)),
            _ => Next::Stitch(upper),
        }
    }

    /// Saves the count before the round is made.
    pub fn save(&self, conn: &Connection) -> Result<(), StoreError> {
        in_transaction(conn, || {
            let mut set = conn.prepare_cached(include_str!("../../../queries/stitch_state_set.sql"))?;
            set.execute(params!["attempt_from", self.from])?;
            set.execute(params!["attempts", self.count])?;
            Ok(())
        })
    }
}

/// Records a commit set aside.
pub(super) fn set_aside(conn: &Connection, commit: i64, reason: &str) -> Result<(), StoreError> {
    tracing::error!(commit, reason, "a commit failed stitching again and again; set aside, stitching goes on");
    conn.execute(include_str!("../../../queries/stitch_set_aside_insert.sql"), params![commit, reason, now_nanos()])?;
    Ok(())
}

/// How many commits have been set aside in all.
pub(super) fn set_aside_total(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(include_str!("../../../queries/stitch_set_aside_count.sql"), [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_aside_commits_are_recorded_with_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("a.duckdb")).unwrap();
        let conn = store.connect().unwrap();
        set_aside(&conn, 7, "database error: Catalog Error: Table with name flow_dead_letters does not exist!")
            .unwrap();
        assert_eq!(set_aside_total(&conn).unwrap(), 1);
        let (seq, reason): (i64, String) = conn
            .query_row(include_str!("../../../queries/stitch_set_aside_recent.sql"), [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((seq, reason.contains("flow_dead_letters")), (7, true));
    }

    #[test]
    fn rounds_narrow_to_one_commit_then_set_it_aside_and_start_over_past_it() {
        let mut a = Attempts { from: -1, count: 0 };
        // (watermark, upper of a full round, what to do)
        let steps = [
            (10, 50, Next::Stitch(50)),
            (10, 50, Next::Stitch(50)),
            (10, 50, Next::Stitch(11)),
            (10, 50, Next::Stitch(11)),
            (10, 50, Next::SetAside(11)),
            (11, 50, Next::Stitch(50)), // past it: full rounds again
            (50, 60, Next::Stitch(60)),
        ];
        for (n, (watermark, upper, want)) in steps.into_iter().enumerate() {
            assert_eq!(a.next(watermark, upper), want, "step {n}");
        }
    }
}
