SELECT name, value FROM stitch_state;
