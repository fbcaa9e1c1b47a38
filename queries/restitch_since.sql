-- Starts a restitch of the commits received since $1 (unix ns): the stitcher goes back
-- to just before the first of them and rewrites every flow they touch, until it reaches
-- $2, the last commit now (src/flows/restitch.rs).
UPDATE stitch_state SET value = (
    SELECT coalesce(min(commit_seq) - 1, $2) FROM commits WHERE committed_unix_nano >= $1
) WHERE name IN ('stitched_seq', 'restitch_from');
UPDATE stitch_state SET value = $2 WHERE name = 'restitch_to';
