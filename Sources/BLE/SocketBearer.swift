#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// An `ATTBearer` over a connected socket file descriptor, for cross-process links and for the
/// kernel's L2CAP sockets.
///
/// Framing:
/// - `.l2capFramedStream` — a byte stream (Unix-domain or TCP socket) carrying L2CAP basic frames:
///   2-byte length (LE), 2-byte CID 0x0004, the ATT PDU. Lets a test peer in another process or
///   language be the phone (see docs/PROTOCOL.md, "Bearers and the cross-process loopback link" and Tests/peers/ble_phone.py).
/// - `.seqpacket` — a SOCK_SEQPACKET descriptor where every packet is one bare ATT PDU: a BlueZ
///   L2CAP LE socket connected on the ATT CID (the kernel adds and strips the L2CAP header), or a
///   Unix SOCK_SEQPACKET pair.
///
/// I/O: the descriptor is made non-blocking; `send` writes directly from the caller's thread and
/// only queues (bounded) what the kernel will not take yet. One dedicated thread per bearer blocks in
/// poll(2) on the socket and a wake-up pipe — it reads, flushes queued output, and delivers events;
/// nothing sleeps or polls on a timer. The thread (and the descriptor) live until the link closes:
/// call `close()` when done with a bearer.
public final class SocketBearer: ATTBearer, CustomStringConvertible {
    public enum Framing: Sendable, Equatable {
        /// Stream socket carrying L2CAP basic frames on CID 0x0004.
        case l2capFramedStream
        /// SOCK_SEQPACKET socket carrying one bare ATT PDU per packet.
        case seqpacket
    }

    public let linkMTU: Int
    public let framing: Framing
    /// Outbound bytes the bearer queues when the peer is slow; past this `send` throws `.congested`.
    public let outboundBufferLimit: Int
    public var description: String { "SocketBearer(fd \(fd), \(framing))" }

    private let fd: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let inbox = BearerInbox()

    private struct State {
        var pending = FIFO<[UInt8]>()
        var pendingOffset = 0          // bytes of `pending.first` already written
        var pendingBytes = 0
        var started = false
        var closeRequested = false
        var closedReason: ATTBearerCloseReason?
        var fdsOpen = true
    }
    private let state = Locked(State())

    /// Adopts a connected socket; the bearer owns it from now on (closes it on `close()`).
    /// - Parameters:
    ///   - fd: a connected stream socket (`.l2capFramedStream`) or SOCK_SEQPACKET socket (`.seqpacket`).
    ///   - linkMTU: largest ATT PDU accepted in either direction (bigger inbound ones fail the link).
    public init(adopting fd: Int32, framing: Framing, linkMTU: Int = ATT.maximumMTU,
                outboundBufferLimit: Int = 1 << 20) throws {
        guard fd >= 0 else { throw LocalSocketError.invalidArgument("invalid file descriptor \(fd)") }
        guard (ATT.defaultMTU...0xFFFF).contains(linkMTU) else {
            throw LocalSocketError.invalidArgument("link MTU \(linkMTU) outside 23…65535")
        }
        try POSIX.setNonBlocking(fd)
        let (r, w) = try POSIX.makeWakePipe()
        self.fd = fd
        self.framing = framing
        self.linkMTU = linkMTU
        self.outboundBufferLimit = outboundBufferLimit
        wakeRead = r
        wakeWrite = w
    }

    deinit {
        // Only reached if never started (the I/O thread holds a reference while it runs).
        state.withLock { s in
            if s.fdsOpen {
                s.fdsOpen = false
                Glibc.close(fd); Glibc.close(wakeRead); Glibc.close(wakeWrite)
            }
        }
    }

    /// Connects to a `SocketBearerListener` (or any peer speaking the framing).
    public static func connect(to address: LocalSocketAddress, framing: Framing = .l2capFramedStream,
                               linkMTU: Int = ATT.maximumMTU) throws -> SocketBearer {
        let type: Int32
        switch (framing, address) {
        case (.l2capFramedStream, _): type = POSIX.streamType()
        case (.seqpacket, .unix): type = POSIX.seqpacketType()
        case (.seqpacket, .tcpLoopback): throw LocalSocketError.invalidArgument("TCP has no packet framing; use .l2capFramedStream")
        }
        let fd = socket(POSIX.family(address), type, 0)
        guard fd >= 0 else { throw LocalSocketError.last("socket") }
        do {
            try POSIX.withSockaddr(address) { (sa, len) throws(LocalSocketError) in
                var r: Int32
                repeat { r = Glibc.connect(fd, sa, len) } while r != 0 && errno == EINTR
                guard r == 0 else { throw .last("connect(\(address))") }
            }
            if case .tcpLoopback = address { POSIX.setNoDelay(fd) }
            return try SocketBearer(adopting: fd, framing: framing, linkMTU: linkMTU)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Two connected bearers over `socketpair(2)` — real kernel sockets within one process.
    public static func makePair(framing: Framing = .l2capFramedStream,
                                linkMTU: Int = ATT.maximumMTU) throws -> (SocketBearer, SocketBearer) {
        var fds: [Int32] = [-1, -1]
        let type = framing == .seqpacket ? POSIX.seqpacketType() : POSIX.streamType()
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw LocalSocketError.last("socketpair") }
        do {
            let a = try SocketBearer(adopting: fds[0], framing: framing, linkMTU: linkMTU)
            do {
                return (a, try SocketBearer(adopting: fds[1], framing: framing, linkMTU: linkMTU))
            } catch {
                Glibc.close(fds[1])
                a.close()
                throw error
            }
        } catch {
            Glibc.close(fds[0])
            throw error
        }
    }

    // MARK: ATTBearer

    public func start(_ receiver: @escaping ATTBearerReceiver) throws {
        try inbox.start(receiver)
        let launch: Bool = state.withLock { s in
            guard !s.started else { return false }
            s.started = true
            return s.fdsOpen
        }
        if launch {
            let thread = Thread { [self] in self.ioLoop() }
            thread.name = "keyway.ble.socket.\(fd)"
            thread.start()
        }
    }

    public func send(_ pdu: [UInt8]) throws {
        try validateOutbound(pdu)
        let bytes = framing == .l2capFramedStream ? L2CAPBasicFrame(payload: pdu).encode() : pdu
        try state.withLock { (s) throws(ATTBearerError) in
            if let reason = s.closedReason { throw .closed(reason) }
            if s.closeRequested || !s.fdsOpen { throw .closed(.local) }
            if s.pending.isEmpty {
                switch writeSome(bytes, from: 0) {
                case .done:
                    return
                case .partial(let written):
                    s.pending.append(bytes)
                    s.pendingOffset = written
                    s.pendingBytes = bytes.count - written
                    POSIX.wake(wakeWrite)  // the I/O thread now waits for POLLOUT too
                case .failed(let why):
                    s.closedReason = .failure(why)
                    POSIX.wake(wakeWrite)
                    throw .closed(.failure(why))
                }
            } else {
                guard s.pendingBytes + bytes.count <= outboundBufferLimit else {
                    throw .congested(bufferedBytes: s.pendingBytes)
                }
                s.pending.append(bytes)
                s.pendingBytes += bytes.count
            }
        }
    }

    public func close() {
        let closeNow: Bool = state.withLock { s in
            guard !s.closeRequested, s.closedReason == nil else { return false }
            s.closeRequested = true
            if s.started {
                if s.fdsOpen { POSIX.wake(wakeWrite) }
                return false
            }
            return true
        }
        if closeNow {
            teardown()
            inbox.deliver(.closed(.local))
        }
    }

    // MARK: I/O

    private enum WriteResult { case done, partial(Int), failed(String) }

    /// One non-blocking write attempt of `bytes[offset...]` (called with the state lock held).
    private func writeSome(_ bytes: [UInt8], from offset: Int) -> WriteResult {
        var off = offset
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n > 0 {
                off += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .partial(off) }
            let e = errno
            return .failed("send: \(String(cString: strerror(e))) (errno \(e))")
        }
        return .done
    }

    /// Writes queued output until the kernel pushes back. Returns a failure message, if any.
    private func flushPending() -> String? {
        state.withLock { s in
            while let head = s.pending.first {
                switch writeSome(head, from: s.pendingOffset) {
                case .done:
                    s.pendingBytes -= head.count - s.pendingOffset
                    s.pendingOffset = 0
                    _ = s.pending.popFirst()
                case .partial(let off):
                    s.pendingBytes -= off - s.pendingOffset
                    s.pendingOffset = off
                    return nil
                case .failed(let why):
                    return why
                }
            }
            return nil
        }
    }

    private enum ReadOutcome { case wouldBlock, endOfFile, failed(String) }

    private func ioLoop() {
        var decoder = L2CAPStreamDecoder(maximumPayloadLength: linkMTU)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var reason: ATTBearerCloseReason = .local
        loop: while true {
            let (wantWrite, closing, failure) = state.withLock { s in (!s.pending.isEmpty, s.closeRequested, s.closedReason) }
            if let failure { reason = failure; break }
            if closing { reason = .local; break }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN) | (wantWrite ? Int16(POLLOUT) : 0), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let r = poll(&fds, 2, -1)
            if r < 0 {
                if errno == EINTR { continue }
                reason = .failure("poll: \(String(cString: strerror(errno)))")
                break
            }
            if fds[1].revents != 0 { POSIX.drainWake(wakeRead) }
            let ev = fds[0].revents
            if ev & Int16(POLLOUT) != 0, let why = flushPending() {
                reason = .failure(why)
                break
            }
            if ev & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                switch readAvailable(&buffer, &decoder) {
                case .wouldBlock: continue loop
                case .endOfFile: reason = .remote; break loop
                case .failed(let why): reason = .failure(why); break loop
                }
            }
        }
        if case .local = reason { _ = flushPending() }  // best effort: a final response still leaves
        teardown()
        state.withLock { s in if s.closedReason == nil { s.closedReason = reason } }
        inbox.deliver(.closed(reason))
    }

    /// Reads until the socket would block, delivering every complete PDU.
    private func readAvailable(_ buffer: inout [UInt8], _ decoder: inout L2CAPStreamDecoder) -> ReadOutcome {
        while true {
            if state.withLock({ $0.closeRequested }) { return .wouldBlock }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
                return .failed("recv: \(String(cString: strerror(errno))) (errno \(errno))")
            }
            if n == 0 { return .endOfFile }
            switch framing {
            case .seqpacket:
                guard n <= linkMTU else {
                    return .failed("received a \(n)-byte packet; the link MTU is \(linkMTU)")
                }
                inbox.deliver(.pdu(Array(buffer[0..<n])))
            case .l2capFramedStream:
                decoder.append(buffer[0..<n])
                do {
                    while let frame = try decoder.nextFrame() {
                        guard frame.channelID == L2CAPBasicFrame.attChannelID else {
                            return .failed("L2CAP frame on CID 0x\(hex16(frame.channelID)); this link carries only ATT (CID 0x0004)")
                        }
                        guard !frame.payload.isEmpty else { return .failed("empty ATT PDU in an L2CAP frame") }
                        inbox.deliver(.pdu(frame.payload))
                    }
                } catch {
                    return .failed(error.description)
                }
            }
        }
    }

    private func teardown() {
        state.withLock { s in
            guard s.fdsOpen else { return }
            s.fdsOpen = false
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
            Glibc.close(wakeRead)
            Glibc.close(wakeWrite)
        }
    }
}

/// Accepts cross-process loopback connections: each accepted socket becomes a `SocketBearer`.
///
/// A dedicated thread blocks in poll(2) on the listening socket and a wake-up pipe; accepted bearers
/// arrive on `connections` (unstarted — give each to a `GATTServer`).
public final class SocketBearerListener: Sendable {
    /// The bound address (for `.tcpLoopback(port: 0)`, the port the kernel chose).
    public let address: LocalSocketAddress
    public let framing: SocketBearer.Framing
    public let linkMTU: Int
    /// Accepted connections, in order. Finishes when the listener closes; throws if accepting fails.
    public let connections: AsyncThrowingStream<SocketBearer, Error>

    private let fd: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let continuation: AsyncThrowingStream<SocketBearer, Error>.Continuation
    private let closed = Atomic<Bool>(false)

    /// Binds and listens. A Unix path must not exist yet (a stale socket file is an error, not
    /// silently replaced); it is removed again on `close()`.
    /// - Parameter pendingLimit: accepted connections buffered before `connections` is read; more
    ///   are closed at once.
    public init(address: LocalSocketAddress, framing: SocketBearer.Framing = .l2capFramedStream,
                linkMTU: Int = ATT.maximumMTU, backlog: Int32 = 16, pendingLimit: Int = 64) throws {
        let type: Int32
        switch (framing, address) {
        case (.l2capFramedStream, _): type = POSIX.streamType()
        case (.seqpacket, .unix): type = POSIX.seqpacketType()
        case (.seqpacket, .tcpLoopback): throw LocalSocketError.invalidArgument("TCP has no packet framing; use .l2capFramedStream")
        }
        let fd = socket(POSIX.family(address), type, 0)
        guard fd >= 0 else { throw LocalSocketError.last("socket") }
        var resolved = address
        do {
            if case .tcpLoopback = address {
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            try POSIX.withSockaddr(address) { (sa, len) throws(LocalSocketError) in
                guard bind(fd, sa, len) == 0 else { throw .last("bind(\(address))") }
            }
            guard listen(fd, backlog) == 0 else { throw LocalSocketError.last("listen") }
            try POSIX.setNonBlocking(fd)
            if case .tcpLoopback = address, let port = POSIX.boundPort(fd) { resolved = .tcpLoopback(port: port) }
            (wakeRead, wakeWrite) = try POSIX.makeWakePipe()
        } catch {
            Glibc.close(fd)
            throw error
        }
        self.fd = fd
        self.address = resolved
        self.framing = framing
        self.linkMTU = linkMTU
        (connections, continuation) = AsyncThrowingStream<SocketBearer, Error>.makeStream(
            bufferingPolicy: .bufferingOldest(pendingLimit))
        let thread = Thread { [self] in self.acceptLoop() }
        thread.name = "keyway.ble.listener"
        thread.start()
    }

    /// Stops accepting; `connections` finishes. Bearers already accepted stay open.
    public func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        POSIX.wake(wakeWrite)
    }

    private func acceptLoop() {
        var failure: Error?
        while !closed.load(ordering: .acquiring) {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let r = poll(&fds, 2, -1)
            if r < 0 {
                if errno == EINTR { continue }
                failure = LocalSocketError.last("poll")
                break
            }
            if fds[1].revents != 0 { POSIX.drainWake(wakeRead) }
            guard fds[0].revents != 0 else { continue }
            let conn = accept(fd, nil, nil)
            if conn < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED { continue }
                failure = LocalSocketError.last("accept")
                break
            }
            if case .tcpLoopback = address { POSIX.setNoDelay(conn) }
            do {
                let bearer = try SocketBearer(adopting: conn, framing: framing, linkMTU: linkMTU)
                if case .dropped(let b) = continuation.yield(bearer) { b.close() }
            } catch {
                Glibc.close(conn)
            }
        }
        Glibc.close(fd)
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
        if case .unix(let path) = address { unlink(path) }
        if let failure { continuation.finish(throwing: failure) } else { continuation.finish() }
    }
}
