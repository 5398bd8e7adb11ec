import Foundation
import XCTest
@testable import KeywayCrypto

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.replacingOccurrences(of: " ", with: "").makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}
func toHex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

/// Runs the `openssl` command-line tool: the independent implementation our PEM and signatures
/// must interoperate with.
@discardableResult
func openssl(_ args: [String], stdin: Data? = nil) throws -> (status: Int32, out: Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = args
    let out = Pipe(); p.standardOutput = out; p.standardError = Pipe()
    let inPipe = Pipe(); p.standardInput = inPipe
    try p.run()
    if let stdin { inPipe.fileHandleForWriting.write(stdin) }
    try inPipe.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, data)
}

final class KeywayCryptoTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kwcrypto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testSHA256KnownAnswer() {
        XCTAssertEqual(toHex(SHA256.hash(Array("abc".utf8))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testHMACRFC4231Case2() throws {
        let mac = try HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        XCTAssertEqual(toHex(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testHKDFRFC5869Case1() throws {
        let okm = try HKDF.deriveKey(inputKeyMaterial: hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                                     salt: hex("000102030405060708090a0b0c"), info: hex("f0f1f2f3f4f5f6f7f8f9"), outputLength: 42)
        XCTAssertEqual(toHex(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        XCTAssertThrowsError(try HKDF.deriveKey(inputKeyMaterial: [1], salt: [], info: [], outputLength: 0))
    }

    func testAESGCMKnownAnswerAndTamper() throws {
        // NIST GCM test case 4 (AES-128, with AAD).
        let key = hex("feffe9928665731c6d6a8f9467308308")
        let iv = hex("cafebabefacedbaddecaf888")
        let pt = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
        let sealed = try AESGCM.seal(pt, key: key, nonce: iv, associatedData: aad)
        XCTAssertEqual(toHex(sealed), "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091" + "5bc94fbc3221a5db94fae95ae7121a47")
        XCTAssertEqual(try AESGCM.open(sealed, key: key, nonce: iv, associatedData: aad), pt)
        var bad = sealed; bad[3] ^= 0x01
        XCTAssertThrowsError(try AESGCM.open(bad, key: key, nonce: iv, associatedData: aad)) { XCTAssertEqual($0 as? CryptoError, .authenticationFailed) }
        XCTAssertThrowsError(try AESGCM.open(sealed, key: key, nonce: iv, associatedData: aad + [0])) { XCTAssertEqual($0 as? CryptoError, .authenticationFailed) }
        XCTAssertThrowsError(try AESGCM.open(Array(sealed.prefix(10)), key: key, nonce: iv)) { XCTAssertEqual($0 as? CryptoError, .authenticationFailed) }
        XCTAssertThrowsError(try AESGCM.seal(pt, key: [1, 2, 3], nonce: iv))
        XCTAssertThrowsError(try AESGCM.seal(pt, key: key, nonce: [1]))
        // Empty plaintext round-trips (a tag alone).
        let empty = try AESGCM.seal([], key: key, nonce: iv)
        XCTAssertEqual(empty.count, 16)
        XCTAssertEqual(try AESGCM.open(empty, key: key, nonce: iv), [])
    }

    func testSignVerifyAndTamper() throws {
        let key = try P256.PrivateKey()
        let msg = Array("tap".utf8)
        let sig = try ECDSA.sign(msg, with: key)
        XCTAssertEqual(sig.count, 64)
        XCTAssertTrue(ECDSA.verify(sig, of: msg, by: key.publicKey))
        var bad = sig; bad[10] ^= 0x80
        XCTAssertFalse(ECDSA.verify(bad, of: msg, by: key.publicKey))
        XCTAssertFalse(ECDSA.verify(sig, of: msg + [0], by: key.publicKey))
        XCTAssertFalse(ECDSA.verify(Array(sig.prefix(63)), of: msg, by: key.publicKey))
        XCTAssertFalse(ECDSA.verify([UInt8](repeating: 0, count: 64), of: msg, by: key.publicKey))
        XCTAssertFalse(ECDSA.verify(sig, of: msg, by: try P256.PrivateKey().publicKey))
    }

    func testRawDERConversionEdgeCases() {
        // High-bit r needs a 0x00 pad in DER; leading-zero s is shortened.
        let raw = [UInt8](repeating: 0xff, count: 32) + [0, 0] + [UInt8](repeating: 0x01, count: 30)
        let der = DERSignature.fromRaw(raw)!
        XCTAssertEqual(DERSignature.toRaw(der), raw)
        XCTAssertNil(DERSignature.toRaw([0x30, 0x02, 0x02, 0x00]))
        XCTAssertNil(DERSignature.toRaw(der + [0]))
    }

    func testECDHAgreesBothWays() throws {
        let a = try P256.PrivateKey(), b = try P256.PrivateKey()
        let s1 = try ECDH.sharedSecret(a, b.publicKey)
        let s2 = try ECDH.sharedSecret(b, a.publicKey)
        XCTAssertEqual(s1, s2)
        XCTAssertEqual(s1.count, 32)
    }

    func testPublicKeyEncodings() throws {
        let k = try P256.PrivateKey().publicKey
        XCTAssertEqual(try P256.PublicKey(uncompressed: k.uncompressed), k)
        XCTAssertEqual(try P256.PublicKey(uncompressed: k.x + k.y), k)
        XCTAssertEqual(try P256.PublicKey(x: k.x, y: k.y), k)
        XCTAssertEqual(try P256.PublicKey(spkiDER: k.spkiDER), k)
        XCTAssertEqual(try P256.PublicKey(pem: k.pem), k)
        // A point not on the curve is refused by OpenSSL.
        var off = k.uncompressed; off[64] ^= 1
        XCTAssertThrowsError(try P256.PublicKey(uncompressed: off))
        XCTAssertThrowsError(try P256.PublicKey(uncompressed: [4, 1, 2]))
        XCTAssertThrowsError(try P256.PublicKey(pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
    }

    func testPEMRoundTripThroughOpenSSLTool() throws {
        // Ours → openssl: the tool reads our PKCS#8 and derives the same public key we export.
        let key = try P256.PrivateKey()
        let pem = try key.pkcs8PEM()
        XCTAssertTrue(pem.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        let keyFile = dir.appendingPathComponent("k.pem")
        try pem.write(to: keyFile, atomically: true, encoding: .utf8)
        let pub = try openssl(["pkey", "-in", keyFile.path, "-pubout"])
        XCTAssertEqual(pub.status, 0)
        XCTAssertEqual(String(decoding: pub.out, as: UTF8.self), key.publicKey.pem)

        // openssl → ours: a key generated by the tool imports, and its signature verifies in openssl.
        let toolKey = dir.appendingPathComponent("tool.pem")
        XCTAssertEqual(try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", toolKey.path]).status, 0)
        let imported = try P256.PrivateKey(pem: String(contentsOf: toolKey, encoding: .utf8))
        XCTAssertEqual(try imported.pkcs8PEM(), try String(contentsOf: toolKey, encoding: .utf8))
        let msg = Array("hello lock".utf8)
        let raw = try ECDSA.sign(msg, with: imported)
        let derFile = dir.appendingPathComponent("sig.der")
        try Data(DERSignature.fromRaw(raw)!).write(to: derFile)
        let msgFile = dir.appendingPathComponent("msg")
        try Data(msg).write(to: msgFile)
        let pubFile = dir.appendingPathComponent("pub.pem")
        try imported.publicKey.pem.write(to: pubFile, atomically: true, encoding: .utf8)
        XCTAssertEqual(try openssl(["dgst", "-sha256", "-verify", pubFile.path, "-signature", derFile.path, msgFile.path]).status, 0)

        // And a signature made by the tool verifies with us.
        let toolSig = dir.appendingPathComponent("toolsig.der")
        XCTAssertEqual(try openssl(["dgst", "-sha256", "-sign", toolKey.path, "-out", toolSig.path, msgFile.path]).status, 0)
        let toolRaw = DERSignature.toRaw(Array(try Data(contentsOf: toolSig)))!
        XCTAssertTrue(ECDSA.verify(toolRaw, of: msg, by: imported.publicKey))
    }

    func testWrongCurveIsRejected() throws {
        let f = dir.appendingPathComponent("p384.pem")
        XCTAssertEqual(try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", f.path]).status, 0)
        XCTAssertThrowsError(try P256.PrivateKey(pem: String(contentsOf: f, encoding: .utf8))) { err in
            guard case CryptoError.invalidKey(let why) = err else { return XCTFail("\(err)") }
            XCTAssertTrue(why.contains("secp384r1"), why)
        }
        XCTAssertThrowsError(try P256.PrivateKey(pem: "garbage"))
    }

    func testRandomBytes() throws {
        let a = try SecureRandom.bytes(16), b = try SecureRandom.bytes(16)
        XCTAssertEqual(a.count, 16)
        XCTAssertNotEqual(a, b)
        XCTAssertTrue(constantTimeEqual(a, a))
        XCTAssertFalse(constantTimeEqual(a, b))
        XCTAssertFalse(constantTimeEqual(a, Array(a.prefix(15))))
    }
}
