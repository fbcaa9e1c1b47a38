-- How many commits the stitcher has set aside in all.
SELECT count(*) FROM stitch_set_aside;
