-- Local commit $1 holds what lake snapshots $2..$3 added.
INSERT INTO lake_pulls VALUES ($1, $2, $3)
