-- Expires the snapshots committed before unix microsecond $1; returns one row each.
CALL ducklake_expire_snapshots('lake', older_than => CAST(make_timestamp($1) AS TIMESTAMPTZ))
