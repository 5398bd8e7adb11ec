@testable import Events
import XCTest

final class CryptoTests: XCTestCase {

    /// The Standard Webhooks example from the specification's reference libraries: a known secret, id,
    /// timestamp and payload, and the signature they document.
    func testStandardWebhooksSignatureAndVerify() throws {
        let secret = try WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let body = Array(#"{"test": 2432232314}"#.utf8)
        let sig = try StandardWebhooks.signature(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1614265330, body: body)
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
