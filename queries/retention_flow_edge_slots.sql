-- Map sums of flows whose last span was received up to commit $1 (see migration 014).
DELETE FROM flow_edge_slots WHERE commit_seq <= $1;
