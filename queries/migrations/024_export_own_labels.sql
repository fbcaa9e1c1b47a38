-- Only names exported under a label of their own are remembered: once the series limit
-- is reached every later name is `other` anyway, and remembering each of them made the
-- table (and every roll-up's reading of it) grow with the number of names ever seen.
DELETE FROM export_labels WHERE label = 'other';
