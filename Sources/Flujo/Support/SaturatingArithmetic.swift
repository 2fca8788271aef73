/// Arithmetic on numbers that come from users, steps and stored rows (a file
/// may hold anything): it saturates at the ends of the range instead of trapping.
extension Int {
    /// `self + other`, held at `Int.max` or `Int.min` instead of overflowing.
    package func addingSaturating(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, held at `Int.max` or `Int.min` instead of overflowing.
    package func subtractingSaturating(_ other: Int) -> Int {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }

    /// `value` rounded toward zero and held within the range; NaN is 0.
    package init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if value >= 9.223372036854775e18 {
            self = .max
        } else if value <= -9.223372036854775e18 {
            self = .min
        } else {
            self = Int(value)
        }
    }
}
