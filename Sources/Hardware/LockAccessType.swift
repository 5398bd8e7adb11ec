import Foundation

/// What a credential may do at a lock: the per-lock "access type" a platform sets when it connects a
/// SALTO KS lock (Proximity offers "grant access" and "grant access + office mode"). The user's
/// office-mode right (their group's `office_mode`, a key's claim) says who may toggle office mode; the
/// access type says whether this lock lets anyone do so at all.
public enum LockAccessType: String, Sendable, Hashable, Codable, CaseIterable {
    /// Credentials only open. Office mode cannot be started here — not by a credential held on the reader,
    /// not by an explicit request, not remotely, not in an easy-office-mode window (a tap there just opens).
    case grant
    /// Credentials open; a holder of the office-mode right also toggles office mode (held > 5 s, an explicit
    /// request, or a tap inside an easy-office-mode window). The default, as before access types existed.
    case grantOfficeMode = "grant_office_mode"
}
