-- Commits the stitcher could not stitch, set aside so that stitching goes on: a commit
-- whose rounds failed (or stopped the process) again and again, even alone, is recorded
-- here with why and skipped; its rows stay stored. `stitch_state` counts the attempts made
-- from one watermark, written before each round, so a round that stops the process counts
-- too (src/flows/stitch/attempts.rs).
CREATE TABLE stitch_set_aside (
    commit_seq          BIGINT  NOT NULL,
    reason              VARCHAR NOT NULL,
    set_aside_unix_nano BIGINT  NOT NULL
);
INSERT INTO stitch_state VALUES ('attempt_from', -1), ('attempts', 0);
