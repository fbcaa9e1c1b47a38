-- The join hashes written in [$1, $2), the join window, for the stitcher's filter of
-- them (src/flows/stitch/join_filter.rs).
SELECT key FROM join_hashes WHERE updated_unix_nano >= $1 AND updated_unix_nano < $2;
