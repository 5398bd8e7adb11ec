import Foundation
import XCTest
@testable import KeywayFuzz
@_spi(TapVectors) import MobileKey

/// The fuzz targets without libFuzzer: every seed and every saved regression input of Fixtures/fuzz/
/// replayed through its target (so a fixed crash stays fixed in `make test`), and checks that the
/// seeds reach past the first parser.
final class FuzzCorpusTests: XCTestCase {
    func seeds(_ target: FuzzTarget) throws -> [(String, [UInt8])] {
        try inputs(target).filter { $0.0.hasPrefix("seed-") }
    }

    func inputs(_ target: FuzzTarget) throws -> [(String, [UInt8])] {
        let dir = FuzzPaths.corpusRoot.appendingPathComponent(target.name)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return try names.sorted().filter { $0.hasPrefix("seed-") || $0.hasPrefix("regression-") }.map {
            ($0, [UInt8](try Data(contentsOf: dir.appendingPathComponent($0))))
        }
    }

    func testEveryTargetHasSeedsAndTheyReplayClean() throws {
        XCTAssertEqual(Set(FuzzTargets.all.map(\.name)).count, FuzzTargets.all.count, "target names are unique")
        for target in FuzzTargets.all {
            let files = try inputs(target)
            XCTAssertFalse(files.filter { $0.0.hasPrefix("seed-") }.isEmpty, "\(target.name) has no seed corpus")
            for (name, bytes) in files {
                XCTAssertLessThanOrEqual(bytes.count, target.maxLength, "\(target.name)/\(name) is longer than -max_len")
                XCTAssertNoThrow(try target.run(bytes), "\(target.name)/\(name)")
            }
        }
    }

    /// Seeds are only useful if they are accepted where they should be: otherwise the fuzzer starts
    /// from inputs that die in the first check.
    func testSeedsAreGenuineWhereTheyShouldBe() throws {
        let f = FuzzFixture.shared
        guard case .granted = f.verifier.verify(f.credential, at: f.now, revocations: f.revocations) else {
            return XCTFail("the fixture credential must be granted at the fixture lock")
        }
        let credentials = try seeds(FuzzTargets.named("credential")!).map(\.1)
        XCTAssertTrue(credentials.contains { if case .granted = f.verifier.verify($0, at: f.now, revocations: f.revocations) { return true }; return false })
        for (name, hello) in try seeds(FuzzTargets.named("tap-hello")!) {
            XCTAssertNoThrow(try f.opening().present(readerHello: hello, action: .open, at: f.now), "hello \(name) answers the fixture phone's hello and is accepted")
        }
        for (name, hello) in try seeds(FuzzTargets.named("tap-phone-hello")!) {
            XCTAssertNoThrow(try f.lockIdentity().startSession(phoneHello: hello, now: f.now), "phone hello \(name) is answered by the lock")
        }
        // The phone's own FAST requests after a real full exchange are granted by the target's lock.
        let fast = try seeds(FuzzTargets.named("tap-fast")!)
        let decided = fast.compactMap { _, request -> TapEvaluation? in
            let identity = f.lockIdentity()
            identity.fastKeys.store(FastExchange.shared.key, credential: FastExchange.shared.credential, revocationListVersion: f.revocations.version)
            if case .evaluated(let e, _?) = identity.evaluateFast(request, now: f.now, revocations: f.revocations) { return e }
            return nil
        }
        // The recorded credential has no office-mode right: open is granted, the others are judged on the claims.
        XCTAssertEqual(decided.map { $0.denial?.code ?? "granted" }, ["granted", "action_not_permitted", "action_not_permitted"])
        let sites = try seeds(FuzzTargets.named("site-file")!)
        for (name, text) in sites {
            XCTAssertNoThrow(try SiteFileParse.parse(text), "site seed \(name) loads")
        }
        let capture = try XCTUnwrap(try seeds(FuzzTargets.named("btsnoop")!).first?.1)
        XCTAssertGreaterThan(try BTSnoopCheck.pduCount(capture), 10, "the capture holds a whole tap")
    }

    func testRecordsRoundTrip() {
        let records: [[UInt8]] = [[1], Array(repeating: 7, count: 600), [0x52, 0, 1]]
        XCTAssertEqual(FuzzInput.records(FuzzInput.encodeRecords(records)), records)
        XCTAssertEqual(FuzzInput.records([0, 5, 1, 2]), [[1, 2]], "a record cut short by the end of input is kept")
        XCTAssertEqual(FuzzInput.records([0, 0, 0]), [], "empty records are skipped")
    }

    /// The site-file target counts lines as YAML does: a lone CR is a line break to the parser.
    func testYAMLLineCount() {
        XCTAssertEqual(yamlLineCount(""), 1)
        XCTAssertEqual(yamlLineCount("a\nb"), 2)
        XCTAssertEqual(yamlLineCount("a\r\nb\rc\n"), 4)
        XCTAssertEqual(yamlLineCount("a\u{2028}b\u{85}c"), 3)
    }

    func testAnEscapedErrorIsAViolation() {
        struct Boom: Error {}
        let target = FuzzTarget("t", maxLength: 1, "test") { _, _ in throw Boom() }
        XCTAssertThrowsError(try target.run([])) { XCTAssertTrue("\($0)".contains("unexpected error escaped")) }
    }
}

import BLE
import Hardware

enum SiteFileParse {
    static func parse(_ bytes: [UInt8]) throws -> SiteConfig { try SiteFile.parse(yaml: String(decoding: bytes, as: UTF8.self)) }
}

enum BTSnoopCheck {
    static func pduCount(_ bytes: [UInt8]) throws -> Int { try BTSnoopReader(bytes: bytes).attPDUs().count }
}
