/// The errno values the modelled kernel paths return, negative as the kernel returns them (`-EBUSY`
/// from a walk, `-EFAULT` from `hmm_range_fault`, …). One set for every layer: the page walker, the
/// fault paths and the HMM paths.
enum Errno {
    static let EPERM: Int32 = -1
    static let ENOENT: Int32 = -2
    static let EAGAIN: Int32 = -11
    static let ENOMEM: Int32 = -12
    static let EFAULT: Int32 = -14
    public static let EBUSY: Int32 = -16
    static let EINVAL: Int32 = -22
    static let ERANGE: Int32 = -34
    static let EOPNOTSUPP: Int32 = -95

    public static func name(_ e: Int32) -> String {
        switch e {
        case 0: "0"
        case EPERM: "-EPERM"
        case ENOENT: "-ENOENT"
        case EAGAIN: "-EAGAIN"
        case ENOMEM: "-ENOMEM"
        case EFAULT: "-EFAULT"
        case EBUSY: "-EBUSY"
        case EINVAL: "-EINVAL"
        case ERANGE: "-ERANGE"
        case EOPNOTSUPP: "-EOPNOTSUPP"
        default: "\(e)"
        }
    }
}
