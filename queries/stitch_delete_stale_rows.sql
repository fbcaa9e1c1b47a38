-- Many rewritten flows' rows at once ($1: the earliest of their writes, so zone maps skip
-- older rows), returning what they added to flow_edge_slots.
DELETE FROM flows WHERE updated_unix_nano >= $1 AND flow_id IN (SELECT flow_id FROM stale_flows)
RETURNING chain, last_commit_seq, edges, start_unix_nano;
