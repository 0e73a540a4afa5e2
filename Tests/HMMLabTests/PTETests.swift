import Testing

@testable import HMMLab

@Suite("PTE: every entry kind encodes and decodes")
struct PTETests {
    let pfn = Pfn(0x12345)

    @Test("present entries use the x86-64 layout")
    func present() {
        let e = PTE.present(pfn, writable: true, dirty: true, softDirty: true)
        #expect(e.rawValue & 1 == 1 && e.rawValue & 2 == 2 && e.rawValue & 4 == 4 && e.rawValue & 0x40 != 0)
        #expect(
            e.pfn == pfn && e.isPresent && e.isWritable && e.isDirty && e.isSoftDirty && !e.isHuge && !e.isSwapFormat)
        #expect((e.rawValue >> 12) & ((1 << 40) - 1) == pfn.rawValue, "pfn in bits 12-51")
        let ro = e.writeProtected()
        #expect(!ro.isWritable && ro.isPresent && ro.pfn == pfn)
        let huge = PTE.present(pfn, writable: false, huge: true)
        #expect(huge.isHuge && huge.rawValue & 0x80 != 0)
        let zero = PTE.present(pfn, writable: false, special: true)
        #expect(zero.isSpecial)
        #expect(PTE.none.isNone && !PTE.none.isPresent)
    }

    @Test("protnone keeps the pfn and still counts as present")
    func protNone() {
        let e = PTE.protNone(pfn)
        #expect(e.isPresent && e.isProtNone && !e.isWritable && e.pfn == pfn && e.rawValue & 1 == 0)
    }

    @Test("swap, migration, device-private and device-exclusive entries")
    func nonPresent() {
        let s = PTE.swap(slot: 77, softDirty: true, exclusive: true)
        #expect(s.isSwap && !s.isPresent && s.swapOffset == 77 && s.swapSoftDirty && s.swapExclusive && !s.isMigration)
        for (mode, writable, exclusive) in [
            (PTE.MigrationMode.read, false, false), (.readExclusive, false, true), (.write, true, false),
        ] {
            let m = PTE.migration(pfn, mode: mode, young: true, dirty: true, softDirty: true, uffdWP: true)
            #expect(m.isMigration && !m.isSwap && !m.isPresent && m.pfn == pfn)
            #expect(m.isWritableMigration == writable && m.isReadExclusiveMigration == exclusive)
            #expect(m.migrationYoung && m.migrationDirty && m.swapSoftDirty && m.swapUffdWP)
            #expect(m.swapType == [PTE.MigrationMode.read: 26, .readExclusive: 27, .write: 28][mode])
        }
        let d = PTE.devicePrivate(pfn, writable: true)
        #expect(d.isDevicePrivate && d.isWritableDevicePrivate && d.pfn == pfn && d.swapType == 29 && !d.isMigration)
        #expect(!PTE.devicePrivate(pfn, writable: false).isWritableDevicePrivate)
        let x = PTE.deviceExclusive(pfn)
        #expect(
            x.isDeviceExclusive && x.pfn == pfn && x.swapType == 31 && !x.isPresent && !x.swapSoftDirty && !x.isWritable
        )
        #expect(PTE.deviceExclusive(pfn, softDirty: true).swapSoftDirty)
        #expect(d.isPfnSwapEntry && x.isPfnSwapEntry && !s.isPfnSwapEntry)
    }

    @Test("PMD-level migration and device-private entries")
    func pmdLevel() {
        let m = PTE.migration(Pfn(512 * 9), mode: .write, young: false, dirty: false)
        #expect(m.isMigration && !m.isHuge && m.pfn.rawValue % 512 == 0)
        let d = PTE.devicePrivate(Pfn(512 * 9), writable: false)
        #expect(d.isDevicePrivate && !d.isHuge)
        let t = PTE.table(Pfn(7))
        #expect(t.isPresent && !t.isHuge && t.pfn == Pfn(7))
    }

    @Test("address bits split into the four level indices")
    func levels() {
        let a: UInt64 = (3 << 39) | (5 << 30) | (7 << 21) | (11 << 12) | 0x123
        #expect(
            PageTableLevel.pgd.index(a) == 3 && PageTableLevel.pud.index(a) == 5 && PageTableLevel.pmd.index(a) == 7
                && PageTableLevel.pte.index(a) == 11)
        #expect(PageTableLevel.pmd.addressEnd(0x20_0000 + 0x1000, 0x80_0000) == 0x40_0000)
        #expect(PageTableLevel.pmd.addressEnd(0x20_0000, 0x30_0000) == 0x30_0000)
    }
}
