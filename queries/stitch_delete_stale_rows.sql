-- Many rewritten flows' rows at once, returning what they added to flow_edge_slots.
DELETE FROM flows WHERE flow_id IN (SELECT flow_id FROM stale_flows) RETURNING chain, last_commit_seq, edges;
