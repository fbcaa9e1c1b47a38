//! The OpenTelemetry vocabulary flowscope reads spans by: span kinds, statuses and
//! messaging operations, as types. Ingest stores them as their text (the `spans` table's
//! `kind`, `status_code` and `messaging_operation` columns); the stitcher and the pages
//! read them back through [`SpanKind::parse`], [`SpanStatus::parse`] and
//! [`MessagingOperation::parse`].

use serde::Serialize;

/// A span's kind, as OTLP names it (without the `SPAN_KIND_` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    pub fn parse(s: &str) -> SpanKind {
        match s {
            "INTERNAL" => SpanKind::Internal,
            "SERVER" => SpanKind::Server,
            "CLIENT" => SpanKind::Client,
            "PRODUCER" => SpanKind::Producer,
            "CONSUMER" => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "UNSPECIFIED",
            SpanKind::Internal => "INTERNAL",
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
            SpanKind::Producer => "PRODUCER",
            SpanKind::Consumer => "CONSUMER",
        }
    }
}

/// A span's status code, as OTLP names it (without the `STATUS_CODE_` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn parse(s: &str) -> SpanStatus {
        match s {
            "OK" => SpanStatus::Ok,
            "ERROR" => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "UNSET",
            SpanStatus::Ok => "OK",
            SpanStatus::Error => "ERROR",
        }
    }
}

/// What a messaging span does with its messages (`messaging.operation.type`, legacy
/// `messaging.operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessagingOperation {
    /// A message is created (for a batch sent later).
    Create,
    /// Messages are sent to a destination (legacy `publish`).
    Send,
    /// Messages are pulled from a destination.
    Receive,
    /// A message is handled (legacy `deliver`, from push-style brokers, is the same).
    Process,
    /// A message is acknowledged, rejected or dead-lettered.
    Settle,
}

impl MessagingOperation {
    /// The operation an attribute value names, current or legacy, in any case; None for
    /// a value the conventions do not define (the span's kind then decides its role).
    pub fn parse(s: &str) -> Option<MessagingOperation> {
        Some(match s.to_ascii_lowercase().as_str() {
            "create" => MessagingOperation::Create,
            "send" | "publish" => MessagingOperation::Send,
            "receive" => MessagingOperation::Receive,
            "process" | "deliver" => MessagingOperation::Process,
            "settle" => MessagingOperation::Settle,
            _ => return None,
        })
    }

    /// The current name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MessagingOperation::Create => "create",
            MessagingOperation::Send => "send",
            MessagingOperation::Receive => "receive",
            MessagingOperation::Process => "process",
            MessagingOperation::Settle => "settle",
        }
    }

    /// Whether the operation puts messages on a destination.
    pub fn produces(self) -> bool {
        matches!(self, MessagingOperation::Create | MessagingOperation::Send)
    }

    /// Whether the operation takes messages from a destination.
    pub fn consumes(self) -> bool {
        matches!(self, MessagingOperation::Receive | MessagingOperation::Process)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_read_current_and_legacy_names_and_store_the_current_one() {
        // (attribute value, operation)
        let cases = [
            ("create", Some(MessagingOperation::Create)),
            ("send", Some(MessagingOperation::Send)),
            ("publish", Some(MessagingOperation::Send)),
            ("PUBLISH", Some(MessagingOperation::Send)),
            ("receive", Some(MessagingOperation::Receive)),
            ("process", Some(MessagingOperation::Process)),
            ("deliver", Some(MessagingOperation::Process)),
            ("settle", Some(MessagingOperation::Settle)),
            ("ack", None),
            ("", None),
        ];
        for (text, want) in cases {
            let op = MessagingOperation::parse(text);
            assert_eq!(op, want, "{text}");
            if let Some(op) = op {
                assert_eq!(MessagingOperation::parse(op.as_str()), Some(op), "round trip of {text}");
            }
        }
    }

    #[test]
    fn kinds_and_statuses_read_back_what_ingest_stores() {
        for kind in [SpanKind::Internal, SpanKind::Server, SpanKind::Client, SpanKind::Producer, SpanKind::Consumer] {
            assert_eq!(SpanKind::parse(kind.as_str()), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(SpanKind::parse("SPAN_KIND_SERVER"), SpanKind::Unspecified);
        for status in [SpanStatus::Unset, SpanStatus::Ok, SpanStatus::Error] {
            assert_eq!(SpanStatus::parse(status.as_str()), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
