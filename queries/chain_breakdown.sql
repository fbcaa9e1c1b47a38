-- Tail attribution for chain $1, flows starting in [$2, $3): the tail (slower than the
-- chain's p95) and the typical (p40-p60), at most $4 flows of each (a deterministic
-- sample by flow id), each flow with its steps (`flows.steps`, JSON, migration 013).
WITH f AS (
    SELECT flow_id, duration_ms, steps FROM flows
    WHERE chain = $1 AND start_unix_nano >= $2 AND start_unix_nano < $3
),
q AS (
    SELECT quantile_cont(duration_ms, 0.4) AS p40, quantile_cont(duration_ms, 0.6) AS p60,
           quantile_cont(duration_ms, 0.95) AS p95
    FROM f
)
SELECT f.duration_ms > q.p95 AS tail, f.flow_id, coalesce(f.steps, '[]')
FROM f, q
WHERE f.duration_ms > q.p95 OR f.duration_ms BETWEEN q.p40 AND q.p60
QUALIFY row_number() OVER (PARTITION BY f.duration_ms > q.p95 ORDER BY hash(f.flow_id), f.flow_id) <= $4
ORDER BY tail, f.flow_id;
