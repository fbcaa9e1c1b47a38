//! What destination names mean: dead-letter queues and retry destinations, matched by
//! `*` globs.

/// Destination names written as `*` globs (`*` matches any run of characters; matching
/// ignores case).
#[derive(Debug, Clone)]
pub struct NamePatterns(Vec<String>);

impl NamePatterns {
    pub fn new(patterns: &[String]) -> Self {
        NamePatterns(patterns.to_vec())
    }

    fn of(patterns: &[&str]) -> Self {
        NamePatterns(patterns.iter().map(|p| p.to_string()).collect())
    }

    pub fn matches(&self, destination: &str) -> bool {
        self.0.iter().any(|p| glob(p.as_bytes(), destination.as_bytes()))
    }
}

/// What destination names mean: dead-letter queues, and retry destinations (a failed
/// record re-produced there is consumed again by the service that failed it).
#[derive(Debug, Clone)]
pub struct DestinationPatterns {
    pub dead_letter: NamePatterns,
    pub retry: NamePatterns,
}

pub const DEFAULT_DEAD_LETTER_PATTERNS: &[&str] = &[
    "*.DLT",
    "*-dlt",
    "*.dlq",
    "*_dlq",
    "*-dlq",
    "*.dlx",
    "*-dlx",
    "*_dlx",
    "*dead-letter*",
    "*deadletter*",
    "*dead_letter*",
    "*.dead",
];

/// Spring Kafka's retry topics (`orders-retry`, `orders-retry-0`, `orders-retry-5000`) and
/// the usual hand-made ones (`orders.retry`, `orders_retry`).
pub const DEFAULT_RETRY_PATTERNS: &[&str] = &["*.retry", "*-retry", "*_retry", "*-retry-*", "*.retry.*", "*_retry_*"];

impl DestinationPatterns {
    pub fn is_dead_letter(&self, destination: Option<&str>) -> bool {
        destination.is_some_and(|d| self.dead_letter.matches(d))
    }

    /// A retry destination, unless it is a dead-letter one too.
    pub fn is_retry(&self, destination: Option<&str>) -> bool {
        destination.is_some_and(|d| self.retry.matches(d) && !self.dead_letter.matches(d))
    }
}

impl Default for DestinationPatterns {
    fn default() -> Self {
        DestinationPatterns {
            dead_letter: NamePatterns::of(DEFAULT_DEAD_LETTER_PATTERNS),
            retry: NamePatterns::of(DEFAULT_RETRY_PATTERNS),
        }
    }
}

/// `*`-only glob, the kind users write for queue names; ASCII letters match either case.
/// It runs for every destination of every flow analysed, so it compares in place: the
/// text before the first `*` is a prefix, after the last a suffix, and each part between
/// is found at its earliest place after the one before (which is all a `*` glob needs).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let mut parts = pattern.split(|c| *c == b'*');
    let first = parts.next().unwrap_or_default();
    if text.len() < first.len() || !text[..first.len()].eq_ignore_ascii_case(first) {
        return false;
    }
    let mut rest = &text[first.len()..];
    let Some(last) = parts.next_back() else {
        return rest.is_empty();
    };
    for middle in parts.filter(|m| !m.is_empty()) {
        match rest.windows(middle.len()).position(|w| w.eq_ignore_ascii_case(middle)) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest[rest.len() - last.len()..].eq_ignore_ascii_case(last)
}
