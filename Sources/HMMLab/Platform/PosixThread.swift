import Glibc

/// A POSIX thread running a closure, for work that must own its thread (pinning, spinning on one CPU):
/// Dispatch threads are shared and must not be pinned.
struct PosixThread {
    private let thread: pthread_t

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread; nil when `pthread_create` fails.
    public init?(_ body: @escaping @Sendable () -> Void) {
        guard let started = try? Self.start(body) else { return nil }
        self = started
    }

    private init(thread: pthread_t) { self.thread = thread }

    /// Starts `body` on a new thread.
    /// - Throws: the `pthread_create` failure, with its errno.
    public static func start(_ body: @escaping @Sendable () -> Void) throws(SystemError) -> PosixThread {
        let box = Unmanaged.passRetained(Body(body))
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
                return nil
            }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw SystemError("pthread_create", errno: rc)
        }
        return PosixThread(thread: thread)
    }

    /// Waits for the thread to return.
    func join() {
        pthread_join(thread, nil)
    }
}
