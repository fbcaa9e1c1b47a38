DELETE FROM stitch_keys;
DELETE FROM stitch_hits;
DELETE FROM found_flows;
