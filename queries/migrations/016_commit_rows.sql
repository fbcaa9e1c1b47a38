-- How many rows the stitcher reads (spans, span links, log records) each commit added,
-- so that a stitching round takes a bounded number of rows, not of commits: a commit
-- holds anything from one span to `--flush-rows`, and a round of 50 large commits read
-- from the file held half a million spans in memory at once. NULL for commits made
-- before this migration; those rounds are bounded by commit count alone.
ALTER TABLE commits ADD COLUMN stitch_rows BIGINT;
