import CBlueZ
#if canImport(Glibc)
import Glibc
#endif

/// `BT_SECURITY` levels of an L2CAP socket (bluetooth.h). On LE, raising the level on a connected
/// socket makes the kernel pair or encrypt (SMP); a listener's level is inherited by accepted sockets.
public enum BlueZSecurityLevel: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// No encryption required (LE security mode 1 level 1).
    case low = 1
    /// Encryption, unauthenticated pairing allowed (Just Works).
    case medium = 2
    /// Encryption with an authenticated (MITM-protected) key.
    case high = 3
    /// Authenticated LE Secure Connections with a 128-bit key.
    case fips = 4

    public var description: String {
        switch self {
        case .low: return "low"
        case .medium: return "medium"
        case .high: return "high"
        case .fips: return "fips"
        }
    }

    public init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = level
    }
}

/// Socket-address plumbing for LE L2CAP sockets.
enum BlueZL2CAPAddress {
    /// `sizeof(struct sockaddr_l2)` as C lays it out (14: `bdaddr_t` is packed). The imported struct
    /// has C's layout; a hand-written Swift mirror would be 13 bytes — pass the C size deliberately.
    static let size = MemoryLayout<sockaddr_l2>.size

    static func make(_ address: BlueZAddress, cid: UInt16) -> sockaddr_l2 {
        var a = sockaddr_l2()
        a.l2_family = sa_family_t(AF_BLUETOOTH)
        a.l2_psm = 0
        a.l2_bdaddr = address.bdaddr
        a.l2_cid = cid.littleEndian            // htobs()
        a.l2_bdaddr_type = address.kind.rawValue
        return a
    }

    static func setSecurity(_ fd: Int32, _ level: BlueZSecurityLevel) throws {
        if let code = BlueZSys.setOption(fd, level: SOL_BLUETOOTH, name: BT_SECURITY,
                                         bt_security(level: level.rawValue, key_size: 0)) {
            throw BlueZError.classify(errno: code, operation: "setting BT_SECURITY to \(level)")
        }
    }

    /// The HCI connection handle of the link the socket rides on (`L2CAP_CONNINFO`): what HCI commands
    /// about this connection (Read RSSI) name it by.
    static func connectionHandle(_ fd: Int32) throws -> UInt16 {
        let (value, code) = BlueZSys.getOption(fd, level: SOL_L2CAP, name: L2CAP_CONNINFO, l2cap_conninfo())
        if let code { throw BlueZError.classify(errno: code, operation: "reading L2CAP_CONNINFO") }
        return value.hci_handle
    }

    static func security(_ fd: Int32) throws -> BlueZSecurityLevel {
        let (value, code) = BlueZSys.getOption(fd, level: SOL_BLUETOOTH, name: BT_SECURITY,
                                               bt_security(level: 0, key_size: 0))
        if let code { throw BlueZError.classify(errno: code, operation: "reading BT_SECURITY") }
        return BlueZSecurityLevel(rawValue: value.level) ?? .low
    }
}

/// One connected LE L2CAP channel on the ATT fixed channel: a `SOCK_SEQPACKET` descriptor on which
/// every read and write is one bare ATT PDU. Hand the descriptor to a bearer with
/// `takeFileDescriptor()`; until then (or if never taken) this object closes it.
public final class BlueZL2CAPConnection: Sendable, CustomStringConvertible {
    /// The adapter the connection runs on (`hci0`), or nil for a client bound to any adapter.
    public let adapter: String?
    public let peer: BlueZAddress
    /// The descriptor, -1 once taken or closed; socket calls on it hold the lock.
    private let fd: Locked<Int32>

    init(fd: Int32, adapter: String?, peer: BlueZAddress) {
        self.fd = Locked(fd)
        self.adapter = adapter
        self.peer = peer
    }

    deinit { fd.withLock { if $0 >= 0 { _ = Glibc.close($0) } } }

    public var description: String { "L2CAP LE ATT channel to \(peer) (\(peer.kind == .lePublic ? "public" : "random"))" }

    /// The descriptor (non-blocking, close-on-exec), now owned by the caller. Nil if already taken.
    public func takeFileDescriptor() -> Int32? {
        fd.withLock { fd in
            guard fd >= 0 else { return nil }
            defer { fd = -1 }
            return fd
        }
    }

    /// The descriptor without giving up ownership (for socket options), nil once taken or closed.
    func peekFileDescriptor() -> Int32? {
        fd.withLock { $0 >= 0 ? $0 : nil }
    }

    /// The current security level; after pairing it reports what the link achieved.
    public func securityLevel() throws -> BlueZSecurityLevel {
        try fd.withLock { (fd: inout Int32) throws(any Error) in
            guard fd >= 0 else { throw BlueZError.closed }
            return try BlueZL2CAPAddress.security(fd)
        }
    }

    /// The link's HCI connection handle (for Read RSSI).
    public func connectionHandle() throws -> UInt16 {
        try fd.withLock { (fd: inout Int32) throws(any Error) in
            guard fd >= 0 else { throw BlueZError.closed }
            return try BlueZL2CAPAddress.connectionHandle(fd)
        }
    }

    /// Asks for a security level; on an LE link the kernel starts SMP pairing/encryption as needed.
    public func setSecurityLevel(_ level: BlueZSecurityLevel) throws {
        try fd.withLock { (fd: inout Int32) throws(any Error) in
            guard fd >= 0 else { throw BlueZError.closed }
            try BlueZL2CAPAddress.setSecurity(fd, level)
        }
    }

    /// Raises the link to `level` and waits until the kernel reports it reached — SMP pairing, or
    /// encryption with a stored key — without polling: on the ATT channel the kernel holds the socket
    /// in a "configuring" state (not writable) until security completes.
    ///
    /// - Returns: the level reached (at least `level`).
    /// - Throws: `BlueZError.securityNotReached` if the link ends up below `level` (pairing refused or
    ///   impossible), `.securityTimeout` after `timeout`, `.closed` if the link dropped.
    @discardableResult
    public func establishSecurity(_ level: BlueZSecurityLevel, timeout: Duration = .seconds(40)) async throws -> BlueZSecurityLevel {
        guard let fd = peekFileDescriptor() else { throw BlueZError.closed }
        let current = try BlueZL2CAPAddress.security(fd)
        if current.rawValue >= level.rawValue { return current }
        do {
            try BlueZL2CAPAddress.setSecurity(fd, level)
        } catch BlueZError.system(_, EINVAL) {
            // The kernel answers EINVAL when SMP cannot start (no SMP on this adapter); the check
            // below reports the level actually held.
        }
        let handle = BlueZSocketHandle(fd: fd, label: "security.\(peer)")
        let waiter = Task { try await handle.waitWritable() }
        let timer = Task {
            try await Task.sleep(for: timeout)
            waiter.cancel()
        }
        let outcome = await waiter.result
        timer.cancel()
        _ = await handle.release()   // the descriptor stays this connection's
        if case .failure(let error) = outcome {
            if error is CancellationError { throw BlueZError.securityTimeout(peer: peer.description, requested: level) }
            throw error
        }
        let (soError, _) = BlueZSys.getOption(fd, level: SOL_SOCKET, name: SO_ERROR, Int32(0))
        if soError != 0 { throw BlueZError.connectionFailed(peer: peer.description, errno: soError) }
        let reached = try BlueZL2CAPAddress.security(fd)
        guard reached.rawValue >= level.rawValue else {
            throw BlueZError.securityNotReached(peer: peer.description, requested: level, reached: reached)
        }
        return reached
    }

    public func close() {
        fd.withLock { fd in
            if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
        }
    }
}

/// The lock side: listens on the LE ATT fixed channel (CID 4) of one adapter and accepts phones.
public final class BlueZL2CAPListener: Sendable {
    public let adapter: BlueZAdapterInfo
    public let security: BlueZSecurityLevel
    private let handle: BlueZSocketHandle

    /// Binds CID 4 on `adapter` and listens.
    ///
    /// - Parameters:
    ///   - addressType: the adapter's own address type connections arrive on (public unless the
    ///     adapter advertises with a random static address).
    ///   - security: `BT_SECURITY` level, inherited by every accepted connection.
    ///   - allowBluetoothd: skip the bluetoothd check (when you know it does not serve this adapter).
    /// - Throws: `BlueZError` — `.attChannelInUse` when bluetoothd runs, `.adapterDown`,
    ///   `.bluetoothUnavailable`, `.permissionDenied`, ….
    public init(adapter: BlueZAdapterInfo, addressType: BlueZAddress.Kind = .lePublic,
                security: BlueZSecurityLevel = .low, backlog: Int32 = 4, allowBluetoothd: Bool = false) throws {
        if !allowBluetoothd, let pid = BlueZDaemonCheck.runningBluetoothd() {
            throw BlueZError.attChannelInUse(adapter: adapter.name, pid: pid)
        }
        let fd = try BlueZSys.socket(type: Int32(SOCK_SEQPACKET.rawValue), proto: BTPROTO_L2CAP,
                                     operation: "opening an L2CAP socket")
        var ok = false
        defer { if !ok { _ = Glibc.close(fd) } }
        let local = try BlueZAddress(bytes: adapter.address.bytes, kind: addressType)
        let r = BlueZSys.withSockaddr(BlueZL2CAPAddress.make(local, cid: ATT.fixedChannelID)) { bind(fd, $0, $1) }
        if r < 0 {
            let code = errno
            // EADDRNOTAVAIL/ENODEV would be an adapter that vanished since the look-up.
            if code == EADDRNOTAVAIL { throw BlueZError.noSuchAdapter(adapter.name) }
            throw BlueZError.classify(errno: code, operation: "binding the ATT channel on \(adapter.name)",
                                      adapter: adapter.name)
        }
        try BlueZL2CAPAddress.setSecurity(fd, security)
        if listen(fd, backlog) < 0 {
            throw BlueZError.classify(errno: errno, operation: "listening on the ATT channel of \(adapter.name)",
                                      adapter: adapter.name)
        }
        ok = true
        self.adapter = adapter
        self.security = security
        handle = BlueZSocketHandle(fd: fd, label: "listen.\(adapter.name)")
    }

    deinit { handle.close() }

    /// Waits for the next phone to connect. Throws `BlueZError.closed` after `close()`.
    public func accept() async throws -> BlueZL2CAPConnection {
        while true {
            var peer = sockaddr_l2()
            var length = socklen_t(BlueZL2CAPAddress.size)
            let fd = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.accept(handle.fd, $0, &length)
                }
            }
            if fd >= 0 {
                // accept4() is not visible through Glibc's module (it needs _GNU_SOURCE): set the flags
                // the accepted socket does not inherit.
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                let kind = BlueZAddress.Kind(rawValue: peer.l2_bdaddr_type) ?? .lePublic
                return BlueZL2CAPConnection(fd: fd, adapter: adapter.name,
                                            peer: BlueZAddress(bdaddr: peer.l2_bdaddr, kind: kind))
            }
            let code = errno
            switch code {
            case EAGAIN, EWOULDBLOCK: try await handle.waitReadable()
            case EINTR, ECONNABORTED: continue
            default:
                throw BlueZError.classify(errno: code, operation: "accepting on \(adapter.name)", adapter: adapter.name)
            }
        }
    }

    /// Stops listening; a pending `accept()` throws `BlueZError.closed`.
    public func close() { handle.close() }
}

/// The phone side: connects to a lock's ATT channel.
public enum BlueZL2CAPClient {
    /// Connects over LE to `peer`'s ATT fixed channel from `adapter` (nil: let the kernel pick).
    /// Non-blocking: the connect completes when the kernel reports the socket writable.
    ///
    /// - Throws: `.connectionFailed` (peer not advertising, refused, timed out — the kernel gives up
    ///   after its LE connection timeout), or the adapter/permission errors.
    ///   `timeout` bounds the wait for the link (the kernel's own LE connection timeout is 40 s); on
    ///   expiry the socket is closed, which cancels the kernel's connection attempt.
    public static func connect(to peer: BlueZAddress, from adapter: BlueZAdapterInfo? = nil,
                               security: BlueZSecurityLevel = .low,
                               timeout: Duration = .seconds(20)) async throws -> BlueZL2CAPConnection {
        let fd = try BlueZSys.socket(type: Int32(SOCK_SEQPACKET.rawValue), proto: BTPROTO_L2CAP,
                                     operation: "opening an L2CAP socket")
        let handle = BlueZSocketHandle(fd: fd, label: "connect.\(peer)")
        var released = false
        defer { if !released { handle.close() } }
        let local = try BlueZAddress(bytes: (adapter?.address ?? .any).bytes, kind: .lePublic)
        let name = adapter?.name
        // Bind the source adapter and the ATT channel, as BlueZ's own tools do.
        if BlueZSys.withSockaddr(BlueZL2CAPAddress.make(local, cid: ATT.fixedChannelID), { bind(fd, $0, $1) }) < 0 {
            throw BlueZError.classify(errno: errno, operation: "binding an L2CAP socket", adapter: name)
        }
        try BlueZL2CAPAddress.setSecurity(fd, security)
        let r = BlueZSys.withSockaddr(BlueZL2CAPAddress.make(peer, cid: ATT.fixedChannelID)) { Glibc.connect(fd, $0, $1) }
        if r < 0 {
            let code = errno
            guard code == EINPROGRESS || code == EAGAIN else { throw mapConnect(code, peer, name) }
            let waiter = Task { try await handle.waitWritable() }
            let timer = Task {
                try await Task.sleep(for: timeout)
                waiter.cancel()
            }
            let outcome = await waiter.result
            timer.cancel()
            if case .failure(let error) = outcome {
                if error is CancellationError { throw BlueZError.connectionFailed(peer: peer.description, errno: ETIMEDOUT) }
                throw error
            }
            let (soError, getError) = BlueZSys.getOption(fd, level: SOL_SOCKET, name: SO_ERROR, Int32(0))
            if let getError { throw mapConnect(getError, peer, name) }
            if soError != 0 { throw mapConnect(soError, peer, name) }
        }
        let owned = await handle.release()
        released = true
        let connection = BlueZL2CAPConnection(fd: owned, adapter: name, peer: peer)
        if security.rawValue > BlueZSecurityLevel.low.rawValue {
            // On the ATT fixed channel the kernel reports the connection before pairing finishes.
            do {
                try await connection.establishSecurity(security)
            } catch {
                connection.close()
                throw error
            }
        }
        return connection
    }

    static func mapConnect(_ code: Int32, _ peer: BlueZAddress, _ adapter: String?) -> BlueZError {
        switch code {
        case EHOSTUNREACH, ECONNREFUSED, ETIMEDOUT, EHOSTDOWN, ECONNRESET, ECONNABORTED, ENOTCONN:
            return .connectionFailed(peer: peer.description, errno: code)
        default:
            return BlueZError.classify(errno: code, operation: "connecting to \(peer)", adapter: adapter)
        }
    }
}
