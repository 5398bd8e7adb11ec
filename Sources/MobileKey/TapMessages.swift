import KeywayCrypto

/// Keyway Mobile Key tap protocol, version 2 — the messages on the wire (docs/PROTOCOL.md,
/// "Tap protocol"). Every message is a deterministic CBOR map with small integer keys, decoded with
/// tight limits because the bytes come from anyone in radio range.
///
/// Version 2 is Aliro-ordered: the phone opens with its ephemeral key and a transaction id
/// (`PhoneHello`); the reader answers with a hello signed over both ephemeral keys, the transaction
/// id, its lock id and the site (`ReaderHello`); only then does the phone send anything sealed.
public enum TapProtocol {
    public static let version: Int64 = 2
    /// Upper bounds on what the lock accepts from the air. A credential with many locks in `aud` and a
    /// detailed schedule stays well under 2 KiB; anything larger is an attack or a bug.
    public static let maxPhoneHelloSize = 128
    public static let maxHelloSize = 1024
    public static let maxPresentationSize = 4096
    public static let maxResultSize = 256
    public static let nonceSize = 16
    public static let transactionIDSize = 16
    /// How long a reader hello's nonce may be answered. Long enough for a phone on a slow
    /// connection interval; short enough that a relayed hello goes stale.
    public static let nonceLifetime: Double = 30
    /// How far the lock time in a reader hello may be from the phone's clock before a conformant
    /// phone refuses the lock (a lock whose clock is off would judge validity windows wrongly, and a
    /// hello replayed from long ago names its own time).
    public static let lockTimeTolerance: Double = 60

    static let limits = CBORDecoder.Limits(maxDepth: 4, maxItems: 16, maxLength: maxPresentationSize, maxBytes: maxPresentationSize)

    /// The version a tap message claims (key 1 of a CBOR map), if it parses that far; lets the lock
    /// tell a phone of another protocol version from a malformed message.
    public static func claimedVersion(_ bytes: [UInt8]) -> Int64? {
        guard bytes.count <= maxPresentationSize,
              let item = try? CBORDecoder(limits: limits).decode(bytes), case .map = item else { return nil }
        return item[1]?.intValue
    }
}

/// What a phone may ask the lock to do.
public enum TapAction: UInt8, Sendable, CaseIterable, Codable {
    case open = 0
    case officeModeOn = 1
    case officeModeOff = 2

    public var name: String {
        switch self {
        case .open: return "open"
        case .officeModeOn: return "office_mode_on"
        case .officeModeOff: return "office_mode_off"
        }
    }
    public init?(name: String) {
        guard let a = TapAction.allCases.first(where: { $0.name == name }) else { return nil }
        self = a
    }
}

public enum TapMessageError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLarge(Int)
    case malformed(String)
    /// A well-formed map whose key 1 names another protocol version (a version 1 phone).
    case unsupportedVersion(Int64)

    public var description: String {
        switch self {
        case .tooLarge(let n): return "tap message of \(n) bytes is over the limit"
        case .malformed(let why): return "tap message malformed: \(why)"
        case .unsupportedVersion(let v): return "tap message of protocol version \(v); this side speaks version \(TapProtocol.version) only"
        }
    }
}

/// A tap message is a map in deterministic encoding (RFC 8949 §4.2: keys sorted, shortest forms),
/// with exactly the keys its type defines. Anything else — an unknown key, reordered keys, a
/// non-shortest integer — is refused: a conformance tool must not be lenient, and it makes the
/// received bytes the one encoding a MAC or signature can be over.
func decodeTapMap(_ bytes: [UInt8], max: Int, required: Set<Int64>, optional: Set<Int64> = []) throws(TapMessageError) -> CBOR {
    guard bytes.count <= max else { throw .tooLarge(bytes.count) }
    let item: CBOR
    do { item = try CBORDecoder(limits: TapProtocol.limits).decode(bytes) } catch { throw .malformed("cbor: \(error)") }
    guard case .map(let m) = item else { throw .malformed("not a map") }
    guard let version = item[1]?.intValue else { throw .malformed("missing version") }
    guard version == TapProtocol.version else { throw .unsupportedVersion(version) }
    for key in m.keys {
        guard let k = key.intValue, required.contains(k) || optional.contains(k) else { throw .malformed("unknown key") }
    }
    for k in required where item[k] == nil { throw .malformed("missing key \(k)") }
    guard item.encoded() == bytes else { throw .malformed("not in deterministic encoding (key order or integer form)") }
    return item
}

func tapBytesField(_ m: CBOR, _ key: Int64, _ name: String, count: Int? = nil, max: Int = TapProtocol.maxPresentationSize) throws(TapMessageError) -> [UInt8] {
    guard let b = m[key]?.bytesValue else { throw .malformed("missing \(name)") }
    if let count, b.count != count { throw .malformed("\(name) must be \(count) bytes") }
    guard b.count <= max else { throw .malformed("\(name) too long") }
    return b
}

/// Step 2 (phone → lock, written to Reader Hello): the phone opens the tap with its ephemeral key
/// and a transaction id of its own choosing. Nothing in it identifies the phone or its holder.
public struct PhoneHello: Sendable, Equatable {
    public var phoneEphemeralKey: [UInt8]  // 65-byte SEC1 uncompressed, a point on P-256
    public var transactionID: [UInt8]      // 16 random bytes

    public init(phoneEphemeralKey: [UInt8], transactionID: [UInt8]) {
        self.phoneEphemeralKey = phoneEphemeralKey; self.transactionID = transactionID
    }
    public func encoded() -> [UInt8] {
        CBOR.map([1: .int(TapProtocol.version), 2: .bytes(phoneEphemeralKey), 3: .bytes(transactionID)]).encoded()
    }
    /// Strict: the message rules, then the key must be an uncompressed point on P-256 (no
    /// infinity `00`, no compressed `02`/`03`, coordinates below p, on the curve).
    public init(decoding bytes: [UInt8]) throws(TapMessageError) {
        let m = try decodeTapMap(bytes, max: TapProtocol.maxPhoneHelloSize, required: [1, 2, 3])
        let key = try tapBytesField(m, 2, "phone ephemeral key", count: 65)
        guard (try? P256.PublicKey(uncompressed: key)) != nil else { throw .malformed("phone ephemeral key is not a point on P-256") }
        self.init(phoneEphemeralKey: key, transactionID: try tapBytesField(m, 3, "transaction id", count: TapProtocol.transactionIDSize))
    }
}

/// Step 3 (lock → phone, read from Reader Hello after the phone hello): the reader authenticates
/// first. The lock signs, with its certified device key, both ephemeral keys, the phone's
/// transaction id, its lock id, the site and its time — so a recorded hello answers no other tap.
public struct ReaderHello: Sendable, Equatable {
    public var lockID: String
    public var nonce: [UInt8]
    public var lockTime: UInt64
    public var lockEphemeralKey: [UInt8]   // 65-byte SEC1 uncompressed
    public var certificate: [UInt8]        // LockCertificate, COSE_Sign1 bytes
    public var signature: [UInt8]          // ES256 r‖s by the device key over `toBeSigned`

    public init(lockID: String, nonce: [UInt8], lockTime: UInt64, lockEphemeralKey: [UInt8], certificate: [UInt8], signature: [UInt8]) {
        self.lockID = lockID; self.nonce = nonce; self.lockTime = lockTime
        self.lockEphemeralKey = lockEphemeralKey; self.certificate = certificate; self.signature = signature
    }

    /// ["KeywayReaderHello2", site id, lock id, transaction id, nonce, lock time,
    ///  phone ephemeral key, lock ephemeral key]
    public func toBeSigned(siteID: String, phoneHello: PhoneHello) -> [UInt8] {
        CBOR.array([.text("KeywayReaderHello2"), .text(siteID), .text(lockID), .bytes(phoneHello.transactionID), .bytes(nonce),
                    .unsigned(lockTime), .bytes(phoneHello.phoneEphemeralKey), .bytes(lockEphemeralKey)]).encoded()
    }

    public func encoded() -> [UInt8] {
        CBOR.map([1: .int(TapProtocol.version), 2: .text(lockID), 3: .bytes(nonce), 4: .unsigned(lockTime),
                  5: .bytes(lockEphemeralKey), 6: .bytes(certificate), 7: .bytes(signature)]).encoded()
    }

    public init(decoding bytes: [UInt8]) throws(TapMessageError) {
        let m = try decodeTapMap(bytes, max: TapProtocol.maxHelloSize, required: [1, 2, 3, 4, 5, 6, 7])
        guard let lock = m[2]?.textValue, !lock.isEmpty, lock.utf8.count <= 64 else { throw .malformed("lock id") }
        guard let time = m[4]?.uint64Value else { throw .malformed("lock time") }
        self.init(lockID: lock,
                  nonce: try tapBytesField(m, 3, "nonce", count: TapProtocol.nonceSize),
                  lockTime: time,
                  lockEphemeralKey: try tapBytesField(m, 5, "lock ephemeral key", count: 65),
                  certificate: try tapBytesField(m, 6, "certificate", max: 768),
                  signature: try tapBytesField(m, 7, "signature", count: 64))
    }
}

/// Step 4, outer layer (phone → lock, written to Presentation): everything sealed. The phone's
/// ephemeral key already travelled in its hello.
public struct Presentation: Sendable, Equatable {
    public var sealed: [UInt8]             // AES-128-GCM ciphertext ‖ tag

    public init(sealed: [UInt8]) { self.sealed = sealed }
    public func encoded() -> [UInt8] {
        CBOR.map([1: .int(TapProtocol.version), 2: .bytes(sealed)]).encoded()
    }
    public init(decoding bytes: [UInt8]) throws(TapMessageError) {
        let m = try decodeTapMap(bytes, max: TapProtocol.maxPresentationSize, required: [1, 2])
        self.init(sealed: try tapBytesField(m, 2, "sealed payload"))
    }
}

/// Step 4, inner layer (only ever seen decrypted): credential, action, proof of possession.
public struct PresentationPayload: Sendable, Equatable {
    public var credential: [UInt8]
    public var action: TapAction
    public var proof: [UInt8] // ES256 by the credential's cnf key over TapTranscript.proofInput

    public init(credential: [UInt8], action: TapAction, proof: [UInt8]) {
        self.credential = credential; self.action = action; self.proof = proof
    }
    public func encoded() -> [UInt8] {
        CBOR.map([1: .int(TapProtocol.version), 2: .bytes(credential), 3: .unsigned(UInt64(action.rawValue)), 4: .bytes(proof)]).encoded()
    }
    public init(decoding bytes: [UInt8]) throws(TapMessageError) {
        let m = try decodeTapMap(bytes, max: TapProtocol.maxPresentationSize, required: [1, 2, 3, 4])
        guard let a = m[3]?.uint64Value, a <= 255, let action = TapAction(rawValue: UInt8(a)) else { throw .malformed("action") }
        self.init(credential: try tapBytesField(m, 2, "credential"), action: action, proof: try tapBytesField(m, 4, "proof", count: 64))
    }
}

/// Step 5: the lock's answer, notified on the Result characteristic. When session keys exist the
/// result carries a MAC so a bystander cannot show the phone a fake "granted".
public struct TapResultMessage: Sendable, Equatable {
    public var granted: Bool
    public var reason: String?     // stable snake_case reason code when denied
    public var openMilliseconds: UInt32
    public var mac: [UInt8]?       // 16 bytes: HMAC-SHA256(result key, body)[0..<16]

    public init(granted: Bool, reason: String?, openMilliseconds: UInt32, mac: [UInt8]? = nil) {
        self.granted = granted; self.reason = reason; self.openMilliseconds = openMilliseconds; self.mac = mac
    }

    var body: CBOR {
        var m: [CBOR: CBOR] = [1: .int(TapProtocol.version), 2: .bool(granted), 4: .unsigned(UInt64(openMilliseconds))]
        if let reason { m[3] = .text(reason) }
        return .map(m)
    }
    /// The bytes the MAC covers: the map without key 5.
    public var macInput: [UInt8] { body.encoded() }

    /// HMAC-SHA256(key, the map without key 5)[0..16): a full tap's K_r, a FAST tap's K_s.
    public static func mac(_ message: TapResultMessage, key: [UInt8]) throws -> [UInt8] {
        Array(try HMACSHA256.authenticate(message.macInput, key: key).prefix(16))
    }

    public func encoded() -> [UInt8] {
        guard case .map(var m) = body else { return [] }
        if let mac { m[5] = .bytes(mac) }
        return CBOR.map(m).encoded()
    }
    public init(decoding bytes: [UInt8]) throws(TapMessageError) {
        let m = try decodeTapMap(bytes, max: TapProtocol.maxResultSize, required: [1, 2, 4], optional: [3, 5])
        guard let g = m[2]?.boolValue else { throw .malformed("granted") }
        guard let ms = m[4]?.uint64Value, ms <= UInt64(UInt32.max) else { throw .malformed("open ms") }
        let reason = m[3]?.textValue
        if m[3] != nil, reason == nil || reason!.utf8.count > 64 { throw .malformed("reason") }
        var mac: [UInt8]? = nil
        if m[5] != nil { mac = try tapBytesField(m, 5, "mac", count: 16) }
        self.init(granted: g, reason: reason, openMilliseconds: UInt32(ms), mac: mac)
    }
}

/// Keys and transcript of one tap. Both sides compute the same values from the two hellos:
///   TH   = SHA-256(phone hello bytes ‖ reader hello bytes)
///   OKM  = HKDF-SHA256(ikm: ECDH(x), salt: transaction id ‖ nonce, info: "KeywayTap2 keys" ‖ TH, L = 76)
///   presentation key = OKM[0..<16], presentation nonce = OKM[16..<28], result key = OKM[28..<44],
///   exporter secret = OKM[44..<76]
/// A fresh ECDH pair per tap on both sides means each key encrypts exactly one message, so a fixed
/// GCM nonce per key is safe. The exporter secret is never used by the full tap itself: it is what a
/// later FAST repeat tap derives its persistent key from (docs/PROTOCOL.md, "Key schedule").
public struct TapKeySchedule: Sendable {
    public static let info = Array("KeywayTap2 keys".utf8)
    public let transcriptHash: [UInt8]
    public let presentationKey: [UInt8]
    public let presentationNonce: [UInt8]
    public let resultKey: [UInt8]
    public let exporterSecret: [UInt8]

    public init(sharedSecret: [UInt8], phoneHelloBytes: [UInt8], readerHelloBytes: [UInt8], transactionID: [UInt8], nonce: [UInt8]) throws {
        transcriptHash = SHA256.hash(phoneHelloBytes + readerHelloBytes)
        let okm = try HKDF.deriveKey(inputKeyMaterial: sharedSecret, salt: transactionID + nonce,
                                     info: Self.info + transcriptHash, outputLength: 76)
        presentationKey = Array(okm[0..<16])
        presentationNonce = Array(okm[16..<28])
        resultKey = Array(okm[28..<44])
        exporterSecret = Array(okm[44..<76])
    }

    /// What the phone signs with its credential's `cnf` key: ["KeywayTapProof2", TH, action]. TH
    /// binds the proof to both hellos — both ephemeral keys, the transaction id, nonce, lock id, lock
    /// time and the reader's certificate and signature.
    public static func proofInput(transcriptHash: [UInt8], action: TapAction) -> [UInt8] {
        CBOR.array([.text("KeywayTapProof2"), .bytes(transcriptHash), .unsigned(UInt64(action.rawValue))]).encoded()
    }

    public func proofInput(_ action: TapAction) -> [UInt8] { Self.proofInput(transcriptHash: transcriptHash, action: action) }

    public func resultMAC(_ message: TapResultMessage) throws -> [UInt8] {
        try TapResultMessage.mac(message, key: resultKey)
    }
}

/// ATT caps an attribute value at 512 bytes (Core Vol 3 Part F §3.2.9), so a presentation that grows
/// past it travels as numbered fragments: [index, flags (bit 0 = last)] ‖ chunk. Each fragment is one
/// ATT write (long write when above MTU − 3).
public enum TapFragments {
    public static let maxFragmentPayload = 510
    public static let maxFragments = 16

    public static func split(_ message: [UInt8], payload: Int = maxFragmentPayload) -> [[UInt8]] {
        let size = max(1, min(payload, maxFragmentPayload))
        var out: [[UInt8]] = []
        var i = 0
        repeat {
            let end = min(i + size, message.count)
            let last = end == message.count
            out.append([UInt8(out.count), last ? 1 : 0] + message[i..<end])
            i = end
        } while i < message.count
        return out
    }
}

/// Lock-side reassembly: in order, bounded, and reset on any error so a half-written presentation
/// never lingers into the next tap. A refused message fails once: the fragments that follow the
/// failure, up to its last one, are dropped silently (a phone keeps writing the rest of a message the
/// lock already refused); a fragment 0 starts a new message.
public struct TapReassembler: Sendable {
    public enum Outcome: Equatable, Sendable { case needMore, complete([UInt8]) }
    public enum Failure: Error, Equatable, Sendable { case outOfOrder, tooLarge, empty }
    private var buffer: [UInt8] = []
    private var next: UInt8 = 0
    private var discarding = false
    private let limit: Int

    public init(limit: Int = TapProtocol.maxPresentationSize) { self.limit = limit }

    public mutating func add(_ fragment: [UInt8]) throws(Failure) -> Outcome {
        if discarding {
            // The rest of a refused message: nothing to reassemble, and nothing new to report.
            guard fragment.count >= 2, fragment[0] == 0 else {
                if fragment.count >= 2, fragment[1] & 1 == 1 { discarding = false }
                return .needMore
            }
            discarding = false
        }
        guard fragment.count >= 2 else { fail(fragment); throw .empty }
        guard fragment[0] == next, Int(next) < TapFragments.maxFragments else { fail(fragment); throw .outOfOrder }
        guard buffer.count + fragment.count - 2 <= limit else { fail(fragment); throw .tooLarge }
        buffer.append(contentsOf: fragment[2...])
        if fragment[1] & 1 == 1 {
            let done = buffer
            reset()
            return .complete(done)
        }
        next &+= 1
        return .needMore
    }

    public mutating func reset() { buffer = []; next = 0; discarding = false }

    /// Resets, and drops what follows unless the failing fragment was its message's last.
    private mutating func fail(_ fragment: [UInt8]) {
        reset()
        discarding = !(fragment.count >= 2 && fragment[1] & 1 == 1)
    }
}
