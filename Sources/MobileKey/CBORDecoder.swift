/// Why a byte string was refused as CBOR. Offsets are 0-based positions in the input: for most
/// cases the head of the offending data item, for `trailingBytes` the first byte after the item.
public enum CBORError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ends inside the data item whose head is at `at` (or is empty: `at == 0`).
    case truncated(at: Int)
    /// A complete item was decoded but input remains from `at` on.
    case trailingBytes(at: Int)
    /// A map key at `at` repeats an earlier key of the same map (RFC 8949 §5.6: not valid).
    case duplicateMapKey(at: Int)
    /// Arrays, maps and tags are nested more than `limit` deep; `at` is the first too-deep container.
    case depthExceeded(at: Int, limit: Int)
    /// A string length or container count declared at `at` exceeds `limit`. Checked on the
    /// declared value, before any allocation.
    case lengthExceeded(at: Int, declared: UInt64, limit: Int)
    /// The whole input (`size` bytes) exceeds `Limits.maxBytes`.
    case tooLarge(size: Int, limit: Int)
    /// An indefinite-length string, array or map (additional info 31). Keyway only uses definite
    /// lengths (deterministic encoding), so these are refused rather than supported.
    case indefiniteLength(at: Int)
    /// A head at `at` is not in shortest form (RFC 8949 §4.2.1), e.g. `0x18 0x05` for 5.
    case nonCanonical(at: Int)
    /// A text string at `at` is not valid UTF-8.
    case invalidUTF8(at: Int)
    /// A simple value other than false/true/null/undefined.
    case unsupportedSimpleValue(at: Int, value: UInt8)
    /// A half, single or double precision float (major type 7, additional info 25/26/27). No Keyway
    /// message has a float; NumericDate values are integers.
    case unsupportedFloat(at: Int)
    /// Additional information 28–30 (reserved), or 31 on a major type that has no indefinite form
    /// (integers, tags, and the lone "break" stop code).
    case reservedAdditionalInfo(at: Int)

    public var description: String {
        switch self {
        case .truncated(let at): return "CBOR truncated: item at offset \(at) runs past the end of the input"
        case .trailingBytes(let at): return "CBOR has trailing bytes from offset \(at)"
        case .duplicateMapKey(let at): return "CBOR map has a duplicate key at offset \(at)"
        case .depthExceeded(let at, let limit): return "CBOR nesting deeper than \(limit) at offset \(at)"
        case .lengthExceeded(let at, let declared, let limit): return "CBOR length \(declared) at offset \(at) exceeds the limit \(limit)"
        case .tooLarge(let size, let limit): return "CBOR input of \(size) bytes exceeds the limit \(limit)"
        case .indefiniteLength(let at): return "CBOR indefinite length at offset \(at) is not accepted"
        case .nonCanonical(let at): return "CBOR head at offset \(at) is not in shortest form"
        case .invalidUTF8(let at): return "CBOR text at offset \(at) is not valid UTF-8"
        case .unsupportedSimpleValue(let at, let v): return "CBOR simple value \(v) at offset \(at) is not supported"
        case .unsupportedFloat(let at): return "CBOR float at offset \(at) is not supported"
        case .reservedAdditionalInfo(let at): return "CBOR reserved additional information at offset \(at)"
        }
    }
}

/// A strict, bounded CBOR decoder for bytes that come from the air or from disk.
///
/// It accepts exactly one well-formed data item in deterministic head form and refuses, with a
/// precise `CBORError`: truncation, trailing bytes, duplicate map keys, indefinite lengths,
/// non-shortest heads, floats, unassigned simple values, invalid UTF-8 — and anything beyond the
/// configured `Limits`. Map keys may arrive in any order (interoperating encoders such as cbor2 do
/// not sort by default); signatures are checked over received bytes, so order carries no meaning.
///
/// Every size is checked against the limits and against the bytes actually remaining *before*
/// memory is reserved, so a 9-byte input declaring a 2^64-element array costs nothing.
public struct CBORDecoder: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Maximum nesting of arrays, maps and tags (a top-level array is depth 1).
        public var maxDepth: Int
        /// Maximum element count of one array, or entry count of one map.
        public var maxItems: Int
        /// Maximum length in bytes of one byte or text string.
        public var maxLength: Int
        /// Maximum size of the whole input.
        public var maxBytes: Int

        public init(maxDepth: Int = 16, maxItems: Int = 256, maxLength: Int = 4096, maxBytes: Int = 16384) {
            self.maxDepth = maxDepth
            self.maxItems = maxItems
            self.maxLength = maxLength
            self.maxBytes = maxBytes
        }

        /// Sized for credentials and tap-protocol messages: depth 16, 256 items per container,
        /// 4 KiB per string, 16 KiB in total.
        public static let `default` = Limits()
    }

    public let limits: Limits

    public init(limits: Limits = .default) {
        self.limits = limits
    }

    /// Decodes exactly one data item that spans all of `bytes`.
    public func decode(_ bytes: [UInt8]) throws(CBORError) -> CBOR {
        guard bytes.count <= limits.maxBytes else { throw .tooLarge(size: bytes.count, limit: limits.maxBytes) }
        var parser = Parser(bytes: bytes, limits: limits)
        let item = try parser.item(depth: 0)
        guard parser.pos == bytes.count else { throw .trailingBytes(at: parser.pos) }
        return item
    }
}

private struct Parser {
    let bytes: [UInt8]
    let limits: CBORDecoder.Limits
    var pos = 0

    init(bytes: [UInt8], limits: CBORDecoder.Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    var remaining: Int { bytes.count - pos }

    /// Reads the argument that follows an initial byte with additional information `ai` (24–27),
    /// enforcing shortest form. `start` is the item's head offset, for error reports.
    @inline(__always)
    mutating func argument(_ ai: UInt8, start: Int) throws(CBORError) -> UInt64 {
        let width: Int
        let minimum: UInt64
        switch ai {
        case 24: width = 1; minimum = 24
        case 25: width = 2; minimum = 0x100
        case 26: width = 4; minimum = 0x1_0000
        case 27: width = 8; minimum = 0x1_0000_0000
        default: throw .reservedAdditionalInfo(at: start)
        }
        guard remaining >= width else { throw .truncated(at: start) }
        var v: UInt64 = 0
        for i in 0..<width { v = v << 8 | UInt64(bytes[pos + i]) }
        pos += width
        guard v >= minimum else { throw .nonCanonical(at: start) }
        return v
    }

    mutating func item(depth: Int) throws(CBORError) -> CBOR {
        let start = pos
        guard pos < bytes.count else { throw .truncated(at: start) }
        let initial = bytes[pos]
        pos += 1
        let major = initial >> 5
        let ai = initial & 0x1f

        if major == 7 { return try simple(ai, start: start) }

        let arg: UInt64
        switch ai {
        case 0..<24: arg = UInt64(ai)
        case 24...27: arg = try argument(ai, start: start)
        case 31: throw (2...5).contains(major) ? .indefiniteLength(at: start) : .reservedAdditionalInfo(at: start)
        default: throw .reservedAdditionalInfo(at: start)
        }

        switch major {
        case 0: return .unsigned(arg)
        case 1: return .negative(arg)
        case 2, 3:
            guard arg <= UInt64(limits.maxLength) else {
                throw .lengthExceeded(at: start, declared: arg, limit: limits.maxLength)
            }
            let n = Int(arg)
            guard n <= remaining else { throw .truncated(at: start) }
            let slice = bytes[pos..<(pos + n)]
            pos += n
            if major == 2 { return .bytes(Array(slice)) }
            guard let s = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(at: start) }
            return .text(s)
        case 4:
            guard depth < limits.maxDepth else { throw .depthExceeded(at: start, limit: limits.maxDepth) }
            guard arg <= UInt64(limits.maxItems) else {
                throw .lengthExceeded(at: start, declared: arg, limit: limits.maxItems)
            }
            let n = Int(arg)
            // Every element takes at least one byte: a count above what is left cannot be honest.
            guard n <= remaining else { throw .truncated(at: start) }
            var items: [CBOR] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try item(depth: depth + 1)) }
            return .array(items)
        case 5:
            guard depth < limits.maxDepth else { throw .depthExceeded(at: start, limit: limits.maxDepth) }
            guard arg <= UInt64(limits.maxItems) else {
                throw .lengthExceeded(at: start, declared: arg, limit: limits.maxItems)
            }
            let n = Int(arg)
            guard n <= remaining / 2 else { throw .truncated(at: start) }
            var map: [CBOR: CBOR] = [:]
            map.reserveCapacity(n)
            for _ in 0..<n {
                let keyStart = pos
                let key = try item(depth: depth + 1)
                let value = try item(depth: depth + 1)
                guard map.updateValue(value, forKey: key) == nil else { throw .duplicateMapKey(at: keyStart) }
            }
            return .map(map)
        default: // 6
            guard depth < limits.maxDepth else { throw .depthExceeded(at: start, limit: limits.maxDepth) }
            return .tagged(arg, try item(depth: depth + 1))
        }
    }

    mutating func simple(_ ai: UInt8, start: Int) throws(CBORError) -> CBOR {
        switch ai {
        case 20: return .bool(false)
        case 21: return .bool(true)
        case 22: return .null
        case 23: return .undefined
        case 0..<20: throw .unsupportedSimpleValue(at: start, value: ai)
        case 24:
            guard remaining >= 1 else { throw .truncated(at: start) }
            let v = bytes[pos]
            pos += 1
            // RFC 8949 §3.3: values below 32 in the two-byte form are not well-formed.
            guard v >= 32 else { throw .nonCanonical(at: start) }
            throw .unsupportedSimpleValue(at: start, value: v)
        case 25, 26, 27: throw .unsupportedFloat(at: start)
        default: throw .reservedAdditionalInfo(at: start) // 28–30 reserved, 31 a stray "break"
        }
    }
}
