DELETE FROM stitch_traces;
