//! Durations the API takes, the deadlines made from them, and how messages print them.
//!
//! Every `Duration` a user gives goes through [`clamp`] before it meets an `Instant` or gRPC,
//! so no addition can overflow: `Duration::MAX` means "as long as possible", which is
//! [`LONGEST`].

use std::fmt;
use std::time::{Duration, Instant};

/// The longest wait this crate makes: 2^31 - 1 ms, about 24.8 days, the longest interval
/// gRPC's C core takes as a setting. Longer durations (up to `Duration::MAX`) mean this.
pub(crate) const LONGEST: Duration = Duration::from_millis(i32::MAX as u64);

/// `duration`, at most [`LONGEST`].
pub(crate) fn clamp(duration: Duration) -> Duration {
    duration.min(LONGEST)
}

/// The instant `duration` (clamped) after `from`: never overflows.
pub(crate) fn after(from: Instant, duration: Duration) -> Instant {
    let duration = clamp(duration);
    from.checked_add(duration).unwrap_or(from)
}

/// The instant `duration` (clamped) from now.
pub(crate) fn deadline(duration: Duration) -> Instant {
    after(Instant::now(), duration)
}

/// A duration as people read it in a message: milliseconds below a second, seconds above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d < Duration::from_micros(1) && !d.is_zero() {
            write!(f, "{} ns", d.as_nanos())
        } else if d < Duration::from_millis(1) && !d.is_zero() {
            write!(f, "{} µs", d.as_micros())
        } else if d < Duration::from_secs(1) {
            write!(f, "{} ms", d.as_millis())
        } else if d.subsec_millis() == 0 {
            write!(f, "{} s", d.as_secs())
        } else {
            let text = format!("{:.3}", d.as_secs_f64());
            write!(f, "{} s", text.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_never_overflow() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + LONGEST);
        assert_eq!(after(now, Duration::ZERO), now);
        assert_eq!(
            after(now, Duration::from_nanos(1)),
            now + Duration::from_nanos(1)
        );
        assert!(deadline(Duration::MAX) > now);
    }

    #[test]
    fn human_durations() {
        let cases = [
            (Duration::ZERO, "0 ms"),
            (Duration::from_nanos(1), "1 ns"),
            (Duration::from_micros(250), "250 µs"),
            (Duration::from_millis(400), "400 ms"),
            (Duration::from_secs(5), "5 s"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_millis(2050), "2.05 s"),
            (LONGEST, "2147483.647 s"),
        ];
        for (d, text) in cases {
            assert_eq!(Human(d).to_string(), text, "{d:?}");
        }
    }
}
