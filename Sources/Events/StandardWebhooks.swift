import Foundation
import KeywayCrypto

/// A webhook signing secret. Accepts the Standard Webhooks form `whsec_<base64 key>` or any other string,
/// whose UTF-8 bytes are then the key (Kisi-style plain secrets). Never printed: `description`, `dump`
/// and string interpolation all show a redacted placeholder.
public struct WebhookSecret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public static let prefix = "whsec_"
    let key: [UInt8]

    public init(_ text: String) throws {
        guard !text.isEmpty else { throw EventError.invalidSecret("empty") }
        guard text.utf8.count <= 1024 else { throw EventError.invalidSecret("longer than 1024 bytes") }
        if text.hasPrefix(WebhookSecret.prefix) {
            let encoded = String(text.dropFirst(WebhookSecret.prefix.count))
            guard let data = Data(base64Encoded: encoded), !data.isEmpty else {
                throw EventError.invalidSecret("text after whsec_ is not base64")
            }
            key = Array(data)
        } else {
            key = Array(text.utf8)
        }
    }

    public init(rawKey: [UInt8]) throws {
        guard !rawKey.isEmpty, rawKey.count <= 1024 else { throw EventError.invalidSecret("key must be 1–1024 bytes") }
        key = rawKey
    }

    /// A fresh random secret in `whsec_` form (24 bytes, as Standard Webhooks recommends at least).
    public static func generate() -> (secret: WebhookSecret, text: String) {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let text = prefix + Data(bytes).base64EncodedString()
        // Cannot fail: 24 random bytes, base64 we just produced.
        return ((try? WebhookSecret(rawKey: bytes)) ?? WebhookSecret(unchecked: bytes), text)
    }

    private init(unchecked key: [UInt8]) { self.key = key }

    public var description: String { "whsec_<redacted>" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// The Standard Webhooks signing scheme (https://www.standardwebhooks.com): the signed content is
/// `{webhook-id}.{webhook-timestamp}.{body}`, signed with HMAC-SHA256, sent as `v1,<base64>`.
public enum StandardWebhooks {
    /// Throws only if OpenSSL cannot compute an HMAC (out of memory): never a wrong signature.
    public static func signature(secret: WebhookSecret, id: String, timestamp: Int64, body: [UInt8]) throws -> String {
        var message = Array("\(id).\(timestamp).".utf8)
        message.append(contentsOf: body)
        let mac = try HMACSHA256.authenticate(message, key: secret.key)
        return "v1," + Data(mac).base64EncodedString()
    }

    /// Verifies a `webhook-signature` header value (space-separated list; any `v1` entry may match).
    /// Used by tests and by anyone embedding a receiver; constant-time per candidate.
    public static func verify(secret: WebhookSecret, id: String, timestamp: Int64, body: [UInt8], header: String) -> Bool {
        guard let signed = try? signature(secret: secret, id: id, timestamp: timestamp, body: body) else { return false }
        let expected = Array(signed.utf8)
        var ok = false
        for candidate in header.split(separator: " ") where candidate.hasPrefix("v1,") {
            if constantTimeEqual(Array(candidate.utf8), expected) { ok = true }
        }
        return ok
    }

    /// The headers of one attempt. `webhook-id` is the event id, so a retry or a redelivery after a crash
    /// carries the same id and receivers can deduplicate on it.
    public static func headers(secret: WebhookSecret?, id: String, timestamp: Int64, body: [UInt8]) throws -> [(name: String, value: String)] {
        var h: [(name: String, value: String)] = [("webhook-id", id), ("webhook-timestamp", String(timestamp))]
        if let secret { h.append(("webhook-signature", try signature(secret: secret, id: id, timestamp: timestamp, body: body))) }
        return h
    }
}
