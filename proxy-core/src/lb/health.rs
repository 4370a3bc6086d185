//! Active health checking, the decisions only: the rise/fall state machine of one endpoint
//! ([`HealthState`], HAProxy's rule) and the set of statuses that pass an HTTP check
//! ([`ExpectStatus`]). Sending checks, timing them and publishing the results belong to the I/O
//! layer; nothing here does I/O or reads a clock.

use std::fmt;

/// The health of one endpoint as seen by active checks. Starts up (as HAProxy does, so a new
/// endpoint takes traffic before its first check), goes down after `fall` failing checks in a
/// row, comes back after `rise` passing checks in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    rise: u32,
    fall: u32,
    state: Phase,
}

/// Where a [`HealthState`] is, with the run of results that would flip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Up, after this many failing checks in a row.
    Up { failures: u32 },
    /// Down, after this many passing checks in a row.
    Down { successes: u32 },
}

impl HealthState {
    /// An endpoint that is up, going down after `fall` consecutive failures and back up after
    /// `rise` consecutive successes (a 0 counts as 1).
    pub fn new(rise: u32, fall: u32) -> HealthState {
        HealthState {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Phase::Up { failures: 0 },
        }
    }

    /// Records one check result. Returns `Some(up)` when the endpoint changes state with it,
    /// `None` when it stays as it was.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        match (&mut self.state, ok) {
            (Phase::Up { failures }, true) => {
                *failures = 0;
                None
            }
            (Phase::Up { failures }, false) => {
                *failures += 1;
                if *failures >= self.fall {
                    self.state = Phase::Down { successes: 0 };
                    Some(false)
                } else {
                    None
                }
            }
            (Phase::Down { successes }, false) => {
                *successes = 0;
                None
            }
            (Phase::Down { successes }, true) => {
                *successes += 1;
                if *successes >= self.rise {
                    self.state = Phase::Up { failures: 0 };
                    Some(true)
                } else {
                    None
                }
            }
        }
    }

    /// Whether the endpoint is up.
    pub fn is_up(&self) -> bool {
        matches!(self.state, Phase::Up { .. })
    }
}

/// The most items an [`ExpectStatus`] list may have.
pub const MAX_EXPECT_ITEMS: usize = 16;

/// The response statuses that pass an HTTP health check: a list of inclusive ranges, written
/// `2xx` (a class), `200` (one status), `200-399` (a range), or a comma list of those
/// (`200,204,3xx`). Stored inline (at most [`MAX_EXPECT_ITEMS`] items): matching never
/// allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ExpectStatus {
    ranges: [(u16, u16); MAX_EXPECT_ITEMS],
    len: u8,
}

impl ExpectStatus {
    /// Parses the text of `expect_status`. Statuses are 100 to 599; spaces around items are
    /// allowed. The error says what is wrong, quoting the offending item.
    pub fn parse(text: &str) -> Result<ExpectStatus, String> {
        let mut out = ExpectStatus {
            ranges: [(0, 0); MAX_EXPECT_ITEMS],
            len: 0,
        };
        if text.trim().is_empty() {
            return Err(
                "is empty: expected a status (200), a class (2xx), a range (200-399) \
                        or a comma list of those"
                    .to_owned(),
            );
        }
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(format!("`{text}` has an empty item between commas"));
            }
            let range = parse_item(item)?;
            let slot = out
                .ranges
                .get_mut(usize::from(out.len))
                .ok_or_else(|| format!("`{text}` has more than {MAX_EXPECT_ITEMS} items"))?;
            *slot = range;
            out.len += 1;
        }
        Ok(out)
    }

    /// Whether a response with `status` passes.
    pub fn matches(&self, status: u16) -> bool {
        self.items()
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }

    /// The inclusive ranges, in the order written.
    pub fn items(&self) -> &[(u16, u16)] {
        self.ranges.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl fmt::Debug for ExpectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.items()).finish()
    }
}

/// One item: `2xx`, `200` or `200-399`.
fn parse_item(item: &str) -> Result<(u16, u16), String> {
    let bytes = item.as_bytes();
    if let [class @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] = bytes {
        let low = u16::from(class - b'0') * 100;
        return Ok((low, low + 99));
    }
    if let Some((low, high)) = item.split_once('-') {
        let (low, high) = (status(low.trim(), item)?, status(high.trim(), item)?);
        if low > high {
            return Err(format!(
                "`{item}`: the range runs backwards ({low} > {high})"
            ));
        }
        return Ok((low, high));
    }
    let s = status(item, item)?;
    Ok((s, s))
}

/// One status of three digits from 100 to 599; `item` names the whole item in errors.
fn status(text: &str, item: &str) -> Result<u16, String> {
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{item}` is not a status (200), a class (2xx) or a range (200-399)"
        ));
    }
    match text.parse::<u16>() {
        Ok(s @ 100..=599) => Ok(s),
        _ => Err(format!("`{item}`: statuses are 100 to 599")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_up_falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut h = HealthState::new(2, 3);
        assert!(h.is_up());
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        // A success in between starts the failure run over.
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        assert!(h.is_up());
        assert_eq!(h.observe(false), Some(false));
        assert!(!h.is_up());
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None, "a failure restarts the rise run");
        assert_eq!(h.observe(true), None);
        assert!(!h.is_up());
        assert_eq!(h.observe(true), Some(true));
        assert!(h.is_up());
        assert_eq!(h.observe(true), None);
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        let mut h = HealthState::new(1, 1);
        assert_eq!(h.observe(false), Some(false));
        assert_eq!(h.observe(true), Some(true));
        let mut zero = HealthState::new(0, 0);
        assert_eq!(zero.observe(false), Some(false), "0 counts as 1");
    }

    #[test]
    fn expect_status_forms() {
        let class = ExpectStatus::parse("2xx").unwrap();
        assert!(class.matches(200) && class.matches(299));
        assert!(!class.matches(199) && !class.matches(300));
        let one = ExpectStatus::parse("204").unwrap();
        assert!(one.matches(204) && !one.matches(200));
        let range = ExpectStatus::parse("200-399").unwrap();
        assert!(range.matches(200) && range.matches(302) && range.matches(399));
        assert!(!range.matches(400));
        let list = ExpectStatus::parse(" 200 , 204,3XX ").unwrap();
        assert_eq!(list.items(), &[(200, 200), (204, 204), (300, 399)]);
        assert!(list.matches(204) && list.matches(301) && !list.matches(201));
        assert!(ExpectStatus::parse("100-599").unwrap().matches(503));
    }

    #[test]
    fn expect_status_errors_say_what_is_wrong() {
        let cases = [
            ("", "is empty"),
            ("  ", "is empty"),
            ("200,,204", "empty item"),
            ("200,", "empty item"),
            ("ok", "`ok` is not a status"),
            ("20", "`20` is not a status"),
            ("2000", "`2000` is not a status"),
            ("6xx", "`6xx` is not a status"),
            ("2xy", "`2xy` is not a status"),
            ("700", "`700`: statuses are 100 to 599"),
            ("099", "`099`: statuses are 100 to 599"),
            ("399-200", "runs backwards"),
            ("200-", "`200-` is not a status"),
            ("200-abc", "`200-abc` is not a status"),
            ("+20", "`+20` is not a status"),
        ];
        for (text, want) in cases {
            let e = ExpectStatus::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let many = vec!["200"; MAX_EXPECT_ITEMS + 1].join(",");
        assert!(ExpectStatus::parse(&many)
            .unwrap_err()
            .contains("more than 16 items"));
        let enough = vec!["200"; MAX_EXPECT_ITEMS].join(",");
        assert!(ExpectStatus::parse(&enough).is_ok());
    }
}
