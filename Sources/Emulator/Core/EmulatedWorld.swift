import Foundation
import MobileKey

/// The span of time the emulated world lives in, and the validity of its own PKI.
///
/// A QA user moves the simulated clock anywhere in `span` (as do key dates). The site's lock
/// certificates are the emulator's own, so they are issued to cover that whole span plus a day on
/// each side: whatever the clock says, and whatever day the data directory was created, the phone
/// trusts the site's locks — a test written today passes on any later day. An expired or
/// not-yet-valid lock certificate is a deliberate fault (`POST /v1/locks/{id}/certificate`).
/// docs/PROTOCOL.md, "Lock certificates in the emulator".
public enum EmulatedWorld {
    /// 2000-01-01T00:00:00Z … 2100-01-01T00:00:00Z.
    public static let span = Date(timeIntervalSince1970: 946_684_800)...Date(timeIntervalSince1970: 4_102_444_800)

    /// Lock certificates of an emulated site: `span` and a day either side.
    public static let certificateValidity = ValidityWindow(notBefore: span.lowerBound.addingTimeInterval(-86_400),
                                                           expires: span.upperBound.addingTimeInterval(86_400))

    /// Whether a certificate covers the whole span (older data directories hold certificates issued
    /// for five years from the day they were created; those are re-issued on start).
    static func coversSpan(_ c: LockCertificate) -> Bool {
        c.issuedAt <= certificateValidity.notBefore && c.expires >= certificateValidity.expires
    }

    /// A certificate window that fails at every instant of `span`, for the fault API.
    enum CertificateFault: String, CaseIterable {
        case none, expired, notYetValid = "not_yet_valid"

        var validity: ValidityWindow {
            switch self {
            case .none: return EmulatedWorld.certificateValidity
            case .expired: return ValidityWindow(notBefore: span.lowerBound.addingTimeInterval(-3 * 86_400),
                                                 expires: span.lowerBound.addingTimeInterval(-2 * 86_400))
            case .notYetValid: return ValidityWindow(notBefore: span.upperBound.addingTimeInterval(2 * 86_400),
                                                     expires: span.upperBound.addingTimeInterval(3 * 86_400))
            }
        }
    }
}
