// A tiny deterministic JSON writer (RFC 8259).
//
// Why not JSONEncoder: a webhook's body is signed and the same event id must always carry the same bytes
// (receivers deduplicate on the id, and a retry after a crash must be byte-identical). A writer with a
// fixed member order and a fixed escaping rule gives that by construction, and it is several times faster
// than JSONEncoder on the journal's hot path.

struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needsComma: [Bool] = []

    init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

    mutating func beginObject() { separator(); bytes.append(UInt8(ascii: "{")); needsComma.append(false) }
    mutating func endObject() { bytes.append(UInt8(ascii: "}")); needsComma.removeLast() }

    mutating func key(_ name: String) {
        separator()
        writeString(name)
        bytes.append(UInt8(ascii: ":"))
        // The value that follows belongs to this key and must not get a comma of its own.
        pendingValueAfterKey = true
    }

    private var pendingValueAfterKey = false

    mutating func string(_ value: String) { separator(); writeString(value) }
    mutating func int(_ value: Int64) { separator(); bytes.append(contentsOf: Array(String(value).utf8)) }
    mutating func bool(_ value: Bool) { separator(); bytes.append(contentsOf: Array((value ? "true" : "false").utf8)) }
    mutating func null() { separator(); bytes.append(contentsOf: Array("null".utf8)) }

    mutating func member(_ name: String, _ value: String?) { if let value { key(name); string(value) } }
    mutating func member(_ name: String, _ value: Int64?) { if let value { key(name); int(value) } }

    private mutating func separator() {
        if pendingValueAfterKey { pendingValueAfterKey = false; return }
        guard !needsComma.isEmpty else { return }
        if needsComma[needsComma.count - 1] { bytes.append(UInt8(ascii: ",")) }
        needsComma[needsComma.count - 1] = true
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    private mutating func writeString(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): bytes.append(UInt8(ascii: "\\")); bytes.append(b)
            case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(b)
            case 0x0A: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
            case 0x00..<0x20, 0x7F:
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          JSONWriter.hex[Int(b >> 4)], JSONWriter.hex[Int(b & 0x0F)]])
            default: bytes.append(b)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
