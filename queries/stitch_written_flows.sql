SELECT flow_id, trace_id FROM flow_traces;
