-- The chain pages read per-minute sums instead of every flow (src/flows/chain_sums.rs):
-- each flow now adds `flow`, `service_time`, `queue_wait` and `retry_delay` cells to
-- `flow_edge_slots` beside its edges (src/flows/edges.rs). Flows stored before this have
-- none, so a background restitch from the first commit rewrites them in place (as
-- `restitch --since` does): the pages keep every flow meanwhile, say that a restitch is
-- running, and their chain figures fill in as it goes.
UPDATE stitch_state SET value = (SELECT coalesce(max(commit_seq), 0) FROM commits) WHERE name = 'restitch_to';
UPDATE stitch_state SET value = 0 WHERE name IN ('stitched_seq', 'restitch_from');
