import COpenSSL

/// Elliptic-curve Diffie–Hellman on P-256 (the x-coordinate of the shared point, 32 bytes).
public enum ECDH {
    public static func sharedSecret(_ privateKey: P256.PrivateKey, _ peer: P256.PublicKey) throws -> [UInt8] {
        guard let ctx = EVP_PKEY_CTX_new_from_pkey(nil, privateKey.box.pkey, nil) else { throw CryptoError.fromQueue("EVP_PKEY_CTX_new_from_pkey") }
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_derive_init(ctx), "EVP_PKEY_derive_init")
        try check(EVP_PKEY_derive_set_peer(ctx, try peer.box.pkey), "EVP_PKEY_derive_set_peer")
        var out = [UInt8](repeating: 0, count: 32)
        var len = out.count
        try check(EVP_PKEY_derive(ctx, &out, &len), "EVP_PKEY_derive")
        guard len == 32 else { throw CryptoError.invalidLength(what: "ECDH secret", expected: "32", got: len) }
        return out
    }
}
