/// A driver's `struct dev_pagemap` with its `dev_pagemap_ops`: how the CPU fault path hands a
/// device-private page back to the device that owns it.
///
/// The device's pages carry its ``owner`` token in their descriptor's `private` word (the kernel reaches
/// `page->pgmap->owner`); ``PhysicalMemory`` keeps the registry from token to pagemap.
protocol DevicePagemap: AnyObject, Sendable {
    /// `pgmap->owner`: the token `hmm_range_fault` and `migrate_vma` compare with their owner argument.
    var owner: UInt64 { get }

    /// `dev_pagemap_ops.migrate_to_ram`: the CPU faulted on a device-private entry of `mm` at `address`
    /// mapping `faultPage`, which the fault path has locked and holds a reference on (`vmf->page`).
    /// Called with the mmap lock held for reading; returns once the page is back in system memory (or
    /// the fault should simply be retried), or throws to fail the fault. `throughPTE`: the fault came
    /// through a PTE (`vmf->pte` set), not a device-private PMD.
    func migrateToRAM(_ mm: AddressSpace, address: UInt64, faultPage: Pfn, throughPTE: Bool) throws(FaultError)

    /// `dev_pagemap_ops.page_free` for a device folio whose `zone_device_data` names a backing folio of
    /// the same order in system memory (test_hmm's `dmirror_devmem_free`): the last reference to `folio`
    /// went. ``PhysicalMemory`` frees `backing` when this returns, and the device frame after it.
    func pageFree(_ folio: Folio, backing: Pfn)
}

extension DevicePagemap {
    /// A pagemap whose pages have no backing folio has nothing to do.
    func pageFree(_ folio: Folio, backing: Pfn) {}
}
