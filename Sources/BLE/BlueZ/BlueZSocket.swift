import CBlueZ
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking Bluetooth socket and its readiness, turned into `async` waits.
///
/// The kernel tells us when the descriptor becomes readable or writable (Dispatch sources over epoll);
/// nothing here polls or sleeps. One waiter per direction at a time: callers (the advertiser's command
/// loop, a listener's accept loop, one connect) are sequential by construction.
///
/// The sources capture this object strongly until `close()` cancels them, so an owner must call
/// `close()` (the public wrappers do it in `deinit`).
final class BlueZSocketHandle: @unchecked Sendable {   // its vars are only touched on the serial `queue`; the rest are lets
    let fd: Int32
    private let queue: DispatchQueue
    // All state below is touched only on `queue`.
    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite
    private var readActive = false
    private var writeActive = false
    private var readWaiter: CheckedContinuation<Void, Error>?
    private var writeWaiter: CheckedContinuation<Void, Error>?
    private var closed = false
    private var pendingCancels = 2

    /// Takes ownership of `fd`, which must already be non-blocking.
    init(fd: Int32, label: String) {
        self.fd = fd
        queue = DispatchQueue(label: "keyway.bluez.\(label)")
        readSource = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        writeSource = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        readSource.setEventHandler { [self] in
            // Level-triggered: stop listening until someone waits again, so an unread frame does not
            // spin the queue.
            pauseRead()
            readWaiter.take()?.resume()
        }
        writeSource.setEventHandler { [self] in
            pauseWrite()
            writeWaiter.take()?.resume()
        }
        let closeWhenBothCancelled: @Sendable () -> Void = { [self] in
            pendingCancels -= 1
            if pendingCancels == 0 { _ = Glibc.close(fd) }
        }
        readSource.setCancelHandler(handler: closeWhenBothCancelled)
        writeSource.setCancelHandler(handler: closeWhenBothCancelled)
    }

    /// Suspends until the descriptor is readable (or has an error or hang-up pending).
    func waitReadable() async throws { try await wait(read: true) }

    /// Suspends until the descriptor is writable — also how a non-blocking `connect` completes.
    func waitWritable() async throws { try await wait(read: false) }

    private func wait(read: Bool) async throws {
        // Set by the cancellation handler before it queues its block. A task cancelled before this
        // wait reached the queue finds it set there (its handler's block ran first and found no waiter
        // to wake); one cancelled later finds its waiter woken by that block.
        let cancelled = Locked(false)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                queue.async { [self] in
                    if closed { c.resume(throwing: BlueZError.closed); return }
                    if cancelled.withLock({ $0 }) { c.resume(throwing: CancellationError()); return }
                    if read {
                        if let previous = readWaiter.take() { previous.resume(throwing: BlueZError.closed) }
                        readWaiter = c
                        if !readActive { readActive = true; readSource.resume() }
                    } else {
                        if let previous = writeWaiter.take() { previous.resume(throwing: BlueZError.closed) }
                        writeWaiter = c
                        if !writeActive { writeActive = true; writeSource.resume() }
                    }
                }
            }
        } onCancel: {
            cancelled.withLock { $0 = true }
            queue.async { [self] in
                if read {
                    pauseRead()
                    readWaiter.take()?.resume(throwing: CancellationError())
                } else {
                    pauseWrite()
                    writeWaiter.take()?.resume(throwing: CancellationError())
                }
            }
        }
    }

    // Once closed, the sources stay resumed: libdispatch traps when a suspended source is released,
    // and a cancellation's onCancel block can arrive after `close()` ran.
    private func pauseRead() { if readActive && !closed { readActive = false; readSource.suspend() } }
    private func pauseWrite() { if writeActive && !closed { writeActive = false; writeSource.suspend() } }

    /// Wakes any waiter with `BlueZError.closed` and closes the descriptor once the sources are gone.
    /// Idempotent; safe from any thread.
    func close() {
        queue.async { [self] in
            guard !closed else { return }
            closed = true
            readWaiter.take()?.resume(throwing: BlueZError.closed)
            writeWaiter.take()?.resume(throwing: BlueZError.closed)
            // A source must be resumed (active) to be cancelled and released cleanly.
            if !readActive { readActive = true; readSource.resume() }
            if !writeActive { writeActive = true; writeSource.resume() }
            readSource.cancel()
            writeSource.cancel()
        }
    }

    /// Hands the descriptor to someone else (a bearer that does its own I/O): the sources are
    /// cancelled without closing it. Must be called before any other use of the returned descriptor.
    func release() async -> Int32 {
        await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
            queue.async { [self] in
                closed = true
                readWaiter.take()?.resume(throwing: BlueZError.closed)
                writeWaiter.take()?.resume(throwing: BlueZError.closed)
                pendingCancels = Int.max   // the cancel handlers must not close the descriptor
                if !readActive { readActive = true; readSource.resume() }
                if !writeActive { writeActive = true; writeSource.resume() }
                readSource.cancel()
                writeSource.cancel()
                // Cancel handlers are queued on this same serial queue: once they ran, epoll no longer
                // holds the descriptor and it is the caller's.
                queue.async { [fd] in c.resume(returning: fd) }
            }
        }
    }
}

extension Optional {
    /// Returns the value and leaves `nil` behind (a continuation must be resumed exactly once).
    fileprivate mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}

/// Thin wrappers over the socket calls, returning `errno` instead of setting a global.
enum BlueZSys {
    static let sockCloexecNonblock = Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)

    /// `socket(AF_BLUETOOTH, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto)`.
    static func socket(type: Int32, proto: Int32, operation: String) throws -> Int32 {
        let fd = Glibc.socket(AF_BLUETOOTH, type | sockCloexecNonblock, proto)
        if fd < 0 { throw BlueZError.classify(errno: errno, operation: operation) }
        return fd
    }

    static func setOption<T>(_ fd: Int32, level: Int32, name: Int32, _ value: T) -> Int32? {
        var v = value
        let r = withUnsafePointer(to: &v) { setsockopt(fd, level, name, $0, socklen_t(MemoryLayout<T>.size)) }
        return r == 0 ? nil : errno
    }

    static func getOption<T>(_ fd: Int32, level: Int32, name: Int32, _ initial: T) -> (T, Int32?) {
        var v = initial
        var len = socklen_t(MemoryLayout<T>.size)
        let r = withUnsafeMutablePointer(to: &v) { getsockopt(fd, level, name, $0, &len) }
        return (v, r == 0 ? nil : errno)
    }

    /// `bind`/`connect` with a C socket address struct, passing its exact C size.
    static func withSockaddr<S, R>(_ address: S, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var a = address
        return withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<S>.size)) }
        }
    }
}
