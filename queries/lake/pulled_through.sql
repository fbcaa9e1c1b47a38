-- The last lake snapshot whose rows are in the local file (none yet: no row).
SELECT value FROM stitch_state WHERE name = 'lake_snapshot'
