-- A name given a label of its own: the name.
INSERT INTO export_labels VALUES ($1, $2, $2) ON CONFLICT DO NOTHING;
