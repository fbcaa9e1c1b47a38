-- Names exported under a label of their own (at most the series limit per kind); their
-- label is the name itself.
SELECT kind, name FROM export_labels;
