//! The access window of a grant: when access begins and when it ends.

use jiff::Timestamp;

use super::request::{End, GrantRequest};
use crate::api::{parse_timestamp, time::truncate_to_millis};

/// When access begins and ends, as absolute instants (millisecond precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start of access (activation).
    pub starts_at: Timestamp,
    /// End of access (expiry). Always after `starts_at` for a valid grant.
    pub expires_at: Timestamp,
}

impl Window {
    /// Fixes the window of a checked grant.
    ///
    /// Everything comes from the spec except one instant: the activation of a `duration`
    /// grant without `startsAt`, which is the first time the operator saw the grant
    /// eligible. That instant is recorded in `status.startsAt` and passed back here as
    /// `recorded_start`, so the window never moves once computed; when nothing valid is
    /// recorded, `now` becomes the start.
    ///
    /// A recorded start is believed only if it lies between the grant's creation
    /// (`created_at`, set by the API server, immutable) and `now`. Anything else means the
    /// status was tampered with (moving the start later would extend a `duration` grant):
    /// the creation time is used instead, the earliest the grant could have started, so
    /// tampering can only shorten access.
    pub fn resolve(
        request: &GrantRequest,
        recorded_start: Option<&str>,
        created_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        let created_at = created_at.map(truncate_to_millis);
        let recorded = recorded_start.map(|s| {
            parse_timestamp(s)
                .ok()
                .map(truncate_to_millis)
                .filter(|at| *at <= now && created_at.is_none_or(|c| c <= *at))
                .or(created_at)
                .unwrap_or(now)
        });
        let starts_at = request.starts_at.or(recorded).unwrap_or(now);
        let starts_at = truncate_to_millis(starts_at);
        let expires_at = match request.end {
            End::At(at) => truncate_to_millis(at),
            End::After(d) => starts_at.saturating_add(d.to_signed()).unwrap_or(Timestamp::MAX),
        };
        // A window that ended before it could start is empty: it starts where it ends.
        Self {
            starts_at: starts_at.min(expires_at),
            expires_at,
        }
    }

    /// Where `now` falls: before the window, inside it, or at/after its end.
    pub fn position(&self, now: Timestamp) -> Position {
        if now >= self.expires_at {
            Position::Ended
        } else if now < self.starts_at {
            Position::Before
        } else {
            Position::Open
        }
    }
}

/// Where an instant falls relative to a [`Window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Before `starts_at`.
    Before,
    /// In `[starts_at, expires_at)`.
    Open,
    /// At or after `expires_at`.
    Ended,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GrantDuration;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    fn request(starts_at: Option<&str>, end: End) -> GrantRequest {
        GrantRequest {
            subjects: vec![],
            role_ref: crate::api::RoleRef {
                kind: crate::api::RoleKind::ClusterRole,
                name: "view".into(),
                api_group: None,
            },
            starts_at: starts_at.map(at),
            end,
        }
    }

    #[test]
    fn duration_counts_from_first_activation_and_then_stays_fixed() {
        let hour = End::After(GrantDuration::from_secs(3600).expect("non-zero"));
        let now = at("2026-11-29T12:00:00.123456Z");
        let w = Window::resolve(&request(None, hour), None, None, now);
        assert_eq!(w.starts_at, at("2026-11-29T12:00:00.123Z"));
        assert_eq!(w.expires_at, at("2026-11-29T13:00:00.123Z"));
        let later = at("2026-11-29T12:30:00Z");
        let again = Window::resolve(&request(None, hour), Some("2026-11-29T12:00:00.123Z"), None, later);
        assert_eq!(again, w);
    }

    #[test]
    fn a_recorded_start_outside_creation_and_now_is_not_believed() {
        let hour = End::After(GrantDuration::from_secs(3600).expect("non-zero"));
        let created = at("2026-11-29T12:00:00Z");
        let now = at("2026-11-29T12:30:00Z");
        // Moved into the future to extend the grant: the creation time is used instead.
        let w = Window::resolve(&request(None, hour), Some("2026-11-29T20:00:00Z"), Some(created), now);
        assert_eq!(w.starts_at, created);
        // Before the grant existed, or unreadable: the same.
        let w = Window::resolve(&request(None, hour), Some("2026-11-29T11:00:00Z"), Some(created), now);
        assert_eq!(w.starts_at, created);
        let w = Window::resolve(&request(None, hour), Some("yesterday"), Some(created), now);
        assert_eq!(w.starts_at, created);
        let w = Window::resolve(&request(None, hour), Some("2026-11-29T12:00:01Z"), Some(created), now);
        assert_eq!(w.starts_at, at("2026-11-29T12:00:01Z"));
    }

    #[test]
    fn duration_counts_from_starts_at_when_given() {
        let hour = End::After(GrantDuration::from_secs(3600).expect("non-zero"));
        let w = Window::resolve(
            &request(Some("2026-11-30T08:00:00Z"), hour),
            None,
            None,
            at("2026-11-29T12:00:00Z"),
        );
        assert_eq!(w.expires_at, at("2026-11-30T09:00:00Z"));
    }

    #[test]
    fn positions() {
        let w = Window {
            starts_at: at("2026-11-29T12:00:00Z"),
            expires_at: at("2026-11-29T13:00:00Z"),
        };
        assert_eq!(w.position(at("2026-11-29T11:59:59.999Z")), Position::Before);
        assert_eq!(w.position(at("2026-11-29T12:00:00Z")), Position::Open);
        assert_eq!(w.position(at("2026-11-29T12:59:59.999Z")), Position::Open);
        assert_eq!(w.position(at("2026-11-29T13:00:00Z")), Position::Ended);
    }
}
