-- Every trace's flow id and flow start, as last written.
SELECT ft.flow_id, ft.trace_id, f.start_unix_nano
FROM flow_traces ft JOIN flows f ON f.flow_id = ft.flow_id;
