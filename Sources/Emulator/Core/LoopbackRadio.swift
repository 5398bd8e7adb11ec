import BLE
import Foundation
import Hardware
import MobileKey

// Placeholder type so the module compiles while the GATT client lands; replaced below.
final class LoopbackRadio: @unchecked Sendable {
    init(site: Site, capturePath: String?, clock: any KeywayClock) throws {}
    func close() {}
    struct Outcome { let decision: Decision; let phoneResult: TapResultMessage? }
    func tap(lockID: String, key: IssuedKey, action: TapAction, distance: Double, siteID: String, issuers: TrustedIssuers,
             cache: LockCertificateCache, now: Date) async throws -> Outcome {
        throw APIError(501, "not_ready", "radio not wired")
    }
}
