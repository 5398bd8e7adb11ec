import CBlueZ
#if canImport(Glibc)
import Glibc
#endif

// Answers LE "Just Works" pairing confirmations through the kernel's management interface
// (HCI_CHANNEL_CONTROL; BlueZ doc/mgmt-api.txt). With bluetoothd stopped — which Keyway requires —
// nothing else answers them: the kernel asks user space to confirm every Secure Connections Just Works
// pairing and the pairing times out after 30 s. Security level `medium` therefore needs this agent.
// It never accepts a numeric comparison or a passkey (those need a person to compare or type digits).

/// One message on the management channel: code, controller index, parameters (little-endian header).
public struct MGMTPacket: Equatable, Sendable {
    public let code: UInt16
    public let index: UInt16
    public let parameters: [UInt8]

    public static let eventUserConfirmRequest: UInt16 = 0x000F
    public static let eventUserPasskeyRequest: UInt16 = 0x0010
    public static let eventAuthFailed: UInt16 = 0x0011
    public static let opUserConfirmReply: UInt16 = 0x001C
    public static let opUserConfirmNegativeReply: UInt16 = 0x001D
    public static let opUserPasskeyNegativeReply: UInt16 = 0x001F
    /// The largest management message we accept (events we act on are 12 bytes of parameters).
    public static let maximumLength = 6 + 1024

    public init(code: UInt16, index: UInt16, parameters: [UInt8]) {
        self.code = code
        self.index = index
        self.parameters = parameters
    }

    public func encoded() -> [UInt8] {
        let n = UInt16(truncatingIfNeeded: parameters.count)
        return [UInt8(code & 0xFF), UInt8(code >> 8), UInt8(index & 0xFF), UInt8(index >> 8),
                UInt8(n & 0xFF), UInt8(n >> 8)] + parameters
    }

    public static func decode(_ bytes: [UInt8]) throws -> MGMTPacket {
        guard bytes.count >= 6 else { throw HCIDecodingError.truncated(what: "management header", need: 6, have: bytes.count) }
        let length = Int(bytes[4]) | Int(bytes[5]) << 8
        guard bytes.count >= 6 + length else {
            throw HCIDecodingError.truncated(what: "management parameters", need: 6 + length, have: bytes.count)
        }
        return MGMTPacket(code: UInt16(bytes[0]) | UInt16(bytes[1]) << 8, index: UInt16(bytes[2]) | UInt16(bytes[3]) << 8,
                          parameters: Array(bytes[6..<(6 + length)]))
    }

    /// `Address` (6 bytes, least significant first) and `Address_Type` (1 LE public, 2 LE random).
    static func addressInfo(_ p: [UInt8]) -> (BlueZAddress, [UInt8])? {
        guard p.count >= 7, let kind = BlueZAddress.Kind(rawValue: p[6]) else { return nil }
        guard let address = try? BlueZAddress(bytes: Array(p[0..<6].reversed()), kind: kind) else { return nil }
        return (address, Array(p[0..<7]))
    }
}

/// What the agent decided for a pairing request (for logs and tests).
public struct BlueZPairingDecision: Equatable, Sendable {
    public enum Kind: String, Sendable { case acceptedJustWorks, refusedNumericComparison, refusedPasskey, failed }
    public let peer: BlueZAddress
    public let kind: Kind
}

public enum BlueZPairingPolicy {
    /// The reply to a management event, or nil when the event is not a pairing question for `index`.
    public static func reply(to event: MGMTPacket, index: UInt16) -> (MGMTPacket, BlueZPairingDecision)? {
        guard event.index == index else { return nil }
        switch event.code {
        case MGMTPacket.eventUserConfirmRequest:
            // Address(6) Address_Type(1) Confirm_Hint(1) Value(4). Hint 1: no value to compare, i.e.
            // Just Works — the only kind a device without a display or a person may accept.
            guard event.parameters.count >= 12, let (peer, info) = MGMTPacket.addressInfo(event.parameters) else { return nil }
            if event.parameters[7] == 1 {
                return (MGMTPacket(code: MGMTPacket.opUserConfirmReply, index: index, parameters: info),
                        BlueZPairingDecision(peer: peer, kind: .acceptedJustWorks))
            }
            return (MGMTPacket(code: MGMTPacket.opUserConfirmNegativeReply, index: index, parameters: info),
                    BlueZPairingDecision(peer: peer, kind: .refusedNumericComparison))
        case MGMTPacket.eventUserPasskeyRequest:
            guard let (peer, info) = MGMTPacket.addressInfo(event.parameters) else { return nil }
            return (MGMTPacket(code: MGMTPacket.opUserPasskeyNegativeReply, index: index, parameters: info),
                    BlueZPairingDecision(peer: peer, kind: .refusedPasskey))
        default:
            return nil
        }
    }
}

/// The agent: one management socket, answering pairing questions for one adapter until closed.
/// Binding the management channel needs CAP_NET_ADMIN.
public actor BlueZPairingAgent {
    public nonisolated let adapter: BlueZAdapterInfo
    /// Every decision taken, oldest first (bounded to the last 64).
    public private(set) var decisions: [BlueZPairingDecision] = []
    private let handle: BlueZSocketHandle
    private var reader: Task<Void, Never>?

    public init(adapter: BlueZAdapterInfo) throws {
        let fd = try BlueZSys.socket(type: Int32(SOCK_RAW.rawValue), proto: BTPROTO_HCI,
                                     operation: "opening the Bluetooth management socket")
        var address = sockaddr_hci()
        address.hci_family = sa_family_t(AF_BLUETOOTH)
        address.hci_dev = UInt16(HCI_DEV_NONE)
        address.hci_channel = UInt16(HCI_CHANNEL_CONTROL)
        if BlueZSys.withSockaddr(address, { bind(fd, $0, $1) }) < 0 {
            let code = errno
            _ = Glibc.close(fd)
            throw BlueZError.classify(errno: code, operation: "binding the management channel (pairing agent)",
                                      adapter: adapter.name)
        }
        self.adapter = adapter
        handle = BlueZSocketHandle(fd: fd, label: "mgmt.\(adapter.name)")
    }

    deinit {
        reader?.cancel()
        handle.close()
    }

    /// Starts answering. Idempotent.
    public func start() {
        guard reader == nil else { return }
        reader = Task { [weak self] in await self?.readLoop() }
    }

    public func close() {
        reader?.cancel()
        reader = nil
        handle.close()
    }

    private func readLoop() async {
        var buffer = [UInt8](repeating: 0, count: MGMTPacket.maximumLength)
        while !Task.isCancelled {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(handle.fd, $0.baseAddress, $0.count) }
            if n > 0 {
                if let event = try? MGMTPacket.decode(Array(buffer[0..<n])) { process(event) }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                do { try await handle.waitReadable() } catch { return }
                continue
            }
            return
        }
    }

    private func process(_ event: MGMTPacket) {
        if event.code == MGMTPacket.eventAuthFailed, event.index == adapter.index,
           let (peer, _) = MGMTPacket.addressInfo(event.parameters) {
            record(BlueZPairingDecision(peer: peer, kind: .failed))
            return
        }
        guard let (reply, decision) = BlueZPairingPolicy.reply(to: event, index: adapter.index) else { return }
        let bytes = reply.encoded()
        _ = bytes.withUnsafeBytes { Glibc.write(handle.fd, $0.baseAddress, $0.count) }
        record(decision)
    }

    private func record(_ decision: BlueZPairingDecision) {
        decisions.append(decision)
        if decisions.count > 64 { decisions.removeFirst(decisions.count - 64) }
    }
}
