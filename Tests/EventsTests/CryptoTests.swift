@testable import Events
import XCTest

final class CryptoTests: XCTestCase {
    private func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    /// FIPS 180-4 example messages plus lengths around the padding boundaries (55, 56, 63, 64, 65 …).
    func testSHA256KnownVectors() {
        XCTAssertEqual(hex(SHA256.hash([UInt8]())), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(SHA256.hash(Array("abc".utf8))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex(SHA256.hash(Array("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8))),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        let boundaries: [Int: String] = [
            55: "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            56: "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
            63: "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            64: "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            65: "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0",
            119: "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb",
            128: "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e",
            1000: "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3",
        ]
        for (n, digest) in boundaries {
            XCTAssertEqual(hex(SHA256.hash([UInt8](repeating: 0x61, count: n))), digest, "length \(n)")
        }
    }

    func testSHA256IncrementalEqualsOneShot() {
        let data = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let whole = SHA256.hash(data)
        for split in [0, 1, 55, 64, 65, 128, 299, 300] {
            var h = SHA256()
            h.update(data[..<split])
            h.update(data[split...])
            XCTAssertEqual(h.finalize(), whole, "split at \(split)")
        }
    }

    /// RFC 4231 test cases 1–4, 6, 7 (case 5 is a truncated output).
    func testHMACSHA256RFC4231() {
        let cases: [([UInt8], [UInt8], String)] = [
            ([UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
             "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
             "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            ([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
             "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (Array(1...25), [UInt8](repeating: 0xcd, count: 50),
             "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            ([UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
             "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
            ([UInt8](repeating: 0xaa, count: 131),
             Array("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".utf8),
             "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
        ]
        for (i, (key, msg, expected)) in cases.enumerated() {
            XCTAssertEqual(hex(HMACSHA256.authenticationCode(key: key, message: msg)), expected, "case \(i)")
        }
    }

    /// The Standard Webhooks example from the specification's reference libraries: a known secret, id,
    /// timestamp and payload, and the signature they document.
    func testStandardWebhooksSignatureAndVerify() throws {
        let secret = try WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let body = Array(#"{"test": 2432232314}"#.utf8)
        let sig = StandardWebhooks.signature(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1614265330, body: body)
        XCTAssertEqual(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        XCTAssertTrue(StandardWebhooks.verify(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1614265330,
                                              body: body, header: "v1,bogus \(sig)"))
        XCTAssertFalse(StandardWebhooks.verify(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1614265331,
                                               body: body, header: sig))
    }

    func testSecretsParseAndNeverPrint() throws {
        let (secret, text) = WebhookSecret.generate()
        XCTAssertTrue(text.hasPrefix("whsec_"))
        XCTAssertEqual(try WebhookSecret(text), secret)
        XCTAssertEqual(try WebhookSecret("plain-secret").key, Array("plain-secret".utf8))
        XCTAssertThrowsError(try WebhookSecret("whsec_!!!not-base64")) { XCTAssertEqual($0 as? EventError, .invalidSecret("text after whsec_ is not base64")) }
        XCTAssertThrowsError(try WebhookSecret(""))
        let keyText = String(text.dropFirst(6))
        var dumped = ""
        dump(secret, to: &dumped)
        for rendering in ["\(secret)", String(describing: secret), String(reflecting: secret), dumped] {
            XCTAssertFalse(rendering.contains(keyText), rendering)
            XCTAssertTrue(rendering.contains("redacted") || rendering.contains("WebhookSecret"), rendering)
        }
        let endpoint = try WebhookEndpoint(url: "https://user:pa55@example.com:8443/hooks/keyway?token=abc", secret: secret)
        XCTAssertEqual(endpoint.redactedURL, "https://example.com:8443/hooks/keyway")
        XCTAssertTrue(endpoint.name.hasPrefix("webhook-"))
        XCTAssertThrowsError(try WebhookEndpoint(url: "ftp://example.com/", secret: nil))
        XCTAssertThrowsError(try WebhookEndpoint(url: "not a url", secret: nil))
    }
}
