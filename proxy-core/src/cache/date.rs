//! HTTP-date (RFC 9110 §5.6.7) to and from seconds since the Unix epoch: the three accepted
//! forms are parsed (IMF-fixdate, obsolete RFC 850, asctime), only IMF-fixdate is written.
//!
//! Pure arithmetic on the proleptic Gregorian calendar in UTC: no clock, no allocation, no
//! locale. Dates before 1970 are rejected (they are never useful to a cache); dates written
//! after 9999-12-31 are clamped to it so the output is always 29 bytes.

/// Parses an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime
/// forms. None if invalid. Returns seconds since the epoch.
///
/// Surrounding whitespace is ignored. Day and month names and `GMT` are case-sensitive, as the
/// grammar says (`%s"..."`); the day name must be a real one but is not checked against the
/// date. A second of 60 (a leap second) is accepted. RFC 850's two-digit year is read with a
/// fixed pivot, as this function has no clock: 70–99 are 19xx, 00–69 are 20xx (the §5.6.7
/// "more than 50 years in the future" rule gives the same answer for every year from 2020 to
/// 2069 except 70–75, a form nobody has sent for decades).
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    match v.get(3)? {
        b',' => imf_fixdate(v),
        b' ' => asctime(v),
        _ => rfc850(v),
    }
}

/// Appends `secs` as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), exactly 29 bytes.
/// Times after 9999-12-31 23:59:59 are written as that instant.
pub fn write_http_date(secs: u64, out: &mut Vec<u8>) {
    let secs = secs.min(LAST_WRITABLE);
    let days = secs / DAY;
    let in_day = secs % DAY;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday; index 0 is Sunday.
    let weekday = ((days + 4) % 7) as usize;
    out.extend_from_slice(DAY_NAMES[weekday]);
    out.extend_from_slice(b", ");
    push_two(out, day);
    out.push(b' ');
    out.extend_from_slice(MONTH_NAMES[(month - 1) as usize]);
    out.push(b' ');
    push_two(out, year / 100);
    push_two(out, year % 100);
    out.push(b' ');
    push_two(out, in_day / 3600);
    out.push(b':');
    push_two(out, in_day / 60 % 60);
    out.push(b':');
    push_two(out, in_day % 60);
    out.extend_from_slice(b" GMT");
}

const DAY: u64 = 86_400;
/// 9999-12-31 23:59:59 UTC, the last instant a four-digit year can write.
const LAST_WRITABLE: u64 = 253_402_300_799;

const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const LONG_DAY_NAMES: [&[u8]; 7] = [
    b"Sunday",
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
];
const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
/// Days before the first of each month in a common year.
const DAYS_BEFORE_MONTH: [u64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(v: &[u8]) -> Option<u64> {
    if v.len() != 29 || v[4] != b' ' || v[7] != b' ' || v[11] != b' ' || v[16] != b' ' {
        return None;
    }
    if !is_day_name(&v[..3]) || &v[25..] != b" GMT" {
        return None;
    }
    let day = digits(&v[5..7])?;
    let month = month(&v[8..11])?;
    let year = digits(&v[12..16])?;
    epoch_seconds(year, month, day, &v[17..25])
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(v: &[u8]) -> Option<u64> {
    let comma = v.iter().position(|&b| b == b',')?;
    if !LONG_DAY_NAMES.contains(&&v[..comma]) {
        return None;
    }
    let r = &v[comma..];
    // ", 06-Nov-94 08:49:37 GMT"
    if r.len() != 24 || r[1] != b' ' || r[4] != b'-' || r[8] != b'-' || r[11] != b' ' {
        return None;
    }
    if &r[20..] != b" GMT" {
        return None;
    }
    let day = digits(&r[2..4])?;
    let month = month(&r[5..8])?;
    let yy = digits(&r[9..11])?;
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    epoch_seconds(year, month, day, &r[12..20])
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime(v: &[u8]) -> Option<u64> {
    if v.len() != 24 || v[3] != b' ' || v[7] != b' ' || v[10] != b' ' || v[19] != b' ' {
        return None;
    }
    if !is_day_name(&v[..3]) {
        return None;
    }
    let month = month(&v[4..7])?;
    let day = match v[8] {
        b' ' => digits(&v[9..10])?,
        _ => digits(&v[8..10])?,
    };
    let year = digits(&v[20..24])?;
    epoch_seconds(year, month, day, &v[11..19])
}

/// Seconds since the epoch of a validated date and an `HH:MM:SS` time.
fn epoch_seconds(year: u64, month: u64, day: u64, time: &[u8]) -> Option<u64> {
    if time.len() != 8 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let hour = digits(&time[0..2])?;
    let minute = digits(&time[3..5])?;
    let second = digits(&time[6..8])?;
    if year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut days = days_before_year(year) + DAYS_BEFORE_MONTH[(month - 1) as usize] + day - 1;
    if month > 2 && is_leap(year) {
        days += 1;
    }
    Some(days * DAY + hour * 3600 + minute * 60 + second)
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // No year has more than 366 days, so this guess is never past the answer.
    let mut year = 1970 + days / 366;
    while days_before_year(year + 1) <= days {
        year += 1;
    }
    let mut in_year = days - days_before_year(year);
    let mut month = 1;
    while month < 12 && in_year >= days_in_month(year, month) {
        in_year -= days_in_month(year, month);
        month += 1;
    }
    (year, month, in_year + 1)
}

/// Days from 1970-01-01 to the first of January of `year` (≥ 1970).
fn days_before_year(year: u64) -> u64 {
    let leap_years_through = |y: u64| y / 4 - y / 100 + y / 400;
    365 * (year - 1970) + leap_years_through(year - 1) - leap_years_through(1969)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The month number (1–12) of a three-letter month name.
fn month(name: &[u8]) -> Option<u64> {
    let index = MONTH_NAMES.iter().position(|m| &m[..] == name)?;
    Some(index as u64 + 1)
}

fn is_day_name(name: &[u8]) -> bool {
    DAY_NAMES.iter().any(|d| &d[..] == name)
}

/// A fixed-width run of ASCII digits.
fn digits(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

fn push_two(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

#[cfg(test)]
mod tests;
