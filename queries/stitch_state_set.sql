UPDATE stitch_state SET value = $2 WHERE name = $1;
