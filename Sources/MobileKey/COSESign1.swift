import KeywayCrypto

/// COSE header labels and algorithm identifiers used by Keyway (RFC 9052 §3.1, RFC 9053).
public enum COSEHeader {
    public static let alg: Int64 = 1
    public static let crit: Int64 = 2
    public static let contentType: Int64 = 3
    public static let kid: Int64 = 4
}

public enum COSEAlgorithm {
    /// ECDSA with SHA-256 on P-256 — the only algorithm Keyway signs or accepts.
    public static let es256: Int64 = -7
}

/// Why bytes were refused as a Keyway COSE_Sign1.
public enum COSEError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not well-formed, bounded CBOR.
    case cbor(CBORError)
    /// Well-formed CBOR, but not a tagged COSE_Sign1 of the expected shape.
    case malformed(String)
    /// The protected header names an algorithm other than ES256 (`nil`: a non-integer alg).
    case unsupportedAlgorithm(Int64?)
    /// No algorithm in the protected header.
    case missingAlgorithm
    /// `alg` appears in the unprotected header, where an attacker could change it.
    case algorithmNotProtected
    /// A `crit` header: Keyway defines no critical extensions, so it cannot honour any.
    case criticalHeader
    /// The same label in both header buckets (RFC 9052 §3: MUST NOT).
    case duplicateHeaderLabel(CBOR)

    public var description: String {
        switch self {
        case .cbor(let e): return "COSE: \(e)"
        case .malformed(let why): return "COSE_Sign1 malformed: \(why)"
        case .unsupportedAlgorithm(let alg): return "COSE algorithm \(alg.map(String.init) ?? "(non-integer)") not supported (want ES256 = -7)"
        case .missingAlgorithm: return "COSE protected header has no alg"
        case .algorithmNotProtected: return "COSE alg is in the unprotected header"
        case .criticalHeader: return "COSE crit header present; no critical extensions are supported"
        case .duplicateHeaderLabel(let l): return "COSE header label \(l) in both protected and unprotected headers"
        }
    }
}

/// A COSE_Sign1 message (RFC 9052 §4.2), tag 18, ES256 only.
///
/// The protected header is kept as the exact bytes received, because those bytes — not a
/// re-encoding — are what the signature covers (Sig_structure, RFC 9052 §4.4).
public struct COSESign1: Sendable, Equatable {
    public static let tag: UInt64 = 18
    /// The CWT tag (RFC 8392 §6); a COSE_Sign1 may be wrapped in it.
    public static let cwtTag: UInt64 = 61

    /// The serialized protected header map (contents of the bstr), exactly as signed.
    public let protectedHeader: [UInt8]
    /// `protectedHeader` decoded.
    public let protected: [CBOR: CBOR]
    public let unprotected: [CBOR: CBOR]
    public let payload: [UInt8]
    /// Raw r‖s, 64 bytes for ES256.
    public let signature: [UInt8]

    /// The key id: from the protected header, else from the unprotected one (where python-cwt puts
    /// it by default). It only selects a key; the signature decides.
    public var keyID: [UInt8]? {
        (protected[.int(COSEHeader.kid)] ?? unprotected[.int(COSEHeader.kid)])?.bytesValue
    }

    /// The protected content type (label 3), if any.
    public var contentType: CBOR? { protected[.int(COSEHeader.contentType)] }

    /// Builds and signs a COSE_Sign1 with protected header `{1: -7, 4: kid}` (plus `3: contentType`
    /// when given) and an empty unprotected header.
    public static func sign(payload: [UInt8], keyID: [UInt8], contentType: String? = nil,
                            externalAAD: [UInt8] = [], key: P256.PrivateKey) throws -> COSESign1 {
        var header: [CBOR: CBOR] = [.int(COSEHeader.alg): .int(COSEAlgorithm.es256), .int(COSEHeader.kid): .bytes(keyID)]
        if let contentType { header[.int(COSEHeader.contentType)] = .text(contentType) }
        let protectedBytes = CBOR.map(header).encoded()
        let tbs = toBeSigned(protectedHeader: protectedBytes, externalAAD: externalAAD, payload: payload)
        let signature = try ECDSA.sign(tbs, with: key)
        return COSESign1(protectedHeader: protectedBytes, protected: header, unprotected: [:],
                         payload: payload, signature: signature)
    }

    /// Decodes and checks the structure and headers: tag 18 (optionally inside CWT tag 61),
    /// a 4-element array, protected header a bstr holding a map (or empty), ES256 in the protected
    /// header, no `crit`, no label in both headers, an attached payload. The whole message is read
    /// (and must be well-formed CBOR to its last byte) before any header rule is applied.
    ///
    /// Reads the bytes directly rather than through a tree: it is on every verification.
    public init(decoding bytes: [UInt8], limits: CBORDecoder.Limits = .default) throws(COSEError) {
        guard bytes.count <= limits.maxBytes else { throw .cbor(.tooLarge(size: bytes.count, limit: limits.maxBytes)) }
        var p = CBORParser(bytes: bytes, limits: limits)
        let parts: (protected: [UInt8], unprotected: [CBOR: CBOR], payload: [UInt8], signature: [UInt8])
        do {
            parts = try COSESign1.readParts(&p)
        } catch let e as CBORError {
            throw .cbor(e)
        } catch let e as COSEError {
            throw e
        } catch {
            throw .malformed("\(error)")
        }
        try self.init(protectedHeader: parts.protected, unprotected: parts.unprotected, payload: parts.payload, signature: parts.signature)
    }

    private static func readParts(_ p: inout CBORParser) throws -> ([UInt8], [CBOR: CBOR], [UInt8], [UInt8]) {
        var depth = 0
        var h = try p.head()
        if h.major == 6, h.argument == COSESign1.cwtTag {
            guard depth < p.limits.maxDepth else { throw CBORError.depthExceeded(at: h.start, limit: p.limits.maxDepth) }
            depth += 1
            h = try p.head()
        }
        guard h.major == 6 else { throw COSEError.malformed("not tagged (want tag 18)") }
        guard h.argument == COSESign1.tag else { throw COSEError.malformed("tag \(h.argument), want 18 (COSE_Sign1)") }
        guard depth < p.limits.maxDepth else { throw CBORError.depthExceeded(at: h.start, limit: p.limits.maxDepth) }
        depth += 1
        let ah = try p.head()
        guard ah.major == 4, try p.containerCount(ah, depth: depth) == 4 else { throw COSEError.malformed("not a 4-element array") }
        let ph = try p.head()
        guard ph.major == 2 else { throw COSEError.malformed("protected header is not a bstr") }
        let protectedBytes = Array(try p.stringBody(ph))
        guard case .map(let unprotected) = try p.item(depth: depth + 1) else { throw COSEError.malformed("unprotected header is not a map") }
        let bh = try p.head()
        guard bh.major == 2 else {
            throw COSEError.malformed(bh.major == 7 && bh.argument == 22 ? "detached payload" : "payload is not a bstr")
        }
        let payload = Array(try p.stringBody(bh))
        let sh = try p.head()
        guard sh.major == 2 else { throw COSEError.malformed("signature is not a bstr") }
        let signature = Array(try p.stringBody(sh))
        guard p.atEnd else { throw CBORError.trailingBytes(at: p.pos) }
        return (protectedBytes, unprotected, payload, signature)
    }

    /// As `init(decoding:)`, from an already decoded item (e.g. nested inside another message).
    /// The item is re-encoded: byte strings (protected header, payload) are kept exactly.
    public init(_ item: CBOR) throws(COSEError) {
        try self.init(decoding: item.encoded(), limits: CBORDecoder.Limits(maxDepth: 16, maxItems: 1 << 16, maxLength: 1 << 24, maxBytes: 1 << 24))
    }

    /// Header rules (see `init(decoding:)`).
    private init(protectedHeader protectedBytes: [UInt8], unprotected: [CBOR: CBOR], payload: [UInt8], signature: [UInt8]) throws(COSEError) {
        var protected: [CBOR: CBOR] = [:]
        if !protectedBytes.isEmpty {
            // The protected header is small; bound it tightly.
            let headerLimits = CBORDecoder.Limits(maxDepth: 4, maxItems: 16, maxLength: 256, maxBytes: 1024)
            let decoded: CBOR
            do { decoded = try CBORDecoder(limits: headerLimits).decode(protectedBytes) } catch { throw .cbor(error) }
            guard case .map(let m) = decoded else { throw .malformed("protected header is not a map") }
            protected = m
        }

        for label in protected.keys where unprotected[label] != nil { throw .duplicateHeaderLabel(label) }
        if protected[.int(COSEHeader.crit)] != nil || unprotected[.int(COSEHeader.crit)] != nil { throw .criticalHeader }
        if unprotected[.int(COSEHeader.alg)] != nil { throw .algorithmNotProtected }
        guard let alg = protected[.int(COSEHeader.alg)] else { throw .missingAlgorithm }
        guard alg.intValue == COSEAlgorithm.es256 else { throw .unsupportedAlgorithm(alg.intValue) }
        if let kid = protected[.int(COSEHeader.kid)] ?? unprotected[.int(COSEHeader.kid)], kid.bytesValue == nil {
            throw .malformed("kid is not a bstr")
        }

        self.init(protectedHeader: protectedBytes, protected: protected, unprotected: unprotected,
                  payload: payload, signature: signature)
    }

    private init(protectedHeader: [UInt8], protected: [CBOR: CBOR], unprotected: [CBOR: CBOR],
                 payload: [UInt8], signature: [UInt8]) {
        self.protectedHeader = protectedHeader
        self.protected = protected
        self.unprotected = unprotected
        self.payload = payload
        self.signature = signature
    }

    /// The message as a CBOR item: `18([protected, unprotected, payload, signature])`.
    public var cbor: CBOR {
        .tagged(COSESign1.tag, .array([.bytes(protectedHeader), .map(unprotected), .bytes(payload), .bytes(signature)]))
    }

    /// Tagged COSE_Sign1 bytes.
    public func encoded() -> [UInt8] { cbor.encoded() }

    /// True only for a valid ES256 signature by `key` over this message's Sig_structure.
    public func verify(with key: P256.PublicKey, externalAAD: [UInt8] = []) -> Bool {
        let tbs = COSESign1.toBeSigned(protectedHeader: protectedHeader, externalAAD: externalAAD, payload: payload)
        return ECDSA.verify(signature, of: tbs, by: key)
    }

    /// The encoded Sig_structure `["Signature1", protected, external_aad, payload]` (RFC 9052 §4.4).
    /// Written directly rather than through a CBOR tree: it is on the verification hot path.
    public static func toBeSigned(protectedHeader: [UInt8], externalAAD: [UInt8], payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(protectedHeader.count + externalAAD.count + payload.count + 32)
        out.append(0x84)
        out.append(0x6a) // text(10)
        out.append(contentsOf: "Signature1".utf8)
        CBOR.appendHead(major: 2, UInt64(protectedHeader.count), to: &out)
        out.append(contentsOf: protectedHeader)
        CBOR.appendHead(major: 2, UInt64(externalAAD.count), to: &out)
        out.append(contentsOf: externalAAD)
        CBOR.appendHead(major: 2, UInt64(payload.count), to: &out)
        out.append(contentsOf: payload)
        return out
    }
}

/// An EC2 P-256 COSE_Key (RFC 9053 §7.1.1) as Keyway carries it: `{1: 2, -1: 1, -2: x, -3: y}`.
public enum COSEKey {
    public static let kty: Int64 = 1
    public static let ktyEC2: Int64 = 2
    /// Optional in a COSE_Key; when a `cnf` key names them they must fit its one use here: verifying
    /// the phone's ES256 proof of possession.
    public static let alg: Int64 = 3
    public static let keyOps: Int64 = 4
    public static let keyOpVerify: Int64 = 2
    public static let crv: Int64 = -1
    public static let crvP256: Int64 = 1
    public static let x: Int64 = -2
    public static let y: Int64 = -3
    public static let d: Int64 = -4

    public static func cbor(_ key: P256.PublicKey) -> CBOR {
        [.int(kty): .int(ktyEC2), .int(crv): .int(crvP256), .int(x): .bytes(key.x), .int(y): .bytes(key.y)]
    }

    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        case notAMap, wrongKeyType, wrongCurve, badCoordinates, containsPrivateKey, notOnCurve

        public var description: String {
            switch self {
            case .notAMap: return "COSE_Key is not a map"
            case .wrongKeyType: return "COSE_Key kty is not EC2"
            case .wrongCurve: return "COSE_Key crv is not P-256"
            case .badCoordinates: return "COSE_Key x/y are not 32-byte strings"
            case .containsPrivateKey: return "COSE_Key carries a private key (d)"
            case .notOnCurve: return "COSE_Key point is not on P-256"
            }
        }
    }

    /// Parses an EC2/P-256 public COSE_Key with uncompressed coordinates. A key that carries `d`
    /// is refused: a private key inside a credential is a leak, never something to use.
    public static func publicKey(from item: CBOR) throws(DecodeError) -> P256.PublicKey {
        guard case .map(let m) = item else { throw .notAMap }
        guard m[.int(kty)]?.intValue == ktyEC2 else { throw .wrongKeyType }
        guard m[.int(crv)]?.intValue == crvP256 else { throw .wrongCurve }
        guard m[.int(d)] == nil else { throw .containsPrivateKey }
        guard let xb = m[.int(x)]?.bytesValue, xb.count == 32,
              let yb = m[.int(y)]?.bytesValue, yb.count == 32 else { throw .badCoordinates }
        do { return try P256.PublicKey(x: xb, y: yb) } catch { throw .notOnCurve }
    }
}
