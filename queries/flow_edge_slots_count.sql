SELECT count(*) FROM flow_edge_slots;
