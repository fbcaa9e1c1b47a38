-- Starts a restitch of everything stored: the flow tables are emptied and the stitcher
-- starts again from the first commit, until it reaches $1, the last commit now
-- (src/flows/restitch.rs).
DELETE FROM flows;
DELETE FROM flow_traces;
DELETE FROM flow_join_keys;
DELETE FROM flow_hops;
DELETE FROM flow_retries;
DELETE FROM flow_dead_letters;
DELETE FROM flow_edge_slots;
DELETE FROM join_hash_runs;
DELETE FROM join_hash_run_list;
UPDATE stitch_state SET value = 0 WHERE name IN ('stitched_seq', 'restitch_from');
UPDATE stitch_state SET value = $1 WHERE name = 'restitch_to';
