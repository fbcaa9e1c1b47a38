DELETE FROM stitch_state WHERE name = 'lake_snapshot';
INSERT INTO stitch_state VALUES ('lake_snapshot', $1);
