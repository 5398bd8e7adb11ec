import Foundation
import Hardware
import KeywayAPI
@testable import Emulator

/// The operations as the HTTP edge calls them, from and to JSON objects: a test writes a request as a
/// client would, it is decoded into the document's type exactly as the generated server decodes it
/// (unknown fields and wrong types refused, with the same field-naming APIError), and the answer comes
/// back as the JSON the client would read.
extension Emulator {
    static func request<T: Decodable>(_ obj: [String: Any], as type: T.Type = T.self) throws -> T {
        let data = try JSONSerialization.data(withJSONObject: obj)
        do { return try APIJSON.decoder.decode(T.self, from: data) } catch let e as DecodingError {
            throw ErrorMiddleware.requestError(e)
        }
    }

    static func answer<T: Encodable>(_ value: T) throws -> [String: Any] {
        try XCTUnwrapDictionary(JSONSerialization.jsonObject(with: APIJSON.encoder.encode(value)))
    }

    func issueKey(json obj: [String: Any]) async throws -> [String: Any] {
        try Self.answer(try await issueKey(Self.request(obj)))
    }

    func tap(json obj: [String: Any]) async throws -> [String: Any] {
        do { return try Self.answer(try await tap(Self.request(obj))) } catch let e as HardwareError { throw APIError.hardware(e) }
    }

    func setLockCertificate(_ id: String, json obj: [String: Any]) async throws -> [String: Any] {
        try Self.answer(try await setLockCertificate(id, Self.request(obj)))
    }

    func lockJSON(id: String) async throws -> [String: Any] {
        try Self.answer(try await lock(id: id))
    }
}

private func XCTUnwrapDictionary(_ any: Any) throws -> [String: Any] {
    guard let d = any as? [String: Any] else { throw APIError(500, "internal", "answer is not a JSON object") }
    return d
}
