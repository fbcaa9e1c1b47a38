-- Names exported under a label of their own (at most the series limit per kind).
SELECT kind, name, label FROM export_labels;
