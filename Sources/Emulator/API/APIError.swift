import Events
import Foundation
import KeywayAPI

/// An API failure with the HTTP status and the field it concerns. Rendered as
/// `{"error": {"code", "message", "field"}}` — never a stack trace, never a secret.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let code: String
    public let message: String
    public let field: String?

    public init(_ status: Int, _ code: String, _ message: String, field: String? = nil) {
        self.status = status; self.code = code; self.message = message; self.field = field
    }
    public static func badRequest(_ field: String, _ message: String) -> APIError { APIError(400, "invalid_field", message, field: field) }
    public static func notFound(_ what: String, _ id: String) -> APIError { APIError(404, "not_found", "no \(what) '\(id)'") }
    public static func conflict(_ message: String) -> APIError { APIError(409, "conflict", message) }

    public var description: String { field.map { "\($0): \(message)" } ?? message }

    /// The document's error body, `{"error": {"code", "message", "field"}}`.
    public var body: Components.Schemas._Error {
        Components.Schemas._Error(error: .init(code: code, message: message, field: field))
    }

    /// `body` as JSON bytes (keys sorted, dates as the API writes them).
    public var jsonBytes: Data {
        (try? APIJSON.encoder.encode(body)) ?? Data(#"{"error":{"code":"internal","message":"internal error"}}"#.utf8)
    }
}

/// Checks the generated types cannot express (lengths, ranges, non-empty): every rejection names
/// its field and says why. Unknown fields, wrong JSON types and missing required fields are refused
/// earlier, by the generated decoders (ControlAPI's error middleware names the field).
enum Input {
    static func text(_ s: String, _ field: String, maxLength: Int) throws -> String {
        guard !s.isEmpty else { throw APIError.badRequest(field, "must not be empty") }
        guard s.utf8.count <= maxLength else { throw APIError.badRequest(field, "longer than \(maxLength) bytes") }
        return s
    }

    static func text(_ s: String?, _ field: String, maxLength: Int) throws -> String? {
        try s.map { try text($0, field, maxLength: maxLength) }
    }

    static func texts(_ a: [String]?, _ field: String, maxCount: Int) throws -> [String]? {
        guard let a else { return nil }
        guard !a.isEmpty else { throw APIError.badRequest(field, "must not be empty") }
        guard a.count <= maxCount else { throw APIError.badRequest(field, "at most \(maxCount) entries") }
        for s in a where s.isEmpty || s.utf8.count > 128 { throw APIError.badRequest(field, "must be an array of non-empty strings") }
        return a
    }

    static func number(_ d: Double, _ field: String, _ range: ClosedRange<Double>) throws -> Double {
        guard d.isFinite, range.contains(d) else { throw APIError.badRequest(field, "must be between \(range.lowerBound) and \(range.upperBound)") }
        return d
    }

    static func number(_ d: Double?, _ field: String, _ range: ClosedRange<Double>) throws -> Double? {
        try d.map { try number($0, field, range) }
    }

    static func date(_ s: String, _ field: String) throws -> Date {
        guard s.utf8.count <= 64, let d = RFC3339.parse(s) else {
            throw APIError.badRequest(field, "must be an RFC 3339 date-time like 2026-11-22T09:00:00Z")
        }
        return d
    }

    static func date(_ s: String?, _ field: String) throws -> Date? {
        try s.map { try date($0, field) }
    }

    static func integer(_ i: Int?, _ field: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let i else { return nil }
        guard range.contains(i) else { throw APIError.badRequest(field, "must be between \(range.lowerBound) and \(range.upperBound)") }
        return i
    }
}

/// JSON coders for the document's types outside the generated server (events read back from the
/// journal's CloudEvents bytes, tests); date-times are strings in those types (tools/generate-api).
enum APIJSON {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static let decoder = JSONDecoder()
}

/// `2026-11-22T09:00:00.000Z` (`Events.RFC3339`).
public func rfc3339(_ d: Date) -> String { RFC3339.format(d) }
