//! Trace ids as the stitcher holds them: 128-bit numbers, not 32-character strings.
//!
//! Every trace id flowscope stores is 16 bytes written as 32 lower-case hex digits (ingest
//! refuses any other length, and writes them so). The stitcher keys its maps by trace
//! (the joiner, the cache, the stored flows, the dirty set) and compares and sorts them in
//! the analysis. As `String`s, hashing, comparing, cloning and freeing them were about a
//! tenth of the stitcher's thread under ingest (BENCHMARKS.md, fourteenth session); as a
//! number an id is `Copy`, hashes and compares in a step, and sorts as its digits do.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

impl TraceId {
    /// Parses 32 lower-case hex digits, the form in which trace ids are stored; anything
    /// else is `None` (no stored id, since ingest writes no other).
    pub fn parse(hex: &str) -> Option<TraceId> {
        let digits: &[u8; 32] = hex.as_bytes().try_into().ok()?;
        let (mut value, mut invalid) = (0u128, 0u8);
        for &c in digits {
            let digit = DIGIT_VALUES[usize::from(c)];
            invalid |= digit;
            value = (value << 4) | u128::from(digit & 0xf);
        }
        (invalid & 0x10 == 0).then_some(TraceId(value))
    }

    /// The 32 lower-case hex digits, as stored.
    pub fn hex(self) -> HexTraceId {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0.to_be_bytes()) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        HexTraceId(out)
    }

    /// The join hash of this trace (that of its digits: see [`super::joiner::trace_hash`]).
    pub fn join_hash(self) -> i64 {
        super::joiner::trace_hash(&self.hex())
    }

    /// A made-up id for tests that name traces ("a", "t01"): the name's bytes, padded
    /// with zeros, so that ids sort as their names do.
    #[cfg(test)]
    pub fn named(name: &str) -> TraceId {
        assert!(name.len() <= 16, "test trace names fit 16 bytes");
        let mut bytes = [0u8; 16];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        TraceId(u128::from_be_bytes(bytes))
    }
}

/// Each byte's value as a lower-case hex digit, or 0x10 for a byte that is not one.
const DIGIT_VALUES: [u8; 256] = {
    let mut table = [0x10u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// A trace id's digits on the stack: what is appended to string columns and bound to
/// queries.
#[derive(Clone, Copy)]
pub struct HexTraceId([u8; 32]);

impl std::ops::Deref for HexTraceId {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl AsRef<str> for HexTraceId {
    fn as_ref(&self) -> &str {
        self
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_stored_ids_parse() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(TraceId::parse(id).map(|t| t.hex().to_string()), Some(id.to_owned()));
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
    }

    #[test]
    fn join_hash_is_that_of_the_digits() {
        let id = "00000000000000000000000000000001";
        assert_eq!(TraceId::parse(id).unwrap().join_hash(), super::super::joiner::trace_hash(id));
    }

    /// Digits round-trip, and ids sort as their digits do (the analysis and the joiner
    /// order traces by id).
    #[test]
    fn ids_round_trip_and_sort_as_their_digits() {
        let mut runner = crate::test_support::seeded_runner(2_000, 14);
        runner
            .run(&(any::<u128>(), any::<u128>()), |(a, b)| {
                let (ha, hb) = (TraceId(a).hex().to_string(), TraceId(b).hex().to_string());
                prop_assert_eq!(&ha, &format!("{a:032x}"));
                prop_assert_eq!(TraceId::parse(&ha), Some(TraceId(a)));
                prop_assert_eq!(TraceId(a).cmp(&TraceId(b)), ha.cmp(&hb));
                Ok(())
            })
            .unwrap();
    }
}
