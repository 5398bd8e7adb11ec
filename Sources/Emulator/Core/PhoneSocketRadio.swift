import BLE
import Foundation
import Hardware
#if canImport(Glibc)
import Glibc
#endif

/// `keyway serve --phone-socket DIR`: phones in other processes (any language) tap the site's locks
/// over Unix-domain stream sockets carrying L2CAP basic frames — the same ATT, GATT and tap bytes as
/// the air (docs/PROTOCOL.md, "The phone socket").
///
/// **One socket per lock**: `DIR/<lock id>`. Connecting to a lock's socket is what connecting to
/// that lock's advertisement is on the air: the kernel fixes the lock when the connection is made,
/// before any byte, so nothing a phone sends can move a connection to another lock, and there is no
/// handshake to get wrong. A socket phone is held **at the lock's reader** (distance 0, as
/// `POST /v1/taps` by default): the reader reach never refuses it.
///
/// **Bounded**: the connections of all locks' sockets together are capped
/// (`Configuration.maximumConnections`); past it a connection is closed as soon as it is accepted,
/// counted, and logged (the first refusal after the cap is reached, then the 10th, 100th…). A
/// connection on which the phone sent nothing for `idleTimeout` seconds of the emulator's clock is
/// closed: the clock every device runs on, so a simulated clock times connections out exactly when
/// a test advances it, and never while a test holds it still. Every socket is served by the one
/// `SocketEventLoop` thread (epoll): no thread per connection.
public final class PhoneSocketRadio: Sendable {
    public static let defaultMaximumConnections = 512
    /// ATT's own transaction timeout, and longer than a tap's nonce lives: a phone silent this long
    /// has no tap in progress.
    public static let defaultIdleTimeout: TimeInterval = 30
    /// Outbound bytes a connection may leave unread (the lock sends at most a long-read answer or a
    /// result at a time); past it a send fails instead of growing.
    static let outboundBufferLimit = 64 << 10
    /// Descriptors kept for the rest of the process (journal, HTTP, webhooks) beyond the cap.
    static let reservedDescriptors = 256

    public struct Configuration: Sendable {
        public var directory: String
        public var maximumConnections: Int = PhoneSocketRadio.defaultMaximumConnections
        public var idleTimeout: TimeInterval = PhoneSocketRadio.defaultIdleTimeout
        public init(directory: String) { self.directory = directory }
    }

    public let configuration: Configuration
    /// Lock id → its socket path.
    public let paths: [String: String]
    public let cap: SocketConnectionCap
    private let emulator: Emulator
    private let log: @Sendable (String) -> Void

    private struct State {
        var listeners: [SocketBearerListener] = []
        var closed = false
    }
    private let state = Locked(State())
    private let idle: IdleConnections

    /// Connections open now, across every lock's socket.
    public var openConnections: Int { cap.open }
    /// Connections refused by the cap since start.
    public var refusedConnections: Int { cap.refused }
    /// Connections closed for idleness since start.
    public var timedOutConnections: Int { idle.timedOut }

    /// Binds `DIR/<lock id>` for every lock of the site (creating DIR if needed; a socket file left by
    /// a process that is gone is replaced, anything else there is an error).
    /// - Throws: `EmulatorError.site` with a sentence saying what to do.
    public static func start(_ emulator: Emulator, _ configuration: Configuration,
                             log: @escaping @Sendable (String) -> Void) throws -> PhoneSocketRadio {
        guard configuration.maximumConnections >= 1 else {
            throw EmulatorError.site("--max-phone-connections must be at least 1")
        }
        guard configuration.idleTimeout > 0, configuration.idleTimeout.isFinite else {
            throw EmulatorError.site("--phone-idle-timeout must be a number of seconds > 0")
        }
        try ensureDescriptors(configuration.maximumConnections + reservedDescriptors)
        let dir = configuration.directory
        var paths: [String: String] = [:]
        for lock in emulator.config.locks {
            guard lock.id != "." && lock.id != ".." else {
                throw EmulatorError.site("--phone-socket: lock id '\(lock.id)' cannot name a socket file")
            }
            let path = (dir as NSString).appendingPathComponent(lock.id)
            guard path.utf8.count <= 107 else {
                throw EmulatorError.site("--phone-socket \(dir): \(path) is longer than a Unix socket path may be (107 bytes); choose a shorter directory")
            }
            paths[lock.id] = path
        }
        // Checked before anything is made: a refused start leaves no directory behind.
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw EmulatorError.site("--phone-socket \(dir): cannot create the directory")
        }
        for path in paths.values { try removeStaleSocket(path) }
        let radio = PhoneSocketRadio(emulator: emulator, configuration: configuration, paths: paths, log: log)
        do {
            for lock in emulator.config.locks {
                let lockID = lock.id
                let listener = try SocketBearerListener(
                    address: .unix(path: paths[lockID]!), cap: radio.cap,
                    outboundBufferLimit: outboundBufferLimit) { [weak radio] bearer in
                    guard let radio else { return bearer.close() }
                    radio.serve(bearer, lockID: lockID)
                }
                radio.state.withLock { $0.listeners.append(listener) }
            }
        } catch {
            radio.close()
            throw EmulatorError.site("--phone-socket \(dir): \(error)")
        }
        return radio
    }

    private init(emulator: Emulator, configuration: Configuration, paths: [String: String], log: @escaping @Sendable (String) -> Void) {
        self.emulator = emulator
        self.configuration = configuration
        self.paths = paths
        self.log = log
        idle = IdleConnections(clock: emulator.clock, timeout: configuration.idleTimeout) { n, timeout in
            log("phone-socket: closed \(n) connection\(n == 1 ? "" : "s") idle for \(Int(timeout)) s (--phone-idle-timeout)")
        }
        let limit = configuration.maximumConnections
        cap = SocketConnectionCap(limit: limit) { refusal in
            // One line for the first refusal of a burst, then one per power of ten: a flood does not
            // become a flood of log lines.
            let n = refusal.refusedSinceFull
            var p = 1
            while p < n { p *= 10 }
            guard p == n else { return }
            log("phone-socket: refused a connection to \(refusal.address): \(refusal.open) of \(refusal.limit) phone connections open "
                + "(--max-phone-connections); \(n) refused since the cap was reached, \(refusal.refusedTotal) in all")
        }
    }

    /// Stops accepting and closes every connection.
    public func close() {
        let listeners: [SocketBearerListener] = state.withLock { s in
            s.closed = true
            defer { s.listeners = [] }
            return s.listeners
        }
        for l in listeners { l.close() }
        idle.closeAll()
    }

    // MARK: Connections

    /// On the event loop thread: the lock looked up now (`POST /v1/reset` builds a fresh radio),
    /// wrapped for idleness and capture, served by the lock's GATT database at the reader.
    private func serve(_ bearer: SocketBearer, lockID: String) {
        guard let gatt = emulator.lockGATT(lockID), !state.withLock({ $0.closed }) else { return bearer.close() }
        var served: any ATTBearer = idle.watch(bearer)
        if let capture = emulator.linkCapture {
            do { served = try CapturingBearer(wrapping: served, writer: capture, role: .peripheral) } catch {
                log("phone-socket: capture of a connection to \(lockID) not written: \(error)")
            }
        }
        do { try gatt.accept(served, distance: 0) } catch {
            log("phone-socket: connection to \(lockID) dropped: \(error)")
            bearer.close()
        }
    }

    // MARK: Descriptors and stale sockets

    /// Raises the soft descriptor limit towards the hard one when the cap needs more.
    static func ensureDescriptors(_ needed: Int) throws {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        guard limit.rlim_cur < rlim_t(needed) else { return }
        var raised = limit
        raised.rlim_cur = min(limit.rlim_max, rlim_t(needed))
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0, raised.rlim_cur >= rlim_t(needed) { return }
        throw EmulatorError.site("--max-phone-connections needs about \(needed) file descriptors (one per connection and \(reservedDescriptors) for the rest); "
                                 + "the limit is \(limit.rlim_max) (ulimit -Hn): lower the cap or raise the limit")
    }

    /// A socket file whose server is gone (connect refused) is removed; anything else is left and refused.
    static func removeStaleSocket(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }   // nothing there
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw EmulatorError.site("--phone-socket: \(path) exists and is not a socket; remove it or choose another directory")
        }
        if let probe = try? SocketBearer.connect(to: .unix(path: path)) {
            probe.close()
            throw EmulatorError.site("--phone-socket: \(path) is served by another process (another keyway serve?)")
        }
        unlink(path)
    }
}

/// Closes the connections of a transport on which the phone sent nothing for `timeout` seconds of the
/// emulator's clock (the phone socket's `--phone-idle-timeout`; BlueZ phones likewise). One clock
/// timer for all of them, set to the earliest instant one can be idle too long.
public final class IdleConnections: Sendable {
    public let timeout: TimeInterval
    private let clock: any KeywayClock
    private let report: @Sendable (_ closed: Int, _ timeout: TimeInterval) -> Void
    private struct Held { let bearer: any ATTBearer; var lastInbound: Date }
    private struct State {
        var held: [ObjectIdentifier: Held] = [:]
        var sweep: ClockTimer?
        var closed = false
        var timedOut = 0
    }
    private let state = Locked(State())

    /// - Parameter report: told how many connections one sweep closed (for a log line).
    public init(clock: any KeywayClock, timeout: TimeInterval, report: @escaping @Sendable (_ closed: Int, _ timeout: TimeInterval) -> Void) {
        self.clock = clock
        self.timeout = timeout
        self.report = report
    }

    /// Connections watched now.
    public var count: Int { state.withLock { $0.held.count } }
    /// Connections closed for idleness so far.
    public var timedOut: Int { state.withLock { $0.timedOut } }

    /// Watches `bearer` from now on; serve the returned bearer (it notes every inbound PDU, and the close).
    public func watch(_ bearer: any ATTBearer) -> any ATTBearer {
        let id = ObjectIdentifier(bearer)
        let now = clock.now()
        let admitted = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.held[id] = Held(bearer: bearer, lastInbound: now)
            return true
        }
        if !admitted { bearer.close() }
        let watched = InboundWatch(wrapping: bearer) { [weak self] event in
            guard let self else { return }
            switch event {
            case .pdu:
                let now = self.clock.now()
                self.state.withLock { $0.held[id]?.lastInbound = now }
            case .closed:
                _ = self.state.withLock { $0.held.removeValue(forKey: id) }
            }
        }
        scheduleSweep()
        return watched
    }

    /// Closes every watched connection and stops watching.
    public func closeAll() {
        let (held, sweep): ([Held], ClockTimer?) = state.withLock { s in
            s.closed = true
            defer { s.held = [:]; s.sweep = nil }
            return (Array(s.held.values), s.sweep)
        }
        sweep?.cancel()
        for h in held { h.bearer.close() }
    }

    private func scheduleSweep() {
        state.withLock { s in
            guard !s.closed, s.sweep == nil, let oldest = s.held.values.map(\.lastInbound).min() else { return }
            s.sweep = clock.schedule(at: oldest.addingTimeInterval(timeout)) { [weak self] in self?.sweepIdle() }
        }
    }

    private func sweepIdle() {
        let now = clock.now()
        let idle: [any ATTBearer] = state.withLock { s in
            s.sweep = nil
            var out: [any ATTBearer] = []
            for (id, h) in s.held {
                if h.lastInbound > now {
                    s.held[id]?.lastInbound = now          // the clock went back (a reset): idle from now
                } else if now.timeIntervalSince(h.lastInbound) >= timeout {
                    out.append(h.bearer)
                    s.held[id] = nil                    // closing takes a moment: never count (or sweep) it twice
                }
            }
            s.timedOut += out.count
            return out
        }
        if !idle.isEmpty { report(idle.count, timeout) }
        for b in idle { b.close() }
        scheduleSweep()
    }
}

/// Passes every event of a bearer to `observe` before its receiver: how the phone socket knows when a
/// phone last said something, and when its link closed.
final class InboundWatch: ATTBearer {
    private let base: any ATTBearer
    private let observe: @Sendable (ATTBearerEvent) -> Void
    var linkMTU: Int { base.linkMTU }

    init(wrapping base: any ATTBearer, observe: @escaping @Sendable (ATTBearerEvent) -> Void) {
        self.base = base
        self.observe = observe
    }

    func start(_ receiver: @escaping ATTBearerReceiver) throws {
        try base.start { [observe] event in
            observe(event)
            receiver(event)
        }
    }

    func send(_ pdu: [UInt8]) throws { try base.send(pdu) }
    func close() { base.close() }
}
