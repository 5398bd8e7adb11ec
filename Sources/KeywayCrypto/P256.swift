import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// NIST P-256 keys held inside OpenSSL. No `EVP_PKEY` pointer leaves this module: callers see only
/// these value-like wrappers and byte arrays.
public enum P256 {}

/// Owns one reference to an `EVP_PKEY`.
final class PKeyBox: @unchecked Sendable {   // the EVP_PKEY is never mutated after init; OpenSSL 3 allows concurrent use of such a key
    // OpenSSL 3 keys are immutable after creation and safe to use from several threads at once.
    let pkey: OpaquePointer
    init(_ pkey: OpaquePointer) { self.pkey = pkey }
    deinit { EVP_PKEY_free(pkey) }
}

/// A validated point and, once needed, its `EVP_PKEY`. Shared by copies of a `PublicKey`.
final class LazyPublicKey: Sendable {
    let point: [UInt8]
    private let made: PthreadLocked<PKeyBox?>

    init(point: [UInt8], box: PKeyBox?) {
        self.point = point
        made = PthreadLocked(box)
    }

    func pkey() throws -> PKeyBox {
        try made.withLock { made throws -> PKeyBox in
            if let made { return made }
            let box = try P256Group.makePublicKey(point)
            made = box
            return box
        }
    }
}

/// The curve, for point checks and building keys without OpenSSL's generic decoders.
enum P256Group {
    // EC_GROUP is immutable once built and may be shared across threads (an OpaquePointer is not Sendable).
    nonisolated(unsafe) static let group: OpaquePointer? = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)

    /// True when the 65 bytes are an uncompressed point on P-256 (not the point at infinity).
    static func isOnCurve(_ point: [UInt8]) -> Bool {
        guard let group, let p = EC_POINT_new(group) else { return false }
        defer { EC_POINT_free(p) }
        let ok = EC_POINT_oct2point(group, p, point, point.count, nil) == 1 && EC_POINT_is_at_infinity(group, p) == 0
        if !ok { ERR_clear_error() }
        return ok
    }

    static func makePublicKey(_ point: [UInt8]) throws -> PKeyBox {
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw CryptoError.fromQueue("EVP_PKEY_CTX_new_from_name") }
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_fromdata_init(ctx), "EVP_PKEY_fromdata_init")
        var groupName = Array("prime256v1".utf8CString)
        var pub = point
        var pkey: OpaquePointer?
        let rc: Int32 = groupName.withUnsafeMutableBufferPointer { g in
            pub.withUnsafeMutableBytes { p in
                var params = [
                    OSSL_PARAM_construct_utf8_string(ParamName.group.pointer, g.baseAddress, 0),
                    OSSL_PARAM_construct_octet_string(ParamName.pub.pointer, p.baseAddress, p.count),
                    OSSL_PARAM_construct_end(),
                ]
                // EVP_PKEY_PUBLIC_KEY = public key + all parameters (a macro Swift cannot import).
                return EVP_PKEY_fromdata(ctx, &pkey, Int32(OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS), &params)
            }
        }
        try check(rc, "EVP_PKEY_fromdata")
        guard let pkey else { throw CryptoError.fromQueue("EVP_PKEY_fromdata") }
        return PKeyBox(pkey)
    }
}

/// DER prefix of a SubjectPublicKeyInfo for id-ecPublicKey / prime256v1 with a 65-byte uncompressed
/// point. Prepending it to the point gives SPKI DER that `d2i_PUBKEY` parses — one call, no OSSL_PARAM
/// plumbing, and OpenSSL checks the point is on the curve.
private let p256SPKIPrefix: [UInt8] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
]

private func requireP256(_ pkey: OpaquePointer, _ what: String) throws {
    guard EVP_PKEY_is_a(pkey, "EC") == 1 else { throw CryptoError.invalidKey("\(what) is not an EC key") }
    var name = [CChar](repeating: 0, count: 64)
    var len = 0
    guard EVP_PKEY_get_group_name(pkey, &name, name.count, &len) == 1 else {
        throw CryptoError.invalidKey("\(what) has no named curve")
    }
    let group = String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard group == "prime256v1" || group == "P-256" || group == "secp256r1" else {
        throw CryptoError.invalidKey("\(what) is on curve \(group), want P-256")
    }
}

extension P256 {
    public struct PublicKey: Sendable, Equatable, Hashable {
        let lazy: LazyPublicKey
        /// SEC1 uncompressed point, 0x04 ‖ x ‖ y (65 bytes); COSE and the tap transcript use it.
        public var uncompressed: [UInt8] { lazy.point }

        /// The OpenSSL key, built on first use.
        var box: PKeyBox { get throws { try lazy.pkey() } }

        init(box: PKeyBox) throws {
            var buf = [UInt8](repeating: 0, count: 65)
            var len = 0
            try check(EVP_PKEY_get_octet_string_param(box.pkey, "encoded-pub-key", &buf, buf.count, &len),
                      "EVP_PKEY_get_octet_string_param")
            guard len == 65, buf[0] == 0x04 else { throw CryptoError.invalidKey("public point not uncompressed") }
            lazy = LazyPublicKey(point: buf, box: box)
        }

        /// Accepts 65-byte SEC1 uncompressed (0x04‖x‖y) or 64-byte raw x‖y. The point is checked to be
        /// on the curve at once; the `EVP_PKEY` is made only when the key is used. Keys parsed from the
        /// air (every phone's `cnf`, every ephemeral key) are often only compared or hashed, and
        /// OpenSSL 3's SPKI decoder costs more than a signature check.
        public init(uncompressed point: [UInt8]) throws {
            var p = point
            if p.count == 64 { p = [0x04] + p }
            guard p.count == 65, p[0] == 0x04 else {
                throw CryptoError.invalidLength(what: "P-256 public point", expected: "64 or 65", got: point.count)
            }
            guard P256Group.isOnCurve(p) else { throw CryptoError.invalidKey("point is not on P-256") }
            lazy = LazyPublicKey(point: p, box: nil)
        }

        /// From the affine coordinates (each 32 bytes), as in a COSE_Key (-2 x, -3 y).
        public init(x: [UInt8], y: [UInt8]) throws {
            guard x.count == 32 else { throw CryptoError.invalidLength(what: "x", expected: "32", got: x.count) }
            guard y.count == 32 else { throw CryptoError.invalidLength(what: "y", expected: "32", got: y.count) }
            try self.init(uncompressed: [0x04] + x + y)
        }

        public init(spkiDER der: [UInt8]) throws {
            let pkey: OpaquePointer? = der.withUnsafeBufferPointer { buf in
                var p: UnsafePointer<UInt8>? = buf.baseAddress
                return d2i_PUBKEY(nil, &p, buf.count)
            }
            guard let pkey else { ERR_clear_error(); throw CryptoError.invalidKey("not a valid P-256 SubjectPublicKeyInfo / point") }
            let box = PKeyBox(pkey)
            try requireP256(pkey, "public key")
            try self.init(box: box)
        }

        /// SPKI PEM ("BEGIN PUBLIC KEY"), as `openssl pkey -pubout` writes it.
        public init(pem: String) throws {
            let pkey = try BIOBuffer.read(pem) { bio in PEM_read_bio_PUBKEY(bio, nil, nil, nil) }
            guard let pkey else { throw CryptoError.invalidKey("no PUBLIC KEY in PEM") }
            let box = PKeyBox(pkey)
            try requireP256(pkey, "public key")
            try self.init(box: box)
        }

        public var x: [UInt8] { Array(uncompressed[1..<33]) }
        public var y: [UInt8] { Array(uncompressed[33..<65]) }

        public var spkiDER: [UInt8] { p256SPKIPrefix + uncompressed }

        public var pem: String {
            guard let box = try? box else { return "" }
            return (try? BIOBuffer.write { bio in PEM_write_bio_PUBKEY(bio, box.pkey) }) ?? ""
        }

        public static func == (a: PublicKey, b: PublicKey) -> Bool { a.uncompressed == b.uncompressed }
        public func hash(into h: inout Hasher) { h.combine(uncompressed) }
    }

    public struct PrivateKey: Sendable {
        let box: PKeyBox
        public let publicKey: PublicKey

        init(box: PKeyBox) throws {
            self.box = box
            self.publicKey = try PublicKey(box: box)
        }

        /// A fresh key from OpenSSL's CSPRNG.
        public init() throws {
            guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw CryptoError.fromQueue("EVP_PKEY_CTX_new_from_name") }
            defer { EVP_PKEY_CTX_free(ctx) }
            try check(EVP_PKEY_keygen_init(ctx), "EVP_PKEY_keygen_init")
            try check(EVP_PKEY_CTX_set_group_name(ctx, "P-256"), "EVP_PKEY_CTX_set_group_name")
            var pkey: OpaquePointer?
            try check(EVP_PKEY_generate(ctx, &pkey), "EVP_PKEY_generate")
            guard let pkey else { throw CryptoError.fromQueue("EVP_PKEY_generate") }
            try self.init(box: PKeyBox(pkey))
        }

        /// PKCS#8 PEM ("BEGIN PRIVATE KEY"); also accepts SEC1 "BEGIN EC PRIVATE KEY", which
        /// `openssl ecparam -genkey` writes.
        public init(pem: String) throws {
            let pkey = try BIOBuffer.read(pem) { bio in PEM_read_bio_PrivateKey(bio, nil, nil, nil) }
            guard let pkey else { throw CryptoError.invalidKey("no PRIVATE KEY in PEM") }
            let box = PKeyBox(pkey)
            try requireP256(pkey, "private key")
            try self.init(box: box)
        }

        /// Unencrypted PKCS#8 PEM. The caller decides where it goes; it must never be logged.
        public func pkcs8PEM() throws -> String {
            try BIOBuffer.write { bio in
                PEM_write_bio_PKCS8PrivateKey(bio, box.pkey, nil, nil, 0, nil, nil)
            }
        }
    }
}

/// Memory BIO helpers: the only place PEM text crosses into OpenSSL.
enum BIOBuffer {
    static func read<T>(_ text: String, _ body: (OpaquePointer) -> T?) throws -> T? {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.fromQueue("BIO_new") }
        defer { BIO_free(bio) }
        let bytes = Array(text.utf8)
        guard bytes.count < Int32.max else { throw CryptoError.invalidKey("PEM too large") }
        _ = bytes.withUnsafeBytes { BIO_write(bio, $0.baseAddress, Int32($0.count)) }
        let result = body(bio)
        ERR_clear_error()
        return result
    }

    static func write(_ body: (OpaquePointer) -> Int32) throws -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.fromQueue("BIO_new") }
        defer { BIO_free(bio) }
        try check(body(bio), "PEM_write_bio")
        let pending = Int(BIO_ctrl_pending(bio))
        var out = [UInt8](repeating: 0, count: pending)
        let n = out.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(pending)) }
        guard n == pending else { throw CryptoError.fromQueue("BIO_read") }
        return String(decoding: out, as: UTF8.self)
    }
}
