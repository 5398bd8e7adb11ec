import XCTest
import KeywayCrypto
final class ZZProbeTests: XCTestCase {
    func testHKDFSync() throws {
        _ = try HKDF.deriveKey(inputKeyMaterial: [1,2,3], salt: [4], info: [5], outputLength: 44)
    }
    func testHKDFAsync() async throws {
        _ = try HKDF.deriveKey(inputKeyMaterial: [1,2,3], salt: [4], info: [5], outputLength: 44)
    }
    func testHKDFDetached() async throws {
        try await Task.detached { _ = try HKDF.deriveKey(inputKeyMaterial: [1,2,3], salt: [4], info: [5], outputLength: 44) }.value
    }
    func testHKDFThread() throws {
        var err: Error?
        let t = Thread { do { _ = try HKDF.deriveKey(inputKeyMaterial: [1,2,3], salt: [4], info: [5], outputLength: 44) } catch { err = error } }
        t.start(); while !t.isFinished { usleep(1000) }
        if let err { throw err }
    }
}
