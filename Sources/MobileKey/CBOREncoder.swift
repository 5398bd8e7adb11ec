/// Deterministic encoding (RFC 8949 §4.2.1 "Core Deterministic Encoding Requirements"):
/// shortest-form heads, definite lengths only, and map entries ordered by the bytewise
/// lexicographic order of their encoded keys. Equal values therefore always encode to equal bytes,
/// which is what lets a signer and an independent verifier agree on what was signed.
extension CBOR {
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        encode(into: &out)
        return out
    }

    /// Appends the deterministic encoding of `self` to `out`.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .unsigned(let n): CBOR.appendHead(major: 0, n, to: &out)
        case .negative(let n): CBOR.appendHead(major: 1, n, to: &out)
        case .bytes(let b):
            CBOR.appendHead(major: 2, UInt64(b.count), to: &out)
            out.append(contentsOf: b)
        case .text(let s):
            let utf8 = s.utf8
            CBOR.appendHead(major: 3, UInt64(utf8.count), to: &out)
            out.append(contentsOf: utf8)
        case .array(let items):
            CBOR.appendHead(major: 4, UInt64(items.count), to: &out)
            for item in items { item.encode(into: &out) }
        case .map(let m):
            CBOR.appendHead(major: 5, UInt64(m.count), to: &out)
            if m.count == 1, let (k, v) = m.first {
                k.encode(into: &out)
                v.encode(into: &out)
                return
            }
            // Sort by the encoded key bytes (not by value): this is the §4.2.1 order, and it is what
            // cbor2 (canonical=True) and other deterministic encoders produce too.
            var entries: [(key: [UInt8], value: CBOR)] = []
            entries.reserveCapacity(m.count)
            for (k, v) in m { entries.append((k.encoded(), v)) }
            entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
            for e in entries {
                out.append(contentsOf: e.key)
                e.value.encode(into: &out)
            }
        case .tagged(let tag, let item):
            CBOR.appendHead(major: 6, tag, to: &out)
            item.encode(into: &out)
        case .bool(let b): out.append(b ? 0xf5 : 0xf4)
        case .null: out.append(0xf6)
        case .undefined: out.append(0xf7)
        }
    }

    /// Appends a head (major type + argument) in its shortest form.
    @inline(__always)
    static func appendHead(major: UInt8, _ value: UInt64, to out: inout [UInt8]) {
        let mt = major << 5
        switch value {
        case 0..<24:
            out.append(mt | UInt8(value))
        case 24...0xff:
            out.append(mt | 24); out.append(UInt8(value))
        case 0x100...0xffff:
            out.append(mt | 25)
            out.append(UInt8(truncatingIfNeeded: value >> 8)); out.append(UInt8(truncatingIfNeeded: value))
        case 0x1_0000...0xffff_ffff:
            out.append(mt | 26)
            for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        default:
            out.append(mt | 27)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
    }
}
