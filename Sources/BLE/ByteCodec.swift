// Little-endian byte helpers shared by every codec of this module. Reads are bounds-checked and
// throw; nothing here can trap on bytes that came from the air.

/// Why a received ATT PDU could not be decoded. A GATT server answers all of these with an Error
/// Response "Invalid PDU"; a GATT client treats them as a protocol violation of the peer.
public enum ATTDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Zero bytes: not even an opcode.
    case empty
    /// The first byte is not an opcode this decoder knows.
    case unknownOpcode(UInt8)
    /// The decoder for one PDU type was handed another one.
    case unexpectedOpcode(expected: ATTOpcode, actual: UInt8)
    /// The PDU has a length its format does not allow.
    case invalidLength(opcode: ATTOpcode, length: Int)
    /// A UUID field that is neither 2 nor 16 bytes long.
    case invalidUUIDLength(Int)
    /// A field holds a value its format does not allow (the reason names it).
    case invalidField(opcode: ATTOpcode, reason: String)

    public var description: String {
        switch self {
        case .empty: return "empty ATT PDU"
        case .unknownOpcode(let op): return "unknown ATT opcode 0x\(hex8(op))"
        case .unexpectedOpcode(let expected, let actual):
            return "expected \(expected) (0x\(hex8(expected.rawValue))), got opcode 0x\(hex8(actual))"
        case .invalidLength(let opcode, let length): return "\(opcode): invalid PDU length \(length)"
        case .invalidUUIDLength(let n): return "UUID of \(n) bytes (must be 2 or 16)"
        case .invalidField(let opcode, let reason): return "\(opcode): \(reason)"
        }
    }
}

/// Thrown by the initialisers of response PDUs whose entries must share one shape
/// (Find Information, Read By Type, Read By Group Type): the wire format cannot express a mix.
public enum ATTEncodingError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyList
    case mixedUUIDWidths
    case mixedValueLengths
    case entryTooLong(Int)

    public var description: String {
        switch self {
        case .emptyList: return "ATT response list is empty"
        case .mixedUUIDWidths: return "ATT response mixes 16-bit and 128-bit UUIDs"
        case .mixedValueLengths: return "ATT response mixes value lengths"
        case .entryTooLong(let n): return "ATT response entry of \(n) bytes is too long"
        }
    }
}

@inline(__always) func hex8(_ v: UInt8) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return s.count == 1 ? "0" + s : s
}

@inline(__always) func hex16(_ v: UInt16) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: 4 - s.count) + s
}

extension Array where Element == UInt8 {
    @inline(__always) mutating func appendLE(_ v: UInt16) {
        append(UInt8(truncatingIfNeeded: v))
        append(UInt8(truncatingIfNeeded: v >> 8))
    }

    @inline(__always) func readLE16(at i: Int) -> UInt16 {
        UInt16(self[i]) | (UInt16(self[i + 1]) << 8)
    }
}

/// Checks the opcode and the minimum length, returning the length, before a decoder reads fields.
@inline(__always)
func checkHeader(_ pdu: [UInt8], _ opcode: ATTOpcode, minimumLength: Int) throws(ATTDecodingError) {
    guard let first = pdu.first else { throw .empty }
    guard first == opcode.rawValue else { throw .unexpectedOpcode(expected: opcode, actual: first) }
    guard pdu.count >= minimumLength else { throw .invalidLength(opcode: opcode, length: pdu.count) }
}

/// Checks the opcode and an exact length.
@inline(__always)
func checkHeader(_ pdu: [UInt8], _ opcode: ATTOpcode, exactLength: Int) throws(ATTDecodingError) {
    guard let first = pdu.first else { throw .empty }
    guard first == opcode.rawValue else { throw .unexpectedOpcode(expected: opcode, actual: first) }
    guard pdu.count == exactLength else { throw .invalidLength(opcode: opcode, length: pdu.count) }
}

/// A tiny FIFO with amortised O(1) pops; the queues in this module usually hold 0–2 items, so this
/// avoids Deque-like machinery while never degrading to O(n) per pop.
struct FIFO<Element> {
    private var items: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }

    mutating func append(_ e: Element) { items.append(e) }

    mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let e = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: items.count <= 64)
            head = 0
        } else if head >= 64 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return e
    }

    var first: Element? { head < items.count ? items[head] : nil }

    mutating func removeAll() -> [Element] {
        let rest = Array(items[head...])
        items.removeAll()
        head = 0
        return rest
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a lock, shareable by reference (captured by closures, held by several objects).
///
/// Built on a pthread mutex, not `Synchronization.Mutex`: on Linux a contended `Mutex` is handed over
/// inside the kernel (a PI futex) where ThreadSanitizer cannot see it, so every contended `Mutex`
/// shows up as a false data race under `make tsan`, burying real ones. TSAN intercepts pthread mutexes,
/// so with this lock a race it reports is a race. Same cost uncontended (one atomic each way).
package final class Locked<Value>: @unchecked Sendable {   // `value` is only reached inside withLock, under `mutex`
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    @inline(__always)
    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
