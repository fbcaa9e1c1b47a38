DELETE FROM stitch_keys;
DELETE FROM found_flows;
