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
///   language be the phone (see docs/PROTOCOL.md, "Bearers and the cross-process loopback link" and Tests/peers/socket_phone.py).
/// - `.seqpacket` — a SOCK_SEQPACKET descriptor where every packet is one bare ATT PDU: a BlueZ
///   L2CAP LE socket connected on the ATT CID (the kernel adds and strips the L2CAP header), or a
///   Unix SOCK_SEQPACKET pair.
///
/// I/O: the descriptor is made non-blocking; `send` writes directly from the caller's thread and
/// only queues (bounded) what the kernel will not take yet. Reading, flushing queued output and
/// closing happen on the process's one `SocketEventLoop` thread (epoll), shared by every socket
/// link: a bearer costs its descriptor, not a thread. Nothing sleeps or polls on a timer. The
/// descriptor lives until the link closes: call `close()` when done with a bearer.
public final class SocketBearer: ATTBearer, CustomStringConvertible, SocketEventHandler {
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
    private let loop: SocketEventLoop
    private let inbox = BearerInbox()
    /// Inbound bytes one wake-up reads at most before the loop serves other sockets (fairness).
    private static let readBudget = 4 << 16

    private struct State {
        var pending = FIFO<[UInt8]>()
        var pendingOffset = 0          // bytes of `pending.first` already written
        var pendingBytes = 0
        var started = false
        /// The event loop's registration (while started and open).
        var token: UInt64?
        var watchingWritable = false
        var closeRequested = false
        var closedReason: ATTBearerCloseReason?
        var fdOpen = true
        /// `finish` ran (the link's one `.closed` is delivered).
        var finished = false
        var onTeardown: (@Sendable () -> Void)?
    }
    private let state = Locked(State())
    /// Only touched on the loop thread (the reads).
    private let decoder: Locked<L2CAPStreamDecoder>

    /// Adopts a connected socket; the bearer owns it from now on (closes it on `close()`).
    /// - Parameters:
    ///   - fd: a connected stream socket (`.l2capFramedStream`) or SOCK_SEQPACKET socket (`.seqpacket`).
    ///   - linkMTU: largest ATT PDU accepted in either direction (bigger inbound ones fail the link).
    public convenience init(adopting fd: Int32, framing: Framing, linkMTU: Int = ATT.maximumMTU,
                            outboundBufferLimit: Int = 1 << 20) throws {
        try self.init(adopting: fd, framing: framing, linkMTU: linkMTU, outboundBufferLimit: outboundBufferLimit, loop: .shared)
    }

    init(adopting fd: Int32, framing: Framing, linkMTU: Int, outboundBufferLimit: Int, loop: SocketEventLoop) throws {
        guard fd >= 0 else { throw LocalSocketError.invalidArgument("invalid file descriptor \(fd)") }
        guard (ATT.defaultMTU...0xFFFF).contains(linkMTU) else {
            throw LocalSocketError.invalidArgument("link MTU \(linkMTU) outside 23…65535")
        }
        try POSIX.setNonBlocking(fd)
        self.fd = fd
        self.framing = framing
        self.linkMTU = linkMTU
        self.outboundBufferLimit = outboundBufferLimit
        self.loop = loop
        decoder = Locked(L2CAPStreamDecoder(maximumPayloadLength: linkMTU))
    }

    deinit {
        // Only reached if never started (the event loop holds a reference while registered).
        state.withLock { s in
            if s.fdOpen {
                s.fdOpen = false
                Glibc.close(fd)
            }
            return s.onTeardown
        }?()
    }

    /// Runs once when the descriptor is closed (the listener's connection count).
    func setOnTeardown(_ hook: @escaping @Sendable () -> Void) {
        state.withLock { $0.onTeardown = hook }
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
        let register: Bool = state.withLock { s in
            guard !s.started else { return false }
            s.started = true
            return s.fdOpen
        }
        guard register else { return }
        // Registered under the lock so `send` and `close` always see the token once started.
        let failure: LocalSocketError? = state.withLock { s in
            guard s.fdOpen, s.closedReason == nil, !s.closeRequested else { return nil }
            do throws(LocalSocketError) {
                s.watchingWritable = !s.pending.isEmpty
                s.token = try loop.register(fd, self, writable: s.watchingWritable)
                return nil
            } catch { return error }
        }
        if let failure {
            state.withLock { s in if s.closedReason == nil { s.closedReason = .failure(failure.description) } }
        }
        // A close or a send failure before registration still ends the link, on the loop thread.
        let ended = state.withLock { $0.closeRequested || $0.closedReason != nil }
        if ended { loop.execute { [self] in self.finish(nil) } }
    }

    public func send(_ pdu: [UInt8]) throws {
        try validateOutbound(pdu)
        let bytes = framing == .l2capFramedStream ? L2CAPBasicFrame(payload: pdu).encode() : pdu
        try state.withLock { (s) throws(ATTBearerError) in
            if let reason = s.closedReason { throw .closed(reason) }
            if s.closeRequested || !s.fdOpen { throw .closed(.local) }
            if s.pending.isEmpty {
                switch writeSome(bytes, from: 0) {
                case .done:
                    return
                case .partial(let written):
                    s.pending.append(bytes)
                    s.pendingOffset = written
                    s.pendingBytes = bytes.count - written
                    watchWritable(&s, true)   // the loop flushes the rest when the kernel takes it
                case .failed(let why):
                    s.closedReason = .failure(why)
                    if s.started { loop.execute { [self] in self.finish(nil) } }
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
                loop.execute { [self] in self.finish(nil) }
                return false
            }
            return true
        }
        if closeNow {
            teardown()
            inbox.deliver(.closed(.local))
        }
    }

    // MARK: I/O (event loop thread)

    private func watchWritable(_ s: inout State, _ on: Bool) {
        guard let token = s.token, s.watchingWritable != on else { return }
        s.watchingWritable = on
        loop.update(fd, token: token, writable: on)
    }

    func socketEvents(readable: Bool, writable: Bool) {
        if writable, let why = flushPending() { return finish(.failure(why)) }
        if readable {
            switch readAvailable() {
            case .wouldBlock: break
            case .endOfFile: return finish(.remote)
            case .failed(let why): return finish(.failure(why))
            }
        }
        let ending = state.withLock { $0.closeRequested || $0.closedReason != nil }
        if ending { finish(nil) }
    }

    /// Ends the link once (loop thread): `reason` nil means whatever was decided before (a local
    /// close, a failed send).
    private func finish(_ reason: ATTBearerCloseReason?) {
        let go: (UInt64?, ATTBearerCloseReason?, Bool)? = state.withLock { s in
            guard !s.finished else { return nil }
            s.finished = true
            defer { s.token = nil }
            return (s.token, s.closedReason, s.closeRequested)
        }
        guard let (token, decided, closing) = go else { return }
        let final = decided ?? reason ?? (closing ? .local : .remote)
        if let token { loop.deregister(fd, token: token) }
        if case .local = final { _ = flushPending() }        // best effort: a final response still leaves
        teardown()
        state.withLock { s in if s.closedReason == nil { s.closedReason = final } }
        inbox.deliver(.closed(final))
    }

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
            guard s.fdOpen else { return nil }
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
            watchWritable(&s, false)
            return nil
        }
    }

    private enum ReadOutcome { case wouldBlock, endOfFile, failed(String) }


    /// Reads until the socket would block (or the budget is spent), delivering every complete PDU.
    private func readAvailable() -> ReadOutcome {
        var budget = Self.readBudget
        while budget > 0 {
            if state.withLock({ $0.closeRequested || !$0.fdOpen }) { return .wouldBlock }
            let buffer = loop.readBuffer
            let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
                return .failed("recv: \(String(cString: strerror(errno))) (errno \(errno))")
            }
            if n == 0 { return .endOfFile }
            budget -= n
            switch framing {
            case .seqpacket:
                guard n <= linkMTU else {
                    return .failed("received a \(n)-byte packet; the link MTU is \(linkMTU)")
                }
                inbox.deliver(.pdu(Array(buffer[0..<n])))
            case .l2capFramedStream:
                // Frames are cut under the decoder's lock and delivered after it (the receiver may run long).
                let (payloads, failure): ([[UInt8]], String?) = decoder.withLock { d in
                    d.append(buffer[0..<n])
                    var out: [[UInt8]] = []
                    do throws(L2CAPFramingError) {
                        while let frame = try d.nextFrame() {
                            guard frame.channelID == L2CAPBasicFrame.attChannelID else {
                                return (out, "L2CAP frame on CID 0x\(hex16(frame.channelID)); this link carries only ATT (CID 0x0004)")
                            }
                            guard !frame.payload.isEmpty else { return (out, "empty ATT PDU in an L2CAP frame") }
                            out.append(frame.payload)
                        }
                    } catch {
                        return (out, error.description)
                    }
                    return (out, nil)
                }
                for p in payloads { inbox.deliver(.pdu(p)) }
                if let failure { return .failed(failure) }
            }
        }
        return .wouldBlock   // level-triggered: the loop comes back for the rest after the other sockets
    }

    private func teardown() {
        let hook: (@Sendable () -> Void)? = state.withLock { s in
            guard s.fdOpen else { return nil }
            s.fdOpen = false
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
            defer { s.onTeardown = nil }
            return s.onTeardown
        }
        hook?()
    }
}

/// A cap on the connections one transport holds open at once, shared by its listeners: past it a
/// new connection is accepted and closed at once (the kernel would otherwise hold it in the backlog,
/// where the peer believes it is connected), and counted.
public final class SocketConnectionCap: Sendable {
    /// Connections held open at most.
    public let limit: Int
    private struct State { var open = 0; var refused = 0; var refusedSinceFull = 0 }
    private let state = Locked(State())
    private let onRefusal: @Sendable (_ refusal: Refusal) -> Void

    /// One refused connection, for the owner's log line.
    public struct Refusal: Sendable {
        /// Where it came in (the listener's address).
        public let address: LocalSocketAddress
        public let open: Int
        public let limit: Int
        /// Refused since the cap was last reached (1 for the first refusal of a burst).
        public let refusedSinceFull: Int
        public let refusedTotal: Int
    }

    /// - Parameter onRefusal: called (on the event loop thread: keep it short) for every refusal.
    public init(limit: Int, onRefusal: @escaping @Sendable (_ refusal: Refusal) -> Void = { _ in }) {
        self.limit = max(0, limit)
        self.onRefusal = onRefusal
    }

    /// Connections open now.
    public var open: Int { state.withLock { $0.open } }
    /// Connections refused since the cap was made.
    public var refused: Int { state.withLock { $0.refused } }

    func admit(_ address: LocalSocketAddress) -> Bool {
        let refusal: Refusal? = state.withLock { s in
            if s.open < limit {
                s.open += 1
                s.refusedSinceFull = 0
                return nil
            }
            s.refused += 1
            s.refusedSinceFull += 1
            return Refusal(address: address, open: s.open, limit: limit, refusedSinceFull: s.refusedSinceFull, refusedTotal: s.refused)
        }
        guard let refusal else { return true }
        onRefusal(refusal)
        return false
    }

    func release() { state.withLock { $0.open = max(0, $0.open - 1) } }
}

/// Accepts cross-process loopback connections: each accepted socket becomes a `SocketBearer`.
///
/// The listening socket is watched by the process's `SocketEventLoop` (no thread of its own). Each
/// accepted connection is handed to `onAccept` on the loop thread (or, with the stream initialiser,
/// arrives on `connections`, unstarted — give each to a `GATTServer`). A `SocketConnectionCap`
/// bounds the connections held open; past it a connection is closed as soon as it is accepted.
/// If the process runs out of descriptors (EMFILE), the listener stops accepting until one of its
/// own connections closes, rather than spin on a connection it cannot take.
public final class SocketBearerListener: Sendable, SocketEventHandler {
    /// The bound address (for `.tcpLoopback(port: 0)`, the port the kernel chose).
    public let address: LocalSocketAddress
    public let framing: SocketBearer.Framing
    public let linkMTU: Int
    /// Accepted connections, in order (stream initialiser only; with `onAccept` it finishes at once).
    /// Finishes when the listener closes; throws if accepting fails.
    public let connections: AsyncThrowingStream<SocketBearer, Error>

    private let fd: Int32
    private let loop: SocketEventLoop
    private let cap: SocketConnectionCap?
    private let outboundBufferLimit: Int
    private let onAccept: @Sendable (SocketBearer) -> Void
    private let continuation: AsyncThrowingStream<SocketBearer, Error>.Continuation
    private struct State { var token: UInt64?; var closed = false; var paused = false }
    private let state = Locked(State())

    /// Binds and listens; accepted connections arrive on `connections`. A Unix path must not exist yet
    /// (a stale socket file is an error, not silently replaced); it is removed again on `close()`.
    /// - Parameter pendingLimit: accepted connections buffered before `connections` is read; more
    ///   are closed at once.
    public convenience init(address: LocalSocketAddress, framing: SocketBearer.Framing = .l2capFramedStream,
                            linkMTU: Int = ATT.maximumMTU, backlog: Int32 = 16, pendingLimit: Int = 64) throws {
        let (stream, continuation) = AsyncThrowingStream<SocketBearer, Error>.makeStream(
            bufferingPolicy: .bufferingOldest(pendingLimit))
        try self.init(address: address, framing: framing, linkMTU: linkMTU, backlog: backlog, cap: nil,
                      stream: (stream, continuation)) { bearer in
            if case .dropped(let b) = continuation.yield(bearer) { b.close() }
        }
    }

    /// Binds and listens; every accepted connection is handed to `onAccept` on the event loop thread
    /// (start it there: a GATT server over it). A Unix path must not exist yet; it is removed on `close()`.
    /// - Parameters:
    ///   - cap: shared by the listeners of one transport; nil for no cap.
    ///   - outboundBufferLimit: per accepted bearer (see `SocketBearer`).
    public convenience init(address: LocalSocketAddress, framing: SocketBearer.Framing = .l2capFramedStream,
                            linkMTU: Int = ATT.maximumMTU, backlog: Int32 = 128, cap: SocketConnectionCap?,
                            outboundBufferLimit: Int = 1 << 20,
                            onAccept: @escaping @Sendable (SocketBearer) -> Void) throws {
        let (stream, continuation) = AsyncThrowingStream<SocketBearer, Error>.makeStream()
        continuation.finish()
        try self.init(address: address, framing: framing, linkMTU: linkMTU, backlog: backlog, cap: cap,
                      outboundBufferLimit: outboundBufferLimit, stream: (stream, continuation), onAccept: onAccept)
    }

    private init(address: LocalSocketAddress, framing: SocketBearer.Framing, linkMTU: Int, backlog: Int32,
                 cap: SocketConnectionCap?, outboundBufferLimit: Int = 1 << 20,
                 stream: (AsyncThrowingStream<SocketBearer, Error>, AsyncThrowingStream<SocketBearer, Error>.Continuation),
                 onAccept: @escaping @Sendable (SocketBearer) -> Void) throws {
        let type: Int32
        switch (framing, address) {
        case (.l2capFramedStream, _): type = POSIX.streamType()
        case (.seqpacket, .unix): type = POSIX.seqpacketType()
        case (.seqpacket, .tcpLoopback): throw LocalSocketError.invalidArgument("TCP has no packet framing; use .l2capFramedStream")
        }
        let fd = socket(POSIX.family(address), type, 0)
        guard fd >= 0 else { throw LocalSocketError.last("socket") }
        var resolved = address
        var bound = false
        do {
            if case .tcpLoopback = address {
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            try POSIX.withSockaddr(address) { (sa, len) throws(LocalSocketError) in
                guard bind(fd, sa, len) == 0 else { throw .last("bind(\(address))") }
            }
            bound = true
            guard listen(fd, backlog) == 0 else { throw LocalSocketError.last("listen") }
            try POSIX.setNonBlocking(fd)
            if case .tcpLoopback = address, let port = POSIX.boundPort(fd) { resolved = .tcpLoopback(port: port) }
        } catch {
            Glibc.close(fd)
            if bound, case .unix(let path) = address { unlink(path) }   // ours, never a file that was there before
            throw error
        }
        self.fd = fd
        self.address = resolved
        self.framing = framing
        self.linkMTU = linkMTU
        self.cap = cap
        self.outboundBufferLimit = outboundBufferLimit
        self.onAccept = onAccept
        self.loop = .shared
        (connections, continuation) = stream
        let token: UInt64
        do { token = try loop.register(fd, self) } catch {
            Glibc.close(fd)
            if case .unix(let path) = resolved { unlink(path) }
            throw error
        }
        state.withLock { $0.token = token }
    }

    /// Stops accepting; `connections` finishes. Bearers already accepted stay open.
    public func close() {
        let go = state.withLock { s in
            defer { s.closed = true }
            return !s.closed
        }
        guard go else { return }
        loop.execute { [self] in self.finish(nil) }
    }

    private func finish(_ failure: Error?) {
        guard let token = state.withLock({ s -> UInt64? in defer { s.token = nil }; return s.token }) else { return }
        loop.deregister(fd, token: token)
        Glibc.close(fd)
        if case .unix(let path) = address { unlink(path) }
        if let failure { continuation.finish(throwing: failure) } else { continuation.finish() }
    }

    /// Connections accepted per wake-up at most, so a flood of connects cannot starve the links.
    private static let acceptBudget = 64

    func socketEvents(readable: Bool, writable: Bool) {
        guard readable, !state.withLock({ $0.closed || $0.paused }) else { return }
        for _ in 0..<Self.acceptBudget {
            let conn = accept(fd, nil, nil)
            if conn < 0 {
                let e = errno
                if e == EINTR || e == ECONNABORTED { continue }
                if e == EAGAIN || e == EWOULDBLOCK { return }
                if e == EMFILE || e == ENFILE { return pause() }
                return finish(LocalSocketError.system(call: "accept", errno: e, message: String(cString: strerror(e))))
            }
            if let cap, !cap.admit(address) {
                Glibc.close(conn)
                continue
            }
            if case .tcpLoopback = address { POSIX.setNoDelay(conn) }
            do {
                let bearer = try SocketBearer(adopting: conn, framing: framing, linkMTU: linkMTU,
                                              outboundBufferLimit: outboundBufferLimit, loop: loop)
                bearer.setOnTeardown { [weak self, cap] in
                    cap?.release()
                    self?.resume()
                }
                onAccept(bearer)
            } catch {
                Glibc.close(conn)
                cap?.release()
            }
        }
    }

    /// Out of descriptors: stop watching the listening socket (level-triggered, it would spin).
    private func pause() {
        state.withLock { s in
            guard let token = s.token, !s.paused else { return }
            s.paused = true
            loop.silence(fd, token: token)
        }
    }

    private func resume() {
        state.withLock { s in
            guard let token = s.token, s.paused else { return }
            s.paused = false
            loop.update(fd, token: token, writable: false)
        }
    }
}
