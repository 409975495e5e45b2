//! Times in `input.json` and `output.json`, written as `google.protobuf.Timestamp`'s JSON writes them (`chrono`'s
//! RFC 3339: UTC as `+00:00`, the fraction in groups of three digits, as many as it needs) but straight from the
//! microseconds, without a calendar library's general formatter: a leased task's files hold five such times, and
//! formatting them was a tenth of writing `input.json`.

use serde::{Serialize, Serializer};

use crate::clock::Micros;

/// A time in microseconds since the Unix epoch, serialised as an RFC 3339 string.
pub struct Rfc3339(pub Micros);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 32];
        match write(self.0, &mut text) {
            // Digits and punctuation only.
            Some(length) => serializer.serialize_str(std::str::from_utf8(&text[..length]).unwrap_or_default()),
            // Years before 0 or after 9999 take a sign and more digits: the general formatter writes those.
            None => super::timestamp(self.0).serialize(serializer),
        }
    }
}

/// Writes `micros` as `YYYY-MM-DDTHH:MM:SS[.fff[fff]]+00:00` into `out`; its length, or `None` for a year outside
/// 0-9999.
fn write(micros: Micros, out: &mut [u8; 32]) -> Option<usize> {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    let (year, month, day) = civil_from_days(micros.div_euclid(MICROS_PER_DAY));
    if !(0..=9999).contains(&year) {
        return None;
    }
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (seconds, fraction) = (of_day / 1_000_000, of_day % 1_000_000);
    let mut at = 0;
    let mut digits = |value: i64, width: usize, separator: Option<u8>| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (value.unsigned_abs() / 10u64.pow((width - 1 - i) as u32) % 10) as u8;
        }
        at += width;
        if let Some(separator) = separator {
            out[at] = separator;
            at += 1;
        }
    };
    digits(year, 4, Some(b'-'));
    digits(month, 2, Some(b'-'));
    digits(day, 2, Some(b'T'));
    digits(seconds / 3600, 2, Some(b':'));
    digits(seconds / 60 % 60, 2, Some(b':'));
    if fraction == 0 {
        digits(seconds % 60, 2, None);
    } else if fraction % 1000 == 0 {
        digits(seconds % 60, 2, Some(b'.'));
        digits(fraction / 1000, 3, None);
    } else {
        digits(seconds % 60, 2, Some(b'.'));
        digits(fraction, 6, None);
    }
    out[at..at + 6].copy_from_slice(b"+00:00");
    Some(at + 6)
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What `google.protobuf.Timestamp`'s JSON writes for the same time.
    fn by_timestamp(micros: Micros) -> String {
        serde_json::to_string(&super::super::timestamp(micros)).unwrap()
    }

    #[test]
    fn writes_what_a_timestamp_writes() {
        for micros in [
            0,
            -1,
            1,
            999_999,
            1_000,
            1_000_000,
            1_796_624_642_018_921,
            1_796_624_642_018_000,
            951_782_400_000_000,     // 2000-02-29
            -62_167_219_200_000_000, // 0000-01-01
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
            253_402_300_800_000_000, // 10000-01-01: the general formatter
            -62_167_219_200_000_001, // before year 0: the general formatter
        ] {
            assert_eq!(serde_json::to_string(&Rfc3339(micros)).unwrap(), by_timestamp(micros), "{micros}");
        }
    }

    proptest! {
        #[test]
        fn any_time_reads_as_its_timestamp(micros in -70_000_000_000_000_000i64..260_000_000_000_000_000) {
            prop_assert_eq!(serde_json::to_string(&Rfc3339(micros)).unwrap(), by_timestamp(micros));
        }

        #[test]
        fn any_whole_second_or_millisecond_too(seconds in -62_167_219_200i64..253_402_300_800, millis in 0i64..1000) {
            prop_assert_eq!(serde_json::to_string(&Rfc3339(seconds * 1_000_000)).unwrap(), by_timestamp(seconds * 1_000_000));
            let micros = seconds * 1_000_000 + millis * 1000;
            prop_assert_eq!(serde_json::to_string(&Rfc3339(micros)).unwrap(), by_timestamp(micros));
        }
    }
}
