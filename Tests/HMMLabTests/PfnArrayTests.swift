import Testing

@testable import HMMLab

@Suite("PfnArray: the fixed-capacity src, dst and hmm_pfns arrays")
struct PfnArrayTests {
    @Test("made zeroed, written in place, a prefix cleared by update")
    func basics() {
        let words = PfnArray(capacity: 8)
        #expect(words.capacity == 8)
        #expect((0..<8).allSatisfy { words[$0] == 0 })
        for i in 0..<8 { words[i] = UInt64(i) << 8 | MigratePfn.migrate }
        words[3] &= ~MigratePfn.migrate
        #expect(words[3] == 3 << 8 && words[4] == 4 << 8 | MigratePfn.migrate)
        words.update(repeating: 0, count: 5)
        #expect((0..<5).allSatisfy { words[$0] == 0 } && words[5] == 5 << 8 | MigratePfn.migrate)
    }

    @Test("a migrate_vma and an hmm_range size their arrays once, to their capacity")
    func owners() {
        let range = HMMRange(capacity: 64)
        #expect(range.capacity == 64 && range.hmmPfns.capacity == 64)
    }
}
