#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CBlueZ   // <sys/epoll.h> and <sys/eventfd.h> (see its shim.h)

/// What a socket registered with a `SocketEventLoop` is told. Called on the loop's thread only, one
/// call at a time: it must not block (every socket of the process waits behind it).
protocol SocketEventHandler: AnyObject, Sendable {
    /// The descriptor is readable (or hung up / in error: a read then says how), and/or writable.
    func socketEvents(readable: Bool, writable: Bool)
}

/// One thread waiting in epoll(7) for every socket of the process's cross-process and BlueZ links:
/// listeners and connections alike. A link costs a descriptor and a small state — no thread, no
/// wake-up pipe — so thousands of held connections cost what their sockets cost, and a flood of
/// connections cannot exhaust threads.
///
/// Level-triggered. Handlers run on the loop thread; they read until the socket would block, but at
/// most a bounded amount per wake-up, so one busy peer cannot starve the others. Closing a
/// descriptor goes through `execute(_:)` (on the loop thread) after `deregister`, so no event for a
/// closed descriptor — or for a new one that reused its number — reaches the old handler: handlers
/// are found by a token that is never reused, not by descriptor number.
final class SocketEventLoop: Sendable {
    /// The process's loop, started on first use; it lives as long as the process.
    static let shared: SocketEventLoop = {
        do { return try SocketEventLoop(name: "keyway.ble.sockets") } catch {
            fatalError("cannot create the socket event loop: \(error)")  // epoll_create1/eventfd only fail without descriptors or memory
        }
    }()

    /// The read buffer of the loop's handlers: only touched on the loop thread, one handler at a time.
    nonisolated(unsafe) let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    private let epfd: Int32
    private let wakeFD: Int32
    private struct State {
        var handlers: [UInt64: any SocketEventHandler] = [:]
        var nextToken: UInt64 = 1
        var work: [@Sendable () -> Void] = []
        var wakePending = false
    }
    private let state = Locked(State())
    /// The token epoll reports for the wake-up eventfd.
    private static let wakeToken: UInt64 = 0

    init(name: String) throws(LocalSocketError) {
        let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard ep >= 0 else { throw .last("epoll_create1") }
        let wake = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard wake >= 0 else { Glibc.close(ep); throw .last("eventfd") }
        var ev = epoll_event()
        ev.events = Self.inMask
        ev.data.u64 = Self.wakeToken
        guard epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) == 0 else {
            let e = LocalSocketError.last("epoll_ctl(eventfd)")
            Glibc.close(ep); Glibc.close(wake)
            throw e
        }
        epfd = ep
        wakeFD = wake
        let thread = Thread { [self] in self.run() }
        thread.name = name
        thread.start()
    }

    private static let inMask = UInt32(EPOLLIN.rawValue) | UInt32(EPOLLRDHUP.rawValue)
    private static func mask(writable: Bool) -> UInt32 { inMask | (writable ? UInt32(EPOLLOUT.rawValue) : 0) }

    /// Starts watching `fd` for `handler`; returns the registration's token (for `update` and `deregister`).
    func register(_ fd: Int32, _ handler: any SocketEventHandler, writable: Bool = false) throws(LocalSocketError) -> UInt64 {
        let token = state.withLock { s in
            let t = s.nextToken
            s.nextToken += 1
            s.handlers[t] = handler
            return t
        }
        var ev = epoll_event()
        ev.events = Self.mask(writable: writable)
        ev.data.u64 = token
        guard epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0 else {
            let e = LocalSocketError.last("epoll_ctl(ADD)")
            _ = state.withLock { $0.handlers.removeValue(forKey: token) }
            throw e
        }
        return token
    }

    /// Whether the handler also wants to hear that `fd` became writable (it has queued output).
    func update(_ fd: Int32, token: UInt64, writable: Bool) {
        var ev = epoll_event()
        ev.events = Self.mask(writable: writable)
        ev.data.u64 = token
        _ = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)   // fails only for a descriptor already deregistered
    }

    /// Keeps `fd` registered but reports nothing for it until the next `update`.
    func silence(_ fd: Int32, token: UInt64) {
        var ev = epoll_event()
        ev.events = 0
        ev.data.u64 = token
        _ = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
    }

    /// Stops watching `fd`; its handler gets no further call. Call before closing the descriptor.
    func deregister(_ fd: Int32, token: UInt64) {
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
        _ = state.withLock { $0.handlers.removeValue(forKey: token) }
    }

    /// Runs `work` on the loop thread, after the events being handled now.
    func execute(_ work: @escaping @Sendable () -> Void) {
        let wake: Bool = state.withLock { s in
            s.work.append(work)
            defer { s.wakePending = true }
            return !s.wakePending
        }
        if wake {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
    }

    /// Sockets registered now (listeners and connections).
    var registeredCount: Int { state.withLock { $0.handlers.count } }

    private func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while true {
            let n = epoll_wait(epfd, events, Int32(capacity), -1)
            if n < 0 {
                if errno == EINTR { continue }
                fatalError("epoll_wait failed: \(String(cString: strerror(errno)))")  // EBADF/EINVAL: a bug, not a peer
            }
            for i in 0..<Int(n) {
                let token = events[i].data.u64
                let mask = events[i].events
                if token == Self.wakeToken {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeFD, &value, 8)
                    continue
                }
                // Looked up per event: a handler deregistered by an earlier event of this batch is gone.
                guard let handler = state.withLock({ $0.handlers[token] }) else { continue }
                let readable = mask & (UInt32(EPOLLIN.rawValue) | UInt32(EPOLLRDHUP.rawValue) | UInt32(EPOLLHUP.rawValue) | UInt32(EPOLLERR.rawValue)) != 0
                let writable = mask & UInt32(EPOLLOUT.rawValue) != 0
                handler.socketEvents(readable: readable, writable: writable)
            }
            let work: [@Sendable () -> Void] = state.withLock { s in
                defer { s.work.removeAll(keepingCapacity: true); s.wakePending = false }
                return s.work
            }
            for w in work { w() }
        }
    }
}
