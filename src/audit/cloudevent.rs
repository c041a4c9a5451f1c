//! An audit record as a CloudEvent (CloudEvents 1.0, JSON event format, structured
//! content mode: `Content-Type: application/cloudevents+json`). Pure.

use serde::Serialize;

use super::AuditRecord;

/// The media type of a structured-mode CloudEvent in JSON.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Prefix of the CloudEvent `type`; the audit action follows (e.g.
/// `io.jitrbac.audit.v1.Granted`). The `v1` is the audit `schemaVersion`.
pub const TYPE_PREFIX: &str = "io.jitrbac.audit.v1.";

/// One CloudEvent carrying one audit record as `data`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudEvent<'a> {
    /// Always `1.0`.
    pub specversion: &'static str,
    /// The audit record's id: unique per transition of a grant, and the same when a record
    /// is written again after a crash, so consumers de-duplicate on (`source`, `id`) as the
    /// CloudEvents specification intends.
    pub id: &'a str,
    /// Where the event comes from (a URI-reference, configurable per cluster).
    pub source: &'a str,
    /// [`TYPE_PREFIX`] followed by the audit action.
    #[serde(rename = "type")]
    pub type_: String,
    /// The grant concerned, as `<namespace>/<name>`.
    pub subject: String,
    /// When the transition happened (RFC 3339, UTC), the record's `time`.
    pub time: &'a str,
    /// Always `application/json`.
    pub datacontenttype: &'static str,
    /// The audit record, exactly as written to standard output.
    pub data: &'a AuditRecord,
}

/// Wraps `record` in a CloudEvent from `source`.
pub fn wrap<'a>(record: &'a AuditRecord, source: &'a str) -> CloudEvent<'a> {
    CloudEvent {
        specversion: "1.0",
        id: &record.id,
        source,
        type_: format!("{TYPE_PREFIX}{}", record.action),
        subject: format!(
            "{}/{}",
            record.grant.namespace.as_deref().unwrap_or_default(),
            record.grant.name
        ),
        time: &record.time,
        datacontenttype: "application/json",
        data: record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::sample_record;

    #[test]
    fn carries_the_required_attributes_and_the_record_as_data() {
        let record = sample_record();
        let event = serde_json::to_value(wrap(&record, "//jitrbac/prod-eu")).expect("serializes");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"], record.id.as_str());
        assert_eq!(event["source"], "//jitrbac/prod-eu");
        assert_eq!(event["type"], "io.jitrbac.audit.v1.Granted");
        assert_eq!(event["subject"], "ns/g");
        assert_eq!(event["time"], record.time.as_str());
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(
            event["data"],
            serde_json::to_value(&record).expect("record"),
            "the data is the audit line"
        );
    }
}
