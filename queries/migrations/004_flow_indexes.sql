-- Point lookups by flow id and trace id (opening a flow, search by trace id, replacing a
-- flow's rows when it changes) use these ART indexes instead of scanning tables that hold
-- a row per flow or per trace. DuckDB loads index nodes lazily, so they cost memory only
-- for the parts that are used.
CREATE INDEX flows_flow_id ON flows (flow_id);
CREATE INDEX flow_traces_flow_id ON flow_traces (flow_id);
CREATE INDEX flow_traces_trace_id ON flow_traces (trace_id);
CREATE INDEX flow_hops_flow_id ON flow_hops (flow_id);
CREATE INDEX flow_retries_flow_id ON flow_retries (flow_id);
CREATE INDEX flow_dead_letters_flow_id ON flow_dead_letters (flow_id);
