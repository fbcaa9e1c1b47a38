-- The spans of traces whose flow was evicted from the stitcher's memory. None starts
-- before $1 (their flows' earliest start), so DuckDB's zone maps skip older row groups.
SELECT * FROM span_facts
WHERE start_unix_nano >= $1 AND commit_seq <= $2
  AND trace_id IN (SELECT trace_id FROM stitch_traces);
