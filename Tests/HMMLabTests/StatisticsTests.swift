import Testing

@testable import HMMLab

@Suite("Statistics for bench compare, against SciPy")
struct StatisticsTests {
    /// Samples and SciPy 1.x `mannwhitneyu(a, b, alternative="two-sided", method="auto")` (U of a, p).
    static let scipy: [([Double], [Double], Double, Double)] = [
        ([1.1, 2.2, 3.3, 4.4, 5.5], [6.6, 7.7, 8.8, 9.9, 10.1], 0, 0.0079365079),  // exact
        ([10, 12, 11, 14, 13], [12.5, 15, 16, 17, 11.5], 5, 0.1507936508),  // exact
        ([1, 2, 2, 3, 3, 3], [3, 4, 4, 5, 6, 7], 1.5, 0.0088562843),  // ties: asymptotic
        ([5, 5, 5, 5, 5], [5, 5, 5, 5, 5], 12.5, 1.0),
        ([64, 64, 64, 64, 64], [32, 32, 32, 32, 32], 25, 0.0039767517),
        (
            [0.81, 0.93, 0.77, 1.02, 0.88, 0.91, 0.85, 0.79, 0.96, 1.01],
            [0.72, 0.69, 0.81, 0.75, 0.70, 0.78, 0.74, 0.83, 0.71, 0.77], 93, 0.0013039168
        ),
        ([3, 1, 4, 1, 5, 9, 2, 6, 5], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5], 48, 0.6925574233),
    ]

    @Test("Mann-Whitney U and its p-value match SciPy (exact and asymptotic)", arguments: scipy)
    func mannWhitney(_ c: ([Double], [Double], Double, Double)) {
        let r = Statistics.mannWhitneyU(c.0, c.1)
        #expect(r.u == c.2)
        #expect(abs(r.p - c.3) < 1e-8, "p \(r.p), SciPy \(c.3)")
    }

    @Test("the median's confidence interval comes from order statistics")
    func medianInterval() {
        let ten = (1...10).map(Double.init).shuffled()
        let ci = Statistics.medianInterval(ten)
        // 1 - 2·P(B <= 1), B ~ Binomial(10, 1/2) = 1 - 2·11/1024.
        #expect(ci.low == 2 && ci.high == 9 && abs(ci.coverage - (1 - 22.0 / 1024)) < 1e-12)
        let five = Statistics.medianInterval([5, 1, 3, 2, 4])
        #expect(
            five.low == 1 && five.high == 5 && abs(five.coverage - 0.9375) < 1e-12,
            "below 6 samples: the range, covering 1 - 2^-4")
        #expect(Statistics.median([4, 1, 3, 2]) == 2.5)
    }
}
