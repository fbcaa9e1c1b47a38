-- When commit $1 happened (unix ns $2), and how many rows of it the stitcher reads ($3).
INSERT INTO commits (commit_seq, committed_unix_nano, stitch_rows) VALUES ($1, $2, $3);
