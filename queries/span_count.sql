SELECT count(*) FROM spans;
