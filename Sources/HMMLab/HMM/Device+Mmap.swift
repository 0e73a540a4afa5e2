extension Device {
    /// `mmap()` of the dmirror device file (`dmirror_fops_mmap`, lib/test_hmm.c): a private `VM_MIXEDMAP`
    /// VMA of `pages` pages, each a new zeroed system page inserted with `vm_insert_page`, read-only
    /// (a private mapping's `vm_page_prot`).
    func mmapFile(pages: Int, protection: Protection = .readWrite) throws(MMError) -> UInt64 {
        let start = try mm.mmapSpecial(length: pages * PageSize.bytes, protection: protection, flags: .mixedMap)
        for k in 0..<pages { try mm.insertPage(pageAddress(start, k)) }
        return start
    }
}
