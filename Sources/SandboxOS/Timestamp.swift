import FoundationEssentials

/// RFC 3339 UTC timestamps, as the records use.
public enum Timestamp {
    public static func now() -> String { format(Date()) }
    public static func format(_ date: Date) -> String {
        // 2026-11-22T12:57:03Z, as ISO8601DateFormatter (.withInternetDateTime,
        // UTC) wrote it; the format style's defaults are exactly that format.
        // The formatter (CFDateFormatter over ICU) first rounded the time to
        // the nearest millisecond, so 59.9996 s printed as the next second:
        // round the same way, then hand the style whole seconds.
        let ms = ((date.timeIntervalSinceReferenceDate + 978_307_200) * 1000 + 0.5).rounded(.down)
        return Date.ISO8601FormatStyle().format(Date(timeIntervalSince1970: (ms / 1000).rounded(.down)))
    }
}
