-- Tail attribution for chain $1, flows starting in [$2, $3): the tail (slower than the
-- chain's p95) and the typical (p40-p60), at most $4 flows of each (a deterministic
-- sample by flow id), each flow with its steps (queries/migrations/013_flow_steps.sql).
WITH f AS (
    SELECT flow_id, duration_ms FROM flows
    WHERE chain = $1 AND start_unix_nano >= $2 AND start_unix_nano < $3
),
q AS (
    SELECT quantile_cont(duration_ms, 0.4) AS p40, quantile_cont(duration_ms, 0.6) AS p60,
           quantile_cont(duration_ms, 0.95) AS p95
    FROM f
),
grouped AS (
    SELECT f.flow_id, f.duration_ms, f.duration_ms > q.p95 AS tail
    FROM f, q
    WHERE f.duration_ms > q.p95 OR f.duration_ms BETWEEN q.p40 AND q.p60
),
picked AS (
    SELECT * FROM grouped
    QUALIFY row_number() OVER (PARTITION BY tail ORDER BY hash(flow_id), flow_id) <= $4
),
steps AS (
    SELECT flow_id, kind, step, ms FROM flow_steps
    WHERE chain = $1 AND flow_start_unix_nano >= $2 AND flow_start_unix_nano < $3
)
SELECT p.tail, p.flow_id, s.kind, s.step, s.ms
FROM picked p LEFT JOIN steps s USING (flow_id)
ORDER BY p.tail, p.flow_id, s.kind, s.step;
