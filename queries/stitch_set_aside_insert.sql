-- Records a commit the stitcher sets aside: $1 the commit, $2 why, $3 when.
INSERT INTO stitch_set_aside VALUES ($1, $2, $3);
