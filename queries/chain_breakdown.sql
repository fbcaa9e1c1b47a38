-- Tail attribution for chain $1, flows starting in [$2, $3): the tail (slower than $4,
-- the chain's p95) and the typical (between $5 and $6, its p40 and p60), each flow with
-- its steps (`flows.steps`, JSON, migration 013). The thresholds come from the chain's
-- sums (src/flows/chain_sums.rs), so the filters reach the scan and only kept flows'
-- steps are read. A busy chain is read in a sample of the table's vectors (2,048 rows
-- each, so spread evenly in time): SAMPLE_PERCENT is replaced by one of a fixed list of
-- constants (src/flows/queries/chains.rs), as DuckDB takes no parameter there. Each
-- group is then thinned by flow-id hash, one flow in $7 (tail) or $8 (typical) kept, to
-- about twice the sample, and at most $9 of each are taken by hash.
SELECT tail, hex_id(flow_id), coalesce(steps, '[]')
FROM (
    SELECT duration_ms > $4 AS tail, flow_id, steps
    FROM flows TABLESAMPLE SAMPLE_PERCENT PERCENT (system, 7)
    WHERE chain = $1 AND start_unix_nano >= $2 AND start_unix_nano < $3
      AND (duration_ms > $4 OR duration_ms BETWEEN $5 AND $6)
      AND hash(flow_id) % (CASE WHEN duration_ms > $4 THEN $7 ELSE $8 END)::UBIGINT = 0
)
QUALIFY row_number() OVER (PARTITION BY tail ORDER BY hash(flow_id), flow_id) <= $9
ORDER BY tail, flow_id;
