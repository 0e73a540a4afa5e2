import Glibc

/// A POSIX thread running a closure, for work that must own its thread (pinning, spinning on one CPU):
/// Dispatch threads are shared and must not be pinned.
public struct PosixThread {
    private let thread: pthread_t

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread; nil (with the errno in `error`) when `pthread_create` fails.
    public init?(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(body))
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            return nil
        }
        self.thread = thread
    }

    /// Waits for the thread to return.
    public func join() {
        pthread_join(thread, nil)
    }
}
