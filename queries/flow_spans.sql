-- The spans of a flow, every column (the page shows attributes, events and resources;
-- the stitcher's reader finds its columns among them by name).
-- Every span of a flow starts within the flow's bounds ($2, $3), and spans arrive roughly
-- in time order, so that range lets DuckDB skip most row groups before matching trace ids.
-- $4 is the flow span cap + 1, to tell a truncated flow; $5 when the flow was written.
WITH flow AS (
    SELECT *
    FROM spans
    WHERE start_unix_nano BETWEEN $2 AND $3
      AND trace_id IN (SELECT hex_id(trace_id) FROM flow_traces WHERE updated_unix_nano = $5 AND flow_id = $1::UUID)
    ORDER BY start_unix_nano, trace_id, span_id
    LIMIT $4
),
flow_resources AS (
    SELECT r.resource_id, r.commit_seq, any_value(r.attributes) AS resource_attributes
    FROM resources r
    WHERE r.commit_seq IN (SELECT commit_seq FROM flow) AND r.resource_id IN (SELECT resource_id FROM flow)
    GROUP BY ALL
)
SELECT flow.*, flow_resources.resource_attributes
FROM flow LEFT JOIN flow_resources USING (resource_id, commit_seq)
ORDER BY start_unix_nano, trace_id, span_id;
