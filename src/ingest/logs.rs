//! Log records into `logs` rows. Logs matter to flows because applications log the
//! correlation id (an order id, an AMQP correlation id) where no span carries it.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::attributes::{self, write_json_object, write_json_value};
use super::{append_hex, check_id, nanos, CorrelationKeys, Flattened, RequestResources, ResourceContext};
use crate::store::tables::LogRows;

pub(crate) fn flatten(req: &ExportLogsServiceRequest, correlation: &CorrelationKeys) -> Flattened {
    let mut out = Flattened::default();
    let mut rows = LogRows::new();
    let received = crate::text::now_nanos();
    let mut resources = RequestResources::default();
    for rl in &req.resource_logs {
        let resource = ResourceContext::new(rl.resource.as_ref());
        let accepted_before = out.accepted;
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                match validate(record, received) {
                    Ok((time, observed)) => {
                        push(&mut rows, &resource, record, time, observed, correlation);
                        out.accepted += 1;
                    }
                    Err(why) => out.reject(|| why),
                }
            }
        }
        // Stored only when a row of this request refers to it.
        if out.accepted > accepted_before {
            resources.add(&resource);
        }
    }
    out.batches.extend(rows.finish());
    out.batches.extend(resources.finish());
    out
}

/// Log records may leave either time unset; the spec says to fall back to the observed
/// time, and we fall back to the time we received it.
fn validate(record: &LogRecord, received: i64) -> Result<(i64, i64), String> {
    check_id("trace_id", &record.trace_id, 16, false)?;
    check_id("span_id", &record.span_id, 8, false)?;
    let observed = match record.observed_time_unix_nano {
        0 => received,
        t => nanos(t).ok_or("observed_time_unix_nano is out of range")?,
    };
    let time = match record.time_unix_nano {
        0 => observed,
        t => nanos(t).ok_or("time_unix_nano is out of range")?,
    };
    Ok((time, observed))
}

fn push(
    rows: &mut LogRows,
    resource: &ResourceContext<'_>,
    record: &LogRecord,
    time: i64,
    observed: i64,
    correlation: &CorrelationKeys,
) {
    rows.time_unix_nano.append_value(time);
    rows.observed_time_unix_nano.append_value(observed);
    rows.service_name.append_value(&resource.service_name);
    rows.severity_number.append_value(record.severity_number);
    rows.severity_text
        .append_option((!record.severity_text.is_empty()).then(|| attributes::bounded(&record.severity_text)));
    // A plain string body is stored as the text itself; structured bodies as JSON.
    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        None => rows.body.append_null(),
        Some(Value::StringValue(s)) => rows.body.append_value(s),
        Some(_) => {
            write_json_value(&mut rows.body, record.body.as_ref());
            rows.body.append_value("");
        }
    }
    rows.event_name.append_option((!record.event_name.is_empty()).then(|| attributes::bounded(&record.event_name)));
    append_hex(&mut rows.trace_id, &record.trace_id);
    append_hex(&mut rows.span_id, &record.span_id);
    write_json_object(&mut rows.attributes, &record.attributes);
    rows.attributes.append_value("");
    rows.resource_id.append_value(resource.id);
    rows.correlation_id.append_option(correlation.find(&record.attributes));
    rows.message_id.append_option(attributes::text_of(&record.attributes, attributes::keys::MESSAGE_ID));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_fall_back_and_ids_are_checked() {
        let table: Vec<(LogRecord, Result<(i64, i64), &str>)> = vec![
            (LogRecord { time_unix_nano: 5, observed_time_unix_nano: 6, ..Default::default() }, Ok((5, 6))),
            (LogRecord { observed_time_unix_nano: 6, ..Default::default() }, Ok((6, 6))),
            (LogRecord::default(), Ok((99, 99))),
            (LogRecord { trace_id: vec![1; 16], span_id: vec![1; 8], ..Default::default() }, Ok((99, 99))),
            (LogRecord { trace_id: vec![1; 3], ..Default::default() }, Err("trace_id must be 16 bytes, got 3")),
            (LogRecord { span_id: vec![1; 9], ..Default::default() }, Err("span_id must be 8 bytes, got 9")),
            (LogRecord { time_unix_nano: u64::MAX, ..Default::default() }, Err("time_unix_nano is out of range")),
        ];
        for (record, want) in table {
            assert_eq!(validate(&record, 99), want.map_err(str::to_owned));
        }
    }
}
