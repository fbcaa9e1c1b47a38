-- When the oldest commit not yet stitched (above $1, up to $2) was received.
SELECT min(committed_unix_nano) FROM commits WHERE commit_seq > $1 AND commit_seq <= $2;
