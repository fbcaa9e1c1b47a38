//! Text forms shared by the pages, the API and notifications: unix-nanosecond times as
//! calendar text (UTC, without a date-time dependency), durations for people, URL parts.

use std::time::{SystemTime, UNIX_EPOCH};

/// A file named after `path` with `suffix` added (files that belong with the database
/// file are named after it).
pub fn path_with_suffix(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut named = path.as_os_str().to_owned();
    named.push(suffix);
    named.into()
}

pub fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64
}

/// What a cut text ends with.
pub const CUT_MARKER: &str = "…";

/// `text` cut to at most `max_bytes` (at a character boundary, marked with
/// [`CUT_MARKER`]); borrowed when it fits.
pub fn cut(text: &str, max_bytes: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max_bytes {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max_bytes.saturating_sub(CUT_MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{CUT_MARKER}", &text[..end]))
}

/// The message a caught panic carried, for logs and error states.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// "1.2 s", "35 ms", "850 µs": a duration in milliseconds for people.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "–".into();
    }
    if ms == 0.0 {
        return "0".into();
    }
    if ms >= 60_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.0} µs", ms * 1000.0)
    }
}

/// Percent-encodes everything but unreserved characters, for a path segment or query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

struct Parts {
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    nanos: i64,
}

fn parts(unix_nano: i64) -> Parts {
    let secs = unix_nano.div_euclid(1_000_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let day = secs.rem_euclid(86_400);
    Parts { y, mo, d, h: day / 3600, mi: (day % 3600) / 60, s: day % 60, nanos: unix_nano.rem_euclid(1_000_000_000) }
}

/// "14:03:27"
pub fn clock(unix_nano: i64) -> String {
    let p = parts(unix_nano);
    format!("{:02}:{:02}:{:02}", p.h, p.mi, p.s)
}

/// "2026-11-22 14:03:27 UTC"
pub fn datetime(unix_nano: i64) -> String {
    let p = parts(unix_nano);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", p.y, p.mo, p.d, p.h, p.mi, p.s)
}

/// "2026-11-22T14:03:27.120Z", as Alertmanager payloads carry times.
pub fn rfc3339(unix_nano: i64) -> String {
    let p = parts(unix_nano);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", p.y, p.mo, p.d, p.h, p.mi, p.s, p.nanos / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = 1_700_000_000_123_000_000;
        assert_eq!(clock(t), "22:13:20");
        assert_eq!(datetime(t), "2023-11-14 22:13:20 UTC");
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(datetime(951_782_400_000_000_000), "2000-02-29 00:00:00 UTC");
    }
}
