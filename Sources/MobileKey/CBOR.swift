import Foundation

/// A CBOR data item (RFC 8949), restricted to what the Keyway protocols use.
///
/// Floating-point numbers and simple values other than `false`, `true`, `null` and `undefined` are
/// deliberately not representable: no Keyway message carries them, and refusing them on decode
/// removes a whole class of canonicalisation ambiguity (NaN payloads, -0.0, float widths) from the
/// attack surface of a lock.
///
/// Only `tagged` is stored indirectly: arrays and maps already keep their elements on the heap, and
/// boxing every scalar would cost an allocation per decoded item on the verification hot path.
///
/// Equality note: `.text` compares with Swift `String` semantics (Unicode canonical equivalence).
/// Two text keys that differ only in normalisation are therefore the *same* map key here; the
/// decoder reports such a pair as `duplicateMapKey`, which is the safe direction (stricter, never
/// looser). Signatures are always checked over the bytes as received, never over re-encodings.
public enum CBOR: Hashable, Sendable {
    /// Major type 0: an unsigned integer.
    case unsigned(UInt64)
    /// Major type 1: a negative integer whose value is `-1 - n`.
    case negative(UInt64)
    /// Major type 2: a byte string.
    case bytes([UInt8])
    /// Major type 3: a UTF-8 text string.
    case text(String)
    /// Major type 4: an array.
    case array([CBOR])
    /// Major type 5: a map. Key order is not semantic; the encoder sorts keys deterministically.
    case map([CBOR: CBOR])
    /// Major type 6: a tagged item.
    indirect case tagged(UInt64, CBOR)
    /// Simple values 20 and 21.
    case bool(Bool)
    /// Simple value 22.
    case null
    /// Simple value 23.
    case undefined
}

// MARK: - Convenience constructors and accessors

extension CBOR {
    /// The CBOR integer for `v`: major type 0 when `v ≥ 0`, major type 1 otherwise.
    public static func int(_ v: Int64) -> CBOR {
        // For negative v, -1 - v == ~v in two's complement, and never overflows.
        v >= 0 ? .unsigned(UInt64(v)) : .negative(UInt64(bitPattern: ~v))
    }

    /// The CBOR integer for `v` (`Int` convenience for the common case).
    public static func int(_ v: Int) -> CBOR { .int(Int64(v)) }

    /// The integer value when it fits in `Int64`, else nil (also nil for non-integers).
    public var intValue: Int64? {
        switch self {
        case .unsigned(let n): return n <= UInt64(Int64.max) ? Int64(n) : nil
        case .negative(let n): return n <= UInt64(Int64.max) ? ~Int64(n) : nil
        default: return nil
        }
    }

    /// The value of a major-type-0 integer.
    public var uint64Value: UInt64? {
        if case .unsigned(let n) = self { return n }
        return nil
    }

    public var bytesValue: [UInt8]? {
        if case .bytes(let b) = self { return b }
        return nil
    }

    public var textValue: String? {
        if case .text(let s) = self { return s }
        return nil
    }

    public var arrayValue: [CBOR]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var mapValue: [CBOR: CBOR]? {
        if case .map(let m) = self { return m }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The tag number and content of a tagged item.
    public var taggedValue: (tag: UInt64, item: CBOR)? {
        if case .tagged(let t, let item) = self { return (t, item) }
        return nil
    }

    /// Map lookup by integer key; nil when `self` is not a map or the key is absent.
    public subscript(key: Int64) -> CBOR? {
        guard case .map(let m) = self else { return nil }
        return m[.int(key)]
    }

    /// Map lookup by text key; nil when `self` is not a map or the key is absent.
    public subscript(key: String) -> CBOR? {
        guard case .map(let m) = self else { return nil }
        return m[.text(key)]
    }
}

// MARK: - Literals (for building messages in code and tests)

extension CBOR: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(stringLiteral value: String) { self = .text(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: CBOR...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (CBOR, CBOR)...) {
        // Last one wins instead of trapping: a literal with a repeated key is a programming slip,
        // not a reason to crash a lock.
        var m: [CBOR: CBOR] = [:]
        m.reserveCapacity(elements.count)
        for (k, v) in elements { m[k] = v }
        self = .map(m)
    }
}

// MARK: - Diagnostic notation (RFC 8949 §8), for logs and test failure messages

extension CBOR: CustomStringConvertible {
    public var description: String {
        switch self {
        case .unsigned(let n): return String(n)
        case .negative(let n): return n == UInt64.max ? "-18446744073709551616" : "-\(n + 1)"
        case .bytes(let b): return "h'" + Hex.encode(b) + "'"
        case .text(let s):
            return "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .map(let m):
            // Show entries in deterministic (encoded) order so output is stable.
            let entries = m.map { (key: $0.key.encoded(), k: $0.key, v: $0.value) }
                .sorted { $0.key.lexicographicallyPrecedes($1.key) }
            return "{" + entries.map { "\($0.k): \($0.v)" }.joined(separator: ", ") + "}"
        case .tagged(let t, let item): return "\(t)(\(item))"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .undefined: return "undefined"
        }
    }
}
