#if canImport(Glibc)
import Glibc
#endif

/// Every way the BlueZ transport can fail, each with its own case so callers (the CLI, tests) can tell
/// them apart, and each described in one line that says what happened and what to do about it.
///
/// The mapping from `errno` to a case depends on the operation (`EPERM` from an HCI write means a
/// missing capability; `EADDRINUSE` from binding the ATT channel means bluetoothd owns it), so errors
/// are classified where the system call is made, by `BlueZError.classify`.
public enum BlueZError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `socket(AF_BLUETOOTH, …)` failed with `EAFNOSUPPORT`: the running kernel has no Bluetooth
    /// support (not built, or the `bluetooth` module is not loaded).
    case bluetoothUnavailable
    /// No adapter with this name (`hciN`) exists.
    case noSuchAdapter(String)
    /// The adapter exists but is powered down.
    case adapterDown(String)
    /// The kernel refused an operation for lack of a capability (`EPERM`/`EACCES`).
    case permissionDenied(operation: String, errno: Int32)
    /// Another process — bluetoothd — serves the LE ATT channel (CID 4). The kernel does not refuse
    /// a second listener on a fixed channel (no `EADDRINUSE`) but hands incoming connections to
    /// bluetoothd's, so this is detected by finding the daemon (`pid`), or from `EADDRINUSE` should a
    /// kernel ever return it (`pid` nil).
    case attChannelInUse(adapter: String, pid: Int32?)
    /// The controller rejected an LE advertising command with an HCI status code.
    case advertisingRejected(command: String, status: UInt8)
    /// A Bluetooth 5 controller refused legacy advertising commands (HCI status 0x0C, Command
    /// Disallowed) because extended advertising commands were used on it since its last reset.
    case legacyAdvertisingDisallowed(adapter: String)
    /// The controller did not answer an HCI command in time.
    case hciCommandTimeout(command: String)
    /// The controller answered a (non-advertising) command with an error status, or with return
    /// parameters that do not fit it.
    case hciCommandFailed(command: String, status: UInt8)
    /// The peer could not be reached (not advertising, out of range, refused).
    case connectionFailed(peer: String, errno: Int32)
    /// The link did not reach the required security level (pairing refused, failed, or unavailable).
    case securityNotReached(peer: String, requested: BlueZSecurityLevel, reached: BlueZSecurityLevel)
    /// Pairing/encryption did not complete in time.
    case securityTimeout(peer: String, requested: BlueZSecurityLevel)
    /// Input that does not name an adapter or an address.
    case invalidArgument(String)
    /// Advertising payload over the 31-byte legacy limit.
    case advertisingDataTooLong(Int)
    /// The socket was closed while an operation was waiting on it.
    case closed
    /// A received frame did not fit the bounded receive buffer.
    case frameTooLarge(Int)
    /// Any other system call failure.
    case system(operation: String, errno: Int32)
    /// A phone connected while several locks share the adapter, but the controller's events do not tie
    /// its connection to one lock's advertisement: refused (it could otherwise reach the wrong lock).
    case connectionNotAttributed(peer: String)

    public var description: String {
        switch self {
        case .bluetoothUnavailable:
            return "Bluetooth is not available in this kernel (socket(AF_BLUETOOTH) failed: address family not "
                + "supported) — load the modules (`modprobe bluetooth`), use a kernel with Bluetooth, or run "
                + "with `--transport loopback`; `make hil` tests the BlueZ path in a virtual machine"
        case .noSuchAdapter(let name):
            return "no Bluetooth adapter named \(name) — list adapters with `hciconfig -a` or `btmgmt info`, and "
                + "check the adapter is plugged in and not blocked (`rfkill list`)"
        case .adapterDown(let name):
            return "Bluetooth adapter \(name) is down — power it on with `btmgmt --index \(name) power on` "
                + "(or `hciconfig \(name) up`), and `rfkill unblock bluetooth` if it is blocked"
        case .permissionDenied(let operation, let errno):
            return "permission denied (\(BlueZError.errnoName(errno))) for \(operation) — Keyway needs "
                + "CAP_NET_ADMIN and CAP_NET_RAW: `sudo setcap cap_net_admin,cap_net_raw+eip <path to keyway>` "
                + "(see HARDWARE.md), or run as root"
        case .attChannelInUse(let adapter, let pid):
            let who = pid.map { "bluetoothd (pid \($0)) is running and serves" } ?? "another process holds"
            return "\(who) the LE ATT channel, so phones connecting to \(adapter) would never reach Keyway — "
                + "stop it (`sudo systemctl stop bluetooth`) or run Keyway on a machine or VM dedicated to "
                + "its adapter (see HARDWARE.md)"
        case .advertisingRejected(let command, let status):
            return "the controller rejected \(command) with HCI status 0x\(hex8(status)) "
                + "(\(HCIStatus.name(status))) — check `btmon` for what else is driving the adapter; stop "
                + "bluetoothd or reset the adapter (`btmgmt --index <hciN> power off` then `power on`)"
        case .legacyAdvertisingDisallowed(let adapter):
            return "\(adapter) refuses legacy advertising commands (HCI status 0x0C, Command Disallowed) because "
                + "extended advertising was used on it since its last reset — reset it (`btmgmt --index "
                + "\(adapter) power off; btmgmt --index \(adapter) power on`) with bluetoothd stopped, or "
                + "advertise with `extended` mode"
        case .hciCommandTimeout(let command):
            return "the controller did not answer \(command) — check the adapter with `btmon`; unplug and "
                + "replug it, or reset it (`btmgmt power off; btmgmt power on`)"
        case .hciCommandFailed(let command, let status):
            return "the controller answered \(command) with HCI status 0x\(hex8(status)) (\(HCIStatus.name(status)))"
        case .connectionFailed(let peer, let errno):
            return "could not connect to \(peer) (\(BlueZError.errnoName(errno))) — check the lock is "
                + "advertising (`btmgmt find -l`, or `hcitool lescan`), in range, and that the address type "
                + "(public/random) is right"
        case .securityNotReached(let peer, let requested, let reached):
            return "the link to \(peer) reached security \(reached), not the required \(requested) — pairing was "
                + "refused or is unavailable (kernel without SMP crypto: `dmesg | grep -i smp`; `high` needs a "
                + "pairing agent); use `--security low` or pair the devices"
        case .securityTimeout(let peer, let requested):
            return "pairing with \(peer) for security \(requested) did not complete — the peer may be waiting "
                + "for a user confirmation no agent answers; watch `btmon` for SMP, or use `--security low`"
        case .invalidArgument(let what):
            return what
        case .advertisingDataTooLong(let length):
            return "advertising payload of \(length) bytes exceeds the 31-byte legacy limit — shorten the lock name"
        case .closed:
            return "the Bluetooth socket was closed"
        case .frameTooLarge(let limit):
            return "received an L2CAP frame larger than \(limit) bytes — dropped the connection"
        case .system(let operation, let errno):
            return "\(operation) failed: \(BlueZError.errnoName(errno))"
        case .connectionNotAttributed(let peer):
            return "phone \(peer) connected, but the controller did not say which lock's advertisement it answered "
                + "— disconnected (deny by default)"
        }
    }

    /// Maps an `errno` from a system call to the case that explains it.
    ///
    /// - Parameters:
    ///   - operation: what was attempted, for the message (`"bind HCI socket"`).
    ///   - adapter: the adapter name, when the call targeted one.
    static func classify(errno code: Int32, operation: String, adapter: String? = nil) -> BlueZError {
        switch code {
        case EAFNOSUPPORT, EPROTONOSUPPORT:
            return .bluetoothUnavailable
        case EPERM, EACCES:
            return .permissionDenied(operation: operation, errno: code)
        case ENODEV:
            return .noSuchAdapter(adapter ?? "(unknown)")
        case ENETDOWN:
            return .adapterDown(adapter ?? "(unknown)")
        case EADDRINUSE:
            return .attChannelInUse(adapter: adapter ?? "(unknown)", pid: nil)
        default:
            return .system(operation: operation, errno: code)
        }
    }

    /// `EPERM (Operation not permitted)` — the symbolic name is what people search for.
    static func errnoName(_ code: Int32) -> String {
        let names: [Int32: String] = [
            EPERM: "EPERM", EACCES: "EACCES", ENODEV: "ENODEV", ENETDOWN: "ENETDOWN",
            EADDRINUSE: "EADDRINUSE", EAFNOSUPPORT: "EAFNOSUPPORT", ECONNREFUSED: "ECONNREFUSED",
            EHOSTUNREACH: "EHOSTUNREACH", ETIMEDOUT: "ETIMEDOUT", EHOSTDOWN: "EHOSTDOWN",
            ECONNRESET: "ECONNRESET", EBUSY: "EBUSY", EINVAL: "EINVAL", EADDRNOTAVAIL: "EADDRNOTAVAIL",
            ENOTCONN: "ENOTCONN", EPROTONOSUPPORT: "EPROTONOSUPPORT", EAGAIN: "EAGAIN", EBADF: "EBADF",
            ECONNABORTED: "ECONNABORTED", ENOMEM: "ENOMEM", EMFILE: "EMFILE",
        ]
        let text = strerror(code).map { String(cString: $0) } ?? "error \(code)"
        return "\(names[code] ?? "errno \(code)"): \(text)"
    }
}
