//! Trace and span ids as the stitcher holds them: numbers, not strings of hex digits.
//!
//! Every id flowscope stores is written by ingest as lower-case hex digits of a fixed
//! length (32 for a trace id, 16 for a span id; ingest refuses other lengths). The
//! stitcher keys its maps by trace (the joiner, the cache, the stored flows, the dirty
//! set) and by span (parents and links in the analysis), and compares and sorts both. As
//! `String`s, hashing, comparing, cloning and freeing them were about a tenth of the
//! stitcher's thread under ingest; as numbers they
//! are `Copy`, hash and compare in a step, and sort as their digits do. The flow tables
//! store trace ids as UUIDs, the same 128-bit number (migration 019); their queries give
//! them back as digits (`hex_id`), so every id the stitcher reads is parsed alike.

use std::fmt;

/// The 64-bit hash under which a join is stored (migration 015): FNV-1a over a kind tag
/// and the value. Stable across versions and platforms, as stored data requires; not
/// exposed to collisions crafted by senders in any way that matters, since a collision
/// only makes the stitcher read a flow it then does not join (joins compare the values).
pub fn join_hash(tag: u8, value: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(tag).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// The join hash of a trace id.
pub fn trace_hash(trace: &str) -> i64 {
    join_hash(b't', trace)
}

/// Defines an id type over an unsigned integer of `$digits / 2` bytes.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident($int:ty), $digits:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($int);

        impl $name {
            /// Parses lower-case hex digits of the stored length, the only form stored;
            /// anything else is `None`.
            pub fn parse(hex: &str) -> Option<$name> {
                let digits: &[u8; $digits] = hex.as_bytes().try_into().ok()?;
                let (mut value, mut invalid): ($int, u8) = (0, 0);
                for &c in digits {
                    let digit = DIGIT_VALUES[usize::from(c)];
                    invalid |= digit;
                    value = (value << 4) | <$int>::from(digit & 0xf);
                }
                (invalid & NOT_A_DIGIT == 0).then_some($name(value))
            }

            /// The id as a number: how the flow tables store it (as UUID, migration 019).
            pub fn number(self) -> $int {
                self.0
            }

            /// The digits, as stored.
            pub fn hex(self) -> Hex<$digits> {
                let mut out = [0u8; $digits];
                for (pair, byte) in out.chunks_exact_mut(2).zip(self.0.to_be_bytes()) {
                    pair[0] = DIGITS[usize::from(byte >> 4)];
                    pair[1] = DIGITS[usize::from(byte & 0xf)];
                }
                Hex(out)
            }

            /// A made-up id for tests that name traces and spans ("a", "t01"): the
            /// name's bytes, padded with zeros, so that ids sort as their names do.
            #[cfg(test)]
            pub fn named(name: &str) -> $name {
                let mut bytes = [0u8; $digits / 2];
                assert!(name.len() <= bytes.len(), "test names fit the id: {name}");
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                $name(<$int>::from_be_bytes(bytes))
            }

            /// The name a test gave with [`Self::named`].
            #[cfg(test)]
            pub fn name(self) -> String {
                let bytes = self.0.to_be_bytes();
                let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                String::from_utf8_lossy(&bytes[..end]).into_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

hex_id!(
    /// A trace id: 16 bytes.
    TraceId(u128),
    32
);

hex_id!(
    /// A span id: 8 bytes.
    SpanId(u64),
    16
);

impl TraceId {
    /// The join hash of this trace (that of its digits: see [`trace_hash`]).
    pub fn join_hash(self) -> i64 {
        trace_hash(&self.hex())
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";
const NOT_A_DIGIT: u8 = 0x10;

/// Each byte's value as a lower-case hex digit, or `NOT_A_DIGIT`.
const DIGIT_VALUES: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < 16 {
        table[DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// An id's digits on the stack: what is appended to string columns and bound to queries.
#[derive(Clone, Copy)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> std::ops::Deref for Hex<N> {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl<const N: usize> AsRef<str> for Hex<N> {
    fn as_ref(&self) -> &str {
        self
    }
}

impl<const N: usize> duckdb::ToSql for Hex<N> {
    fn to_sql(&self) -> duckdb::Result<duckdb::types::ToSqlOutput<'_>> {
        Ok(duckdb::types::ToSqlOutput::from(&**self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_stored_ids_parse() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(TraceId::parse(trace).map(|t| t.hex().to_string()), Some(trace.to_owned()));
        assert_eq!(SpanId::parse("00f067aa0ba902b7").map(|s| s.to_string()), Some("00f067aa0ba902b7".to_owned()));
        for bad in [
            "",
            "4bf92f3577b34da6a3ce929d0e0e473",   // 31 digits
            "4bf92f3577b34da6a3ce929d0e0e47360", // 33
            "4BF92F3577B34DA6A3CE929D0E0E4736",  // upper case is never stored
            "+bf92f3577b34da6a3ce929d0e0e4736",  // from_str_radix would take a sign
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "ééééééééééééééé4",
        ] {
            assert_eq!(TraceId::parse(bad), None, "{bad:?}");
        }
        for bad in ["", "00f067aa0ba902b", "00f067aa0ba902b70", "00F067AA0BA902B7", "00f067aa0ba902 7", trace] {
            assert_eq!(SpanId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn join_hash_is_that_of_the_digits() {
        let id = "00000000000000000000000000000001";
        assert_eq!(TraceId::parse(id).unwrap().join_hash(), trace_hash(id));
    }

    /// Digits round-trip, and ids sort as their digits do (the analysis and the joiner
    /// order traces and spans by id).
    #[test]
    fn ids_round_trip_and_sort_as_their_digits() {
        let mut runner = crate::test_support::seeded_runner(2_000, 14);
        runner
            .run(&(any::<u128>(), any::<u128>(), any::<u64>(), any::<u64>()), |(a, b, x, y)| {
                let (ha, hb) = (TraceId(a).hex().to_string(), TraceId(b).hex().to_string());
                prop_assert_eq!(&ha, &format!("{a:032x}"));
                prop_assert_eq!(TraceId::parse(&ha), Some(TraceId(a)));
                prop_assert_eq!(TraceId(a).cmp(&TraceId(b)), ha.cmp(&hb));
                let (hx, hy) = (SpanId(x).hex().to_string(), SpanId(y).hex().to_string());
                prop_assert_eq!(&hx, &format!("{x:016x}"));
                prop_assert_eq!(SpanId::parse(&hx), Some(SpanId(x)));
                prop_assert_eq!(SpanId(x).cmp(&SpanId(y)), hx.cmp(&hy));
                Ok(())
            })
            .unwrap();
    }
}
