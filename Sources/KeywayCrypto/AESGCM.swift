import COpenSSL

/// AES-GCM with a 12-byte nonce and a 16-byte tag appended to the ciphertext. Key size picks the
/// variant: 16 bytes → AES-128-GCM, 32 bytes → AES-256-GCM.
public enum AESGCM {
    public static let nonceSize = 12
    public static let tagSize = 16

    private static func cipher(for key: [UInt8]) throws -> OpaquePointer {
        switch key.count {
        case 16: return EVP_aes_128_gcm()
        case 32: return EVP_aes_256_gcm()
        default: throw CryptoError.invalidLength(what: "AES-GCM key", expected: "16 or 32", got: key.count)
        }
    }

    public static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], associatedData: [UInt8] = []) throws -> [UInt8] {
        guard nonce.count == nonceSize else { throw CryptoError.invalidLength(what: "nonce", expected: "12", got: nonce.count) }
        let cipher = try cipher(for: key)
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError.fromQueue("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        try check(EVP_EncryptInit_ex(ctx, cipher, nil, key, nonce), "EVP_EncryptInit_ex")
        var len: Int32 = 0
        if !associatedData.isEmpty {
            try check(EVP_EncryptUpdate(ctx, nil, &len, associatedData, Int32(associatedData.count)), "EVP_EncryptUpdate(aad)")
        }
        var out = [UInt8](repeating: 0, count: plaintext.count + tagSize)
        var produced: Int32 = 0
        if !plaintext.isEmpty {
            try check(EVP_EncryptUpdate(ctx, &out, &produced, plaintext, Int32(plaintext.count)), "EVP_EncryptUpdate")
        }
        var finalLen: Int32 = 0
        try out.withUnsafeMutableBufferPointer { buf in
            try check(EVP_EncryptFinal_ex(ctx, buf.baseAddress! + Int(produced), &finalLen), "EVP_EncryptFinal_ex")
            try check(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagSize), buf.baseAddress! + plaintext.count), "EVP_CTRL_GCM_GET_TAG")
        }
        return out
    }

    public static func open(_ sealed: [UInt8], key: [UInt8], nonce: [UInt8], associatedData: [UInt8] = []) throws -> [UInt8] {
        guard nonce.count == nonceSize else { throw CryptoError.invalidLength(what: "nonce", expected: "12", got: nonce.count) }
        guard sealed.count >= tagSize else { throw CryptoError.authenticationFailed }
        let cipher = try cipher(for: key)
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError.fromQueue("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        try check(EVP_DecryptInit_ex(ctx, cipher, nil, key, nonce), "EVP_DecryptInit_ex")
        var len: Int32 = 0
        if !associatedData.isEmpty {
            try check(EVP_DecryptUpdate(ctx, nil, &len, associatedData, Int32(associatedData.count)), "EVP_DecryptUpdate(aad)")
        }
        let ctLen = sealed.count - tagSize
        var out = [UInt8](repeating: 0, count: ctLen + 16)
        var produced: Int32 = 0
        if ctLen > 0 {
            try check(EVP_DecryptUpdate(ctx, &out, &produced, sealed, Int32(ctLen)), "EVP_DecryptUpdate")
        }
        var tag = Array(sealed[ctLen...])
        try check(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagSize), &tag), "EVP_CTRL_GCM_SET_TAG")
        var finalLen: Int32 = 0
        let ok = out.withUnsafeMutableBufferPointer { buf in
            EVP_DecryptFinal_ex(ctx, buf.baseAddress! + Int(produced), &finalLen)
        }
        guard ok == 1 else { ERR_clear_error(); throw CryptoError.authenticationFailed }
        return Array(out[0..<ctLen])
    }
}
