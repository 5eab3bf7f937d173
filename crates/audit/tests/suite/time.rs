//! The RFC 3339 form of `time`: exact output, strict parsing.

use blastwall_audit::Timestamp;
use pretty_assertions::assert_eq;

#[test]
fn known_instants_format_exactly() {
    let cases = [
        (0, 0, "1970-01-01T00:00:00.000000000Z"),
        (951_782_400, 1, "2000-02-29T00:00:00.000000001Z"),
        (946_684_799, 999_999_999, "1999-12-31T23:59:59.999999999Z"),
        (1_777_636_800, 120_000_000, "2026-05-01T12:00:00.120000000Z"),
        (4_107_542_400, 0, "2100-03-01T00:00:00.000000000Z"),
    ];
    for (secs, nanos, text) in cases {
        let t = Timestamp::new(secs, nanos);
        assert_eq!(t.map(|t| t.to_string()).as_deref(), Some(text));
        assert_eq!(text.parse::<Timestamp>().ok(), t, "{text}");
    }
    assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999999Z");
}

#[test]
fn every_day_from_1970_to_2200_round_trips() {
    for day in 0..84_000u64 {
        let t = Timestamp::new(day * 86_400 + 3_723, 42);
        let back = t.and_then(|t| t.to_string().parse::<Timestamp>().ok());
        assert_eq!(back, t, "day {day}");
    }
}

#[test]
fn parsing_is_strict() {
    for bad in [
        "",
        "2026-05-01T12:00:00Z",
        "2026-05-01T12:00:00.00000000Z",
        "2026-05-01T12:00:00.0000000000Z",
        "2026-05-01T12:00:00.000000000+00:00",
        "2026-05-01t12:00:00.000000000Z",
        "2026-05-01 12:00:00.000000000Z",
        "2026-02-29T12:00:00.000000000Z",
        "2026-13-01T12:00:00.000000000Z",
        "2026-00-01T12:00:00.000000000Z",
        "2026-04-31T12:00:00.000000000Z",
        "2026-05-01T24:00:00.000000000Z",
        "2026-05-01T23:60:00.000000000Z",
        "2026-05-01T23:59:60.000000000Z",
        "1969-12-31T23:59:59.999999999Z",
        "+026-05-01T12:00:00.000000000Z",
        "2026-05-01T12:00:00.00000000\u{e9}",
    ] {
        assert!(bad.parse::<Timestamp>().is_err(), "{bad:?} parsed");
    }
    assert!(
        "2024-02-29T00:00:00.000000000Z"
            .parse::<Timestamp>()
            .is_ok()
    );
    assert!(
        "2000-02-29T00:00:00.000000000Z"
            .parse::<Timestamp>()
            .is_ok()
    );
    assert!(
        "1900-02-28T00:00:00.000000000Z"
            .parse::<Timestamp>()
            .is_err()
    );
}

#[test]
fn out_of_range_values_are_refused() {
    assert_eq!(Timestamp::new(0, 1_000_000_000), None);
    assert_eq!(Timestamp::new(253_402_300_800, 0), None);
    assert_eq!(
        Timestamp::from_system_time(std::time::UNIX_EPOCH - std::time::Duration::from_secs(1)),
        None
    );
}
