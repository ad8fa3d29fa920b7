//! Exact time: non-negative rationals of cycles.
//!
//! A pattern divides a cycle by any number of steps, nested, so an event's place is a
//! fraction like 5/12 of a cycle. Floats would let bar lines drift by a frame after
//! enough subdivisions and loops; rationals never do, and the sequencer turns them into
//! frames with one multiplication and one division at the end. Every operation is
//! checked: a pattern that would overflow 64-bit numerators or denominators is refused
//! as too complex (`None` here, an error to the user), never wrapped.

use std::cmp::Ordering;
use std::fmt;

/// A non-negative rational number of cycles, always reduced (`den > 0`, gcd 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Time {
    num: u64,
    den: u64,
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Time {
    /// Zero cycles.
    pub const ZERO: Time = Time { num: 0, den: 1 };
    /// One cycle.
    pub const ONE: Time = Time { num: 1, den: 1 };

    /// `num / den`, reduced; `None` if `den` is 0.
    pub fn new(num: u64, den: u64) -> Option<Time> {
        Time::reduced(u128::from(num), u128::from(den))
    }

    /// A whole number of cycles.
    pub const fn whole(n: u64) -> Time {
        Time { num: n, den: 1 }
    }

    /// Reduces `num / den` computed in 128 bits; `None` if it does not fit 64 bits.
    fn reduced(num: u128, den: u128) -> Option<Time> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        Some(Time {
            num: u64::try_from(num / g).ok()?,
            den: u64::try_from(den / g).ok()?,
        })
    }

    /// The numerator (reduced).
    pub fn numerator(self) -> u64 {
        self.num
    }

    /// The denominator (reduced, at least 1).
    pub fn denominator(self) -> u64 {
        self.den
    }

    /// `self + rhs`, `None` on overflow.
    pub fn checked_add(self, rhs: Time) -> Option<Time> {
        let (a, b, c, d) = self.wide(rhs);
        Time::reduced(
            a.checked_mul(d)?.checked_add(c.checked_mul(b)?)?,
            b.checked_mul(d)?,
        )
    }

    /// `self - rhs`, `None` if negative or on overflow.
    pub fn checked_sub(self, rhs: Time) -> Option<Time> {
        let (a, b, c, d) = self.wide(rhs);
        Time::reduced(
            a.checked_mul(d)?.checked_sub(c.checked_mul(b)?)?,
            b.checked_mul(d)?,
        )
    }

    /// `self * rhs`, `None` on overflow.
    pub fn checked_mul(self, rhs: Time) -> Option<Time> {
        let (a, b, c, d) = self.wide(rhs);
        Time::reduced(a.checked_mul(c)?, b.checked_mul(d)?)
    }

    /// `self / rhs`, `None` if `rhs` is 0 or on overflow.
    pub fn checked_div(self, rhs: Time) -> Option<Time> {
        let (a, b, c, d) = self.wide(rhs);
        Time::reduced(a.checked_mul(d)?, b.checked_mul(c)?)
    }

    fn wide(self, rhs: Time) -> (u128, u128, u128, u128) {
        (
            u128::from(self.num),
            u128::from(self.den),
            u128::from(rhs.num),
            u128::from(rhs.den),
        )
    }

    /// The largest whole number of cycles not above `self`.
    pub fn floor(self) -> u64 {
        self.num / self.den
    }

    /// The smallest whole number of cycles not below `self`.
    pub fn ceil(self) -> u64 {
        self.num.div_ceil(self.den)
    }

    /// True if `self` is zero.
    pub fn is_zero(self) -> bool {
        self.num == 0
    }

    /// The nearest `f64` (for display and tests; never used to place an event).
    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `self * scale`, rounded down to a whole number: where an event falls in frames
    /// when a cycle is `scale` frames long. `None` if the result exceeds 64 bits.
    pub fn scaled_floor(self, scale: u64) -> Option<u64> {
        u64::try_from(u128::from(self.num) * u128::from(scale) / u128::from(self.den)).ok()
    }

    /// The value as a decimal if it has a finite one (its denominator has no prime
    /// factor but 2 and 5), as the notation writes factors and weights: `1.5`, `2`.
    pub fn to_decimal(self) -> Option<String> {
        let mut den = self.den;
        let (mut twos, mut fives) = (0u32, 0u32);
        while den.is_multiple_of(2) {
            den /= 2;
            twos += 1;
        }
        while den.is_multiple_of(5) {
            den /= 5;
            fives += 1;
        }
        if den != 1 {
            return None;
        }
        let digits = twos.max(fives);
        let whole = self.num / self.den;
        if digits == 0 {
            return Some(whole.to_string());
        }
        // num/den = whole + frac/den; frac * 10^digits / den is exact.
        let frac = u128::from(self.num % self.den) * 10u128.pow(digits) / u128::from(self.den);
        let mut text = format!("{whole}.{frac:0width$}", width = digits as usize);
        while text.ends_with('0') {
            text.pop();
        }
        Some(text)
    }

    /// Parses a decimal (`2`, `1.5`, `0.25`) exactly; `None` if it is not one or does
    /// not fit.
    pub fn from_decimal(text: &str) -> Option<Time> {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || (text.contains('.') && frac.is_empty()) {
            return None;
        }
        if frac.len() > 18 {
            return None;
        }
        let scale = 10u64.pow(frac.len() as u32);
        let whole: u64 = whole.parse().ok()?;
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        Time::reduced(
            u128::from(whole) * u128::from(scale) + u128::from(frac),
            u128::from(scale),
        )
    }
}

impl Ord for Time {
    fn cmp(&self, other: &Time) -> Ordering {
        let (a, b, c, d) = self.wide(*other);
        (a * d).cmp(&(c * b))
    }
}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Time) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Time {
    /// `3/4`, or `2` for a whole number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64, d: u64) -> Time {
        Time::new(n, d).unwrap()
    }

    #[test]
    fn arithmetic_is_exact_and_reduced() {
        assert_eq!(t(1, 3).checked_add(t(1, 6)), Some(t(1, 2)));
        assert_eq!(t(2, 4), t(1, 2));
        assert_eq!(t(3, 4).checked_sub(t(1, 4)), Some(t(1, 2)));
        assert_eq!(t(1, 4).checked_sub(t(3, 4)), None);
        assert_eq!(t(2, 3).checked_mul(t(3, 4)), Some(t(1, 2)));
        assert_eq!(t(1, 2).checked_div(t(1, 4)), Some(Time::whole(2)));
        assert_eq!(t(1, 2).checked_div(Time::ZERO), None);
        assert_eq!(Time::new(1, 0), None);
        assert!(t(1, 3) < t(1, 2));
        assert_eq!(
            (t(7, 2).floor(), t(7, 2).ceil(), Time::whole(3).ceil()),
            (3, 4, 3)
        );
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        let big = Time::whole(u64::MAX);
        assert_eq!(big.checked_add(Time::ONE), None);
        assert_eq!(big.checked_mul(Time::whole(2)), None);
        let tiny = t(1, u64::MAX);
        assert_eq!(tiny.checked_mul(t(1, 3)), None);
    }

    #[test]
    fn decimals_round_trip() {
        for (text, value) in [
            ("2", t(2, 1)),
            ("1.5", t(3, 2)),
            ("0.25", t(1, 4)),
            ("0.125", t(1, 8)),
        ] {
            assert_eq!(Time::from_decimal(text), Some(value));
            assert_eq!(value.to_decimal().as_deref(), Some(text));
        }
        assert_eq!(t(1, 3).to_decimal(), None);
        for bad in ["", ".5", "1.", "-1", "1e3", "1.2.3", "x"] {
            assert_eq!(Time::from_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn frames_of_a_bar() {
        // 120 bpm, 4/4, 48 kHz: a bar is 96,000 frames; 5/12 of it falls on frame 40,000.
        assert_eq!(t(5, 12).scaled_floor(96_000), Some(40_000));
        assert_eq!(Time::whole(3).scaled_floor(96_000), Some(288_000));
    }
}
