-- The lake's oldest kept snapshot and its latest.
SELECT min(snapshot_id), max(snapshot_id) FROM lake.snapshots()
