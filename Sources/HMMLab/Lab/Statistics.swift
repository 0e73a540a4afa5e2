import Glibc

/// The statistics `bench compare` reports, in the manner of benchstat: medians with a distribution-free
/// 95% confidence interval, and the Mann–Whitney U test for a difference between two samples.
enum Statistics {
    /// The median (mean of the two middle values for an even count); nan when empty.
    public static func median(_ values: [Double]) -> Double { Summary.median(values) }

    /// A distribution-free confidence interval for the median from order statistics: the widest
    /// `[x(k), x(n-k+1)]` whose coverage `1 - 2·P(Binomial(n, ½) < k)` is at least `confidence`.
    /// Below 6 samples no such interval exists at 95%; the range `[min, max]` is returned, with its
    /// real coverage (`1 - 2^(1-n)`).
    static func medianInterval(
        _ values: [Double], confidence: Double = 0.95
    ) -> (low: Double, high: Double, coverage: Double) {
        let x = values.sorted()
        let n = x.count
        guard n > 0 else { return (.nan, .nan, 0) }
        // The interval [x(k), x(n-k+1)] covers the median with probability 1 - 2·P(B <= k-1),
        // B ~ Binomial(n, 1/2).
        var best: Int?
        var bestCoverage = 0.0
        var cdf = 0.0
        var pmf = pow(0.5, Double(n))  // P(B = 0)
        for k in 1...max(1, (n + 1) / 2) {
            cdf += pmf
            let coverage = 1 - 2 * cdf
            if coverage < confidence { break }
            best = k
            bestCoverage = coverage
            pmf *= Double(n - (k - 1)) / Double(k)
        }
        guard let k = best else { return (x[0], x[n - 1], max(0, 1 - pow(0.5, Double(n - 1)))) }
        return (x[k - 1], x[n - k], bestCoverage)
    }

    /// The two-sided Mann–Whitney U test of `a` against `b`: the statistic `U` of `a` (the number of
    /// pairs where `a` is larger, ties counting one half) and the p-value. As SciPy's `mannwhitneyu`
    /// with `method="auto"`: the exact distribution when a sample has at most 8 values and there are
    /// no ties, else the normal approximation with tie correction and continuity correction.
    static func mannWhitneyU(_ a: [Double], _ b: [Double]) -> (u: Double, p: Double) {
        let n1 = a.count
        let n2 = b.count
        guard n1 > 0, n2 > 0 else { return (.nan, .nan) }
        // Ranks of the pooled sample, ties given their mean rank.
        var pooled = a.map { ($0, 0) } + b.map { ($0, 1) }
        pooled.sort { $0.0 < $1.0 }
        var ranks = [Double](repeating: 0, count: pooled.count)
        var tieTerm = 0.0  // Σ (t³ - t)
        var i = 0
        while i < pooled.count {
            var j = i
            while j + 1 < pooled.count, pooled[j + 1].0 == pooled[i].0 { j += 1 }
            let rank = Double(i + j + 2) / 2
            for k in i...j { ranks[k] = rank }
            let t = Double(j - i + 1)
            tieTerm += t * t * t - t
            i = j + 1
        }
        var r1 = 0.0
        for k in pooled.indices where pooled[k].1 == 0 { r1 += ranks[k] }
        let u1 = r1 - Double(n1 * (n1 + 1)) / 2
        let u2 = Double(n1 * n2) - u1
        let big = max(u1, u2)
        if min(n1, n2) <= 8, tieTerm == 0 {
            // Exact: P(U >= big) from the distribution of U under H0, doubled.
            let counts = exactUCounts(n1, n2)
            let total = counts.reduce(0, +)
            var tail = 0.0
            for u in Int(big.rounded())..<counts.count { tail += counts[u] }
            return (u1, min(1, 2 * tail / total))
        }
        let mean = Double(n1 * n2) / 2
        let n = Double(n1 + n2)
        let variance = Double(n1 * n2) / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { return (u1, 1) }
        let z = (big - mean - 0.5) / variance.squareRoot()
        let p = erfc(z / 2.0.squareRoot())  // 2 · (1 - Φ(z))
        return (u1, min(1, max(0, p)))
    }

    /// How many arrangements of `n1` and `n2` distinct values give each U, for U = 0…n1·n2.
    static func exactUCounts(_ n1: Int, _ n2: Int) -> [Double] {
        // f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u), over a table of n2+1 rows.
        let maxU = n1 * n2
        var table = [[[Double]]](repeating: [[Double]](repeating: [], count: n2 + 1), count: n1 + 1)
        for m in 0...n1 {
            for n in 0...n2 {
                var row = [Double](repeating: 0, count: m * n + 1)
                if m == 0 || n == 0 {
                    row[0] = 1
                } else {
                    let a = table[m - 1][n]
                    let b = table[m][n - 1]
                    for u in 0...(m * n) {
                        var v = 0.0
                        if u - n >= 0, u - n < a.count { v += a[u - n] }
                        if u < b.count { v += b[u] }
                        row[u] = v
                    }
                }
                table[m][n] = row
            }
        }
        var result = table[n1][n2]
        if result.count < maxU + 1 { result += [Double](repeating: 0, count: maxU + 1 - result.count) }
        return result
    }
}
