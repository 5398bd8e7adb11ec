import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

public enum SHA256 {
    public static let digestSize = 32

    public static func hash(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        // EVP_Digest with the built-in SHA-256 cannot fail for in-memory input short of OOM.
        _ = EVP_Digest(data, data.count, &out, &len, EVP_sha256(), nil)
        return out
    }
}

public enum HMACSHA256 {
    public static func authenticate(_ data: [UInt8], key: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len = 0
        guard EVP_Q_mac(nil, "HMAC", nil, "SHA256", nil, key, key.count, data, data.count, &out, out.count, &len) != nil,
              len == 32 else { throw CryptoError.fromQueue("EVP_Q_mac") }
        return out
    }
}

/// HKDF-SHA256 (RFC 5869) through OpenSSL's EVP_KDF.
public enum HKDF {
    public static func deriveKey(inputKeyMaterial ikm: [UInt8], salt: [UInt8], info: [UInt8], outputLength: Int) throws -> [UInt8] {
        guard outputLength > 0, outputLength <= 255 * 32 else {
            throw CryptoError.invalidLength(what: "HKDF output", expected: "1...8160", got: outputLength)
        }
        guard let kdf = EVP_KDF_fetch(nil, "HKDF", nil) else { throw CryptoError.fromQueue("EVP_KDF_fetch") }
        defer { EVP_KDF_free(kdf) }
        guard let ctx = EVP_KDF_CTX_new(kdf) else { throw CryptoError.fromQueue("EVP_KDF_CTX_new") }
        defer { EVP_KDF_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: outputLength)
        // OSSL_PARAM only borrows these buffers; all of them stay alive for the derive call below.
        var digest = Array("SHA256".utf8CString)
        var ikmCopy = ikm.isEmpty ? [0] : ikm
        var saltCopy = salt.isEmpty ? [0] : salt
        var infoCopy = info.isEmpty ? [0] : info
        let rc: Int32 = digest.withUnsafeMutableBufferPointer { d in
            ikmCopy.withUnsafeMutableBytes { k in
                saltCopy.withUnsafeMutableBytes { s in
                    infoCopy.withUnsafeMutableBytes { i in
                        var params = [
                            OSSL_PARAM_construct_utf8_string(ParamName.digest.pointer, d.baseAddress, 0),
                            OSSL_PARAM_construct_octet_string(ParamName.key.pointer, k.baseAddress, ikm.count),
                            OSSL_PARAM_construct_octet_string(ParamName.salt.pointer, s.baseAddress, salt.count),
                            OSSL_PARAM_construct_octet_string(ParamName.info.pointer, i.baseAddress, info.count),
                            OSSL_PARAM_construct_end(),
                        ]
                        return EVP_KDF_derive(ctx, &out, out.count, &params)
                    }
                }
            }
        }
        try check(rc, "EVP_KDF_derive")
        return out
    }
}

/// OSSL_PARAM keeps a pointer to its name, so names must outlive the call that builds the param —
/// a Swift string literal bridged to `const char *` does not. These live for the process.
enum ParamName {
    static let digest = CName("digest")
    static let key = CName("key")
    static let salt = CName("salt")
    static let info = CName("info")
    static let group = CName("group")
    static let pub = CName("pub")
}

/// A C string allocated once and never written or freed: safe to share between threads.
struct CName: @unchecked Sendable {   // the C string is written once by strdup, then only read, never freed
    let pointer: UnsafePointer<CChar>
    init(_ name: String) { pointer = UnsafePointer(strdup(name)!) }
}

public enum SecureRandom {
    public static func bytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        try check(RAND_bytes(&out, Int32(count)), "RAND_bytes")
        return out
    }
}

/// Constant-time comparison for MACs and tags.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    return CRYPTO_memcmp(a, b, a.count) == 0
}
