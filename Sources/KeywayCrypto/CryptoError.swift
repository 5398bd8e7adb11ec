import COpenSSL

/// Errors raised by the crypto layer. OpenSSL's own reason string is kept (it never contains key
/// material) so that a failure can be diagnosed without a debugger.
public enum CryptoError: Error, Equatable, CustomStringConvertible {
    /// An OpenSSL call failed; `function` names the EVP call, `reason` is OpenSSL's error string.
    case openssl(function: String, reason: String)
    /// Key bytes or PEM text that are not a P-256 key of the expected kind.
    case invalidKey(String)
    /// A signature that is not 64 bytes of r‖s.
    case invalidSignatureEncoding
    /// AES-GCM tag mismatch: the ciphertext, nonce, key or associated data were altered.
    case authenticationFailed
    /// A parameter of the wrong size (key, nonce, tag, output length).
    case invalidLength(what: String, expected: String, got: Int)

    public var description: String {
        switch self {
        case let .openssl(function, reason): return "OpenSSL \(function) failed: \(reason)"
        case let .invalidKey(why): return "invalid key: \(why)"
        case .invalidSignatureEncoding: return "invalid signature encoding (want 64-byte r||s)"
        case .authenticationFailed: return "AES-GCM authentication failed"
        case let .invalidLength(what, expected, got): return "invalid \(what) length: expected \(expected), got \(got)"
        }
    }

    /// Drains OpenSSL's thread-local error queue into an error, so one failure never leaks into the
    /// diagnosis of the next call on the same thread.
    static func fromQueue(_ function: String) -> CryptoError {
        var reason = ""
        var code = ERR_get_error()
        while code != 0 {
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            if reason.isEmpty { reason = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            code = ERR_get_error()
        }
        return .openssl(function: function, reason: reason.isEmpty ? "unknown error" : reason)
    }
}

@inline(__always)
func check(_ ok: Int32, _ function: String) throws {
    if ok != 1 { throw CryptoError.fromQueue(function) }
}
