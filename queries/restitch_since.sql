-- Starts a restitch of the commits received since $2 (unix ns): the stitcher goes back
-- to just before the first of them and rewrites every flow they touch, until it reaches
-- $1, the last commit now (src/flows/restitch.rs). Each statement numbers its
-- parameters from $1 (see `store::execute_statements`).
UPDATE stitch_state SET value = $1 WHERE name = 'restitch_to';
UPDATE stitch_state SET value = (
    SELECT coalesce(min(commit_seq) - 1, $1) FROM commits WHERE committed_unix_nano >= $2
) WHERE name IN ('stitched_seq', 'restitch_from');
