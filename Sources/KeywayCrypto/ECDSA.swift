import COpenSSL

/// ES256 signatures (ECDSA over P-256 with SHA-256) in the raw 64-byte r‖s form COSE uses
/// (RFC 9053 §2.1), not OpenSSL's DER.
public enum ECDSA {
    public static let signatureSize = 64

    public static func sign(_ message: [UInt8], with key: P256.PrivateKey) throws -> [UInt8] {
        let digest = SHA256.hash(message)
        guard let ctx = EVP_PKEY_CTX_new_from_pkey(nil, key.box.pkey, nil) else { throw CryptoError.fromQueue("EVP_PKEY_CTX_new_from_pkey") }
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_sign_init(ctx), "EVP_PKEY_sign_init")
        var der = [UInt8](repeating: 0, count: 80)
        var len = der.count
        try check(EVP_PKEY_sign(ctx, &der, &len, digest, digest.count), "EVP_PKEY_sign")
        guard let raw = DERSignature.toRaw(Array(der[0..<len])) else {
            throw CryptoError.openssl(function: "EVP_PKEY_sign", reason: "unexpected DER signature")
        }
        // (r, s) and (r, n − s) both verify; Keyway only ever emits the low-S form, so a peer that
        // insists on it (and the tap protocol's own checks) always accepts Keyway's signatures.
        return lowS(raw)
    }

    /// P-256 group order n, big-endian.
    public static let order: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51]
    /// ⌊n / 2⌋, big-endian.
    static let halfOrder: [UInt8] = [0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xDE, 0x73, 0x7D, 0x56, 0xD3, 0x8B, 0xCF, 0x42, 0x79, 0xDC, 0xE5, 0x61, 0x7E, 0x31, 0x92, 0xA8]

    /// Whether a raw r‖s signature has s ≤ n/2 (the canonical of the two valid forms).
    public static func isLowS(_ signature: [UInt8]) -> Bool {
        guard signature.count == signatureSize else { return false }
        return !halfOrder.lexicographicallyPrecedes(signature[32..<64])
    }

    /// The low-S form of a raw signature: s replaced by n − s when s > n/2.
    public static func lowS(_ signature: [UInt8]) -> [UInt8] {
        guard signature.count == signatureSize, !isLowS(signature) else { return signature }
        return otherS(signature)
    }

    /// The signature's twin (r, n − s): also valid for the same message and key.
    public static func otherS(_ signature: [UInt8]) -> [UInt8] {
        guard signature.count == signatureSize else { return signature }
        var s = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for i in stride(from: 31, through: 0, by: -1) {
            var d = Int(order[i]) - Int(signature[32 + i]) - borrow
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 256 }
            s[i] = UInt8(d)
        }
        return Array(signature[0..<32]) + s
    }

    /// True only for a valid signature by `key` over `message`. A malformed signature is simply
    /// invalid (false), because the caller's decision is the same and the reason is "bad signature".
    public static func verify(_ signature: [UInt8], of message: [UInt8], by key: P256.PublicKey) -> Bool {
        guard signature.count == signatureSize, let der = DERSignature.fromRaw(signature) else { return false }
        let digest = SHA256.hash(message)
        guard let box = try? key.box, let ctx = EVP_PKEY_CTX_new_from_pkey(nil, box.pkey, nil) else { ERR_clear_error(); return false }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_verify_init(ctx) == 1 else { ERR_clear_error(); return false }
        let ok = EVP_PKEY_verify(ctx, der, der.count, digest, digest.count)
        if ok != 1 { ERR_clear_error() }
        return ok == 1
    }
}

/// Conversion between raw r‖s and the DER `ECDSA-Sig-Value` OpenSSL speaks. Done by hand: it is a
/// fixed two-INTEGER SEQUENCE, and avoiding BIGNUM round trips keeps verification cheap.
enum DERSignature {
    static func fromRaw(_ raw: [UInt8]) -> [UInt8]? {
        guard raw.count == 64 else { return nil }
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
            var b = Array(bytes.drop(while: { $0 == 0 }))
            if b.isEmpty { return nil } // r or s of zero is never valid
            if b[0] & 0x80 != 0 { b.insert(0, at: 0) }
            return [0x02, UInt8(b.count)] + b
        }
        guard let r = integer(raw[0..<32]), let s = integer(raw[32..<64]) else { return nil }
        return [0x30, UInt8(r.count + s.count)] + r + s
    }

    static func toRaw(_ der: [UInt8]) -> [UInt8]? {
        var i = 0
        func byte() -> UInt8? { guard i < der.count else { return nil }; defer { i += 1 }; return der[i] }
        guard byte() == 0x30, let total = byte(), Int(total) == der.count - 2 else { return nil }
        func integer() -> [UInt8]? {
            guard byte() == 0x02, let n = byte(), n > 0, i + Int(n) <= der.count else { return nil }
            var v = Array(der[i..<(i + Int(n))]); i += Int(n)
            while v.count > 32, v.first == 0 { v.removeFirst() }
            guard v.count <= 32 else { return nil }
            return [UInt8](repeating: 0, count: 32 - v.count) + v
        }
        guard let r = integer(), let s = integer(), i == der.count else { return nil }
        return r + s
    }
}
