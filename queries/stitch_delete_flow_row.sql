-- A rewritten flow's row, returning what it added to flow_edge_slots (src/flows/edges.rs).
DELETE FROM flows WHERE flow_id = $1 RETURNING chain, last_commit_seq, edges;
