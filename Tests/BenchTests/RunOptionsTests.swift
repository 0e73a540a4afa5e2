@testable import HMMLab
import Testing

@testable import bench

@Suite("bench: the command line's run options are RunOption.all's")
struct RunOptionsTests {
    @Test(
        "ArgumentParser parses every table option into 'given', as --NAME VALUE and --NAME=VALUE; --verify; unknown names refused"
    )
    func parsesEveryOption() throws {
        for (i, option) in RunOption.all.enumerated() {
            let value = "value-\(i)"
            #expect(try RunOptions.parse(["--\(option.name)", value]).given == [option.name: value])
            #expect(try RunOptions.parse(["--\(option.name)=\(value)"]).given == [option.name: value])
        }
        let none = try RunOptions.parse([])
        #expect(none.given.isEmpty && !none.verify)
        #expect(try RunOptions.parse(["--verify", "--pages", "512"]).verify)
        #expect(throws: (any Error).self) { try RunOptions.parse(["--no-such-option", "1"]) }
    }

    @Test(
        "bench --help and bench sweep --help list every table option with its help, in the table's order, then --verify"
    )
    func helpListsEveryOption() {
        for help in [Run.helpMessage(columns: 1000), Sweep.helpMessage(columns: 1000)] {
            var from = help.startIndex
            for option in RunOption.all {
                guard let r = help.range(of: "--\(option.name) <\(option.name)>", range: from..<help.endIndex) else {
                    Issue.record("--\(option.name) is not listed (in order) in: \(help)")
                    continue
                }
                #expect(help.contains(option.help), "\(option.name)")
                from = r.upperBound
            }
            #expect(help[from...].contains("--verify"))
        }
    }
}
