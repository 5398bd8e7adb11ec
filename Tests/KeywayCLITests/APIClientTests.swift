import Foundation
import HTTPTypes
@testable import keyway
import KeywayAPI
import NIOCore
import OpenAPIRuntime
import XCTest

/// The QA commands' client: the generated `Client` behind APIConnection, its messages, and the printing
/// of typed answers (`--json`, the `key=value` line), checked without a server through a fake transport.
final class APIClientTests: XCTestCase {
    /// Answers every request with one canned response and remembers the request.
    final class FakeTransport: ClientTransport, @unchecked Sendable {
        let lock = NSLock()
        let status: Int
        let contentType: String?
        let body: Data?
        let error: (any Error)?
        private var seen: [HTTPRequest] = []
        var requests: [HTTPRequest] { lock.withLock { seen } }

        init(status: Int = 200, contentType: String? = "application/json", json: String? = nil, error: (any Error)? = nil) {
            self.status = status
            self.contentType = contentType
            self.body = json.map { Data($0.utf8) }
            self.error = error
        }

        func send(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String) async throws -> (HTTPResponse, HTTPBody?) {
            lock.withLock { seen.append(request) }
            if let error { throw error }
            var fields = HTTPFields()
            if let contentType { fields[.contentType] = contentType }
            return (HTTPResponse(status: .init(code: status), headerFields: fields), self.body.map { HTTPBody($0) })
        }
    }

    func connection(_ transport: FakeTransport, token: String? = nil) -> APIConnection {
        APIConnection(serverURL: URL(string: "http://127.0.0.1:9")!, server: "http://127.0.0.1:9", token: token, transport: transport)
    }

    /// What the call threw, as the user reads it.
    func message<T>(_ work: () async throws -> T) async -> String? {
        do { _ = try await work(); return nil } catch { return (error as? UserFacingError)?.description ?? "not a UserFacingError: \(error)" }
    }

    static let clockJSON = #"{"mode":"simulated","now":"2026-11-23T17:00:00.000Z","time_zone":"America/Los_Angeles"}"#

    func testAnswerIsTypedAndTokenIsSent() async throws {
        let t = FakeTransport(json: Self.clockJSON)
        let clock = try await connection(t, token: "s3cret").call("GET /v1/clock") { try await $0.getClock() }
        XCTAssertEqual(clock.now, "2026-11-23T17:00:00.000Z")
        XCTAssertEqual(clock.mode, .simulated)
        XCTAssertEqual(t.requests.first?.headerFields[.authorization], "Bearer s3cret")
        XCTAssertEqual(t.requests.first?.path, "/v1/clock")
        _ = try await connection(t).call("GET /v1/clock") { try await $0.getClock() }
        XCTAssertNil(t.requests.last?.headerFields[.authorization], "no token, no header")
    }

    func testDocumentedErrorKeepsTodaysMessage() async {
        let t = FakeTransport(status: 404, json: #"{"error":{"code":"not_found","message":"no lock 'x'","field":"lock"}}"#)
        let m = await message { try await connection(t).call("POST /v1/taps") { try await $0.tap(body: .json(.init(lock: "x", user: "u-ada"))) } }
        XCTAssertEqual(m, "POST /v1/taps: HTTP 404 not_found: no lock 'x' (field lock)")
        let noField = FakeTransport(status: 409, json: #"{"error":{"code":"no_key","message":"user holds no key"}}"#)
        let m2 = await message { try await connection(noField).call("POST /v1/taps") { try await $0.tap(body: .json(.init(lock: "x", user: "u"))) } }
        XCTAssertEqual(m2, "POST /v1/taps: HTTP 409 no_key: user holds no key")
    }

    func testUndocumentedStatusStillReadsTheErrorBody() async {
        let t = FakeTransport(status: 500, json: #"{"error":{"code":"internal","message":"boom"}}"#)
        let m = await message { try await connection(t).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m, "GET /v1/clock: HTTP 500 internal: boom")
        let plain = FakeTransport(status: 503, contentType: "text/plain", json: "down")
        let m2 = await message { try await connection(plain).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m2, "GET /v1/clock: HTTP 503")
    }

    func testAnswerThatIsNotTheDocumentsIsNamedWithoutADump() async {
        let missing = FakeTransport(json: #"{"mode":"simulated","now":"x"}"#)
        let m = await message { try await connection(missing).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m, "GET /v1/clock: HTTP 200: the answer does not match the API (field time_zone: missing)")
        let badEnum = FakeTransport(json: #"{"mode":"sideways","now":"x","time_zone":"UTC"}"#)
        let m2 = await message { try await connection(badEnum).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m2, "GET /v1/clock: HTTP 200: the answer does not match the API (field mode: unexpected value)")
        let array = FakeTransport(json: "[]")
        let m4 = await message { try await connection(array).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m4, "GET /v1/clock: HTTP 200: the answer does not match the API (the answer: wrong type)")
        let html = FakeTransport(contentType: "text/html", json: "<html></html>")
        let m3 = await message { try await connection(html).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m3, "GET /v1/clock: HTTP 200: the answer is not the API's JSON (content type text/html)")
    }

    func testOversizedAnswerIsRefused() async {
        let big = FakeTransport(json: #"{"mode":"simulated","now":""# + String(repeating: "x", count: APIConnection.maxResponse) + #"","time_zone":"UTC"}"#)
        let m = await message { try await connection(big).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m, "GET /v1/clock: answer over \(APIConnection.maxResponse) bytes")
    }

    func testConnectionFailureIsWordsNotADebugDescription() async {
        let refused = FakeTransport(error: IOError(errnoCode: ECONNREFUSED, reason: "connect"))
        let m = await message { try await connection(refused).call("GET /v1/clock") { try await $0.getClock() } }
        XCTAssertEqual(m, "cannot reach keyway serve at http://127.0.0.1:9: Connection refused")
        XCTAssertEqual(ConnectionFailure.describe(ChannelError.connectTimeout(.seconds(10))), "no connection within 10 s")
        struct Odd: Error {}
        XCTAssertEqual(ConnectionFailure.describe(Odd()), "connection failed")
    }

    // MARK: Printing

    func testDescribeFieldsFromTypedValues() throws {
        let exit = Components.Schemas.ExitResult(result: .granted, reason: nil, eventId: "e-1", openMs: 7000)
        XCTAssertEqual(try describeFields(exit), "event_id=e-1 open_ms=7000 reason=- result=granted")
        let iq = Components.Schemas.Iq(id: "iq-lobby", name: "IQ lobby ceiling", online: false, activated: true,
                                       failedActivationAttempts: 0, position: .init(x: 6, y: 8, z: 2.7), rangeM: 9.144, locksInReach: ["a", "b"],
                                       lastSync: "2026-11-24T09:00:00.000Z")
        XCTAssertEqual(try describeFields(iq),
                       "activated=true failed_activation_attempts=0 id=iq-lobby last_sync=2026-11-24T09:00:00.000Z locks_in_reach=[a,b] name=IQ lobby ceiling "
                       + "online=false position={x=6 y=8 z=2.7} range_m=9.144")
        let report = Components.Schemas.IQSyncReport(iq: "iq-lobby", locksSynced: [], locksUnreachable: ["c"], recordsCollected: 0)
        XCTAssertEqual(try describeFields(report), "iq=iq-lobby locks_synced=[] locks_unreachable=[c] records_collected=0")
    }

    func testJSONIsTheAPIsKeysSortedWithNulls() throws {
        let exit = Components.Schemas.ExitResult(result: .denied, reason: "no_power", eventId: nil, openMs: 0)
        XCTAssertEqual(try jsonText(exit), """
            {
              "event_id" : null,
              "open_ms" : 0,
              "reason" : "no_power",
              "result" : "denied"
            }
            """)
        let clock = Components.Schemas.Clock(mode: .simulated, now: "2026-11-23T17:00:00.000Z", timeZone: "UTC")
        XCTAssertEqual(try jsonText(clock), "{\n  \"mode\" : \"simulated\",\n  \"now\" : \"2026-11-23T17:00:00.000Z\",\n  \"time_zone\" : \"UTC\"\n}")
    }
}
