import Glibc

/// A failed system call: the call, its errno and what it was doing.
///
/// The command line prints ``description`` as one line; nothing in the lab turns an errno into a crash.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The C function or system call that failed, e.g. `mbind`.
    public let call: String
    /// The errno it set (or the negated return value for calls that return `-errno`).
    public let errno: Int32
    /// What the call was doing, e.g. `node 1, 64 MiB at 0x7f…`.
    let context: String

    public init(_ call: String, errno: Int32, _ context: String = "") {
        self.call = call
        self.errno = errno
        self.context = context
    }

    /// Captures the calling thread's current `errno`.
    public static func last(_ call: String, _ context: String = "") -> SystemError {
        SystemError(call, errno: Glibc.errno, context)
    }

    /// The symbolic name of the errno, e.g. `ENOMEM`.
    var errnoName: String { Self.name(of: errno) }

    public var description: String {
        let message = String(cString: strerror(errno))
        let ctx = context.isEmpty ? "" : " (\(context))"
        return "\(call) failed with \(errnoName): \(message)\(ctx)"
    }

    /// Symbolic names for the errno values the lab meets; others print as `errno N`.
    public static func name(of errno: Int32) -> String {
        switch errno {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case E2BIG: "E2BIG"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EFAULT: "EFAULT"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case EINVAL: "EINVAL"
        case ENOSPC: "ENOSPC"
        case ERANGE: "ERANGE"
        case ENOSYS: "ENOSYS"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case EHWPOISON: "EHWPOISON"
        default: "errno \(errno)"
        }
    }
}
