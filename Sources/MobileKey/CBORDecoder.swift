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
        var parser = CBORParser(bytes: bytes, limits: limits)
        let item = try parser.item(depth: 0)
        guard parser.pos == bytes.count else { throw .trailingBytes(at: parser.pos) }
        return item
    }
}

/// The head of a data item: major type, argument (for major type 7: the simple value 20–23), and
/// the item's offset.
struct CBORHead {
    let major: UInt8
    let argument: UInt64
    let start: Int
}

/// Cursor over CBOR bytes with every strictness and bound rule in one place. `CBORDecoder` builds
/// trees with it; the credential and COSE parsers use its typed readers directly on the hot
/// verification path, so both apply exactly the same rules.
struct CBORParser {
    let bytes: [UInt8]
    let limits: CBORDecoder.Limits
    var pos = 0

    init(bytes: [UInt8], limits: CBORDecoder.Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    var remaining: Int { bytes.count - pos }
    var atEnd: Bool { pos == bytes.count }

    /// Reads a head, enforcing shortest form and refusing indefinite lengths, reserved additional
    /// information, floats and unassigned simple values.
    mutating func head() throws(CBORError) -> CBORHead {
        let start = pos
        guard pos < bytes.count else { throw .truncated(at: start) }
        let initial = bytes[pos]
        pos += 1
        let major = initial >> 5
        let ai = initial & 0x1f
        if major == 7 {
            switch ai {
            case 20, 21, 22, 23: return CBORHead(major: 7, argument: UInt64(ai), start: start)
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
        switch ai {
        case 0..<24:
            return CBORHead(major: major, argument: UInt64(ai), start: start)
        case 24, 25, 26, 27:
            let width = 1 << Int(ai - 24)
            guard remaining >= width else { throw .truncated(at: start) }
            var v: UInt64 = 0
            for i in 0..<width { v = v << 8 | UInt64(bytes[pos + i]) }
            pos += width
            let minimum: UInt64 = width == 1 ? 24 : 1 << UInt64(4 * width) // 24, 2^8, 2^16, 2^32
            guard v >= minimum else { throw .nonCanonical(at: start) }
            return CBORHead(major: major, argument: v, start: start)
        case 31:
            throw (2...5).contains(major) ? .indefiniteLength(at: start) : .reservedAdditionalInfo(at: start)
        default:
            throw .reservedAdditionalInfo(at: start)
        }
    }

    /// The body of a byte/text string whose head was just read; length checked against the limit
    /// and the input before anything is copied.
    mutating func stringBody(_ h: CBORHead) throws(CBORError) -> ArraySlice<UInt8> {
        guard h.argument <= UInt64(limits.maxLength) else {
            throw .lengthExceeded(at: h.start, declared: h.argument, limit: limits.maxLength)
        }
        let n = Int(h.argument)
        guard n <= remaining else { throw .truncated(at: h.start) }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }

    mutating func textBody(_ h: CBORHead) throws(CBORError) -> String {
        let slice = try stringBody(h)
        guard let s = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(at: h.start) }
        return s
    }

    /// The element count of an array (or entry count of a map) at nesting `depth`, after checking
    /// depth, the item limit and that the input could hold that many items.
    func containerCount(_ h: CBORHead, depth: Int) throws(CBORError) -> Int {
        guard depth < limits.maxDepth else { throw .depthExceeded(at: h.start, limit: limits.maxDepth) }
        guard h.argument <= UInt64(limits.maxItems) else {
            throw .lengthExceeded(at: h.start, declared: h.argument, limit: limits.maxItems)
        }
        let n = Int(h.argument)
        // Every item takes at least one byte: a count above what is left cannot be honest.
        guard n <= (h.major == 5 ? remaining / 2 : remaining) else { throw .truncated(at: h.start) }
        return n
    }

    /// Decodes one complete item at nesting `depth` into a tree.
    mutating func item(depth: Int) throws(CBORError) -> CBOR {
        let h = try head()
        switch h.major {
        case 0: return .unsigned(h.argument)
        case 1: return .negative(h.argument)
        case 2: return .bytes(Array(try stringBody(h)))
        case 3: return .text(try textBody(h))
        case 4:
            let n = try containerCount(h, depth: depth)
            var items: [CBOR] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try item(depth: depth + 1)) }
            return .array(items)
        case 5:
            let n = try containerCount(h, depth: depth)
            var map: [CBOR: CBOR] = [:]
            map.reserveCapacity(n)
            for _ in 0..<n {
                let keyStart = pos
                let key = try item(depth: depth + 1)
                let value = try item(depth: depth + 1)
                guard map.updateValue(value, forKey: key) == nil else { throw .duplicateMapKey(at: keyStart) }
            }
            return .map(map)
        case 6:
            guard depth < limits.maxDepth else { throw .depthExceeded(at: h.start, limit: limits.maxDepth) }
            return .tagged(h.argument, try item(depth: depth + 1))
        default:
            switch h.argument {
            case 20: return .bool(false)
            case 21: return .bool(true)
            case 22: return .null
            default: return .undefined
            }
        }
    }

    /// Visits the entries of a map whose head `h` was just read, at nesting `depth`. Integer keys
    /// (that fit Int64) are passed to `body`, which must consume exactly the value; other keys are
    /// decoded and their values skipped. Duplicate keys are refused as `CBORDecoder` refuses them.
    mutating func forEachMapEntry(_ h: CBORHead, depth: Int,
                                  _ body: (Int64, inout CBORParser) throws -> Void) throws {
        let n = try containerCount(h, depth: depth)
        var intKeys: [Int64] = []
        intKeys.reserveCapacity(n)
        var otherKeys: Set<CBOR> = []
        for _ in 0..<n {
            let keyStart = pos
            let k = try head()
            if (k.major == 0 || k.major == 1), k.argument <= UInt64(Int64.max) {
                let key = k.major == 0 ? Int64(k.argument) : ~Int64(k.argument)
                guard !intKeys.contains(key) else { throw CBORError.duplicateMapKey(at: keyStart) }
                intKeys.append(key)
                try body(key, &self)
            } else {
                pos = keyStart
                let key = try item(depth: depth + 1)
                guard otherKeys.insert(key).inserted else { throw CBORError.duplicateMapKey(at: keyStart) }
                _ = try item(depth: depth + 1)
            }
        }
    }
}
