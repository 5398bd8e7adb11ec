import KeywayCrypto
import XCTest
@testable import MobileKey

final class COSESign1Tests: XCTestCase {
    let key = MKTest.issuerKey
    var kid: [UInt8] { KeyID.derive(from: key.publicKey) }

    private func assertDecodeError(_ bytes: [UInt8], _ expected: COSEError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try COSESign1(decoding: bytes), file: file, line: line) {
            XCTAssertEqual($0 as? COSEError, expected, file: file, line: line)
        }
    }

    func testSignVerifyRoundTrip() throws {
        let msg = try COSESign1.sign(payload: Array("hello".utf8), keyID: kid, key: key)
        let bytes = msg.encoded()
        XCTAssertEqual(Array(bytes.prefix(2)), [0xd2, 0x84], "tag 18, 4-element array")
        let decoded = try COSESign1(decoding: bytes)
        XCTAssertEqual(decoded, msg)
        XCTAssertEqual(decoded.keyID, kid)
        XCTAssertEqual(decoded.payload, Array("hello".utf8))
        XCTAssertEqual(decoded.signature.count, 64)
        XCTAssertTrue(decoded.verify(with: key.publicKey))
        XCTAssertFalse(decoded.verify(with: MKTest.otherIssuerKey.publicKey))
        XCTAssertFalse(decoded.verify(with: key.publicKey, externalAAD: [1]))
    }

    func testProtectedHeaderIsExactlyAlgAndKid() throws {
        let msg = try COSESign1.sign(payload: [], keyID: [1, 2, 3, 4, 5, 6, 7, 8], key: key)
        // {1: -7, 4: h'0102030405060708'}
        XCTAssertEqual(Hex.encode(msg.protectedHeader), "a201260448" + "0102030405060708")
        XCTAssertTrue(msg.unprotected.isEmpty)
    }

    func testToBeSignedMatchesGenericEncoding() {
        let p: [UInt8] = [0xa1, 0x01, 0x26], aad: [UInt8] = [9, 9], payload = [UInt8](repeating: 0x5a, count: 300)
        let generic = CBOR.array([.text("Signature1"), .bytes(p), .bytes(aad), .bytes(payload)]).encoded()
        XCTAssertEqual(COSESign1.toBeSigned(protectedHeader: p, externalAAD: aad, payload: payload), generic)
    }

    func testTamperedPayloadOrSignatureFails() throws {
        let bytes = try COSESign1.sign(payload: Array("pay".utf8), keyID: kid, key: key).encoded()
        for i in [bytes.count - 1, bytes.count - 40, bytes.count - 66] {
            var t = bytes
            t[i] ^= 0x01
            if let m = try? COSESign1(decoding: t) { XCTAssertFalse(m.verify(with: key.publicKey), "byte \(i)") }
        }
    }

    func testUnsupportedAlgorithm() throws {
        for alg: Int64 in [-35, -36, -8, 5, -257] {
            let b = try MKTest.signWithHeader([1: .int(alg), 4: .bytes(kid)], payload: [1])
            assertDecodeError(b, .unsupportedAlgorithm(alg))
        }
        assertDecodeError(try MKTest.signWithHeader([1: "ES256", 4: .bytes(kid)], payload: [1]), .unsupportedAlgorithm(nil))
    }

    func testAlgorithmMustBeProtected() throws {
        assertDecodeError(try MKTest.signWithHeader([4: .bytes(kid)], unprotected: [1: -7], payload: [1]), .algorithmNotProtected)
        assertDecodeError(try MKTest.signWithHeader([4: .bytes(kid)], payload: [1]), .missingAlgorithm)
        assertDecodeError(try MKTest.signWithHeader([1: -7], unprotected: [1: -7], payload: [1]), .duplicateHeaderLabel(1))
        assertDecodeError(try MKTest.signWithHeader([1: -7, 4: .bytes(kid)], unprotected: [4: .bytes(kid)], payload: [1]),
                          .duplicateHeaderLabel(4))
    }

    func testCriticalHeadersRefused() throws {
        assertDecodeError(try MKTest.signWithHeader([1: -7, 2: [4], 4: .bytes(kid)], payload: [1]), .criticalHeader)
        assertDecodeError(try MKTest.signWithHeader([1: -7, 4: .bytes(kid)], unprotected: [2: [99]], payload: [1]), .criticalHeader)
    }

    func testKidMayBeUnprotected() throws {
        let m = try COSESign1(decoding: try MKTest.signWithHeader([1: -7], unprotected: [4: .bytes(kid)], payload: [1]))
        XCTAssertEqual(m.keyID, kid)
        XCTAssertTrue(m.verify(with: key.publicKey))
        assertDecodeError(try MKTest.signWithHeader([1: -7, 4: "text-kid"], payload: [1]), .malformed("kid is not a bstr"))
    }

    func testStructureErrors() throws {
        let good = try COSESign1.sign(payload: [1], keyID: kid, key: key)
        let parts: [CBOR] = [.bytes(good.protectedHeader), .map([:]), .bytes([1]), .bytes(good.signature)]
        assertDecodeError(CBOR.array(parts).encoded(), .malformed("not tagged (want tag 18)"))
        assertDecodeError(CBOR.tagged(98, .array(parts)).encoded(), .malformed("tag 98, want 18 (COSE_Sign1)"))
        assertDecodeError(CBOR.tagged(18, .array(Array(parts.prefix(3)))).encoded(), .malformed("not a 4-element array"))
        assertDecodeError(CBOR.tagged(18, .array([parts[0], parts[1], .null, parts[3]])).encoded(), .malformed("detached payload"))
        assertDecodeError(CBOR.tagged(18, .array([.map([1: -7]), parts[1], parts[2], parts[3]])).encoded(),
                          .malformed("protected header is not a bstr"))
        assertDecodeError(CBOR.tagged(18, .array([.bytes(CBOR.array([]).encoded()), parts[1], parts[2], parts[3]])).encoded(),
                          .malformed("protected header is not a map"))
        assertDecodeError(CBOR.tagged(18, .array([.bytes([0x1c]), parts[1], parts[2], parts[3]])).encoded(),
                          .cbor(.reservedAdditionalInfo(at: 0)))
        assertDecodeError([0xd2, 0x84, 0x43], .cbor(.truncated(at: 1))) // 4 elements cannot fit in 1 byte
        // Wrapped in the CWT tag 61 is accepted.
        XCTAssertEqual(try COSESign1(decoding: CBOR.tagged(61, good.cbor).encoded()), good)
    }

    func testCOSEKeyRoundTripAndRejections() throws {
        let pub = MKTest.holderKey.publicKey
        let item = COSEKey.cbor(pub)
        XCTAssertEqual(Array(item.encoded().prefix(5)), [0xa4, 0x01, 0x02, 0x20, 0x01])
        XCTAssertEqual(try COSEKey.publicKey(from: item), pub)
        var m = item.mapValue!
        m[.int(COSEKey.d)] = .bytes([UInt8](repeating: 1, count: 32))
        XCTAssertThrowsError(try COSEKey.publicKey(from: .map(m))) { XCTAssertEqual($0 as? COSEKey.DecodeError, .containsPrivateKey) }
        m = item.mapValue!; m[.int(COSEKey.crv)] = 2
        XCTAssertThrowsError(try COSEKey.publicKey(from: .map(m))) { XCTAssertEqual($0 as? COSEKey.DecodeError, .wrongCurve) }
        m = item.mapValue!; m[.int(COSEKey.kty)] = 1
        XCTAssertThrowsError(try COSEKey.publicKey(from: .map(m))) { XCTAssertEqual($0 as? COSEKey.DecodeError, .wrongKeyType) }
        m = item.mapValue!; m[.int(COSEKey.y)] = .bool(true)
        XCTAssertThrowsError(try COSEKey.publicKey(from: .map(m))) { XCTAssertEqual($0 as? COSEKey.DecodeError, .badCoordinates) }
        m = item.mapValue!; m[.int(COSEKey.y)] = .bytes([UInt8](repeating: 0, count: 32))
        XCTAssertThrowsError(try COSEKey.publicKey(from: .map(m))) { XCTAssertEqual($0 as? COSEKey.DecodeError, .notOnCurve) }
    }

    func testKeyIDIsSHA256OfSPKIPrefix() {
        let pub = key.publicKey
        XCTAssertEqual(pub.spkiDER.count, 91)
        XCTAssertEqual(KeyID.derive(from: pub), Array(SHA256.hash(pub.spkiDER).prefix(8)))
        XCTAssertNotEqual(KeyID.derive(from: pub), KeyID.derive(from: MKTest.otherIssuerKey.publicKey))
    }
}
