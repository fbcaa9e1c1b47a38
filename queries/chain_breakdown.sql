-- Tail attribution for chain $1, flows starting in [$2, $3): the tail (slower than the
-- chain's p95) and the typical (p40-p60), at most $4 flows of each (a deterministic
-- sample by flow id), each flow with its steps (`flows.steps`, JSON, migration 013).
-- Each group is first thinned by flow-id hash to about twice the sample, so that the
-- ranking sorts thousands of rows, not the whole group, on a busy chain.
WITH f AS (
    SELECT flow_id, duration_ms, steps FROM flows
    WHERE chain = $1 AND start_unix_nano >= $2 AND start_unix_nano < $3
),
q AS (
    SELECT quantile_cont(duration_ms, 0.4) AS p40, quantile_cont(duration_ms, 0.6) AS p60,
           quantile_cont(duration_ms, 0.95) AS p95, count(*) AS n
    FROM f
),
g AS (
    SELECT f.duration_ms > q.p95 AS tail, f.flow_id, f.steps,
           -- expected group size over twice the sample: keep one flow in `thin`
           greatest(1, (q.n * CASE WHEN f.duration_ms > q.p95 THEN 0.05 ELSE 0.2 END / ($4 * 2))::UBIGINT) AS thin
    FROM f, q
    WHERE f.duration_ms > q.p95 OR f.duration_ms BETWEEN q.p40 AND q.p60
)
SELECT tail, flow_id, coalesce(steps, '[]')
FROM g
WHERE hash(flow_id) % thin = 0
QUALIFY row_number() OVER (PARTITION BY tail ORDER BY hash(flow_id), flow_id) <= $4
ORDER BY tail, flow_id;
