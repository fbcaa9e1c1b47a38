-- Two more entries of the stitcher's state (src/flows/stitch/):
-- * the token of the join filter saved beside the database file at the last clean stop
--   (src/flows/stitch/join_filter.rs): 0 when there is none to take back. A start clears it
--   before writing anything, so a saved filter is taken back by the next start only;
-- * the rows `flow_edge_slots` held after its last compaction, so that a restart knows
--   how much has been appended since. A start used to take the table as it found it for
--   compacted: a file restarted now and then grew to nine rows per cell, and every page
--   reading the sums read nine times the rows. 0 here: the first start compacts.
INSERT INTO stitch_state VALUES ('join_filter_saved', 0), ('edge_slots_compacted_rows', 0);
