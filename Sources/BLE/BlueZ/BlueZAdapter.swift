import CBlueZ
#if canImport(Glibc)
import Glibc
#endif

/// An LE device address and its type, as the kernel's L2CAP sockets want them.
public struct BlueZAddress: Hashable, Sendable, CustomStringConvertible {
    /// `BDADDR_LE_PUBLIC` / `BDADDR_LE_RANDOM` (bluetooth.h): the address type of an LE socket address.
    public enum Kind: UInt8, Sendable {
        case lePublic = 1
        case leRandom = 2
    }

    /// The six bytes in display order (`00:AA:01:00:00:00` → `[0x00, 0xAA, 0x01, 0x00, 0x00, 0x00]`).
    public let bytes: [UInt8]
    public let kind: Kind

    public init(bytes: [UInt8], kind: Kind = .lePublic) throws {
        guard bytes.count == 6 else { throw BlueZError.invalidArgument("a Bluetooth address has 6 bytes, got \(bytes.count)") }
        self.bytes = bytes
        self.kind = kind
    }

    /// Parses `00:AA:01:00:00:00` (case-insensitive).
    public init(_ text: String, kind: Kind = .lePublic) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts.allSatisfy({ $0.count == 2 }) else {
            throw BlueZError.invalidArgument("not a Bluetooth address (want XX:XX:XX:XX:XX:XX): \(text)")
        }
        var b: [UInt8] = []
        for p in parts {
            guard let v = UInt8(p, radix: 16) else {
                throw BlueZError.invalidArgument("not a Bluetooth address (want XX:XX:XX:XX:XX:XX): \(text)")
            }
            b.append(v)
        }
        try self.init(bytes: b, kind: kind)
    }

    public var description: String { bytes.map { hex8($0) }.joined(separator: ":") }

    /// The kernel's `bdaddr_t` stores the address least significant byte first.
    var bdaddr: bdaddr_t {
        let b = bytes
        return bdaddr_t(b: (b[5], b[4], b[3], b[2], b[1], b[0]))
    }

    init(bdaddr a: bdaddr_t, kind: Kind) {
        bytes = [a.b.5, a.b.4, a.b.3, a.b.2, a.b.1, a.b.0]
        self.kind = kind
    }

    /// BlueZ's wildcard `BDADDR_ANY` (00:00:00:00:00:00): "whichever adapter".
    public static let any = BlueZAddress(bdaddr: bdaddr_t(b: (0, 0, 0, 0, 0, 0)), kind: .lePublic)
}

/// One kernel Bluetooth adapter (`hciN`) as found by `HCIGETDEVINFO`.
public struct BlueZAdapterInfo: Equatable, Sendable {
    public let name: String
    public let index: UInt16
    public let address: BlueZAddress
    public let isUp: Bool

    /// Looks the adapter up (`"hci0"`, or `"0"`).
    ///
    /// - Throws: `BlueZError.bluetoothUnavailable` when the kernel has no Bluetooth,
    ///   `.noSuchAdapter`, or `.invalidArgument` for a name that is not `hciN`.
    public static func lookup(_ name: String) throws -> BlueZAdapterInfo {
        let digits = name.hasPrefix("hci") ? String(name.dropFirst(3)) : name
        guard !digits.isEmpty, digits.count <= 5, let index = UInt16(digits), index < 0xFFFF else {
            throw BlueZError.invalidArgument("not an adapter name (want hciN, e.g. hci0): \(name)")
        }
        let canonical = "hci\(index)"
        var info = hci_dev_info()
        // libbluetooth opens its own AF_BLUETOOTH socket and issues HCIGETDEVINFO.
        if hci_devinfo(Int32(index), &info) < 0 {
            let code = errno
            if code == ENODEV { throw BlueZError.noSuchAdapter(canonical) }
            throw BlueZError.classify(errno: code, operation: "reading \(canonical)'s information", adapter: canonical)
        }
        let up = hci_test_bit(Int32(HCI_UP), &info.flags) != 0
        return BlueZAdapterInfo(name: canonical, index: index,
                                address: BlueZAddress(bdaddr: info.bdaddr, kind: .lePublic), isUp: up)
    }

    /// Like `lookup`, and also throws `.adapterDown` when the adapter is powered off.
    public static func requireUp(_ name: String) throws -> BlueZAdapterInfo {
        let info = try lookup(name)
        guard info.isUp else { throw BlueZError.adapterDown(info.name) }
        return info
    }

    /// Whether the running kernel offers Bluetooth sockets at all (false on a kernel built without it).
    public static var kernelSupportsBluetooth: Bool {
        let fd = Glibc.socket(AF_BLUETOOTH, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), BTPROTO_HCI)
        if fd < 0 { return errno != EAFNOSUPPORT && errno != EPROTONOSUPPORT }
        _ = Glibc.close(fd)
        return true
    }
}

/// Finds a running bluetoothd. The kernel lets a second listener bind the ATT fixed channel (no
/// `EADDRINUSE` for fixed CIDs) but routes incoming LE connections to bluetoothd's, so Keyway's server
/// would silently never see a phone; it looks for the daemon instead and says so.
public enum BlueZDaemonCheck {
    /// The pid of a process named `bluetoothd`, if any (from `/proc/<pid>/comm`).
    public static func runningBluetoothd(procRoot: String = "/proc", name: String = "bluetoothd") -> Int32? {
        guard let dir = opendir(procRoot) else { return nil }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let pidText = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = Int32(pidText), pid > 0 else { continue }
            guard let f = fopen("\(procRoot)/\(pidText)/comm", "r") else { continue }
            var buffer = [CChar](repeating: 0, count: 64)
            let got = fgets(&buffer, Int32(buffer.count), f)
            fclose(f)
            guard got != nil else { continue }
            let comm = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if comm.trimmingSuffixNewline() == name { return pid }
        }
        return nil
    }
}

extension String {
    fileprivate func trimmingSuffixNewline() -> String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}
