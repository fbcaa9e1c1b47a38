-- The commits the stitcher set aside most recently (see migration 023).
SELECT commit_seq, reason, set_aside_unix_nano
FROM stitch_set_aside
ORDER BY set_aside_unix_nano DESC
LIMIT 20;
