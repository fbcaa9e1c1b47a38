-- When the earliest of snapshots $1..$2 was committed (unix ns): when its rows were received.
SELECT min(epoch_ns(snapshot_time)) FROM lake.snapshots() WHERE snapshot_id BETWEEN $1 AND $2
