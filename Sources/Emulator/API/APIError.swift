import Events
import Foundation

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

    public var json: [String: Any] {
        var e: [String: Any] = ["code": code, "message": message]
        if let field { e["field"] = field }
        return ["error": e]
    }
}

/// A parsed JSON object body with typed, field-naming accessors: every rejection says which field
/// and why, and unknown fields are refused (a typo must not silently change a test's meaning).
public struct JSONBody {
    public let object: [String: Any]

    public init(_ data: Data, allowed: Set<String>) throws {
        if data.isEmpty { object = [:]; return }
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) }
        catch { throw APIError(400, "invalid_json", "request body is not valid JSON") }
        guard let obj = any as? [String: Any] else { throw APIError(400, "invalid_json", "request body must be a JSON object") }
        for key in obj.keys where !allowed.contains(key) {
            throw APIError.badRequest(key, "unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        object = obj
    }

    public func has(_ k: String) -> Bool { object[k] != nil && !(object[k] is NSNull) }

    public func string(_ k: String, required: Bool = false, maxLength: Int = 256) throws -> String? {
        guard let v = object[k], !(v is NSNull) else {
            if required { throw APIError.badRequest(k, "required") }
            return nil
        }
        guard let s = v as? String else { throw APIError.badRequest(k, "must be a string") }
        guard !s.isEmpty else { throw APIError.badRequest(k, "must not be empty") }
        guard s.utf8.count <= maxLength else { throw APIError.badRequest(k, "longer than \(maxLength) bytes") }
        return s
    }

    public func bool(_ k: String, required: Bool = false) throws -> Bool? {
        guard let v = object[k], !(v is NSNull) else {
            if required { throw APIError.badRequest(k, "required") }
            return nil
        }
        // JSONSerialization gives NSNumber for both numbers and booleans; accept only real booleans.
        guard let n = v as? NSNumber, isJSONBoolean(n) else {
            throw APIError.badRequest(k, "must be true or false")
        }
        return n.boolValue
    }

    public func number(_ k: String, required: Bool = false, range: ClosedRange<Double>) throws -> Double? {
        guard let v = object[k], !(v is NSNull) else {
            if required { throw APIError.badRequest(k, "required") }
            return nil
        }
        guard let n = v as? NSNumber, !isJSONBoolean(n) else { throw APIError.badRequest(k, "must be a number") }
        let d = n.doubleValue
        guard d.isFinite, range.contains(d) else { throw APIError.badRequest(k, "must be between \(range.lowerBound) and \(range.upperBound)") }
        return d
    }

    public func integer(_ k: String, required: Bool = false, range: ClosedRange<Int>) throws -> Int? {
        guard let d = try number(k, required: required, range: Double(range.lowerBound)...Double(range.upperBound)) else { return nil }
        guard d == d.rounded() else { throw APIError.badRequest(k, "must be a whole number") }
        return Int(d)
    }

    public func strings(_ k: String, required: Bool = false, maxCount: Int = 64) throws -> [String]? {
        guard let v = object[k], !(v is NSNull) else {
            if required { throw APIError.badRequest(k, "required") }
            return nil
        }
        guard let a = v as? [Any] else { throw APIError.badRequest(k, "must be an array of strings") }
        guard !a.isEmpty else { throw APIError.badRequest(k, "must not be empty") }
        guard a.count <= maxCount else { throw APIError.badRequest(k, "at most \(maxCount) entries") }
        return try a.map {
            guard let s = $0 as? String, !s.isEmpty, s.utf8.count <= 128 else { throw APIError.badRequest(k, "must be an array of non-empty strings") }
            return s
        }
    }

    public func date(_ k: String, required: Bool = false) throws -> Date? {
        guard let s = try string(k, required: required, maxLength: 64) else { return nil }
        guard let d = parseRFC3339(s) else { throw APIError.badRequest(k, "must be an RFC 3339 date-time like 2026-11-22T09:00:00Z") }
        return d
    }
}

/// RFC 3339 with or without fractional seconds; nil if it is not one (`Events.RFC3339`).
func parseRFC3339(_ s: String) -> Date? { RFC3339.parse(s) }

/// `2026-11-22T09:00:00.000Z` (`Events.RFC3339`).
public func rfc3339(_ d: Date) -> String { RFC3339.format(d) }

/// Foundation hands JSON booleans over as NSNumber too; the objCType "c" tells them apart from 0/1.
func isJSONBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }
