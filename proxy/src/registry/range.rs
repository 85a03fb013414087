//! Parsing the two range headers of the API: `Range: bytes=a-b` on blob GETs and
//! `Content-Range: a-b` on upload PATCHes. Anything not understood is an error, never ignored.

use shoal_origin::ByteRange;

/// `Range` on a blob GET. `Ok(None)` when absent; `Err(())` → 416.
pub fn parse_range(header: Option<&str>, size_hint: Option<u64>) -> Result<Option<ByteRange>, ()> {
    let Some(h) = header else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| ());
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, true) => Ok(Some(ByteRange {
            start: num(a)?,
            end: u64::MAX,
        })),
        (false, false) => {
            let (start, last) = (num(a)?, num(b)?);
            if last < start {
                return Err(());
            }
            Ok(Some(ByteRange {
                start,
                end: last.saturating_add(1),
            }))
        }
        (true, false) => {
            // Suffix range: the last n bytes; needs the size.
            let n = num(b)?;
            let size = size_hint.ok_or(())?;
            if n == 0 {
                return Err(());
            }
            Ok(Some(ByteRange {
                start: size.saturating_sub(n),
                end: size,
            }))
        }
        (true, true) => Err(()),
    }
}

/// `Content-Range` on a PATCH: inclusive `start-end`, optionally prefixed with `bytes `
/// or `bytes=` (some clients send the HTTP form). Returns `[start, end + 1)`.
pub fn parse_content_range(h: &str) -> Option<ByteRange> {
    let s = h.trim();
    let s = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    let s = s.split('/').next()?;
    let (a, b) = s.split_once('-')?;
    let (start, last) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
    Some(ByteRange {
        start,
        end: last.checked_add(1).filter(|_| last >= start)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Option<ByteRange> {
        Some(ByteRange { start, end })
    }

    #[test]
    fn range_header() {
        let check = |h: Option<&str>, want: Result<Option<ByteRange>, ()>| {
            assert_eq!(parse_range(h, Some(100)), want, "{h:?}")
        };
        check(None, Ok(None));
        check(Some("bytes=0-9"), Ok(r(0, 10)));
        check(Some("bytes=10-"), Ok(r(10, u64::MAX)));
        check(Some("bytes=-10"), Ok(r(90, 100)));
        check(Some("bytes=5-4"), Err(()));
        check(Some("bytes=0-1,4-5"), Err(()));
        check(Some("items=0-1"), Err(()));
        check(Some("bytes=a-b"), Err(()));
        check(Some("bytes=-"), Err(()));
    }

    #[test]
    fn content_range_header() {
        assert_eq!(parse_content_range("0-99"), r(0, 100));
        assert_eq!(parse_content_range("bytes 100-199/*"), r(100, 200));
        assert_eq!(parse_content_range("bytes=5-5"), r(5, 6));
        assert_eq!(parse_content_range("9-3"), None);
        assert_eq!(parse_content_range("x-y"), None);
        assert_eq!(parse_content_range(""), None);
    }

    /// Regression (found by `fuzz_tests`): a range ending at the largest u64 overflowed
    /// computing its end, a panic in a debug build and an empty range in a release one.
    #[test]
    fn a_content_range_ending_at_the_largest_number_is_refused() {
        assert_eq!(parse_content_range("0-18446744073709551615"), None);
        assert_eq!(
            parse_content_range("5-18446744073709551614"),
            r(5, u64::MAX)
        );
    }
}
