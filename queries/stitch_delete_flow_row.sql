-- A rewritten flow's row (flow $1 as written at $2: zone maps on the write time find it
-- without an index), returning what it added to flow_edge_slots (src/flows/edges.rs).
DELETE FROM flows WHERE updated_unix_nano = $2 AND flow_id = $1::UUID RETURNING chain, last_commit_seq, edges, start_unix_nano;
