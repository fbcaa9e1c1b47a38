-- When snapshot $1 was committed, unix microseconds (none once it is expired).
SELECT epoch_us(snapshot_time) FROM lake.snapshots() WHERE snapshot_id = $1
